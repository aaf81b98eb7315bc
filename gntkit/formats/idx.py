"""The IDX layout (MNIST, Fashion-MNIST, EMNIST): image and label files, validated and read.

An IDX file is one big-endian header and one row-major array:

    offset 0  2 bytes     00 00 (magic)
    offset 2  1 byte      element type: 0x08 unsigned byte (the only one these data sets use;
                          0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64 are refused)
    offset 3  1 byte      number of dimensions D
    offset 4  D x uint32 BE  the size of each dimension
    then      the elements, row-major: images (count, rows, cols), labels (count,)

Files come in pairs, `train-images-idx3-ubyte` with `train-labels-idx1-ubyte` (`t10k-...` for
the test split), plain or gzipped (`.gz`, through gntkit.containers.gzip), named directly, in
a folder or in a zip. EMNIST names them `emnist-<set>-train-images-idx3-ubyte` and ships
`emnist-<set>-mapping.txt` (label, then the character code(s) of that class); its images are
stored transposed, and are transposed back here so they read upright.

Record file protocol (see gntkit.formats): the tag code of a record is its label value as
stored (0..255); the charset maps it to a class: "0".."9" for MNIST, the ten class names for
Fashion-MNIST, the mapping's characters for EMNIST. Bitmaps are handed out in gntkit's
convention, 255 = background (the stored value inverted), so every preprocessing step and
raw writer sees what it sees for CASIA scans; the IDX default preprocessing (28 x 28, no
crop, margin 0, invert) gives back the stored images exactly: ink bright on 0.

Fashion-MNIST is MNIST's layout with the same file names: it is recognised by a path part
containing "fashion" (`fashion-mnist/`, `data/fashion/`, `fashion.zip`), or chosen with
`--charset fashion-mnist`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import describe_content, writer_id_from_stem
from gntkit.formats.base import (
    DEFAULT_MAX_SIDE,
    BitmapIndex,
    CharsetSpec,
    Problem,
    check_buffer,
    check_options,
    chosen_records,
    packed_bitmaps,
)
from gntkit.formats.sources import open_container

NAME = "idx"
DESCRIPTION = "MNIST-family IDX images and labels (MNIST, Fashion-MNIST, EMNIST)"
KIND_WORDS = "MNIST IDX files"
DEFAULT_CHARSET = "mnist"
# The files hold ink bright on black, but the bitmaps this module hands out are inverted on
# reading (255 = background), so what preview and preprocessing see is dark on light.
POLARITY = "dark-on-light"
DEFAULT_SPLIT = "files"
#: The preprocessing IDX data get unless the user says otherwise: the images as stored.
PREPROCESS_DEFAULTS = {"size": 28, "margin": 0, "crop": False, "invert": True}

ELEMENT_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
UBYTE = 0x08

# train-images-idx3-ubyte, t10k-labels.idx1-ubyte (a common re-packing), emnist-digits-test-images-idx3-ubyte
_DATA_NAME = re.compile(r"^(?:emnist-(?P<set>[a-z0-9]+)-)?(?P<split>train|t10k|test)-(?P<kind>images|labels)[-.]idx(?P<dims>[13])-ubyte$")
_MAPPING_NAME = re.compile(r"^emnist-(?P<set>[a-z0-9]+)-mapping\.txt$")


def _base(name: str) -> str:
    return str(name).replace(":", "/").rsplit("/", 1)[-1]


def parse_name(name: str) -> dict | None:
    """What an IDX file name says: {"set": EMNIST set or None, "split": "train"/"test",
    "kind": "images"/"labels"/"mapping"}; None for another name."""
    base = _base(name).lower()
    match = _DATA_NAME.match(base)
    if match:
        split = "test" if match["split"] in ("t10k", "test") else "train"
        expected_dims = "3" if match["kind"] == "images" else "1"
        if match["dims"] != expected_dims:
            return None
        return {"set": match["set"], "split": split, "kind": match["kind"]}
    match = _MAPPING_NAME.match(base)
    if match:
        return {"set": match["set"], "split": None, "kind": "mapping"}
    return None


def matches_name(name: str) -> bool:
    """True for MNIST/EMNIST image, label and EMNIST mapping file names (any case)."""
    return parse_name(name) is not None


def sniff(head: bytes, size: int) -> bool:
    """True for an IDX magic (00 00, type 0x08, 1 or 3 dimensions) whose header fits the file."""
    if len(head) < 8 or head[:3] != b"\x00\x00\x08" or head[3] not in (1, 3):
        return False
    return 4 + 4 * head[3] <= size


def writer_id(name: str) -> str:
    """Writer id from the file name: "train" / "test", or "<set>-train" / "<set>-test" for EMNIST."""
    parsed = parse_name(name)
    if parsed is None:
        return writer_id_from_stem(_base(name))
    tail = parsed["split"] or "mapping"
    return f"{parsed['set']}-{tail}" if parsed["set"] else tail


def split_of(member) -> str:
    """The split a member belongs to, from its file name: "train", or "test" for t10k/test files."""
    parsed = parse_name(member.inner or member.name)
    if parsed is None or parsed["split"] is None:
        raise GntkitError(f"{member.name}: expected an IDX file named train-... or t10k-..., found another name.")
    return parsed["split"]


@dataclass(frozen=True)
class IdxHeader:
    """An IDX file's header, checked against the bytes present.

    Attributes:
        dims: the size of every dimension (count first).
        data_offset: where the elements start (4 + 4 * len(dims)).
        records: whole records present (count, or fewer in a truncated file read with skip).
        problems: damage found (truncation, extra bytes), empty when the file is whole.
    """

    dims: tuple
    data_offset: int
    records: int
    problems: tuple = ()

    @property
    def record_bytes(self) -> int:
        """Bytes per record (rows * cols for images, 1 for labels)."""
        return int(np.prod(self.dims[1:], dtype=object)) if len(self.dims) > 1 else 1


def read_header(buf: np.ndarray, path: str, dims: int, on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> IdxHeader:
    """Validate an IDX header against the bytes present.

    Args:
        buf: the whole file as a 1-D uint8 array.
        path: name used in messages.
        dims: the dimension count this file must have (3 for images, 1 for labels).
        on_error: "raise" on the first problem; "skip" keeps the whole records present and
            lists the damage (truncated data, extra bytes at the end) as Problems.
        max_side: largest rows or cols accepted as real.

    Returns:
        IdxHeader.

    Raises:
        FormatError: wrong magic, element type or dimension count, a header cut short, a zero
            or absurd side, no records (always); truncated data or extra bytes (on_error="raise").
    """
    n = len(buf)
    if n < 4:
        raise FormatError(path, 0, "a 4-byte IDX magic (00 00, element type, dimension count)", f"only {n} bytes (truncated)")
    head = bytes(buf[:4])
    if head[:2] != b"\x00\x00":
        raise FormatError(path, 0, "the IDX magic bytes 00 00", f"{head[:2].hex(' ').upper()} ({describe_content(bytes(buf[:64]), n)})")
    if head[2] != UBYTE:
        kind = ELEMENT_TYPES.get(head[2], "an unknown type")
        raise FormatError(path, 2, "element type 0x08 (unsigned byte), the only one MNIST-family files use",
                          f"element type 0x{head[2]:02X} ({kind}), which gntkit does not read")
    if head[3] != dims:
        what = "images: count, rows, columns" if dims == 3 else "labels: count"
        raise FormatError(path, 3, f"{dims} dimension(s) ({what})", f"{head[3]}")
    data_offset = 4 + 4 * dims
    if n < data_offset:
        raise FormatError(path, 4, f"{dims} big-endian uint32 dimension sizes ({4 * dims} bytes)", f"only {n - 4} bytes (truncated)")
    sizes = tuple(int(v) for v in np.frombuffer(bytes(buf[4:data_offset]), ">u4"))
    if sizes[0] == 0:
        raise FormatError(path, 4, "at least one record", "a count of 0")
    for axis, side in enumerate(sizes[1:], start=1):
        if not 1 <= side <= max_side:
            raise FormatError(path, 4 + 4 * axis, f"image sides of 1 to {max_side} pixels", f"{'rows' if axis == 1 else 'columns'} {side}")
    record_bytes = int(np.prod(sizes[1:], dtype=object)) if dims > 1 else 1
    records, problems = _check_length(path, sizes, data_offset, n - data_offset, record_bytes, on_error)
    return IdxHeader(sizes, data_offset, records, problems)


def _check_length(path: str, sizes: tuple, data_offset: int, present: int, record_bytes: int, on_error: str) -> tuple[int, tuple]:
    """(whole records present, problems): the data must be exactly the product of the dimensions.

    Python integers do not overflow, so a claimed count like 2**32 - 1 is simply data the file
    does not hold (truncation); with skip, the whole records that are there are kept.
    """
    expected = sizes[0] * record_bytes
    shape = " x ".join(str(s) for s in sizes)
    if expected > present:
        records = present // record_bytes
        problem = Problem(path, data_offset + records * record_bytes,
                          f"{expected} bytes of data for dimensions {shape}", f"only {present} bytes after the header (truncated)",
                          skipped_bytes=present - records * record_bytes, skipped_records=sizes[0] - records)
        if on_error == "raise" or records == 0:
            raise FormatError(problem.path, problem.offset, problem.expected, problem.found)
        return records, (problem,)
    if expected < present:
        problem = Problem(path, data_offset + expected, f"the file to end after the {expected} bytes of data for dimensions {shape}",
                          f"{present - expected} more bytes", skipped_bytes=present - expected, skipped_records=0)
        if on_error == "raise":
            raise FormatError(problem.path, problem.offset, problem.expected, problem.found)
        return sizes[0], (problem,)
    return sizes[0], ()


class IdxIndex(BitmapIndex):
    """Where every valid image of an IDX pair lies, with its label (gntkit.formats.base.BitmapIndex):
    tag_codes are the label values as stored, widths and heights upright (swapped for EMNIST)."""


class IdxFile:
    """An images file and its labels file: validated index, upright images, gathers.

    Args:
        buf: the images file (uint8, 1-D).
        labels: the labels file (uint8, 1-D).
        path / labels_path: names used in messages and keys.
        on_error: "raise" or "skip" (keep the records both files hold whole, list the rest).
        max_side: largest side accepted as real.
        transposed: the images are stored transposed (EMNIST); None decides by the file name.

    Raises:
        FormatError: any header problem, or (on_error="raise") truncation, extra bytes, or
            image and label counts that differ.
    """

    def __init__(self, buf, labels, path: str = "<images>", labels_path: str = "<labels>", on_error: str = "raise",
                 max_side: int = DEFAULT_MAX_SIDE, transposed: bool | None = None):
        check_options(on_error)
        self.buf = check_buffer(buf, "IDX images bytes")
        self.labels_buf = check_buffer(labels, "IDX labels bytes")
        self.path, self.labels_path = str(path), str(labels_path)
        parsed = parse_name(self.path)
        self.transposed = bool(parsed and parsed["set"]) if transposed is None else bool(transposed)
        images = read_header(self.buf, self.path, 3, on_error, max_side)
        label_header = read_header(self.labels_buf, self.labels_path, 1, on_error, max_side)
        problems = list(images.problems) + list(label_header.problems)
        if images.dims[0] != label_header.dims[0]:
            problem = Problem(self.labels_path, 4, f"{images.dims[0]} labels, one per image of {self.path}",
                              f"a count of {label_header.dims[0]}",
                              # whole records of the longer file left without a partner (truncation counts the rest)
                              skipped_records=max(images.records, label_header.records) - min(images.records, label_header.records))
            if on_error == "raise":
                raise FormatError(problem.path, problem.offset, problem.expected, problem.found)
            problems.append(problem)
        count = min(images.records, label_header.records)
        self.header = images
        self.rows, self.cols = images.dims[1], images.dims[2]
        height, width = (self.cols, self.rows) if self.transposed else (self.rows, self.cols)
        codes = self.labels_buf[label_header.data_offset:label_header.data_offset + count]
        self.index = IdxIndex(
            offsets=images.data_offset + np.arange(count, dtype=np.int64) * images.record_bytes,
            tag_codes=codes.astype(np.uint16),
            widths=np.full(count, width, np.int32), heights=np.full(count, height, np.int32),
            record_numbers=np.arange(count, dtype=np.int64), problems=problems)

    def __len__(self) -> int:
        return len(self.index)

    def stored_images(self) -> np.ndarray:
        """Every valid image as stored (count, rows, cols), a view of the file (no copy)."""
        start = self.header.data_offset
        return self.buf[start:start + len(self) * self.rows * self.cols].reshape(len(self), self.rows, self.cols)

    def images(self, records=None) -> np.ndarray:
        """Upright images, ink bright on 0 as stored: uint8 (N, height, width), a new array.

        Args:
            records: int indices of valid records; all when None.
        """
        chosen = chosen_records(records, len(self), self.path)
        stored = self.stored_images()[chosen]
        return np.ascontiguousarray(stored.transpose(0, 2, 1) if self.transposed else stored)

    def gather(self, records=None, serial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The chosen images in gntkit's bitmap convention (255 = background), upright.

        Args:
            records: int indices of valid records; all when None.
            serial: accepted for the record-file protocol (this is numpy work on one thread).

        Returns:
            (pixels uint8 flat, pixel_offsets int64 of length N+1).
        """
        images = self.images(records)
        pixels = np.subtract(255, images, dtype=np.uint8).reshape(-1)
        per_image = self.rows * self.cols
        return pixels, np.arange(len(images) + 1, dtype=np.int64) * per_image

    def locate(self, records=None, serial: bool = False, pen_width: float | None = None):
        """The chosen images upright, ink bright as stored (gntkit.formats.base.Bitmaps with ink_bright;
        one copy, the only one preprocessing makes when its settings keep the images as they are).
        serial and pen_width are unused."""
        images = self.images(records)
        offsets = np.arange(len(images) + 1, dtype=np.int64) * (self.rows * self.cols)
        heights, widths = np.full(len(images), images.shape[1], np.int32), np.full(len(images), images.shape[2], np.int32)
        return packed_bitmaps(images.reshape(-1), offsets, heights, widths, ink_bright=True)


def open_file(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE,
              companions: tuple = ()) -> IdxFile:
    """Index and validate an IDX images file with its labels file (the first companion Member).

    Raises:
        FormatError: as IdxFile, or an images file without its labels file.
    """
    labels = [m for m in companions if (parse_name(m.inner or m.name) or {}).get("kind") == "labels"]
    if not labels:
        parsed = parse_name(path) or {}
        what = "a labels file" if parsed.get("kind") != "labels" else "an images file"
        raise FormatError(str(path), None, f"{what} to pair with this IDX file (e.g. train-images-idx3-ubyte with train-labels-idx1-ubyte)",
                          "none beside it")
    labels_member = labels[0]
    return IdxFile(buf, labels_member.read(), path, labels_member.name, on_error=on_error, max_side=max_side)


# ---- discovery: pair images with labels (and EMNIST mappings) -------------------------------------


def _pair_key(member) -> tuple:
    parsed = parse_name(member.inner or member.name)
    return (parsed["set"], parsed["split"])


def _folder_on_disk(member) -> Path | None:
    """The folder holding a member that is a file on disk, plain or gzipped; None inside archives."""
    if not member.layers:
        return Path(member.name).parent
    if len(member.layers) == 1 and member.layers[0][0] == "gzip":
        return Path(member.archive).parent
    return None


def _beside(member, kind: str):
    """The labels file next to an images file on disk (plain or .gz), as a Member, or None."""
    folder = _folder_on_disk(member)
    if folder is None:
        return None
    parsed = parse_name(member.inner or member.name)
    prefix = f"emnist-{parsed['set']}-" if parsed["set"] else ""
    split_words = ("train",) if parsed["split"] == "train" else ("t10k", "test")
    for word in split_words:
        for sep in ("-", "."):
            inner = f"{prefix}{word}-{kind}{sep}idx{'1' if kind == 'labels' else '3'}-ubyte"
            candidate = folder / inner
            if candidate.is_file():
                return replace(member, name=str(candidate), archive=None, inner=None, size=candidate.stat().st_size,
                               layers=(), companions=())
            zipped = candidate.with_name(inner + ".gz")
            if zipped.is_file():
                (name, size), = open_container(str(zipped), (), "gzip").entries()
                return replace(member, name=f"{zipped}:{name}", archive=str(zipped), inner=name, size=size,
                               layers=(("gzip", name),), companions=())
    return None


def assemble(members: list) -> list:
    """Pair every images file with its labels file (and an EMNIST set with its mapping).

    Images files come back with `companions = (labels member[, mapping member])`; labels and
    mapping files are not members of their own. A plain images file named alone finds its
    labels file beside it on disk.

    Raises:
        GntkitError: an images file without labels, labels without images, an EMNIST set
            without its mapping file, or two files for the same slot.
    """
    slots: dict[tuple, dict] = {}
    mappings: dict[str, object] = {}
    for member in members:
        parsed = parse_name(member.inner or member.name)
        if parsed["kind"] == "mapping":
            if parsed["set"] in mappings:
                first = mappings[parsed["set"]].name
                raise GntkitError(f"Two EMNIST mapping files for set {parsed['set']!r}: {first} and {member.name}; give one.")
            mappings[parsed["set"]] = member
            continue
        slot = slots.setdefault(_pair_key(member), {})
        if parsed["kind"] in slot:
            first = slot[parsed["kind"]].name
            raise GntkitError(f"Two IDX {parsed['kind']} files for the same split: {first} and {member.name}; give one of them.")
        slot[parsed["kind"]] = member
    out = []
    for (emnist_set, split), slot in slots.items():
        if "images" not in slot:
            raise GntkitError(f"{slot['labels'].name}: expected the images file of this labels file ({split} split) "
                              "among the sources, found none.")
        images = slot["images"]
        labels = slot.get("labels") or _beside(images, "labels")
        if labels is None:
            word = f"emnist-{emnist_set}-{split}" if emnist_set else ("t10k" if split == "test" else "train")
            raise GntkitError(f"{images.name}: expected its labels file ({word}-labels-idx1-ubyte, plain or .gz) "
                              "beside it or among the sources, found none.")
        companions = (labels,)
        if emnist_set is not None:
            mapping = mappings.get(emnist_set) or _mapping_beside(images, emnist_set)
            if mapping is None:
                raise GntkitError(f"{images.name}: expected emnist-{emnist_set}-mapping.txt (EMNIST's label -> character table) "
                                  "beside it, found none.")
            companions = (labels, mapping)
        out.append(replace(images, companions=companions))
    if not out:
        names = ", ".join(m.name for m in members)
        raise GntkitError(f"{names}: expected MNIST IDX images and labels files, found only EMNIST mapping file(s).")
    return out


def _mapping_beside(member, emnist_set: str):
    folder = _folder_on_disk(member)
    candidate = folder / f"emnist-{emnist_set}-mapping.txt" if folder is not None else None
    if candidate is None or not candidate.is_file():
        return None
    return replace(member, name=str(candidate), archive=None, inner=None, size=candidate.stat().st_size, layers=(), companions=())


# ---- charsets ------------------------------------------------------------------------------------

def parse_mapping(text: str, path: str) -> tuple[list[int], list[str]]:
    """EMNIST's mapping file: lines `label code [code ...]` (decimal) -> (labels, class names).

    A class with one code is that character; EMNIST letters list upper and lower case
    (`1 65 97`), named "A/a".

    Raises:
        FormatError: a line that is not integers, a code that is no printable character, or a
            label listed twice.
    """
    labels, names = [], []
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if fields:
            if len(fields) < 2 or not all(f.isdigit() for f in fields):
                raise FormatError(path, offset, f"line {number}: a label and character code(s) as decimal integers", repr(line[:40]))
            label, codes = int(fields[0]), [int(f) for f in fields[1:]]
            if label > 0xFFFF or any(not (0x20 < c < 0x110000) or not chr(c).isprintable() for c in codes):
                raise FormatError(path, offset, f"line {number}: a label up to 65535 and printable character codes", repr(line[:40]))
            if label in labels:
                raise FormatError(path, offset, f"line {number}: each label once", f"label {label} again")
            labels.append(label)
            names.append("/".join(chr(c) for c in codes))
        offset += len(line.encode("utf-8")) + 1
    if not labels:
        raise FormatError(path, 0, "at least one 'label code' line", "an empty mapping file")
    return labels, names


def _is_fashion(member) -> bool:
    """A path part from the source the user gave inwards says "fashion" (folders above it do not count)."""
    name, above = member.name, str(Path(member.source).parent)
    if name.startswith(above + "/"):
        name = name[len(above) + 1:]
    parts = re.split(r"[/:\\]", name.lower())
    return any("fashion" in part for part in parts[:-1])


def native_charset(members) -> CharsetSpec:
    """The charset the files carry: EMNIST's mapping, Fashion-MNIST's class names, or MNIST's digits
    (a CharsetSpec: the last two are built-in charsets, EMNIST's a table).

    Raises:
        GntkitError: sources that mix data sets (MNIST with Fashion-MNIST, or EMNIST sets whose
            mappings differ).
    """
    charsets = {}
    for member in members:
        mapping = [m for m in member.companions if (parse_name(m.inner or m.name) or {}).get("kind") == "mapping"]
        if mapping:
            raw = mapping[0].read(map_file=False).tobytes()
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError as exc:
                raise FormatError(mapping[0].name, exc.start, "ASCII text", f"byte 0x{raw[exc.start]:02X}") from None
            labels, names = parse_mapping(text, mapping[0].name)
            set_name = parse_name(member.inner or member.name)["set"]
            order = f"EMNIST {set_name} label order, from {_base(mapping[0].name)}"
            spec = CharsetSpec(f"emnist-{set_name}", tuple(labels), tuple(names), order)
        else:
            spec = CharsetSpec("fashion-mnist" if _is_fashion(member) else "mnist")
        charsets[spec.name] = spec
    if len(charsets) != 1:
        mixed = ", ".join(sorted(charsets))
        raise GntkitError(f"The IDX sources mix data sets ({mixed}): convert them separately, or choose one --charset.")
    return charsets.popitem()[1]
