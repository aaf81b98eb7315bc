"""What every source format shares: the reading options and their checks, a damaged stretch of a
file (`Problem`), the scan / raise-or-resync loop, the counting part of a record index, record
choices, the magic bytes of files that are plainly something else, and `Bitmaps` / `BitmapFile`:
where a record file's bitmaps lie, for the sample layer to read in place.

A format module reads, indexes and validates bytes and hands out records; it never imports the
sample layer (preprocessing, the stream), writers or training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.kernels import gather as gather_kernels

#: what a reader does at a damaged record: stop with a FormatError, or skip it and list a Problem
ON_ERROR_CHOICES = ("raise", "skip")

#: Real bitmaps are a few to a few hundred pixels a side; anything beyond this is damage.
DEFAULT_MAX_SIDE = 4096

#: Files that are plainly something else, named in messages ("found a PNG image").
OTHER_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip data",
    b"ALZ\x01": "an ALZip archive (gntkit reads it as a source: give the .alz itself)",
}


def other_magic(head: bytes) -> str | None:
    """What leading bytes say a file plainly is ("a PNG image", ...), or None."""
    for magic, what in OTHER_MAGIC.items():
        if head.startswith(magic):
            return what
    return None


@dataclass
class Problem:
    """One damaged stretch of a file: where, what was expected, what was found.

    Attributes:
        path: file (or `archive.zip:member`).
        offset: byte offset where the damage starts.
        expected / found: the check that failed, in words.
        skipped_bytes: bytes dropped to get past it (0 when nothing was skipped).
        skipped_records: records dropped (a damaged region counts as one).
        records_unknown: the records dropped could not be counted (bytes that no format reads,
            a member cut off); skipped_records is 0 then and JSON says null.
    """

    path: str
    offset: int | None
    expected: str
    found: str
    skipped_bytes: int = 0
    skipped_records: int = 0
    records_unknown: bool = False

    def message(self) -> str:
        """The problem as one sentence."""
        return str(FormatError(self.path, self.offset, self.expected, self.found))

    def to_json(self) -> dict:
        """JSON-able form (for manifests and `inspect --json`)."""
        return {
            "path": self.path,
            "offset": self.offset,
            "expected": self.expected,
            "found": self.found,
            "skipped_bytes": self.skipped_bytes,
            "skipped_records": None if self.records_unknown else self.skipped_records,
            "message": self.message(),
        }


class RecordIndexBase:
    """What every format's record index adds to its own columns (a dataclass with at least
    `offsets` and `problems`): its length and the totals of what was skipped."""

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def skipped_bytes(self) -> int:
        """Bytes of the file that lie in skipped damaged regions."""
        return sum(p.skipped_bytes for p in self.problems)

    @property
    def skipped_records(self) -> int:
        """Damaged regions skipped (each at least one record)."""
        return sum(p.skipped_records for p in self.problems)


@dataclass
class BitmapIndex(RecordIndexBase):
    """The index of a format whose records are single bitmaps (see BitmapFile).

    Attributes:
        offsets: int64 byte offset of each record.
        tag_codes: uint16 label of each record as stored (GB code high byte first, or a label value).
        widths, heights: int32 bitmap size.
        record_numbers: int64 position of each record in the file, counting each damaged
            region as one record, so numbers are stable under skipping.
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


def check_buffer(buf, what: str) -> np.ndarray:
    """A file's bytes as a contiguous 1-D uint8 array, or a GntkitError naming `what` ("GNT bytes").

    Kernels take such arrays only; this is the check every format wrapper makes before one runs.
    """
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
        raise GntkitError(f"{what} must be a 1-D uint8 numpy array, found {type(buf).__name__} {getattr(buf, 'dtype', '')}.")
    return np.ascontiguousarray(buf)


def check_options(on_error: str, max_side: int | None = None, max_side_limit: int = 65535) -> None:
    """Check the reading options every format takes.

    Raises:
        GntkitError: on_error not in ON_ERROR_CHOICES, or max_side outside 1..max_side_limit.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise GntkitError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, found {on_error!r}.")
    if max_side is not None and not (1 <= int(max_side) <= max_side_limit):
        raise GntkitError(f"max_side must be between 1 and {max_side_limit}, found {max_side}.")


def chosen_records(records, count: int, path: str, noun: str = "record") -> np.ndarray:
    """Record choices (int indices, a slice, or None for all) as int64 indices into [0, count),
    numpy's way (a negative index counts from the end).

    Raises:
        GntkitError: indices that are not 1-D. IndexError: an index outside [0, count).
    """
    chosen = np.asarray(np.arange(count) if records is None else np.arange(count)[records], dtype=np.int64)
    if chosen.ndim != 1:
        raise GntkitError(f"{path}: {noun} indices must be a 1-D array, found {chosen.ndim}-D.")
    if chosen.size and (chosen.min() < 0 or chosen.max() >= count):
        raise IndexError(f"{path}: {noun} indices must lie in [0, {count}), found {chosen.min()}..{chosen.max()}.")
    return chosen


def scan_with_resync(buf: np.ndarray, path: str, on_error: str, scan, describe, find_next, ok: int = 0):
    """The loop of every record-by-record format: scan valid records, and at damage raise or resync.

    Args:
        buf: the file's bytes.
        path: name used in messages.
        on_error: "raise" stops at the first damaged record with a FormatError; "skip" resumes
            at the next valid record and lists a Problem (one skipped record per damaged region).
        scan: scan(pos) -> (columns tuple of arrays, stop, status): records from pos until the
            end (status == ok) or the first damaged one (at stop, with its status).
        describe: describe(stop, status) -> (expected, found), the damage in words.
        find_next: find_next(stop) -> where the next valid record starts (len(buf) if none).
        ok: the status of a clean end.

    Returns:
        (columns concatenated + record_numbers int64 as the last column, problems). A record's
        number is its position in the file, counting each damaged region as one record, so
        numbers are stable under skipping.

    Raises:
        FormatError: damage with on_error="raise".
    """
    parts, problems = [], []
    record_number, pos = 0, 0
    while True:
        columns, stop, status = scan(pos)
        parts.append(tuple(columns) + (np.arange(record_number, record_number + len(columns[0]), dtype=np.int64),))
        record_number += len(columns[0])
        if status == ok:
            break
        expected, found = describe(stop, status)
        if on_error == "raise":
            raise FormatError(path, stop, expected, found)
        resume = int(find_next(stop))
        problems.append(Problem(path, stop, expected, found, skipped_bytes=resume - stop, skipped_records=1))
        record_number += 1
        if resume >= len(buf):
            break
        pos = resume
    return tuple(np.concatenate(column) for column in zip(*parts)), problems


@dataclass(frozen=True)
class CharsetSpec:
    """The classes a format's files name themselves (a format's `native_charset`): a built-in
    charset by name when tag_codes is empty, otherwise a table (the sample layer builds the Charset).

    Attributes:
        name: charset name ("mnist", "emnist-letters").
        tag_codes: the label values as stored, one per class, in class order.
        characters: the class names, aligned with tag_codes.
        order: how the classes are ordered, in words.
    """

    name: str
    tag_codes: tuple = ()
    characters: tuple = ()
    order: str = ""


@dataclass(frozen=True)
class Bitmaps:
    """Where chosen records' bitmaps lie, for kernels to read them in place (no gathered copy).

    Bitmap i is buffer[starts[i]:starts[i] + heights[i] * widths[i]], row-major.

    Attributes:
        buffer: uint8 1-D (a file's bytes, or pixels a format rendered or unpacked).
        starts: int64 (N,).
        heights, widths: int32 (N,).
        ink_bright: the values are stored ink bright on 0 (MNIST); otherwise gntkit's convention,
            255 = background, dark ink.
    """

    buffer: np.ndarray
    starts: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    ink_bright: bool = False

    def __len__(self) -> int:
        return len(self.starts)

    def bitmap(self, i: int) -> np.ndarray:
        """Bitmap i as a (height, width) view of the buffer."""
        start, height, width = int(self.starts[i]), int(self.heights[i]), int(self.widths[i])
        return self.buffer[start:start + height * width].reshape(height, width)


def packed_bitmaps(pixels: np.ndarray, pixel_offsets: np.ndarray, heights, widths, ink_bright: bool = False) -> Bitmaps:
    """Bitmaps of pixels back to back (pixel_offsets of length N+1)."""
    return Bitmaps(pixels, np.ascontiguousarray(pixel_offsets[:-1]), np.ascontiguousarray(heights, dtype=np.int32),
                   np.ascontiguousarray(widths, dtype=np.int32), ink_bright)


class BitmapFile:
    """A record file whose bitmaps lie in its own bytes (GNT, and any format of that shape):
    views, gathers and `locate` from the index alone.

    A subclass sets `buf` (uint8 1-D), `path` and `index` (a BitmapIndex), and PIXELS_AFTER: the
    bytes from a record's offset to its first pixel.
    """

    PIXELS_AFTER = 0

    def __len__(self) -> int:
        return len(self.index)

    def pixel_starts(self, chosen: np.ndarray) -> np.ndarray:
        """int64 offset of each chosen record's first pixel in buf."""
        return self.index.offsets[chosen].astype(np.int64) + self.PIXELS_AFTER

    def bitmap(self, i: int) -> np.ndarray:
        """Record i's bitmap as a (height, width) uint8 view into the file buffer (no copy)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: record {i} out of range (file has {len(self)} valid records).")
        start = int(self.index.offsets[i]) + self.PIXELS_AFTER
        h, w = int(self.index.heights[i]), int(self.index.widths[i])
        return self.buf[start:start + h * w].reshape(h, w)

    def bitmaps(self) -> list[np.ndarray]:
        """Every valid record's bitmap as a (height, width) view into the file buffer (no copy)."""
        buf = self.buf
        starts = (self.index.offsets + self.PIXELS_AFTER).tolist()
        return [buf[s:s + h * w].reshape(h, w) for s, h, w in zip(starts, self.index.heights.tolist(), self.index.widths.tolist())]

    def locate(self, records=None, serial: bool = False, pen_width: float | None = None) -> Bitmaps:
        """Where the chosen records' bitmaps lie in the file buffer (no copy).

        Args:
            records: int indices of valid records; all when None.
            serial, pen_width: part of the record-file protocol; bitmaps in place need neither.
        """
        chosen = chosen_records(records, len(self), self.path)
        return Bitmaps(self.buf, self.pixel_starts(chosen), self.index.heights[chosen].copy(), self.index.widths[chosen].copy())

    def gather(self, records=None, out: np.ndarray | None = None, serial: bool = False) -> tuple[np.ndarray, np.ndarray]:
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
        chosen = chosen_records(records, len(self), self.path)
        starts = np.ascontiguousarray(self.pixel_starts(chosen))
        counts = np.ascontiguousarray(self.index.pixel_counts[chosen])
        pixel_offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(counts, out=pixel_offsets[1:])
        # Guard the kernel: every source range must lie inside the buffer.
        if len(chosen) and int((starts + counts).max()) > len(self.buf):
            raise AssertionError(f"{self.path}: record index points past the end of the buffer")
        total = int(pixel_offsets[-1])
        if out is None:
            pixels = np.empty(total, np.uint8)
        else:
            if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or len(out) < total:
                raise GntkitError(f"{self.path}: gather(out=...) needs a contiguous 1-D uint8 array of at least {total} bytes, "
                                  f"found {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}.")
            pixels = out[:total]
        gather = gather_kernels.gather_bitmaps_serial if serial else gather_kernels.gather_bitmaps
        gather(self.buf, starts, counts, pixels, pixel_offsets)
        return pixels, pixel_offsets
