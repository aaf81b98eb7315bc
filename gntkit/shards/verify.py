"""`gntkit verify DIR`: re-check a conversion against its manifest with the formats' stock readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError
from gntkit.progress import ProgressBar
from gntkit.samples.charset import Charset
from gntkit.samples.strokes import check_sample_strokes
from gntkit.shards import remote
from gntkit.shards.digest import default_threads, sha256_shards, shard_size
from gntkit.shards.manifest import load_manifest
from gntkit.shards.registry import output_format

# Progress appears only for runs longer than this: a quick check stays one line of output.
PROGRESS_DELAY = 2.0


def verify(out_dir: str | Path, decode: bool = True, progress: bool = False) -> dict:
    """Check every shard against the manifest and decode every record.

    Checks: each shard exists with the listed size and sha256; its record index (if
    any) spans the file; decoded with the format's stock reader it has the listed
    count, images of the manifest's shape, labels inside the charset that agree with
    the stored character and tag code, and keys unique across the dataset; class
    counts per split match the manifest.

    Args:
        out_dir: a folder written by `gntkit convert`, or its fsspec URL (`https://`,
            `s3://`, ...): a remote folder is copied to a temporary local folder first.
        decode: also decode every record (False: sizes and checksums only).
        progress: show progress per shard on stderr (records, rate, ETA; see gntkit.progress),
            for runs longer than PROGRESS_DELAY seconds.

    Returns:
        {"splits": {split: records}, "shards": count, "records": total}.

    Raises:
        GntkitError: the first problem, naming the shard and record.
    """
    if remote.is_url(out_dir):
        with remote.mirror(out_dir) as local:
            return verify(local, decode, progress)
    out_dir = Path(out_dir)
    manifest = load_manifest(out_dir)
    charset = _load_charset(out_dir, manifest)
    fmt = output_format(manifest["format"])
    raw = manifest["preprocess"].get("raw", False)
    size = None if raw else manifest["preprocess"]["size"]
    if "lines" in (manifest.get("features") or {}):  # text lines: variable width at the line height
        size = None if raw else ("line", manifest["preprocess"].get("line_height"))
    other = len(charset) - 1 if manifest["charset"].get("has_other") else None
    checks = (charset, charset.tag_codes.astype(np.int64), size, other, set())
    summary = {"splits": {}, "shards": 0, "records": 0}
    digests = _present_shard_digests(out_dir, manifest, fmt)
    bar = ProgressBar(sum(shard["records"] for info in manifest["splits"].values() for shard in info["shards"]),
                      unit="records", description="verify", enabled=progress, delay=PROGRESS_DELAY)
    try:
        for split, info in manifest["splits"].items():
            total = _verify_split(out_dir, manifest, split, info, digests, fmt, checks if decode else None, bar, summary)
            summary["splits"][split] = total
            summary["records"] += total
    finally:
        bar.close()
    return summary


def _load_charset(out_dir: Path, manifest: dict) -> Charset:
    """The folder's charset, checked against the manifest and charset.txt."""
    charset = Charset.load(out_dir / manifest["charset"]["json"])
    if len(charset) != manifest["charset"]["num_classes"]:
        raise GntkitError(f"{out_dir / manifest['charset']['json']}: expected {manifest['charset']['num_classes']} classes as the manifest "
                          f"says, found {len(charset)}.")
    text_classes = (out_dir / manifest["charset"]["file"]).read_text(encoding="utf-8").split("\n")[:-1]
    if text_classes != charset.characters:
        raise GntkitError(f"{out_dir / manifest['charset']['file']}: expected the same classes as charset.json, found a different list.")
    return charset


def _present_shard_digests(out_dir: Path, manifest: dict, fmt) -> dict:
    """Presence and sizes of every listed shard first, then every shard's SHA-256 at once
    (hashlib on all cores): file name -> sha256. A folder shard (OutputFormat.folder) counts the
    bytes of its files and its digest covers their names, sizes and contents."""
    listed = [(split, shard) for split, info in manifest["splits"].items() for shard in info["shards"]]
    kind = "folder" if fmt.folder else "file"
    for split, shard in listed:
        path = out_dir / shard["file"]
        size = shard_size(path, fmt)
        if size is None:
            raise GntkitError(f"{path}: expected shard of split '{split}' with {shard['records']} records, found no {kind}.")
        if size != shard["bytes"]:
            raise GntkitError(f"{path}: expected {shard['bytes']} bytes as the manifest lists, found {size}.")
    paths = [out_dir / shard["file"] for _, shard in listed]
    return dict(zip((shard["file"] for _, shard in listed), sha256_shards(paths, fmt, threads=default_threads())))


def _verify_split(out_dir: Path, manifest: dict, split: str, info: dict, digests: dict, fmt, checks, bar, summary: dict) -> int:
    """Check one split's shards (digest, index, and with checks set every record); returns its record count."""
    charset = checks[0] if checks else None
    counts = np.zeros(manifest["charset"]["num_classes"], np.int64)
    total = 0
    for shard in info["shards"]:
        path = out_dir / shard["file"]
        if digests[shard["file"]] != shard["sha256"]:
            raise GntkitError(f"{path}: expected sha256 {shard['sha256']}, found {digests[shard['file']]} (the shard changed after "
                              "conversion).")
        if shard.get("index"):
            offsets = np.load(out_dir / shard["index"], allow_pickle=False)
            if (len(offsets) != shard["records"] + 1 or offsets[0] != 0 or int(offsets[-1]) > shard["bytes"]
                    or (np.diff(offsets) <= 0).any()):
                raise GntkitError(f"{out_dir / shard['index']}: expected {shard['records'] + 1} increasing offsets within the shard, "
                                  f"found {len(offsets)} that do not fit.")
        if checks is not None:
            _decode_shard(path, shard, manifest, fmt, counts, checks)
        total += shard["records"]
        summary["shards"] += 1
        bar.update(shard["records"], shards=f"{summary['shards']}/{len(digests)}")
    if total != info["num_records"]:
        raise GntkitError(f"split '{split}': expected {info['num_records']} records, found {total} in its shards.")
    if checks is not None and counts.tolist() != info["class_counts"]:
        bad = int(np.flatnonzero(counts != np.asarray(info["class_counts"]))[0])
        raise GntkitError(f"split '{split}' class {bad} ({charset.characters[bad]}): expected {info['class_counts'][bad]} samples, "
                          f"found {counts[bad]}.")
    return total


def _decode_shard(path, shard, manifest, fmt, counts, checks) -> None:
    """Read one shard with the format's stock reader, check every sample, count classes into counts."""
    count = 0
    strokes = "strokes" in (manifest.get("features") or {})
    lines = "lines" in (manifest.get("features") or {})
    try:
        for count, sample in enumerate(fmt.read_shard(path, compression=manifest.get("compression")), start=1):
            if lines:
                _check_line(path, count - 1, sample, counts, *checks)
                continue
            _check_sample(path, count - 1, sample, *checks)
            if strokes or "points" in sample:
                _check_strokes(path, count - 1, sample, strokes)
            counts[sample["label"]] += 1
    except GntkitError:
        raise
    except Exception as exc:  # the stock reader's own error on damaged bytes
        raise GntkitError(f"{path}: the stock {fmt.name} reader failed after record {count}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if count != shard["records"]:
        raise GntkitError(f"{path}: expected {shard['records']} records as the manifest lists, found {count}.")


def _check_strokes(path, i, sample, expected: bool) -> None:
    """Raw strokes (conversions with --strokes): present exactly when the manifest says so, and consistent."""
    where = f"{path} record {i} (key {sample.get('key')!r})"
    if expected != ("points" in sample):
        wanted, found = ("raw strokes", "none") if expected else ("no strokes", "strokes")
        raise GntkitError(f"{where}: expected {wanted} as the manifest's features say, found {found}.")
    check_sample_strokes(sample["points"], sample["stroke_lengths"], where)


def _check_line(path, i, sample, counts, charset, tag_codes, size, other, keys) -> None:
    """A text line: label -1, a label sequence inside the charset whose characters are its text
    (and its character field), an image at the line height, a unique key; counts its characters."""
    where = f"{path} record {i} (key {sample.get('key')!r})"
    if "label_sequence" not in sample or "text" not in sample:
        raise GntkitError(f"{where}: expected a text line with text and label_sequence as the manifest's features say, found neither.")
    sequence = np.asarray(sample["label_sequence"], np.int64)
    if int(sample["label"]) != -1 or sequence.size == 0 or sequence.min() < 0 or sequence.max() >= len(charset):
        raise GntkitError(f"{where}: expected label -1 and 1 or more class ids in 0..{len(charset) - 1}, "
                          f"found label {int(sample['label'])} and ids {sequence.tolist()[:8]}.")
    text = "".join(charset.characters[c] for c in sequence.tolist())
    if sample["text"] != text or sample["character"] != text:
        raise GntkitError(f"{where}: expected the text {text!r} that its label sequence spells, "
                          f"found {sample['text']!r} (character field {sample['character']!r}).")
    image = sample["image"]
    wrong_height = size is not None and size[1] is not None and image.shape[0] != size[1]
    if image.dtype != np.uint8 or image.ndim != 2 or 0 in image.shape or wrong_height:
        expected = f"a uint8 line image {size[1]} pixels high" if size is not None else "a non-empty 2-D uint8 image"
        raise GntkitError(f"{where}: expected {expected}, found {image.dtype} {image.shape}.")
    if sample["key"] in keys:
        raise GntkitError(f"{where}: expected unique sample keys, found {sample['key']!r} again.")
    keys.add(sample["key"])
    np.add.at(counts, sequence, 1)


def _check_sample(path, i, sample, charset, tag_codes, size, other, keys) -> None:
    where = f"{path} record {i} (key {sample.get('key')!r})"
    label = int(sample["label"])
    if not 0 <= label < len(charset):
        raise GntkitError(f"{where}: expected a label in 0..{len(charset) - 1}, found {label}.")
    if sample["character"] != charset.characters[label]:
        raise GntkitError(f"{where}: expected character {charset.characters[label]!r} for label {label}, found {sample['character']!r}.")
    if label != other and int(sample["tag_code"]) != tag_codes[label]:
        raise GntkitError(f"{where}: expected tag code 0x{tag_codes[label]:04X} for label {label}, found 0x{int(sample['tag_code']):04X}.")
    image = sample["image"]
    if image.dtype != np.uint8 or image.ndim != 2 or (size is not None and image.shape != (size, size)) or 0 in image.shape:
        expected = f"a {size}x{size} uint8 image" if size else "a non-empty 2-D uint8 image"
        raise GntkitError(f"{where}: expected {expected}, found {image.dtype} {image.shape}.")
    if sample["key"] in keys:
        raise GntkitError(f"{where}: expected unique sample keys, found {sample['key']!r} again.")
    keys.add(sample["key"])
