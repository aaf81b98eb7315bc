"""Stage 4 of a conversion: digests of sources and shards, final names, charset files, and the
manifest, written last (then, for a URL, the upload).

Also `conversion_summary`, the lines `gntkit convert` prints for a manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import numpy as np

import gntkit
from gntkit.errors import GntkitError
from gntkit.formats.sources import Member
from gntkit.samples.report import StreamReport
from gntkit.shards.card import write_card
from gntkit.shards.digest import default_threads, sha256_files, sha256_shards
from gntkit.shards.manifest import INDEX_FOLDER, brace_pattern
from gntkit.shards.output import OutputFolder
from gntkit.shards.plan import ConversionPlan
from gntkit.shards.remote import upload_folder
from gntkit.shards.tfds_info import write_tfds_metadata


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


class SourceHasher(threading.Thread):
    """Hashes the source files in the background while conversion runs (hashlib releases the GIL).

    Plain source files go through gntkit.shards.digest (hashlib on threads); archives get
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

    @classmethod
    def start_for(cls, members: list[Member], hash_sources: bool = True) -> SourceHasher:
        """A started hasher of the members' plain files and archives (of nothing when hash_sources is False)."""
        archives = sorted({m.archive for m in members if m.archive}) if hash_sources else []
        hasher = cls([m.name for m in members if not m.archive] if hash_sources else [], archives)
        hasher.start()
        return hasher

    def run(self):
        """Hash everything (the thread body); errors are kept for `result`."""
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



def _hash_shards(folder: OutputFolder, outputs: dict) -> None:
    # Shards are hashed together now (and any finished before a resume that lacks a digest):
    # hashlib on all cores beats one hashlib stream per shard while writing.
    # The source hasher may still be running; both share the cores until it ends.
    unhashed = [entry for output in outputs.values() for entry in output.shards if entry.get("sha256") is None]
    paths = [folder.path / e["file"] for e in unhashed]
    for entry, digest in zip(unhashed, sha256_shards(paths, folder.fmt, threads=default_threads())):
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


def _move_indexes(folder: OutputFolder, splits_json: dict) -> None:
    """Move the record index files into INDEX_FOLDER: beside the shards, loaders that take a
    folder's files by pattern (Hugging Face's, a `*train*` glob) would read them as shards."""
    entries = [item for entry in splits_json.values() for item in entry["shards"] if item.get("index")]
    if entries:
        (folder.path / INDEX_FOLDER).mkdir(exist_ok=True)
    for item in entries:
        moved = f"{INDEX_FOLDER}/{Path(item['index']).name}"
        os.replace(folder.path / item["index"], folder.path / moved)
        item["index"] = moved


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
    """The manifest of a finished conversion (what `gntkit.json` holds)."""
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
             seconds: float, hasher: SourceHasher) -> dict:
    """Stage 4: shard digests, final names, charset files, TFDS metadata and the dataset card, the manifest written last.

    Raises:
        GntkitError: no sample was kept, or a source could not be hashed.
    """
    _hash_shards(folder, outputs)
    digests = hasher.result()
    if not any(output.num_records for output in outputs.values()):
        raise GntkitError(f"{folder.path}: no sample was kept ({report.summary()}); nothing to write. Check --charset and --split.")
    splits_json, empty = _splits_json(plan, folder, outputs)
    _move_indexes(folder, splits_json)
    plan.charset.save(folder.path)
    manifest = build_manifest(plan, splits_json, empty, report, samples, seconds, digests)
    manifest["output"] = plan.upload_to or str(folder.path)
    write_tfds_metadata(folder.path, manifest, plan.charset.characters)
    write_card(folder.path, manifest, plan.charset.characters)
    folder.finish(manifest)
    if plan.upload_to:
        upload_folder(folder.path, plan.upload_to)
        shutil.rmtree(folder.path, ignore_errors=True)
    return manifest



def _peak_rss_kb() -> int:
    import resource  # POSIX only

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



def conversion_summary(manifest: dict) -> str:
    """What a finished conversion did, in a few lines: samples, speed, folder, splits, charset, skips."""
    stats = manifest["stats"]
    lines = [f"wrote {stats['samples_written']:,} samples in {stats['seconds']:.1f} s "
             f"({stats['samples_written'] / max(stats['seconds'], 1e-9):,.0f}/s) to {manifest['output']}"]
    for split_name, info in manifest["splits"].items():
        lines.append(f"  {split_name:<6} {info['num_records']:>10,} samples in {len(info['shards'])} shard(s), "
                     f"{len(info['writers'])} writer(s)")
    charset = manifest["charset"]
    lines.append(f"  charset {charset['name']}: {charset['num_classes']:,} classes ({charset['order']})")
    lines.append(f"  {manifest['summary']}")
    return "\n".join(lines)
