"""The GNT layout (CASIA offline isolated characters): index, validate, read bitmaps.

A GNT file is records back to back, no file header:

    offset 0  uint32 LE  sample size = 10 + width * height
    offset 4  2 bytes    tag code, FIRST byte is the HIGH byte (GB2312/GBK; ASCII as [byte, 0x00])
    offset 6  uint16 LE  width
    offset 8  uint16 LE  height
    offset 10 width*height uint8 bitmap, row-major, 255 = background
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.formats.records import Problem, RecordIndexBase, check_buffer
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

# Real bitmaps are a few to a few hundred pixels a side; anything beyond this is damage.
DEFAULT_MAX_SIDE = 4096

ON_ERROR_CHOICES = ("raise", "skip")

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip data",
    b"\xff\xd8\xff": "a JPEG image",
    b"ALZ": "an ALZip archive (gntkit reads it as a source: give the .alz itself)",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
}


def _u32(buf: np.ndarray, pos: int) -> int:
    return int(buf[pos]) | int(buf[pos + 1]) << 8 | int(buf[pos + 2]) << 16 | int(buf[pos + 3]) << 24


def _u16(buf: np.ndarray, pos: int) -> int:
    return int(buf[pos]) | int(buf[pos + 1]) << 8


def describe_header_problem(buf: np.ndarray, pos: int, status: int, max_side: int) -> tuple[str, str]:
    """Turn a kernel status code at pos into (expected, found) phrases."""
    n = len(buf)
    if pos == 0:
        head = bytes(buf[:8])
        for magic, what in _MAGIC.items():
            if head.startswith(magic):
                return "a GNT record header", f"{what}, not a GNT file"
        from gntkit.formats import foreign_content

        other = foreign_content(buf, NAME)
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


@dataclass
class GntIndex(RecordIndexBase):
    """Where every valid record of one GNT file lies.

    Attributes:
        offsets: int64 byte offset of each record's header.
        tag_codes: uint16 tag code (high byte first, as stored).
        widths, heights: int32 bitmap size.
        record_numbers: int64 position of each record in the file, counting each
            damaged region as one record, so numbers are stable under skipping.
        problems: damaged regions skipped (empty unless on_error="skip").
    """

    offsets: np.ndarray
    tag_codes: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    record_numbers: np.ndarray
    problems: list[Problem] = field(default_factory=list)


    @property
    def pixel_counts(self) -> np.ndarray:
        """int64 width*height of every record."""
        return self.widths.astype(np.int64) * self.heights.astype(np.int64)




def _scan_all(buf: np.ndarray, start: int, max_side: int):
    # One pass: a record takes at least 11 bytes, so this capacity always suffices;
    # np.empty pages that are never written cost nothing.
    capacity = (len(buf) - start) // (HEADER_SIZE + 1) + 1
    columns = (np.empty(capacity, np.int64), np.empty(capacity, np.uint16), np.empty(capacity, np.int32), np.empty(capacity, np.int32))
    count, stop, status = kernels.scan_records(buf, start, max_side, *columns)
    offsets, tag_codes, widths, heights = (column[:count].copy() for column in columns)
    return offsets, tag_codes, widths, heights, int(stop), int(status)


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
    if on_error not in ON_ERROR_CHOICES:
        raise GntkitError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, found {on_error!r}.")
    if not (1 <= int(max_side) <= 65535):
        raise GntkitError(f"max_side must be between 1 and 65535, found {max_side}.")
    if len(buf) == 0:
        raise FormatError(path, 0, "at least one GNT record", "an empty file")
    parts, problems = [], []
    record_number = 0
    pos = 0
    while True:
        offsets, tag_codes, widths, heights, stop, status = _scan_all(buf, pos, max_side)
        parts.append((offsets, tag_codes, widths, heights, np.arange(record_number, record_number + len(offsets), dtype=np.int64)))
        record_number += len(offsets)
        if status == kernels.OK:
            break
        expected, found = describe_header_problem(buf, stop, status, max_side)
        if on_error == "raise":
            raise FormatError(path, stop, expected, found)
        resume = int(kernels.find_next_record(buf, stop, max_side))
        problems.append(Problem(path, stop, expected, found, skipped_bytes=resume - stop, skipped_records=1))
        record_number += 1
        if resume >= len(buf):
            break
        pos = resume
    index = GntIndex(*(np.concatenate(columns) for columns in zip(*parts)), problems=problems)
    return index


class GntFile:
    """One GNT file's bytes with its record index: zero-copy bitmaps and batch gathers.

    Args:
        buf: the whole file as a 1-D uint8 array (from np.fromfile or a zip member).
        path: name used in messages and keys.
        on_error, max_side: as for index_gnt.
    """

    def __init__(self, buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE):
        self.buf = check_buffer(buf, "GNT bytes")
        self.path = str(path)
        self.index = index_gnt(self.buf, self.path, on_error=on_error, max_side=max_side)

    def __len__(self) -> int:
        return len(self.index)

    def bitmap(self, i: int) -> np.ndarray:
        """Record i's bitmap as a (height, width) uint8 view into the file buffer (no copy)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: record {i} out of range (file has {len(self)} valid records).")
        start = int(self.index.offsets[i]) + HEADER_SIZE
        h, w = int(self.index.heights[i]), int(self.index.widths[i])
        return self.buf[start:start + h * w].reshape(h, w)

    def bitmaps(self) -> list[np.ndarray]:
        """Every valid record's bitmap as a (height, width) view into the file buffer (no copy)."""
        buf = self.buf
        starts = (self.index.offsets + HEADER_SIZE).tolist()
        return [buf[s:s + h * w].reshape(h, w) for s, h, w in zip(starts, self.index.heights.tolist(), self.index.widths.tolist())]

    def gather(self, records: np.ndarray | slice | None = None, out: np.ndarray | None = None,
               serial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Copy the bitmaps of the chosen records into one flat array.

        Args:
            records: indices (int array) or a slice of valid records; all when None.
            out: optional uint8 buffer to fill (reused across files to avoid page faults);
                must hold at least the total pixel count.
            serial: copy on the calling thread only (for callers that are pool threads).

        Returns:
            (pixels uint8 flat, pixel_offsets int64 of length len(records)+1); pixels is a
            view of out when out is given.
        """
        chosen = np.arange(len(self))[records] if records is not None else np.arange(len(self))
        chosen = np.asarray(chosen, dtype=np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= len(self)):
            raise IndexError(f"{self.path}: record indices must lie in [0, {len(self)}), found {chosen.min()}..{chosen.max()}.")
        record_offsets = np.ascontiguousarray(self.index.offsets[chosen])
        counts = np.ascontiguousarray(self.index.pixel_counts[chosen])
        pixel_offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(counts, out=pixel_offsets[1:])
        # Guard the kernel: every source range must lie inside the buffer.
        if len(chosen) and int((record_offsets + HEADER_SIZE + counts).max()) > len(self.buf):
            raise AssertionError(f"{self.path}: record index points past the end of the buffer")
        total = int(pixel_offsets[-1])
        if out is None:
            pixels = np.empty(total, np.uint8)
        else:
            if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or len(out) < total:
                raise GntkitError(f"{self.path}: gather(out=...) needs a contiguous 1-D uint8 array of at least {total} bytes, "
                                  f"found {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")
            pixels = out[:total]
        gather = kernels.gather_bitmaps_serial if serial else kernels.gather_bitmaps
        gather(self.buf, record_offsets, counts, pixels, pixel_offsets)
        return pixels, pixel_offsets

    def preprocess(self, records: np.ndarray, preprocess, serial: bool = False) -> np.ndarray:
        """Fixed-size preprocessed images of the chosen records, straight from the file's
        buffer (no gathered copy of the bitmaps).

        Args:
            records: int indices of valid records.
            preprocess: a gntkit.samples.preprocess.Preprocess (not raw).
            serial: run on the calling thread only (for pool threads).

        Returns:
            uint8 (N, S, S).
        """
        from gntkit.samples.preprocess import preprocess_records

        chosen = np.asarray(records, dtype=np.int64)
        starts = self.index.offsets[chosen].astype(np.int64) + HEADER_SIZE
        return preprocess_records(self.buf, starts, self.index.heights[chosen].copy(), self.index.widths[chosen].copy(),
                                  preprocess, serial=serial)


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
    from gntkit.formats import writer_id_from_stem

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
