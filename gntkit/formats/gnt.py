"""The GNT layout (CASIA offline isolated characters): index, validate, read bitmaps.

A GNT file is records back to back, no file header:

    offset 0  uint32 LE  sample size = 10 + width * height
    offset 4  2 bytes    tag code, FIRST byte is the HIGH byte (GB2312/GBK; ASCII as [byte, 0x00])
    offset 6  uint16 LE  width
    offset 8  uint16 LE  height
    offset 10 width*height uint8 bitmap, row-major, 255 = background
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import foreign_content, writer_id_from_stem
from gntkit.formats.base import DEFAULT_MAX_SIDE, BitmapFile, BitmapIndex, check_buffer, check_options, scan_with_resync
from gntkit.kernels import gnt as kernels

NAME = "gnt"
DESCRIPTION = "CASIA offline isolated characters, HWDB1.x"
KIND_WORDS = ".gnt files"
DEFAULT_CHARSET = "gb2312-1"
POLARITY = "dark-on-light"
SUFFIX = ".gnt"
# gntkit.tools.synth: what a synthetic file of this format holds, and how CASIA names it.
SYNTH_SAMPLES = "bitmaps"
SYNTH_FILE_NAME = "{writer}-{style}.gnt"

# The record header as a numpy structured dtype with explicit byte orders.
HEADER_DTYPE = np.dtype([("size", "<u4"), ("tag_code", ">u2"), ("width", "<u2"), ("height", "<u2")])
HEADER_SIZE = kernels.HEADER_SIZE
assert HEADER_DTYPE.itemsize == HEADER_SIZE

def _u32(buf: np.ndarray, pos: int) -> int:
    return int(buf[pos]) | int(buf[pos + 1]) << 8 | int(buf[pos + 2]) << 16 | int(buf[pos + 3]) << 24


def _u16(buf: np.ndarray, pos: int) -> int:
    return int(buf[pos]) | int(buf[pos + 1]) << 8


def describe_header_problem(buf: np.ndarray, pos: int, status: int, max_side: int) -> tuple[str, str]:
    """Turn a kernel status code at pos into (expected, found) phrases."""
    n = len(buf)
    other = foreign_content(buf, NAME) if pos == 0 else None
    if other is not None:
        return "a GNT record header", other
    if status == kernels.TRUNCATED_HEADER:
        return "a 10-byte record header", f"only {n - pos} bytes before the end of the file (truncated)"
    size, width, height = _u32(buf, pos), _u16(buf, pos + 6), _u16(buf, pos + 8)
    if status == kernels.ZERO_SIDE:
        return "width and height of at least 1", f"width {width} and height {height}"
    if status == kernels.ABSURD_SIDE:
        return f"width and height of at most {max_side}", f"width {width} and height {height} (damaged header?)"
    if status == kernels.SIZE_MISMATCH:
        return (
            f"sample size 10 + width*height = {HEADER_SIZE + width * height} (width {width}, height {height})",
            f"sample size {size}",
        )
    if status == kernels.TRUNCATED_RECORD:
        return f"{size} bytes for the record ({width}x{height})", f"only {n - pos} bytes before the end of the file (truncated)"
    raise AssertionError(f"unknown GNT kernel status {status}")


class GntIndex(BitmapIndex):
    """Where every valid record of one GNT file lies (gntkit.formats.base.BitmapIndex): offsets of
    the record headers, tag codes (high byte first, as stored), bitmap sizes, record numbers and
    the damaged regions skipped."""


def _scan_all(buf: np.ndarray, start: int, max_side: int):
    # One pass: a record takes at least 11 bytes, so this capacity always suffices;
    # np.empty pages that are never written cost nothing.
    capacity = (len(buf) - start) // (HEADER_SIZE + 1) + 1
    columns = (np.empty(capacity, np.int64), np.empty(capacity, np.uint16), np.empty(capacity, np.int32), np.empty(capacity, np.int32))
    count, stop, status = kernels.scan_records(buf, start, max_side, *columns)
    return tuple(column[:count].copy() for column in columns), int(stop), int(status)


def index_gnt(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> GntIndex:
    """Index every record of a GNT file held in memory, validating each header first.

    Args:
        buf: the whole file as a 1-D uint8 array.
        path: name used in error messages.
        on_error: "raise" stops at the first damaged record with a FormatError;
            "skip" resynchronises after it and records a Problem.
        max_side: largest width or height accepted as real.

    Returns:
        GntIndex of the valid records, in file order.

    Raises:
        FormatError: damaged or non-GNT bytes (on_error="raise"), or an empty file.
    """
    buf = check_buffer(buf, "GNT bytes")
    check_options(on_error, max_side)
    if len(buf) == 0:
        raise FormatError(path, 0, "at least one GNT record", "an empty file")
    columns, problems = scan_with_resync(
        buf, path, on_error, scan=lambda pos: _scan_all(buf, pos, max_side),
        describe=lambda stop, status: describe_header_problem(buf, stop, status, max_side),
        find_next=lambda stop: kernels.find_next_record(buf, stop, max_side), ok=kernels.OK)
    return GntIndex(*columns, problems=problems)


class GntFile(BitmapFile):
    """One GNT file's bytes with its record index: zero-copy bitmaps, `locate` and batch gathers
    (see gntkit.formats.base.BitmapFile).

    Args:
        buf: the whole file as a 1-D uint8 array (from np.fromfile or a zip member).
        path: name used in messages and keys.
        on_error, max_side: as for index_gnt.
    """

    PIXELS_AFTER = HEADER_SIZE

    def __init__(self, buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE):
        self.buf = check_buffer(buf, "GNT bytes")
        self.path = str(path)
        self.index = index_gnt(self.buf, self.path, on_error=on_error, max_side=max_side)


def matches_name(name: str) -> bool:
    """True for a `.gnt` file name (any case)."""
    return name.lower().endswith(SUFFIX)


def sniff(head: bytes, size: int) -> bool:
    """True when the first record header is consistent: sample size = 10 + width*height,
    both sides at least 1 and at most DEFAULT_MAX_SIDE, and the record fits in the file."""
    if len(head) < HEADER_SIZE:
        return False
    record = np.frombuffer(head[:HEADER_SIZE], HEADER_DTYPE)[0]
    width, height = int(record["width"]), int(record["height"])
    return (1 <= width <= DEFAULT_MAX_SIDE and 1 <= height <= DEFAULT_MAX_SIDE
            and int(record["size"]) == HEADER_SIZE + width * height and int(record["size"]) <= size)


def writer_id(name: str) -> str:
    """Writer id from a GNT file name: `1001-c.gnt` -> "1001", `C001-f-f.gnt` -> "C001"."""
    stem = name.rsplit("/", 1)[-1]
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    return writer_id_from_stem(stem)


def open_file(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> GntFile:
    """Index and validate a GNT file held in memory (see GntFile)."""
    return GntFile(buf, path, on_error=on_error, max_side=max_side)


def encode_records(tag_codes, bitmaps) -> bytes:
    """Serialise bitmaps as GNT records (the inverse of reading; used by synth and tests).

    Args:
        tag_codes: iterable of int tag codes (high byte first, as stored).
        bitmaps: iterable of 2-D uint8 arrays, same length.

    Returns:
        The bytes of a GNT file.
    """
    chunks = []
    for tag_code, bitmap in zip(tag_codes, bitmaps, strict=True):
        bitmap = np.asarray(bitmap)
        if bitmap.dtype != np.uint8 or bitmap.ndim != 2:
            raise GntkitError(f"A GNT bitmap must be a 2-D uint8 array, found {bitmap.dtype} with shape {bitmap.shape}.")
        h, w = bitmap.shape
        if not (1 <= w <= 65535 and 1 <= h <= 65535):
            raise GntkitError(f"A GNT bitmap needs 1..65535 pixels a side, found {w}x{h}.")
        if not 0 <= int(tag_code) <= 0xFFFF:
            raise GntkitError(f"A GNT tag code must fit in 2 bytes, found {tag_code}.")
        header = np.array([(HEADER_SIZE + w * h, tag_code, w, h)], dtype=HEADER_DTYPE)
        chunks.append(header.tobytes())
        chunks.append(np.ascontiguousarray(bitmap).tobytes())
    return b"".join(chunks)
