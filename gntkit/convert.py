"""`gntkit convert`: the sample stream -> TFRecord / HDF5 / WebDataset shards + charset + manifest.

Life of an output folder:
- while running: shards appear as `{name}-{split}.{ext}-{i:05d}` once complete (the writer
  writes `.partial` first), and `.gntkit-journal.json` lists the finished ones;
- at the end: shards are renamed `...-{i:05d}-of-{n:05d}`, then `dataset_info.json` is
  written (atomically) with `"complete": true`, then the journal is removed.
A folder without `dataset_info.json` is never a complete conversion. `resume=True` keeps
the finished shards of an interrupted run with the same settings and writes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

import gntkit
from gntkit.batch import SampleBatch
from gntkit.charset import Charset, resolve
from gntkit.digest import default_threads, sha256_files
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.formats.gnt import DEFAULT_MAX_SIDE
from gntkit.inspection import inspect_sources
from gntkit.sources import GntMember, find_members
from gntkit.splits import SplitPlan, parse_split
from gntkit.stream import DEFAULT_BATCH_SIZE, PARALLEL_CHOICES, StreamReport, check_choice, iter_batches

MANIFEST = "dataset_info.json"
JOURNAL = ".gntkit-journal.json"
FORMATS = {"tfrecord": "tfrecord", "hdf5": "h5", "webdataset": "tar"}
# 128 MB: about 30 shards for HWDB1.1-train at 64 x 64, enough for shuffling across shards and
# for hashing them side by side (gntkit.digest), each still large for sequential reads.
DEFAULT_SHARD_BYTES = 128 * 1024 * 1024
# Rough per-record overhead (keys, labels, framing) used to size shards by bytes.
_RECORD_OVERHEAD = 96


def default_name(sources) -> str:
    """Dataset name from the first source: `HWDB1.1trn_gnt.zip` -> "hwdb1.1trn_gnt"."""
    first = Path(list(sources)[0] if not isinstance(sources, (str, Path)) else sources)
    name = first.name
    for suffix in (".zip", ".gnt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    name = "".join(c if c.isalnum() or c in "._" else "_" for c in name.lower()).strip("._")
    return name or "gnt"


def default_output(sources, to: str) -> Path:
    """Default output folder: `<source name>-<format>` in the current folder."""
    first = Path(list(sources)[0] if not isinstance(sources, (str, Path)) else sources)
    stem = first.name[:-4] if first.name.lower().endswith((".zip", ".gnt")) else first.name
    return Path.cwd() / f"{stem}-{to}"


def shard_name(name: str, split: str, ext: str, index: int, total: int | None = None) -> str:
    """`{name}-{split}.{ext}-{i:05d}-of-{n:05d}` (without `-of-` while the total is unknown)."""
    base = f"{name}-{split}.{ext}-{index:05d}"
    return base if total is None else f"{base}-of-{total:05d}"


def slice_batch(batch: SampleBatch, start: int, end: int) -> SampleBatch:
    """Samples start..end of a batch as a new SampleBatch (pixel data are views)."""
    common = dict(
        keys=batch.keys[start:end], writer_ids=batch.writer_ids[start:end], tag_codes=batch.tag_codes[start:end],
        labels=batch.labels[start:end], characters=batch.characters[start:end],
        heights=batch.heights[start:end], widths=batch.widths[start:end],
    )
    if batch.images is not None:
        return SampleBatch(**common, images=batch.images[start:end])
    first, last = int(batch.pixel_offsets[start]), int(batch.pixel_offsets[end])
    return SampleBatch(**common, pixels=batch.pixels[first:last], pixel_offsets=batch.pixel_offsets[start:end + 1] - first)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
    """Hashes the source files in the background while conversion runs (the kernels release the GIL).

    Plain .gnt files go through the multi-buffer SHA-256 (gntkit.digest); zip archives get
    sha256 and md5 (the digests download pages publish). Members inside zips are hashed by
    the stream, which has their inflated bytes anyway.
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


class Progress:
    """A one-line progress display on stderr: samples, samples/s, percent of bytes, ETA."""

    def __init__(self, total_bytes: int, enabled: bool):
        self.total = max(total_bytes, 1)
        self.enabled = enabled
        self.start = time.perf_counter()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, done_bytes: int, samples: int, final: bool = False) -> None:
        """Redraw at most 4 times a second (every 5 s when stderr is not a terminal)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        fraction = min(done_bytes / self.total, 1.0)
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        line = f"{samples:>10,} samples  {samples / elapsed:>9,.0f}/s  {100 * fraction:5.1f}%  ETA {eta:5.0f}s"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


class _SplitOutput:
    """Rolls one split's samples over shards by count or size; skips shards the journal has."""

    def __init__(self, split, *, out_dir, name, ext, writer_class, attrs, compression, shard_records, shard_bytes, finished, on_shard_done):
        self.split = split
        self.out_dir, self.name, self.ext = out_dir, name, ext
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
        path = self.out_dir / shard_name(self.name, self.split, self.ext, self.index)
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
            entry = {"file": shard_name(self.name, self.split, self.ext, self.index), "records": int(info["records"]),
                     "bytes": int(info["bytes"]), "sha256": info["sha256"], "index": info.get("index")}
        self.shards.append(entry)
        if len(self.shards) > len(self.finished):
            self.on_shard_done()
        self.writer = None
        self.index += 1
        self.count = 0
        self.size = 0

    def write(self, batch: SampleBatch, num_classes: int) -> None:
        counts = np.bincount(batch.labels, minlength=num_classes)
        self.class_counts = counts if self.class_counts is None else self.class_counts + counts
        self.num_records += len(batch)
        per_record = _RECORD_OVERHEAD + np.diff(batch.pixel_offsets) if batch.raw else np.full(len(batch), _RECORD_OVERHEAD + batch.images[0].size)
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
                self.writer.write(slice_batch(batch, start, end) if (start, end) != (0, len(batch)) else batch)
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


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _prepare_output(out_dir: Path, overwrite: bool, resume: bool, key: str) -> dict:
    """Create or clear the output folder; return the journal's finished shards per split."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: expected an output folder, found a file.")
    journal_path = out_dir / JOURNAL
    if out_dir.exists() and any(out_dir.iterdir()):
        if resume and journal_path.is_file():
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            if journal.get("settings_key") != key:
                raise GntkitError(
                    f"{out_dir}: the interrupted run there used other sources or settings, so it cannot be resumed: "
                    "use the same command, or --overwrite to start again."
                )
            for split_entries in journal["shards"].values():
                for entry in split_entries:
                    path = out_dir / entry["file"]
                    if not path.is_file() or path.stat().st_size != entry["bytes"]:
                        raise GntkitError(f"{path}: the journal lists this finished shard ({entry['bytes']} bytes) but found {'no file' if not path.is_file() else f'{path.stat().st_size} bytes'}: use --overwrite to start again.")
            for leftover in out_dir.glob("*.partial"):
                leftover.unlink()
            return journal["shards"]
        if resume and (out_dir / MANIFEST).is_file():
            raise OutputExistsError(f"{out_dir}: this conversion is already complete ({MANIFEST} exists); nothing to resume.")
        if not overwrite:
            hint = " or --resume to finish the interrupted run" if journal_path.is_file() else ""
            raise OutputExistsError(f"{out_dir}: the output folder exists and is not empty: pass --overwrite to replace it{hint}.")
        if not ((out_dir / MANIFEST).is_file() or journal_path.is_file()):
            raise OutputExistsError(
                f"{out_dir}: the folder exists and is not a gntkit output (no {MANIFEST} or journal), so --overwrite will not delete it: choose another folder."
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {}


def convert(sources, out_dir=None, *, to: str = "tfrecord", name: str | None = None, split: str | SplitPlan = "all",
            val_fraction: float = 0.0, split_seed: int = 0, charset: str | Charset = "gb2312-1", preprocess=None,
            on_error: str = "raise", on_unknown: str = "drop", shard_records: int | None = None,
            shard_bytes: int | None = DEFAULT_SHARD_BYTES, compression: str | None = None, workers: int | None = None,
            parallel: str = "threads", overwrite: bool = False, resume: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
            max_side: int = DEFAULT_MAX_SIDE, progress: bool = False, command: str | None = None,
            hash_sources: bool = True) -> dict:
    """Convert GNT sources to shards of one format, with charset files and a manifest.

    Args:
        sources: .gnt files, folders, zips (or a list of them).
        out_dir: output folder; default `<source name>-<format>` in the current folder.
        to: "tfrecord", "hdf5" or "webdataset".
        name: dataset name used in shard names; default from the first source.
        split: "all", a preset ("hwdb1.1") or ranges ("train=1001-1240,test=1241-1300").
        val_fraction / split_seed: move a seeded fraction of the train writers to "val".
        charset: "gb2312-1", "gb2312", "data", a charset file, or a Charset.
        preprocess: gntkit.preprocess.Preprocess; default 64x64 crop+resize+invert.
        on_error: "raise" or "skip" damaged records (skips are counted in the manifest).
        on_unknown: "drop", "error" or "other" for characters outside the charset.
        shard_records / shard_bytes: start a new shard after this many records / bytes.
        compression: tfrecord: None or "gzip"; hdf5: None, "lzf" or "gzip".
        workers: parallel decoders (default: all cores); output is identical for any value.
        parallel: "threads" (default: the kernels release the GIL, no copies between
            processes) or "processes" (forkserver workers; see gntkit.stream.iter_batches).
        overwrite: replace an existing gntkit output folder.
        resume: finish an interrupted run of the same command, keeping its finished shards.
        batch_size: samples per stream batch.
        max_side: largest bitmap side accepted as real.
        progress: show a progress line on stderr.
        command: the command line to record in the manifest.
        hash_sources: record the sha256 of every source file and zip (md5 too for zips) in the
            manifest. SHA-256 runs at a few hundred MB/s on CPUs without SHA instructions,
            so on such machines this is a large share of the conversion time.

    Returns:
        The manifest (also written to `dataset_info.json`).

    Raises:
        GntkitError: bad input or settings, with the file and offset where it applies.
    """
    from gntkit.preprocess import Preprocess
    from gntkit.writers import get_format_module, get_writer_class

    check_choice("--to", to, tuple(FORMATS))
    check_choice("parallel", parallel, PARALLEL_CHOICES)
    preprocess = Preprocess() if preprocess is None else preprocess
    if not isinstance(preprocess, Preprocess):
        raise GntkitError(f"preprocess must be a gntkit.preprocess.Preprocess, found {type(preprocess).__name__}.")
    if shard_records is not None and shard_records < 1:
        raise GntkitError(f"shard_records must be at least 1, found {shard_records}.")
    if shard_bytes is not None and shard_bytes < 1:
        raise GntkitError(f"shard_bytes must be at least 1, found {shard_bytes}.")
    workers = int(workers or os.cpu_count() or 1)
    plan = split if isinstance(split, SplitPlan) else parse_split(split, val_fraction, split_seed)
    source_list = [sources] if isinstance(sources, (str, Path)) else list(sources)
    members = find_members(source_list)
    assignment = plan.assign([m.writer_id for m in members])
    name = name or default_name(source_list)
    out_dir = Path(out_dir) if out_dir is not None else default_output(source_list, to)

    if charset == "data":
        survey = inspect_sources(source_list, max_side=max_side)
        if survey.problems and on_error == "raise":
            raise GntkitError(survey.problems[0].message())
        charset_obj = resolve("data", survey.tag_codes)
    else:
        charset_obj = resolve(charset)
    if on_unknown == "other":
        charset_obj = charset_obj.with_other()

    settings = {
        "sources": [str(Path(s).resolve()) for s in source_list], "members": [(m.name, m.size) for m in members],
        "to": to, "name": name, "split": plan.to_json(), "charset": charset_obj.to_json(), "preprocess": preprocess.to_json(),
        "on_error": on_error, "on_unknown": on_unknown, "shard_records": shard_records, "shard_bytes": shard_bytes,
        "compression": compression, "batch_size": batch_size, "max_side": max_side,
    }
    key = _settings_key(settings)
    finished = _prepare_output(out_dir, overwrite, resume, key)

    format_module = get_format_module(to)
    writer_class = get_writer_class(to)
    ext = FORMATS[to]
    attrs = {"gntkit_version": gntkit.__version__, "charset": charset_obj.to_json(), "preprocess": preprocess.to_json()}
    journal = {"settings_key": key, "shards": {s: list(finished.get(s, [])) for s in plan.names}}

    outputs: dict[str, _SplitOutput] = {}

    def save_journal():
        journal["shards"] = {s: outputs[s].shards if s in outputs else journal["shards"].get(s, []) for s in plan.names}
        _write_json_atomic(out_dir / JOURNAL, journal)

    for split_name in plan.names:
        outputs[split_name] = _SplitOutput(
            split_name, out_dir=out_dir, name=name, ext=ext, writer_class=writer_class, attrs=attrs, compression=compression,
            shard_records=shard_records, shard_bytes=shard_bytes, finished=finished.get(split_name, []), on_shard_done=save_journal,
        )
    save_journal()

    archives = sorted({m.archive for m in members if m.archive}) if hash_sources else []
    plain_files = [m.name for m in members if not m.archive] if hash_sources else []
    hasher = _SourceHasher(plain_files, archives)
    hasher.start()
    report = StreamReport()
    total_bytes = sum(m.size for m in members)
    bar = Progress(total_bytes, progress)
    sizes = {m.name: m.size for m in members}
    done_bytes, samples, seen_members = 0, 0, set()
    started = time.perf_counter()
    try:
        for batch in iter_batches(members, charset_obj, preprocess, on_error=on_error, on_unknown=on_unknown,
                                  batch_size=batch_size, workers=workers, parallel=parallel, max_side=max_side, report=report,
                                  hash_members="archived" if hash_sources else False):
            outputs[assignment[batch.writer_ids[0]]].write(batch, len(charset_obj))
            samples += len(batch)
            for entry in report.members[len(seen_members):]:
                seen_members.add(entry["name"])
                done_bytes += sizes[entry["name"]]
            bar.update(done_bytes, samples)
        for output in outputs.values():
            output.finish()
    except BaseException:
        for output in outputs.values():
            output.abort()
        raise
    bar.update(total_bytes, samples, final=True)
    # Shards are hashed together now (and any finished before a resume that lacks a digest):
    # the multi-buffer kernel on all cores beats one hashlib stream per shard while writing.
    # The source hasher may still be running; both share the cores until it ends.
    unhashed = [entry for output in outputs.values() for entry in output.shards if entry.get("sha256") is None]
    for entry, digest in zip(unhashed, sha256_files([out_dir / e["file"] for e in unhashed], threads=default_threads())):
        entry["sha256"] = digest
    hasher.join()
    if isinstance(hasher.error, OSError):
        raise GntkitError(f"{hasher.error.filename}: cannot read the archive to hash it ({hasher.error.strerror}).")
    if hasher.error is not None:
        raise hasher.error
    for entry in report.members:
        entry.setdefault("sha256", hasher.file_digests.get(entry["name"]))
    seconds = time.perf_counter() - started

    # Final names now that shard counts are known; the manifest is written last.
    splits_json = {}
    empty_splits = [name for name, output in outputs.items() if output.num_records == 0]
    for split_name, output in outputs.items():
        if split_name in empty_splits:
            continue  # no writer of the sources falls in it: listed under split.empty instead
        total = len(output.shards)
        for i, entry in enumerate(output.shards):
            final = shard_name(name, split_name, ext, i, total)
            os.replace(out_dir / entry["file"], out_dir / final)
            if entry.get("index"):
                index_final = final + ".index.npy"
                os.replace(out_dir / entry["index"], out_dir / index_final)
                entry["index"] = index_final
            entry["file"] = final
        counts = output.class_counts if output.class_counts is not None else np.zeros(len(charset_obj), np.int64)
        splits_json[split_name] = {"num_records": output.num_records, "writers": sorted((w for w, s in assignment.items() if s == split_name), key=lambda w: (len(w), w)),
                                   "class_counts": counts.astype(int).tolist(), "shards": output.shards}
    charset_obj.save(out_dir)
    member_entries = {e["name"]: e for e in report.members}
    manifest = {
        "gntkit_version": gntkit.__version__,
        "format": to,
        "name": name,
        "command": command or f"gntkit.convert.convert({source_list!r}, to={to!r})",
        "complete": True,
        "charset": {"name": charset_obj.name, "order": charset_obj.order, "num_classes": len(charset_obj),
                    "file": "charset.txt", "json": "charset.json", "on_unknown": on_unknown, "has_other": charset_obj.has_other},
        "preprocess": preprocess.to_json(),
        "features": format_module.feature_spec(preprocess.raw, None if preprocess.raw else preprocess.size),
        "compression": compression,
        "split": {**plan.to_json(), "empty": empty_splits},
        "sources": [_source_entry(Path(s), members, member_entries, hasher.digests) for s in source_list],
        "splits": splits_json,
        "skipped": report.to_json(),
        "stats": {"records_read": report.records, "samples_written": samples, "seconds": round(seconds, 3), "workers": workers, "parallel": parallel,
                  "peak_rss_mb": {"main": round(_peak_rss_kb() / 1024, 1), "worker": round(report.worker_peak_rss_kb / 1024, 1) if parallel == "processes" and workers > 1 else None},
                  "sources_hashed": hash_sources},
    }
    manifest["summary"] = report.summary() + (f" Split(s) with no samples, left out: {', '.join(empty_splits)}." if empty_splits else "")
    manifest["output"] = str(out_dir)
    if not splits_json:
        raise GntkitError(f"{out_dir}: no sample was kept ({report.summary()}); nothing to write. Check --charset and --split.")
    _write_json_atomic(out_dir / MANIFEST, manifest)
    (out_dir / JOURNAL).unlink(missing_ok=True)
    return manifest


def _peak_rss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _source_entry(path: Path, members: list[GntMember], member_entries: dict, archive_digests: dict) -> dict:
    """Manifest entry of one source: its files (or zip) with sizes and digests."""
    mine = [m for m in members if m.source == str(path)]
    files = []
    for m in mine:
        entry = member_entries.get(m.name, {})
        files.append({"name": m.name if m.archive else str(Path(m.name).relative_to(path) if path.is_dir() else Path(m.name).name),
                      "writer_id": m.writer_id, "bytes": m.size, "sha256": entry.get("sha256"),
                      "records": entry.get("records"), "kept": entry.get("kept")})
    out = {"path": str(path), "kind": "folder" if path.is_dir() else ("zip" if path.suffix.lower() == ".zip" else "file")}
    if path.is_file():
        out["bytes"] = path.stat().st_size
        out.update(archive_digests.get(str(path), {}) if out["kind"] == "zip" else {"sha256": files[0]["sha256"]})
    zips = {m.archive for m in mine if m.archive and m.archive != str(path)}
    if zips:
        out["archives"] = [{"path": z, "bytes": Path(z).stat().st_size, **archive_digests.get(z, {})} for z in sorted(zips)]
    out["files"] = files
    return out
