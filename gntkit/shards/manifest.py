"""The manifest's one home: file names, shard names, and writing and loading
`gntkit.json` with the checks every reader needs (the output formats themselves
are in gntkit.shards.registry).

convert writes through `build_manifest` / `write_json_atomic`; verify, gntkit.datasets,
the trainers and preview read through `load_manifest`, `choose_split` and `shards_of`.

Folders written by gntkit 0.x before the manifest had its own name keep it in
`dataset_info.json` (the name TFDS reads its own metadata from): `manifest_path` finds
either, telling gntkit's manifest from TFDS's by content.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from gntkit.errors import FormatError, GntkitError
from gntkit.shards.registry import FORMATS, OutputFormat, is_known, output_format

MANIFEST = "gntkit.json"
#: where older folders keep the manifest (TFDS's metadata file name, written by gntkit with gntkit's schema)
LEGACY_MANIFEST = "dataset_info.json"
#: the folder (hidden, so that dataset loaders that glob a folder skip it) that holds the record index files
INDEX_FOLDER = ".gntkit-index"
JOURNAL = ".gntkit-journal.json"
CHARSET_JSON = "charset.json"


def shard_name(name: str, split: str, fmt: str | OutputFormat, index: int, total: int | None = None) -> str:
    """The file name of shard `index` of a split.

    WebDataset and HDF5 shards end in their extension so that stock tools recognise them
    (`hwdb-train-00000-of-00029.tar`); TFRecord keeps the TFDS style
    (`hwdb-train.tfrecord-00000-of-00029`). While the total is unknown (`total=None`)
    the `-of-N` part is left out.
    """
    fmt = output_format(fmt)
    number = f"{index:05d}" if total is None else f"{index:05d}-of-{total:05d}"
    if fmt.tfds_names:
        return f"{name}-{split}.{fmt.extension}-{number}"
    return f"{name}-{split}-{number}.{fmt.extension}"


def brace_pattern(name: str, split: str, fmt: str | OutputFormat, total: int) -> str:
    """All shards of a split as one brace pattern (what `webdataset.WebDataset(url)` accepts),
    e.g. `hwdb-train-{00000..00028}-of-00029.tar`."""
    fmt = output_format(fmt)
    if total == 1:
        return shard_name(name, split, fmt, 0, 1)
    number = f"{{00000..{total - 1:05d}}}-of-{total:05d}"
    if fmt.tfds_names:
        return f"{name}-{split}.{fmt.extension}-{number}"
    return f"{name}-{split}-{number}.{fmt.extension}"


class OutputWriteError(GntkitError):
    """The output folder refused a write: full, over quota, read-only or gone. The files finished
    before stay as they are, so the same command with --resume continues once the folder is fixed."""


def output_write_error(exc: OSError, path: str | Path, detail: str = "") -> OutputWriteError:
    """One sentence for a failed write into an output folder: the folder, the file, what the
    system said, how far it got (`detail`), and that --resume continues."""
    path = Path(path)
    name = path.name[: -len(".partial")] if path.name.endswith(".partial") else path.name
    reason = exc.strerror or str(exc) or type(exc).__name__
    if not path.parent.is_dir():
        reason = f"{reason}; the folder itself is gone"
    return OutputWriteError(
        f"{path.parent}: could not write {name} ({reason}){detail}; the shards finished before it are kept and the unfinished "
        "file removed: make room (or restore the folder) and run the same command with --resume to continue.")


def write_json_atomic(path: str | Path, data) -> None:
    """Write JSON to `path` through a `.partial` file and a rename: readers never see half a file.

    Raises:
        OutputWriteError: the folder refused the write (the file at `path` is left as it was).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise output_write_error(exc, path) from None


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from a file, or one sentence saying why it cannot be read.

    Args:
        path: the file.
        what: what the file should be, e.g. "a gntkit manifest".

    Raises:
        GntkitError: missing, unreadable, not JSON, or not a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GntkitError(f"{path}: expected {what}, found no file.") from None
    except UnicodeDecodeError as exc:
        raise FormatError(str(path), exc.start, f"{what} in UTF-8 JSON", "a byte that is not UTF-8") from None
    except OSError as exc:
        raise GntkitError(f"{path}: cannot read {what} ({exc.strerror or exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(str(path), exc.pos, f"{what} in JSON", f"a syntax error at line {exc.lineno} ({exc.msg})") from None
    if not isinstance(data, dict):
        raise FormatError(str(path), None, f"{what} as a JSON object", f"a JSON {type(data).__name__}")
    return data


_SHA256_HEX = frozenset("0123456789abcdef")


def is_plain_name(name) -> bool:
    """Whether a name from a manifest or journal is a plain file name: a non-empty str with no
    path separator, no NUL, not "." or "..", and nothing that makes it absolute (a drive)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
            and not os.path.isabs(name) and ":" not in name[:2])


def check_file_name(name, where: str | Path, what: str, *, index: bool = False) -> str:
    """Return a file name read from a manifest (or journal) after checking it names a file
    inside the folder: a plain name, or `.gntkit-index/<plain name>` where `index` is True.

    A manifest is data: a name such as `../../x` or `/etc/passwd` must never become a path.

    Raises:
        FormatError: any other name (one sentence naming the manifest and the field).
    """
    inner = name[len(INDEX_FOLDER) + 1:] if index and isinstance(name, str) and name.startswith(INDEX_FOLDER + "/") else name
    if not is_plain_name(inner):
        form = f"a plain file name or {INDEX_FOLDER}/<file name>" if index else "a plain file name"
        raise FormatError(str(where), None, f"{what} to be {form} (no folder, '..', absolute path or NUL)", repr(name)[:120])
    return name


def is_gntkit_manifest(data) -> bool:
    """Whether parsed JSON is gntkit's manifest rather than TFDS's `dataset_info.json`.

    gntkit's has a `splits` object (split name -> entry) and `gntkit_version`; TFDS's
    DatasetInfo has a `splits` list and neither.
    """
    return isinstance(data, dict) and (isinstance(data.get("splits"), dict) or "gntkit_version" in data)


def manifest_path(folder: str | Path) -> Path | None:
    """The file that holds a folder's gntkit manifest: `gntkit.json`, else an older folder's
    `dataset_info.json` when its content is gntkit's; None when there is neither."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return folder / MANIFEST
    legacy = folder / LEGACY_MANIFEST
    if legacy.is_file():
        try:
            data = json.loads(legacy.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return legacy  # not TFDS's either: load_manifest names what is wrong with it
        if is_gntkit_manifest(data):
            return legacy
    return None


def load_manifest(folder: str | Path) -> dict:
    """The manifest of a complete conversion, checked as every reader needs it.

    Checks: the folder exists and holds `gntkit.json` (or, written before, gntkit's manifest
    as `dataset_info.json`), it is a JSON object with
    `"complete": true`, a known `format`, a non-empty `splits` object whose entries
    list shards with a file name and an integer record count, and a `charset` entry.

    Raises:
        GntkitError: not a gntkit output folder, an interrupted or incomplete conversion,
            or a manifest that lacks what readers need (named with the field).
    """
    folder = Path(folder)
    if not folder.is_dir():
        found = "a file" if folder.exists() else "nothing there"
        raise GntkitError(f"{folder}: expected a folder written by `gntkit convert`, found {found}.")
    path = manifest_path(folder)
    if path is None:
        if (folder / JOURNAL).is_file():
            found = "an interrupted conversion (a journal, no manifest): finish it with `gntkit convert ... --resume`"
        else:
            found = f"no {MANIFEST} (write one with `gntkit convert`)"
        raise GntkitError(f"{folder}: expected a complete gntkit conversion, found {found}.")
    manifest = read_json(path, "a gntkit manifest")
    return check_manifest(manifest, path)


def check_manifest(manifest: dict, path: str | Path) -> dict:
    """Check a manifest dict read from `path` (see load_manifest); returns it.

    Raises:
        GntkitError / FormatError: the first field that is missing or wrong.
    """
    if manifest.get("complete") is not True:
        raise GntkitError(f"{path}: expected a manifest with \"complete\": true, found {json.dumps(manifest.get('complete'))}: "
                          "the conversion did not finish; run `gntkit convert` again with --overwrite.")
    for key in ("format", "splits", "charset"):
        if key not in manifest:
            raise FormatError(str(path), None, f"the field {key!r}", "no such field")
    if not is_known(manifest["format"]):
        raise FormatError(str(path), None, f"format one of {', '.join(FORMATS)}", repr(manifest["format"]))
    splits = manifest["splits"]
    if not isinstance(splits, dict) or not splits:
        raise FormatError(str(path), None, "at least one split under 'splits'", repr(splits)[:80])
    for split, entry in splits.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
            raise FormatError(str(path), None, f"a 'shards' list for split {split!r}", repr(entry)[:80])
        for k, item in enumerate(entry["shards"]):
            if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not isinstance(item.get("records"), int):
                raise FormatError(str(path), None, f"shard {k} of split {split!r} to have a 'file' name and integer 'records'",
                                  repr(item)[:80])
            _check_shard_entry(item, path, f"shard {k} of split {split!r}")
    charset = manifest["charset"]
    if not isinstance(charset, dict) or not isinstance(charset.get("num_classes"), int):
        raise FormatError(str(path), None, "a 'charset' object with an integer 'num_classes'", repr(charset)[:80])
    for key in ("json", "file"):
        if charset.get(key) is not None:
            check_file_name(charset[key], path, f"the charset's {key!r} name")
    return manifest


def _check_shard_entry(item: dict, path, what: str) -> None:
    """The names in one shard entry are plain file names, its sha256 (a cache name's part) hex."""
    check_file_name(item["file"], path, f"{what}'s file name")
    if item.get("index") is not None:
        check_file_name(item["index"], path, f"{what}'s index name", index=True)
    digest = item.get("sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _SHA256_HEX):
        raise FormatError(str(path), None, f"{what}'s sha256 as 64 hexadecimal digits", repr(digest)[:80])


def choose_split(manifest: dict, split: str | None, where: str | Path) -> str:
    """The split to read: the one asked for, else "train" when present, else the only one.

    Raises:
        GntkitError: the split does not exist (the message names those that do), or there
            are several and none is "train".
    """
    names = list(manifest["splits"])
    if split is None:
        if "train" in names:
            return "train"
        if len(names) == 1:
            return names[0]
        raise GntkitError(f"{where} has splits {', '.join(names)} and none is 'train': pass split=... to choose one.")
    if not isinstance(split, str):
        raise GntkitError(f"split must be a split name (str) or None, found {type(split).__name__}.")
    if split not in manifest["splits"]:
        raise GntkitError(f"{where} has no split {split!r}; it has {', '.join(repr(s) for s in names)}.")
    return split


@dataclass(frozen=True)
class Shard:
    """One shard of a split, as the manifest lists it.

    Attributes:
        path: the shard file (a folder for formats whose shards are folders, OutputFormat.folder).
        records: records in it (from the manifest).
        start: global index (within the split) of its first record.
        bytes: file size from the manifest, or None.
        sha256: checksum from the manifest, or None.
        index: the `{shard}.index.npy` record offsets file, or None.
    """

    path: Path
    records: int
    start: int
    bytes: int | None = None
    sha256: str | None = None
    index: Path | None = None


def shards_of(folder: str | Path, manifest: dict, split: str, check_files: bool = True) -> list[Shard]:
    """The shards of one split, in order, with their record ranges.

    Args:
        folder: the output folder (shard paths are relative to it).
        manifest: from load_manifest.
        split: a split name in the manifest.
        check_files: also check that every listed shard and index file exists.

    Raises:
        GntkitError: a listed file is missing (an incomplete conversion), or the split's
            num_records disagrees with its shards.
    """
    folder = Path(folder)
    entry = manifest["splits"][split]
    is_folder = output_format(manifest["format"]).folder  # a shard is a folder of files (OutputFormat.folder)
    shards, start = [], 0
    for item in entry["shards"]:
        path = folder / item["file"]
        if check_files and not (path.is_dir() if is_folder else path.is_file()):
            raise GntkitError(f"{folder} holds an incomplete conversion: shard {item['file']} listed in {MANIFEST} is missing.")
        index = folder / item["index"] if item.get("index") else None
        if check_files and index is not None and not index.is_file():
            raise GntkitError(f"{folder} holds an incomplete conversion: record index {item['index']} listed in {MANIFEST} is missing.")
        shards.append(Shard(path, item["records"], start, item.get("bytes"), item.get("sha256"), index))
        start += item["records"]
    declared = entry.get("num_records")
    if declared is not None and declared != start:
        raise FormatError(str(folder / MANIFEST), None, f"split {split!r} num_records equal to the sum of its shards' records ({start})",
                          str(declared))
    return shards
