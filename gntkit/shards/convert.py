"""`gntkit convert`: the sample stream -> TFRecord / HDF5 / WebDataset shards + charset + manifest.

Four stages a reader can follow, each a function here:
- plan (`plan_conversion`): check the arguments, find the members, choose the split of every
  writer, survey the charset once (shared with the stream), settle the preprocessing;
- output folder (`OutputFolder`): prepare it (or the resume journal), record finished shards,
  give shards their final names;
- write (`write_shards`): the one sample stream into shards, split by split, with progress;
- finalise (`finalise`): digests of sources and shards, charset files, the manifest.

Life of an output folder:
- while running: shards appear as `{name}-{split}-{i:05d}.{ext}` once complete (the writer
  writes `.partial` first), and `.gntkit-journal.json` lists the finished ones;
- at the end: shards are renamed `...-{i:05d}-of-{n:05d}...` (gntkit.shards.manifest.shard_name),
  then `dataset_info.json` is written (atomically) with `"complete": true`, then the journal
  is removed.
A folder without `dataset_info.json` is never a complete conversion. `resume=True` keeps
the finished shards of an interrupted run with the same settings and writes only the rest.
An `out_dir` URL (`s3://bucket/prefix`, any fsspec URL) is written locally first and
uploaded when complete, manifest last (gntkit.shards.remote).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import gntkit
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.formats.gnt import DEFAULT_MAX_SIDE
from gntkit.formats.sources import Member, find_members
from gntkit.samples.batch import SampleBatch
from gntkit.samples.charset import Charset
from gntkit.samples.splits import SplitPlan, parse_split
from gntkit.samples.stream import DEFAULT_BATCH_SIZE, PARALLEL_CHOICES, StreamReport, check_choice, iter_batches, plan_charset
from gntkit.shards.digest import default_threads, sha256_files
from gntkit.shards.manifest import JOURNAL, MANIFEST, OutputFormat, brace_pattern, output_format, read_json, shard_name, write_json_atomic
from gntkit.tools.compile_ahead import cancel_helpers, compile_callee_share, preprocess_group, start_preprocess_helper, warm_writer

# 128 MB: about 30 shards for HWDB1.1-train at 64 x 64, enough for shuffling across shards and
# for hashing them side by side (gntkit.shards.digest), each still large for sequential reads.
DEFAULT_SHARD_BYTES = 128 * 1024 * 1024
# Rough per-record overhead (keys, labels, framing) used to size shards by bytes.
_RECORD_OVERHEAD = 96
_SOURCE_SUFFIXES = (".zip", ".gnt", ".gz", ".alz", ".pot", ".dgrl")


def _first_source(sources) -> Path:
    return Path(list(sources)[0] if not isinstance(sources, (str, Path)) else sources)


def _strip_suffixes(name: str) -> str:
    while name.lower().endswith(_SOURCE_SUFFIXES):
        name = name[: name.rindex(".")]
    return name


def default_name(sources) -> str:
    """Dataset name from the first source: `HWDB1.1trn_gnt.zip` -> "hwdb1.1trn_gnt"."""
    name = _strip_suffixes(_first_source(sources).name)
    name = "".join(c if c.isalnum() or c in "._" else "_" for c in name.lower()).strip("._")
    return name or "gnt"


def default_output(sources, to: str) -> Path:
    """Default output folder: `<source name>-<format>` in the current folder."""
    return Path.cwd() / f"{_strip_suffixes(_first_source(sources).name)}-{to}"


def _file_digests(path: Path, md5: bool) -> dict:
    sha = hashlib.sha256()
    digest_md5 = hashlib.md5() if md5 else None
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            sha.update(chunk)
            if digest_md5 is not None:
                digest_md5.update(chunk)
    out = {"sha256": sha.hexdigest()}
    if digest_md5 is not None:
        out["md5"] = digest_md5.hexdigest()
    return out


class _SourceHasher(threading.Thread):
    """Hashes the source files in the background while conversion runs (hashlib releases the GIL).

    Plain source files go through gntkit.shards.digest; archives get
    sha256 and md5 (the digests download pages publish). Members inside archives are hashed
    by the stream, which has their unpacked bytes anyway.
    """

    def __init__(self, files, archives):
        super().__init__(daemon=True)
        self.files = files
        self.archives = archives
        self.file_digests: dict[str, str] = {}
        self.digests: dict[str, dict] = {}
        self.error: Exception | None = None

    def run(self):
        try:
            self.file_digests = dict(zip(self.files, sha256_files(self.files)))
            for archive in self.archives:
                self.digests[archive] = _file_digests(Path(archive), md5=True)
        except (OSError, GntkitError) as exc:  # reported after the join
            self.error = exc

    def result(self) -> tuple[dict, dict]:
        """Wait for the digests: (plain file -> sha256, archive -> {sha256, md5}).

        Raises:
            GntkitError: a file could not be read.
        """
        self.join()
        if isinstance(self.error, OSError):
            raise GntkitError(f"{self.error.filename}: cannot read the file to hash it ({self.error.strerror}).")
        if self.error is not None:
            raise self.error
        return self.file_digests, self.digests


class _SplitOutput:
    """Rolls one split's samples over shards by count or size; skips shards the journal has."""

    def __init__(self, split, *, out_dir, name, fmt, writer_class, attrs, compression, shard_records, shard_bytes, finished, on_shard_done):
        self.split = split
        self.out_dir, self.name, self.fmt = out_dir, name, fmt
        self.writer_class, self.attrs, self.compression = writer_class, attrs, compression
        self.shard_records, self.shard_bytes = shard_records, shard_bytes
        self.finished = finished  # shard entries from the journal, in order
        self.on_shard_done = on_shard_done
        self.shards: list[dict] = []
        self.index = 0
        self.writer = None
        self.count = 0
        self.size = 0
        self.num_records = 0
        self.class_counts: np.ndarray | None = None

    def _room(self) -> int:
        room = self.shard_records - self.count if self.shard_records else 1 << 62
        return max(room, 0)

    def _full(self) -> bool:
        return (self.shard_records and self.count >= self.shard_records) or (self.shard_bytes and self.size >= self.shard_bytes)

    def _open(self):
        if self.index < len(self.finished):
            self.writer = None  # replaying a shard that is already on disk
            return
        path = self.out_dir / shard_name(self.name, self.split, self.fmt, self.index)
        self.writer = self.writer_class(str(path), split=self.split, attrs=self.attrs, compression=self.compression, compute_sha256=False)

    def _close(self):
        if self.index < len(self.finished):
            entry = self.finished[self.index]
            if entry["records"] != self.count:
                raise GntkitError(
                    f"{entry['file']}: the journal says {entry['records']} records, the replayed stream gives {self.count}; "
                    "the sources or settings changed since the interrupted run: start again with --overwrite."
                )
        else:
            info = self.writer.close()
            entry = {"file": shard_name(self.name, self.split, self.fmt, self.index), "records": int(info["records"]),
                     "bytes": int(info["bytes"]), "sha256": info["sha256"], "index": info.get("index")}
        self.shards.append(entry)
        if len(self.shards) > len(self.finished):
            self.on_shard_done()
        self.writer = None
        self.index += 1
        self.count = 0
        self.size = 0

    def write(self, batch: SampleBatch, num_classes: int) -> None:
        # Text lines have no single class (label -1): count the characters of their sequences.
        labels = batch.meta["label_sequence"] if "label_sequence" in batch.meta else batch.labels
        counts = np.bincount(labels, minlength=num_classes)
        self.class_counts = counts if self.class_counts is None else self.class_counts + counts
        self.num_records += len(batch)
        per_record = (_RECORD_OVERHEAD + np.diff(batch.pixel_offsets) if batch.raw
                      else np.full(len(batch), _RECORD_OVERHEAD + batch.images[0].size))
        start = 0
        while start < len(batch):
            if self.count == 0 and (self.writer is None):
                self._open()
            end = min(len(batch), start + self._room())
            if self.shard_bytes:
                cumulative = self.size + np.cumsum(per_record[start:end])
                over = np.flatnonzero(cumulative >= self.shard_bytes)
                if over.size:
                    end = start + int(over[0]) + 1
            if self.writer is not None:
                self.writer.write(batch.slice(start, end) if (start, end) != (0, len(batch)) else batch)
            self.count += end - start
            self.size += int(per_record[start:end].sum())
            start = end
            if self._full():
                self._close()

    def finish(self) -> None:
        if self.count:
            self._close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


# --------------------------------------------------------------------------- stage 1: plan


@dataclasses.dataclass
class ConversionPlan:
    """Everything decided before a byte is written (the output of `plan_conversion`).

    Attributes:
        sources: the paths as given.
        members: every source file, in stream order.
        out_dir: the local output folder (a staging folder when `upload_to` is set).
        upload_to: the URL the finished conversion goes to, or None.
        name: dataset name used in shard names.
        fmt: the output format.
        split: the split plan; assignment: writer id -> split name.
        charset: the classes (surveyed once for "data").
        preprocess: the preprocessing applied to every bitmap.
        options: the remaining settings (on_error, on_unknown, shard sizes, workers, ...).
    """

    sources: list
    members: list[Member]
    out_dir: Path
    upload_to: str | None
    name: str
    fmt: OutputFormat
    split: SplitPlan
    assignment: dict
    charset: Charset
    preprocess: object
    options: dict

    def settings_key(self) -> str:
        """A digest of every setting that shapes the shards (resume checks it)."""
        o = self.options
        settings = {
            "sources": [str(Path(s).resolve()) for s in self.sources], "members": [(m.name, m.size) for m in self.members],
            "to": self.fmt.name, "name": self.name, "split": self.split.to_json(), "charset": self.charset.to_json(),
            "preprocess": self.preprocess.to_json(), "on_error": o["on_error"], "on_unknown": o["on_unknown"],
            "shard_records": o["shard_records"], "shard_bytes": o["shard_bytes"], "compression": o["compression"],
            "batch_size": o["batch_size"], "max_side": o["max_side"],
            **({"strokes": True} if o.get("strokes") else {}),  # absent otherwise: earlier journals still match
            **({"lines": True} if o.get("lines") else {}),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def resolve_preprocess(members: list[Member], preprocess=None):
    """The preprocessing for these members: a Preprocess as given, or the members' format
    defaults (`PREPROCESS_DEFAULTS` of the format module) updated with the options the user
    set (a dict whose None values mean "the format's default").

    Raises:
        GntkitError: a bad setting, or formats whose defaults disagree with nothing given.
    """
    from gntkit.formats import get_format
    from gntkit.samples.preprocess import Preprocess

    if isinstance(preprocess, Preprocess):
        return preprocess
    if preprocess is not None and not isinstance(preprocess, dict):
        raise GntkitError("preprocess must be a gntkit.samples.preprocess.Preprocess or a dict of its settings, "
                          f"found {type(preprocess).__name__}.")
    chosen = {k: v for k, v in (preprocess or {}).items() if v is not None}
    defaults = {}
    for name in sorted({m.format for m in members}):
        own = dict(getattr(get_format(name), "PREPROCESS_DEFAULTS", {}))
        clash = {k for k in own.keys() & defaults.keys() if own[k] != defaults[k]} - chosen.keys()
        if clash:
            raise GntkitError(f"The sources mix formats whose default preprocessing differs in {', '.join(sorted(clash))}: "
                              "set it explicitly (e.g. --size).")
        defaults.update(own)
    if chosen.get("raw"):
        return Preprocess(**chosen)
    try:
        return Preprocess(**{**defaults, **chosen})
    except TypeError as exc:
        raise GntkitError(f"preprocess: expected settings of gntkit.samples.preprocess.Preprocess, found {exc}.") from None


def _default_split(members: list[Member]) -> str:
    from gntkit.formats import get_format

    splits = {getattr(get_format(name), "DEFAULT_SPLIT", "all") for name in {m.format for m in members}}
    return splits.pop() if len(splits) == 1 else "all"


def _check_options(options: dict) -> None:
    check_choice("parallel", options["parallel"], PARALLEL_CHOICES)
    for key in ("shard_records", "shard_bytes"):
        if options[key] is not None and (not isinstance(options[key], int) or options[key] < 1):
            raise GntkitError(f"{key} must be a whole number of at least 1, found {options[key]!r}.")
    if int(options["batch_size"]) < 1:
        raise GntkitError(f"batch_size must be at least 1, found {options['batch_size']}.")


def _check_strokes_sources(members: list[Member]) -> None:
    """Raise GntkitError unless every member's format carries raw strokes (HAS_STROKES)."""
    from gntkit.formats import get_format

    without = sorted({m.format for m in members if not getattr(get_format(m.format), "HAS_STROKES", False)})
    if without:
        first = next(m for m in members if m.format in without)
        kinds = ", ".join(f.upper() for f in without)
        raise GntkitError(f"--strokes needs online sources with strokes (POT), found {kinds} files such as {first.name}.")


def plan_conversion(sources, out_dir=None, *, to: str = "tfrecord", name: str | None = None, split=None,
                    val_fraction: float = 0.0, split_seed: int = 0, charset=None, preprocess=None, **options) -> ConversionPlan:
    """Stage 1 of convert: check the arguments and decide everything (see convert for them).

    Raises:
        GntkitError: bad arguments, sources or charset.
    """
    fmt = output_format(to)
    _check_options(options)
    source_list = [sources] if isinstance(sources, (str, Path)) else list(sources)
    members = find_members(source_list)
    if options.get("strokes"):
        _check_strokes_sources(members)
    if _line_sources(members):
        options["lines"] = True
    plan = split if isinstance(split, SplitPlan) else parse_split(split or _default_split(members), val_fraction, split_seed)
    assignment = plan.assign(members)
    charset_obj = plan_charset(charset, members, on_error=options["on_error"], on_unknown=options["on_unknown"],
                               max_side=options["max_side"])
    upload_to = None
    if out_dir is not None and "://" in str(out_dir):
        if options.get("resume"):
            raise GntkitError(f"{out_dir}: --resume works on local folders only; convert to a local folder, then upload it.")
        upload_to = str(out_dir)
        out_dir = Path(tempfile.mkdtemp(prefix="gntkit-upload-"))
        options["overwrite"] = True
    out = Path(out_dir) if out_dir is not None else default_output(source_list, fmt.name)
    settings = resolve_preprocess(members, preprocess)
    if options.get("lines") and not settings.raw and settings.line_height is None:  # the manifest says which height
        from gntkit.formats.dgrl import DEFAULT_LINE_HEIGHT, DEFAULT_MAX_LINE_WIDTH

        settings = dataclasses.replace(settings, line_height=DEFAULT_LINE_HEIGHT,
                                       max_line_width=settings.max_line_width or DEFAULT_MAX_LINE_WIDTH)
    return ConversionPlan(source_list, members, out, upload_to, name or default_name(source_list), fmt, plan, assignment,
                          charset_obj, settings, options)


def _line_sources(members: list[Member]) -> bool:
    """True when the members are text lines (DGRL); raise GntkitError when lines and single characters are mixed."""
    from gntkit.samples.stream import is_line_member

    kinds = {is_line_member(m) for m in members}
    if len(kinds) > 1:
        first = next(m for m in members if is_line_member(m))
        raise GntkitError(f"Text lines ({first.name}) and single characters cannot share one dataset (label sequences vs one class per "
                          "sample): convert them separately.")
    return kinds == {True}


# --------------------------------------------------------------------------- stage 2: the output folder


class OutputFolder:
    """The output folder's life: prepare (or resume), the journal of finished shards, final names.

    Args:
        path: the folder.
        key: the plan's settings key (a resumed run must have the same).
    """

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self.journal_path = self.path / JOURNAL

    def prepare(self, overwrite: bool, resume: bool) -> dict:
        """Create or clear the folder; return the journal's finished shards per split.

        Raises:
            OutputExistsError / GntkitError: a folder that must not be touched, a journal
                of other settings, or a damaged journal (one sentence each).
        """
        out_dir = self.path
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir}: expected an output folder, found a file.")
        if out_dir.exists() and any(out_dir.iterdir()):
            if resume and self.journal_path.is_file():
                return self._resume()
            if resume and (out_dir / MANIFEST).is_file():
                raise OutputExistsError(f"{out_dir}: this conversion is already complete ({MANIFEST} exists); nothing to resume.")
            if not overwrite:
                hint = " or --resume to finish the interrupted run" if self.journal_path.is_file() else ""
                raise OutputExistsError(f"{out_dir}: the output folder exists and is not empty: pass --overwrite to replace it{hint}.")
            if not ((out_dir / MANIFEST).is_file() or self.journal_path.is_file()):
                raise OutputExistsError(
                    f"{out_dir}: the folder exists and is not a gntkit output (no {MANIFEST} or journal), "
                    "so --overwrite will not delete it: choose another folder."
                )
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {}

    def _resume(self) -> dict:
        journal = read_json(self.journal_path, "a gntkit resume journal")
        shards = journal.get("shards")
        if not isinstance(shards, dict) or not all(
                isinstance(v, list) and all(isinstance(e, dict) and {"file", "bytes", "records"} <= e.keys() for e in v)
                for v in shards.values()):
            raise GntkitError(f"{self.journal_path}: expected a resume journal listing finished shards (file, bytes, records), "
                              "found a damaged one: use --overwrite to start again.")
        if journal.get("settings_key") != self.key:
            raise GntkitError(
                f"{self.path}: the interrupted run there used other sources or settings, so it cannot be resumed: "
                "use the same command, or --overwrite to start again."
            )
        for entries in shards.values():
            for entry in entries:
                path = self.path / entry["file"]
                if not path.is_file() or path.stat().st_size != entry["bytes"]:
                    found = "no file" if not path.is_file() else f"{path.stat().st_size} bytes"
                    raise GntkitError(f"{path}: the journal lists this finished shard ({entry['bytes']} bytes) but found {found}: "
                                      "use --overwrite to start again.")
        for leftover in self.path.glob("*.partial"):
            leftover.unlink()
        return shards

    def save_journal(self, shards: dict) -> None:
        """Record the finished shards of every split (written atomically)."""
        write_json_atomic(self.journal_path, {"settings_key": self.key, "shards": shards})

    def final_names(self, name: str, split: str, fmt: OutputFormat, shards: list[dict]) -> None:
        """Rename a split's shards (and indexes) to `...-of-N` names; updates the entries."""
        total = len(shards)
        for i, entry in enumerate(shards):
            final = shard_name(name, split, fmt, i, total)
            os.replace(self.path / entry["file"], self.path / final)
            if entry.get("index"):
                index_final = final + ".index.npy"
                os.replace(self.path / entry["index"], self.path / index_final)
                entry["index"] = index_final
            entry["file"] = final

    def finish(self, manifest: dict) -> None:
        """Write the manifest (last, atomically) and remove the journal."""
        write_json_atomic(self.path / MANIFEST, manifest)
        self.journal_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- stage 3: write


def _compile_ahead(plan: ConversionPlan) -> None:
    """On a cold numba cache: preprocessing kernels in a helper process, the writer's here meanwhile.

    Only GNT bitmaps go through the resampling kernels the helper compiles; for other sources
    (and raw or pad settings) a helper the CLI started is stopped. See gntkit.tools.compile_ahead.
    """
    settings = plan.preprocess
    resamples = (not settings.raw and not settings.pad and not plan.options.get("lines")
                 and all(m.format == "gnt" for m in plan.members))
    if not resamples:
        cancel_helpers()
        return
    # The command's share of the callees first (the helper waits for it); then, while the helper
    # compiles for seconds, the writer here, not after the first batch.
    if start_preprocess_helper(settings.edits) and compile_callee_share(preprocess_group(settings.edits)):
        warm_writer(plan.fmt.name, image_size=settings.size, compression=plan.options["compression"])


def _split_outputs(plan: ConversionPlan, folder: OutputFolder, finished: dict) -> dict:
    """One _SplitOutput per split, each saving the journal when it finishes a shard."""
    attrs = {"gntkit_version": gntkit.__version__, "charset": plan.charset.to_json(), "preprocess": plan.preprocess.to_json(),
             **({"strokes": True} if plan.options.get("strokes") else {}), **({"lines": True} if plan.options.get("lines") else {})}
    writer_class = plan.fmt.writer_class()
    outputs: dict[str, _SplitOutput] = {}

    def save_journal():
        folder.save_journal({s: outputs[s].shards if s in outputs else list(finished.get(s, [])) for s in plan.split.names})

    for split_name in plan.split.names:
        outputs[split_name] = _SplitOutput(
            split_name, out_dir=folder.path, name=plan.name, fmt=plan.fmt, writer_class=writer_class, attrs=attrs,
            compression=plan.options["compression"], shard_records=plan.options["shard_records"],
            shard_bytes=plan.options["shard_bytes"], finished=finished.get(split_name, []), on_shard_done=save_journal,
        )
    save_journal()
    return outputs


def write_shards(plan: ConversionPlan, outputs: dict, report: StreamReport) -> int:
    """Stage 3: the one sample stream into each split's shards, with a progress bar.

    Returns:
        Samples written. On any error the unfinished shards are removed and it re-raises.
    """
    from gntkit.progress import ProgressBar

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
        cancel_helpers()
        for output in outputs.values():
            output.abort()
        raise
    return samples


# --------------------------------------------------------------------------- stage 4: finalise


def _hash_shards(folder: OutputFolder, outputs: dict) -> None:
    # Shards are hashed together now (and any finished before a resume that lacks a digest):
    # hashlib on all cores beats one hashlib stream per shard while writing.
    # The source hasher may still be running; both share the cores until it ends.
    unhashed = [entry for output in outputs.values() for entry in output.shards if entry.get("sha256") is None]
    for entry, digest in zip(unhashed, sha256_files([folder.path / e["file"] for e in unhashed], threads=default_threads())):
        entry["sha256"] = digest


def _splits_json(plan: ConversionPlan, folder: OutputFolder, outputs: dict) -> tuple[dict, list[str]]:
    """Final shard names and each split's manifest entry; splits no writer fell in are left out."""
    splits_json, empty = {}, [name for name, output in outputs.items() if output.num_records == 0]
    for split_name, output in outputs.items():
        if split_name in empty:
            continue  # no writer of the sources falls in it: listed under split.empty instead
        folder.final_names(plan.name, split_name, plan.fmt, output.shards)
        counts = output.class_counts if output.class_counts is not None else np.zeros(len(plan.charset), np.int64)
        writers = sorted((w for w, s in plan.assignment.items() if s == split_name), key=lambda w: (len(w), w))
        splits_json[split_name] = {"num_records": output.num_records, "writers": writers, "class_counts": counts.astype(int).tolist(),
                                   "pattern": brace_pattern(plan.name, split_name, plan.fmt, len(output.shards)), "shards": output.shards}
    return splits_json, empty


def _feature_spec(plan: ConversionPlan) -> dict:
    """The writer's feature spec; text lines are stored in the raw (variable-size) layout at the line height."""
    o, settings = plan.options, plan.preprocess
    if not o.get("lines"):
        return plan.fmt.writer_module().feature_spec(settings.raw, None if settings.raw else settings.size, strokes=bool(o.get("strokes")))
    spec = plan.fmt.writer_module().feature_spec(True, None, lines=True)
    spec["image"]["line_height"] = None if settings.raw else settings.line_height
    spec["image"]["max_line_width"] = None if settings.raw else settings.max_line_width
    return spec


def build_manifest(plan: ConversionPlan, splits_json: dict, empty: list[str], report: StreamReport, samples: int,
                   seconds: float, digests: tuple[dict, dict]) -> dict:
    """The manifest of a finished conversion (what `dataset_info.json` holds)."""
    o = plan.options
    file_digests, archive_digests = digests
    for entry in report.members:
        entry.setdefault("sha256", file_digests.get(entry["name"]))
    member_entries = {e["name"]: e for e in report.members}
    workers, parallel = o["workers"], o["parallel"]
    manifest = {
        "gntkit_version": gntkit.__version__,
        "format": plan.fmt.name,
        "name": plan.name,
        "command": o.get("command") or f"gntkit.shards.convert.convert({plan.sources!r}, to={plan.fmt.name!r})",
        "complete": True,
        "source_formats": sorted({m.format for m in plan.members}),
        "charset": {"name": plan.charset.name, "order": plan.charset.order, "num_classes": len(plan.charset),
                    "file": "charset.txt", "json": "charset.json", "on_unknown": o["on_unknown"], "has_other": plan.charset.has_other},
        "preprocess": plan.preprocess.to_json(),
        "features": _feature_spec(plan),
        "compression": o["compression"],
        "split": {**plan.split.to_json(), "empty": empty},
        "sources": [_source_entry(Path(s), plan.members, member_entries, archive_digests) for s in plan.sources],
        "splits": splits_json,
        "skipped": report.to_json(),
        "stats": {"records_read": report.records, "samples_written": samples, "seconds": round(seconds, 3), "workers": workers,
                  "parallel": parallel,
                  "peak_rss_mb": {"main": round(_peak_rss_kb() / 1024, 1),
                                  "worker": (round(report.worker_peak_rss_kb / 1024, 1)
                                             if parallel == "processes" and workers > 1 else None)},
                  "sources_hashed": o["hash_sources"]},
    }
    manifest["summary"] = report.summary() + (f" Split(s) with no samples, left out: {', '.join(empty)}." if empty else "")
    manifest["lost_anything"] = report.lost_anything
    return manifest


def finalise(plan: ConversionPlan, folder: OutputFolder, outputs: dict, report: StreamReport, samples: int,
             seconds: float, hasher: _SourceHasher) -> dict:
    """Stage 4: shard digests, final names, charset files, the manifest written last.

    Raises:
        GntkitError: no sample was kept, or a source could not be hashed.
    """
    _hash_shards(folder, outputs)
    digests = hasher.result()
    if not any(output.num_records for output in outputs.values()):
        raise GntkitError(f"{folder.path}: no sample was kept ({report.summary()}); nothing to write. Check --charset and --split.")
    splits_json, empty = _splits_json(plan, folder, outputs)
    plan.charset.save(folder.path)
    manifest = build_manifest(plan, splits_json, empty, report, samples, seconds, digests)
    manifest["output"] = plan.upload_to or str(folder.path)
    folder.finish(manifest)
    if plan.upload_to:
        from gntkit.shards.remote import upload_folder

        upload_folder(folder.path, plan.upload_to)
        shutil.rmtree(folder.path, ignore_errors=True)
    return manifest


def convert(sources, out_dir=None, *, to: str = "tfrecord", name: str | None = None, split=None,
            val_fraction: float = 0.0, split_seed: int = 0, charset=None, preprocess=None,
            on_error: str = "raise", on_unknown: str = "drop", shard_records: int | None = None,
            shard_bytes: int | None = DEFAULT_SHARD_BYTES, compression: str | None = None, workers: int | None = None,
            parallel: str = "threads", overwrite: bool = False, resume: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
            max_side: int = DEFAULT_MAX_SIDE, progress: bool = False, command: str | None = None,
            hash_sources: bool = True, strokes: bool = False) -> dict:
    """Convert sources of any registered format to shards of one format, with charset files and a manifest.

    Args:
        sources: source files (.gnt, ...), folders, archives (or a list of them).
        out_dir: output folder, or an fsspec URL (written locally, then uploaded); default
            `<source name>-<format>` in the current folder.
        to: "tfrecord", "hdf5" or "webdataset" (or an alias: "h5", "wds").
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
        compression: tfrecord: None or "gzip"; hdf5: None, "lzf" or "gzip".
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
        strokes: also write each sample's raw strokes (online sources such as POT; see gntkit.samples.strokes
            and each writer's feature_spec) beside its image.

    Returns:
        The manifest (also written to `dataset_info.json`); `manifest["lost_anything"]` says
        whether a record was skipped or a sample dropped.

    Raises:
        GntkitError: bad input or settings, with the file and offset where it applies.
    """
    plan = plan_conversion(
        sources, out_dir, to=to, name=name, split=split, val_fraction=val_fraction, split_seed=split_seed, charset=charset,
        preprocess=preprocess, on_error=on_error, on_unknown=on_unknown, shard_records=shard_records, shard_bytes=shard_bytes,
        compression=compression, workers=int(workers or os.cpu_count() or 1), parallel=parallel, overwrite=overwrite,
        resume=resume, batch_size=batch_size, max_side=max_side, progress=progress, command=command, hash_sources=hash_sources,
        strokes=bool(strokes),
    )
    folder = OutputFolder(plan.out_dir, plan.settings_key())
    finished = folder.prepare(plan.options["overwrite"], resume)
    outputs = _split_outputs(plan, folder, finished)
    _compile_ahead(plan)
    archives = sorted({m.archive for m in plan.members if m.archive}) if hash_sources else []
    plain_files = [m.name for m in plan.members if not m.archive] if hash_sources else []
    hasher = _SourceHasher(plain_files, archives)
    hasher.start()
    report = StreamReport()
    started = time.perf_counter()
    samples = write_shards(plan, outputs, report)
    return finalise(plan, folder, outputs, report, samples, time.perf_counter() - started, hasher)


def _peak_rss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _source_entry(path: Path, members: list[Member], member_entries: dict, archive_digests: dict) -> dict:
    """Manifest entry of one source: its files (or archive) with sizes and digests."""
    mine = [m for m in members if m.source == str(path)]
    files = []
    for m in mine:
        entry = member_entries.get(m.name, {})
        files.append({"name": m.name if m.archive else str(Path(m.name).relative_to(path) if path.is_dir() else Path(m.name).name),
                      "format": m.format, "writer_id": m.writer_id, "bytes": m.size, "sha256": entry.get("sha256"),
                      "records": entry.get("records"), "kept": entry.get("kept")})
    archive_kind = mine[0].layers[0][0] if mine and mine[0].archive == str(path) else None
    out = {"path": str(path), "kind": "folder" if path.is_dir() else (archive_kind or "file")}
    if path.is_file():
        out["bytes"] = path.stat().st_size
        out.update(archive_digests.get(str(path), {}) if archive_kind else {"sha256": files[0]["sha256"] if files else None})
    archives = {m.archive for m in mine if m.archive and m.archive != str(path)}
    if archives:
        out["archives"] = [{"path": z, "bytes": Path(z).stat().st_size, **archive_digests.get(z, {})} for z in sorted(archives)]
    out["files"] = files
    return out
