"""`gntkit convert`: the sample stream -> shards of any registered output format + charset + manifest.

Four stages a reader can follow, each in its own module:
- plan (gntkit.shards.plan, `plan_conversion`): check the arguments, find the members, choose
  the split of every writer, survey the charset once (shared with the stream), settle the
  preprocessing;
- output folder (gntkit.shards.output, `OutputFolder`): prepare it (or the resume journal),
  record finished shards, give shards their final names;
- write (`write_shards`, here): the one sample stream into shards, split by split, with progress;
- finalise (gntkit.shards.finalise, `finalise`): digests of sources and shards, charset files,
  the record indexes moved into `.gntkit-index/`, TFDS metadata (TFRecord), the dataset card
  `README.md`, the manifest.

Life of an output folder:
- while running: shards appear as `{name}-{split}-{i:05d}.{ext}` once complete (the writer
  writes `.partial` first), and `.gntkit-journal.json` lists the finished ones;
- at the end: shards are renamed `...-{i:05d}-of-{n:05d}...` (gntkit.shards.manifest.shard_name),
  then the manifest `gntkit.json` is written (atomically) with `"complete": true`, then the journal
  is removed.
A folder without a manifest is never a complete conversion. `resume=True` keeps
the finished shards of an interrupted run with the same settings and writes only the rest.
An `out_dir` URL (`s3://bucket/prefix`, any fsspec URL) is written locally first and
uploaded when complete, manifest last (gntkit.shards.remote).
"""

from __future__ import annotations

import os
import time

from gntkit.formats.base import DEFAULT_MAX_SIDE
from gntkit.progress import ProgressBar
from gntkit.samples.stream import DEFAULT_BATCH_SIZE, StreamReport, iter_batches
from gntkit.shards.finalise import SourceHasher, build_manifest, conversion_summary, finalise
from gntkit.shards.output import OutputFolder, split_outputs
from gntkit.shards.plan import ConversionPlan, default_name, default_output, plan_conversion, preprocess_settings, resolve_preprocess
from gntkit.shards.registry import DEFAULT_FORMAT

# The conversion's public names, whichever stage module holds them.
__all__ = ["DEFAULT_SHARD_BYTES", "ConversionPlan", "OutputFolder", "build_manifest", "conversion_summary", "convert", "default_name",
           "default_output", "finalise", "plan_conversion", "preprocess_settings", "resolve_preprocess", "write_shards"]

# 128 MB: about 30 shards for HWDB1.1-train at 64 x 64, enough for shuffling across shards and
# for hashing them side by side (gntkit.shards.digest), each still large for sequential reads.
DEFAULT_SHARD_BYTES = 128 * 1024 * 1024


def write_shards(plan: ConversionPlan, outputs: dict, report: StreamReport) -> int:
    """Stage 3: the one sample stream into each split's shards, with a progress bar.

    Returns:
        Samples written. On any error the unfinished shards are removed and it re-raises.
    """
    o = plan.options
    sizes = {m.name: max(m.size, 0) for m in plan.members}
    samples, seen = 0, 0
    stream = iter_batches(plan.members, plan.charset, plan.preprocess, on_error=o["on_error"], on_unknown=o["on_unknown"],
                          batch_size=o["batch_size"], workers=o["workers"], parallel=o["parallel"], max_side=o["max_side"],
                          report=report, hash_members="archived" if o["hash_sources"] else False)
    try:
        with ProgressBar(sum(sizes.values()), unit="bytes", description="convert", enabled=o["progress"]) as bar:
            for batch in stream:
                outputs[plan.assignment[batch.writer_ids[0]]].write(batch, len(plan.charset))
                samples += len(batch)
                done = sum(sizes[entry["name"]] for entry in report.members[seen:])
                seen = len(report.members)
                bar.update(done, samples=samples)
            for output in outputs.values():
                output.finish()
            bar.update(sum(sizes[entry["name"]] for entry in report.members[seen:]), samples=samples)
    except BaseException:
        for output in outputs.values():
            output.abort()
        raise
    return samples



def convert(sources, out_dir=None, *, to: str = DEFAULT_FORMAT, name: str | None = None, split=None,
            val_fraction: float = 0.0, split_seed: int = 0, charset=None, preprocess=None,
            on_error: str = "raise", on_unknown: str = "drop", shard_records: int | None = None,
            shard_bytes: int | None = DEFAULT_SHARD_BYTES, compression: str | None = None, workers: int | None = None,
            parallel: str = "threads", overwrite: bool = False, resume: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
            max_side: int = DEFAULT_MAX_SIDE, progress: bool = False, command: str | None = None,
            hash_sources: bool = True, strokes: bool = False, before_write=None) -> dict:
    """Convert sources of any registered format to shards of one format, with charset files and a manifest.

    Args:
        sources: source files (.gnt, ...), folders, archives (or a list of them).
        out_dir: output folder, or an fsspec URL (written locally, then uploaded); default
            `<source name>-<format>` in the current folder.
        to: an output format of gntkit.shards.registry, by name or alias ("hdf5", "h5", ...).
        name: dataset name used in shard names; default from the first source.
        split: "all", a preset ("hwdb1.1", ...), ranges ("train=1001-1240,test=1241-1300"), a
            SplitPlan, or None for the sources' format default.
        val_fraction / split_seed: move a seeded fraction of the train writers to "val".
        charset: "gb2312-1", "gb2312", "data", a charset file, a Charset, or None for the
            sources' format default (GNT: "gb2312-1").
        preprocess: a gntkit.samples.preprocess.Preprocess, a dict of its settings (None values: the
            format's default), or None for the format's defaults (GNT: 64x64 crop+resize+invert).
        on_error: "raise" or "skip" damaged records (skips are counted in the manifest).
        on_unknown: "drop", "error" or "other" for characters outside the charset.
        shard_records / shard_bytes: start a new shard after this many records / bytes.
        compression: one of the format's compressions (tfrecord: None or "gzip"; hdf5: None, "lzf" or "gzip").
        workers: parallel decoders (default: all cores); output is identical for any value.
        parallel: "threads" (default) or "processes" (see gntkit.samples.stream.iter_batches).
        overwrite: replace an existing gntkit output folder.
        resume: finish an interrupted run of the same command, keeping its finished shards.
        batch_size: samples per stream batch.
        max_side: largest bitmap side accepted as real.
        progress: show progress on stderr (gntkit.progress).
        command: the command line to record in the manifest.
        hash_sources: record the sha256 of every source file and archive (md5 too for
            archives) in the manifest; a large share of the time on CPUs without SHA instructions.
        strokes: also write each sample's raw strokes (online sources such as POT) beside its image.
        before_write: optional callable(plan), called once the output folder is prepared, just
            before the stream starts (the CLI compiles kernels ahead there: gntkit.tools.compile_ahead).

    Returns:
        The manifest (also written to `gntkit.json`); `manifest["lost_anything"]` says
        whether a record was skipped or a sample dropped.

    Raises:
        GntkitError: bad input or settings, with the file and offset where it applies.
    """
    plan = plan_conversion(
        sources, out_dir, to=to, name=name, split=split, val_fraction=val_fraction, split_seed=split_seed, charset=charset,
        preprocess=preprocess, on_error=on_error, on_unknown=on_unknown, shard_records=shard_records, shard_bytes=shard_bytes,
        compression=compression, workers=int(workers or os.cpu_count() or 1), parallel=parallel, overwrite=overwrite, resume=resume,
        batch_size=batch_size, max_side=max_side, progress=progress, command=command, hash_sources=hash_sources, strokes=bool(strokes))
    folder = OutputFolder(plan.out_dir, plan.settings_key(), plan.fmt)
    outputs = split_outputs(plan, folder, folder.prepare(plan.options["overwrite"], resume))
    if before_write is not None:
        before_write(plan)
    hasher = SourceHasher.start_for(plan.members, hash_sources)
    report, started = StreamReport(), time.perf_counter()
    samples = write_shards(plan, outputs, report)
    return finalise(plan, folder, outputs, report, samples, time.perf_counter() - started, hasher)
