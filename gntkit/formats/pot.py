"""The POT layout (CASIA OLHWDB1.0-1.2, online isolated characters): index, validate, render, strokes.

A POT file is records back to back, no file header:

    offset 0  uint16 LE  sample size = the whole record's length in bytes
    offset 2  4 bytes    tag: the GB code LOW byte first, then two zero bytes
    offset 6  uint16 LE  stroke count
    offset 8  int16 LE (x, y) points in tablet units; (-1, 0) ends a stroke, (-1, -1) ends
                         the character (so size = 8 + 4 * (points + strokes + 1))

Tag codes are swapped to the GNT convention (high byte first), so the same charsets apply.

Rendering (online data as offline training data): the strokes are drawn as anti-aliased
lines (coverage by distance to each segment, a one-pixel ramp at the edge; a single-point
stroke is a dot) on a canvas of 255 with dark ink, as CASIA's scans. A tablet unit becomes
RENDER_SCALE = 0.4 pixel: the y values of a whole real OLHWDB file stay within about 300
tablet units (shared/docs/casia-formats.md), so a character is at most about 120 pixels, the
size range of the HWDB1.x scans of the same writers, and both go through the same crop and
resize (an estimate: no real file was at hand to measure character extents). The canvas is the character's
bounding box plus `pad_for(pen_width)` pixels on each side (room for the pen's radius and
the anti-aliasing ramp). The pen width is in pixels of that canvas (default 3.0, the
stroke width of the 300 DPI scans at that size); `Preprocess(pen_width=...)` chooses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import foreign_content, writer_id_from_stem
from gntkit.formats.base import (
    DEFAULT_MAX_SIDE,
    Problem,
    RecordIndexBase,
    check_buffer,
    check_options,
    chosen_records,
    packed_bitmaps,
    scan_with_resync,
)
from gntkit.kernels import pot as kernels

NAME = "pot"
DESCRIPTION = "CASIA online isolated characters, OLHWDB1.x"
KIND_WORDS = ".pot files"
DEFAULT_CHARSET = "gb2312-1"
POLARITY = "dark-on-light"
SUFFIX = ".pot"
HAS_STROKES = True  # batches carry raw strokes (batch_extras): `convert --strokes` writes them

HEADER_SIZE = kernels.HEADER_SIZE
# The record header as a numpy structured dtype with explicit byte orders (the tag's GB code
# is stored low byte first: little-endian).
HEADER_DTYPE = np.dtype([("size", "<u2"), ("tag_code", "<u2"), ("tag_pad", "<u2"), ("strokes", "<u2")])
assert HEADER_DTYPE.itemsize == HEADER_SIZE

# Tablet units -> pixels of the rendered bitmap, as an exact fraction (sizes are integers).
SCALE_NUMERATOR, SCALE_DENOMINATOR = 2, 5
RENDER_SCALE = SCALE_NUMERATOR / SCALE_DENOMINATOR
DEFAULT_PEN_WIDTH = 3.0
MIN_PEN_WIDTH, MAX_PEN_WIDTH = 0.5, 16.0


def pad_for(pen_width: float) -> int:
    """Blank pixels around the bounding box for a pen of this width: its radius, the half
    pixel of anti-aliasing, and one pixel of clean background."""
    return int(math.ceil(pen_width / 2 + 0.5)) + 1


def check_pen_width(pen_width) -> float:
    """The pen width as a float after checking it lies in [MIN_PEN_WIDTH, MAX_PEN_WIDTH].

    Raises:
        GntkitError: not a number, or out of range.
    """
    if isinstance(pen_width, bool) or not isinstance(pen_width, (int, float, np.integer, np.floating)) \
            or not MIN_PEN_WIDTH <= float(pen_width) <= MAX_PEN_WIDTH:
        raise GntkitError(f"pen_width must be a number of pixels from {MIN_PEN_WIDTH} to {MAX_PEN_WIDTH}, found {pen_width!r}.")
    return float(pen_width)


def canvas_sides(extents: np.ndarray, pen_width: float) -> np.ndarray:
    """int32 bitmap side for bounding-box extents (tablet units) at a pen width."""
    extents = np.asarray(extents, np.int64)
    return (extents * SCALE_NUMERATOR // SCALE_DENOMINATOR + 1 + 2 * pad_for(pen_width)).astype(np.int32)


def max_extent_for(max_side: int) -> int:
    """The largest bounding-box extent (tablet units) whose canvas fits max_side at any pen width."""
    room = int(max_side) - 1 - 2 * pad_for(MAX_PEN_WIDTH)
    return max(room, 0) * SCALE_DENOMINATOR // SCALE_NUMERATOR


def _u16(buf: np.ndarray, pos: int) -> int:
    return int(buf[pos]) | int(buf[pos + 1]) << 8


def _record_points(buf: np.ndarray, pos: int, size: int) -> np.ndarray:
    """The (x, y) int16 pairs of a record whose bytes are present (markers included)."""
    return np.frombuffer(bytes(buf[pos + HEADER_SIZE:pos + size]), "<i2").reshape(-1, 2)


def _other_format(buf: np.ndarray, pos: int) -> str | None:
    """At the start of a file: what the bytes are when they are plainly not POT."""
    return foreign_content(buf, NAME) if pos == 0 else None


def describe_problem(buf: np.ndarray, pos: int, status: int, max_extent: int) -> tuple[str, str]:
    """Turn a kernel status code at pos into (expected, found) phrases."""
    other = _other_format(buf, pos)
    if other is not None and status != kernels.OK:
        return "a POT record header", other
    n = len(buf)
    if status == kernels.TRUNCATED_HEADER:
        return f"an {HEADER_SIZE}-byte record header", f"only {n - pos} bytes before the end of the file (truncated)"
    size, declared = _u16(buf, pos), _u16(buf, pos + 6)
    if status == kernels.BAD_SIZE:
        return (f"a sample size of at least {kernels.MIN_RECORD} bytes, 8 more than a multiple of 4", f"sample size {size}")
    if status == kernels.BAD_TAG:
        return "a tag whose bytes 3 and 4 are zero", f"bytes {buf[pos + 4]:#04x} {buf[pos + 5]:#04x} (damaged header?)"
    if status == kernels.NO_STROKES:
        return "a stroke count of at least 1", "0 strokes"
    if status == kernels.IMPOSSIBLE_COUNT:
        return (f"at most {(size - HEADER_SIZE - 4) // 8} strokes in a {size}-byte sample (each needs a point and a pen-up marker)",
                f"a stroke count of {declared}")
    if status == kernels.TRUNCATED_RECORD:
        return f"{size} bytes for the record ({declared} strokes)", f"only {n - pos} bytes before the end of the file (truncated)"
    points = _record_points(buf, pos, size)
    is_end = (points[:, 0] == -1) & (points[:, 1] == -1)
    is_up = (points[:, 0] == -1) & (points[:, 1] == 0)
    if status == kernels.EARLY_END:
        first = int(np.flatnonzero(is_end)[0])
        return (f"the end marker (-1, -1) as the last point, at byte {pos + size - 4} (sample size {size})",
                f"it at byte {pos + HEADER_SIZE + 4 * first} (size mismatch)")
    if status == kernels.MISSING_END:
        return f"the end marker (-1, -1) at byte {pos + size - 4}, the sample's last 4 bytes", f"({points[-1, 0]}, {points[-1, 1]})"
    if status == kernels.EMPTY_STROKE:
        return "at least one point before each pen-up marker (-1, 0)", "an empty stroke"
    if status == kernels.UNTERMINATED_STROKE:
        return "a pen-up marker (-1, 0) before the end marker", "points after the last pen-up marker"
    if status == kernels.STROKE_COUNT_MISMATCH:
        return f"{declared} pen-up markers (-1, 0), as the stroke count says", f"{int(is_up.sum())}"
    if status == kernels.BAD_POINT:
        bad = int(np.flatnonzero((points < 0).any(axis=1) & ~is_up & ~is_end)[0])
        return ("coordinates of at least 0 (or a marker (-1, 0) / (-1, -1))",
                f"({points[bad, 0]}, {points[bad, 1]}) at byte {pos + HEADER_SIZE + 4 * bad}")
    if status == kernels.ABSURD_EXTENT:
        real = points[(points >= 0).all(axis=1)]
        extent = int((real.max(axis=0) - real.min(axis=0)).max())
        return f"a character at most {max_extent} tablet units across", f"{extent} units (damaged points?)"
    raise AssertionError(f"unknown POT kernel status {status}")


@dataclass
class PotIndex(RecordIndexBase):
    """Where every valid record of one POT file lies, and what it holds.

    Attributes:
        offsets: int64 byte offset of each record.
        tag_codes: uint16 GB code, high byte first (swapped from the file).
        stroke_counts, point_counts: int32 strokes and points (markers excluded).
        boxes: int32 (N, 4) bounding box in tablet units: x_min, y_min, x_max, y_max.
        widths, heights: int32 size of the rendered bitmap at `pen_width`.
        record_numbers: int64 position of each record in the file, counting each damaged
            region as one record, so numbers are stable under skipping.
        problems: damaged regions skipped (empty unless on_error="skip").
        pen_width: the pen width widths and heights are for.
    """

    offsets: np.ndarray
    tag_codes: np.ndarray
    stroke_counts: np.ndarray
    point_counts: np.ndarray
    boxes: np.ndarray
    record_numbers: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    pen_width: float = DEFAULT_PEN_WIDTH

    def __post_init__(self):
        self.widths = canvas_sides(self.boxes[:, 2] - self.boxes[:, 0], self.pen_width)
        self.heights = canvas_sides(self.boxes[:, 3] - self.boxes[:, 1], self.pen_width)

    @property
    def sizes(self) -> np.ndarray:
        """int64 bytes of each record (its sample size field)."""
        return HEADER_SIZE + 4 * (self.point_counts.astype(np.int64) + self.stroke_counts + 1)


def _scan_all(buf: np.ndarray, start: int, max_extent: int):
    capacity = (len(buf) - start) // kernels.MIN_RECORD + 1
    columns = (np.empty(capacity, np.int64), np.empty(capacity, np.uint16), np.empty(capacity, np.int32),
               np.empty(capacity, np.int32), np.empty((capacity, 4), np.int32))
    count, stop, status = kernels.scan_records(buf, start, max_extent, *columns)
    return tuple(column[:count].copy() for column in columns), int(stop), int(status)


def index_pot(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE,
              pen_width: float = DEFAULT_PEN_WIDTH) -> PotIndex:
    """Index every record of a POT file held in memory, validating each one whole first.

    Args:
        buf: the whole file as a 1-D uint8 array.
        path: name used in error messages.
        on_error: "raise" stops at the first damaged record with a FormatError;
            "skip" resynchronises after it and records a Problem.
        max_side: largest rendered bitmap side accepted as real (bounds the extent of the points).
        pen_width: the pen width the index's widths and heights are for.

    Returns:
        PotIndex of the valid records, in file order.

    Raises:
        FormatError: damaged or non-POT bytes (on_error="raise"), or an empty file.
        GntkitError: bad arguments.
    """
    buf = check_buffer(buf, "POT bytes")
    check_options(on_error, max_side)
    pen_width = check_pen_width(pen_width)
    if len(buf) == 0:
        raise FormatError(path, 0, "at least one POT record", "an empty file")
    max_extent = max_extent_for(max_side)
    columns, problems = scan_with_resync(
        buf, path, on_error, scan=lambda pos: _scan_all(buf, pos, max_extent),
        describe=lambda stop, status: describe_problem(buf, stop, status, max_extent),
        find_next=lambda stop: kernels.find_next_record(buf, stop, max_extent), ok=kernels.OK)
    return PotIndex(*columns, problems, pen_width)


class PotFile:
    """One POT file's bytes with its record index: rendered bitmaps and raw strokes.

    Args:
        buf: the whole file as a 1-D uint8 array (from np.fromfile or a zip member).
        path: name used in messages and keys.
        on_error, max_side, pen_width: as for index_pot (pen_width: what `gather` renders with).
    """

    def __init__(self, buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE,
                 pen_width: float = DEFAULT_PEN_WIDTH):
        self.buf = check_buffer(buf, "POT bytes")
        self.path = str(path)
        self.index = index_pot(self.buf, self.path, on_error=on_error, max_side=max_side, pen_width=pen_width)

    def __len__(self) -> int:
        return len(self.index)

    def _chosen(self, records) -> np.ndarray:
        chosen = chosen_records(records, len(self), self.path)
        # Guard the kernels: every chosen record lies inside the buffer (the index validated its contents).
        if chosen.size and int((self.index.offsets[chosen] + self.index.sizes[chosen]).max()) > len(self.buf):
            raise AssertionError(f"{self.path}: record index points past the end of the buffer")
        return chosen

    def render(self, records=None, pen_width: float | None = None, serial: bool = False):
        """Render the chosen records' strokes into bitmaps (255 background, dark anti-aliased ink).

        Args:
            records: indices (int array) or a slice of valid records; all when None.
            pen_width: pen width in pixels; the index's (DEFAULT_PEN_WIDTH unless opened with another) when None.
            serial: render on the calling thread only (for callers that are pool threads).

        Returns:
            (pixels uint8 flat, pixel_offsets int64 (N+1,), heights int32, widths int32).

        Raises:
            GntkitError: a pen width out of range; IndexError: a record index out of range.
        """
        chosen = self._chosen(records)
        pen_width = self.index.pen_width if pen_width is None else check_pen_width(pen_width)
        boxes = self.index.boxes[chosen]
        widths = canvas_sides(boxes[:, 2] - boxes[:, 0], pen_width)
        heights = canvas_sides(boxes[:, 3] - boxes[:, 1], pen_width)
        pixel_offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(widths.astype(np.int64) * heights, out=pixel_offsets[1:])
        pixels = np.empty(int(pixel_offsets[-1]), np.uint8)
        render = kernels.render_records_serial if serial else kernels.render_records
        render(self.buf, np.ascontiguousarray(self.index.offsets[chosen]), np.ascontiguousarray(boxes[:, 0]),
               np.ascontiguousarray(boxes[:, 1]), RENDER_SCALE, pen_width / 2, pad_for(pen_width), pixels, pixel_offsets, widths, heights)
        return pixels, pixel_offsets, heights, widths

    def bitmap(self, i: int, pen_width: float | None = None) -> np.ndarray:
        """Record i rendered as a (height, width) uint8 bitmap."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: record {i} out of range (file has {len(self)} valid records).")
        pixels, _, heights, widths = self.render(np.array([i % len(self)]), pen_width, serial=True)
        return pixels.reshape(int(heights[0]), int(widths[0]))

    def gather(self, records=None, serial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The chosen records rendered at the index's pen width, as one flat array (the record-file
        protocol; sizes are index.widths / index.heights).

        Returns:
            (pixels uint8 flat, pixel_offsets int64 of length len(records)+1).
        """
        pixels, pixel_offsets, _, _ = self.render(records, None, serial)
        return pixels, pixel_offsets

    def locate(self, records=None, serial: bool = False, pen_width: float | None = None):
        """The chosen records rendered at `pen_width` (the index's when None), as gntkit.formats.base.Bitmaps
        for preprocessing (the rendered pixels are the only copy).
        """
        pixels, pixel_offsets, heights, widths = self.render(records, pen_width, serial)
        return packed_bitmaps(pixels, pixel_offsets, heights, widths)

    def strokes(self, records=None) -> dict:
        """The chosen records' raw points as ragged arrays (lossless, tablet units).

        Returns:
            {"points": int16 (P, 2) x, y without markers, "points_offsets": int64 (N+1,),
             "stroke_lengths": int16 (S,) points per stroke, "stroke_lengths_offsets": int64 (N+1,)};
            sample i's points are points[points_offsets[i]:points_offsets[i+1]], split into
            strokes by its stroke_lengths.
        """
        chosen = self._chosen(records)
        point_offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(self.index.point_counts[chosen], out=point_offsets[1:])
        stroke_offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(self.index.stroke_counts[chosen], out=stroke_offsets[1:])
        points = np.empty((int(point_offsets[-1]), 2), np.int16)
        stroke_lengths = np.empty(int(stroke_offsets[-1]), np.int16)
        record_offsets = np.ascontiguousarray(self.index.offsets[chosen])
        kernels.extract_points(self.buf, record_offsets, point_offsets, stroke_offsets, points, stroke_lengths)
        return {"points": points, "points_offsets": point_offsets,
                "stroke_lengths": stroke_lengths, "stroke_lengths_offsets": stroke_offsets}

    def batch_extras(self, chosen) -> dict:
        """What a batch carries beyond the image: the raw strokes (see `strokes`), for SampleBatch.meta."""
        return self.strokes(np.asarray(chosen, np.int64))

    def inspect_stats(self) -> dict:
        """Strokes and points per sample of this file, for `gntkit inspect`."""
        return {"strokes": self.index.stroke_counts.copy(), "points": self.index.point_counts.copy()}


def matches_name(name: str) -> bool:
    """True for a `.pot` file name (any case)."""
    return name.lower().endswith(SUFFIX)


def sniff(head: bytes, size: int) -> bool:
    """True when the first record is consistent as far as the head shows it: a plausible sample
    size that fits the file, zero tag bytes 3-4, a stroke count the size can hold, and points
    that are either non-negative or markers, with no more pen-up markers than strokes."""
    if len(head) < HEADER_SIZE:
        return False
    header = np.frombuffer(head[:HEADER_SIZE], HEADER_DTYPE)[0]
    sample, strokes = int(header["size"]), int(header["strokes"])
    if sample < kernels.MIN_RECORD or (sample - HEADER_SIZE) % 4 or sample > size or int(header["tag_pad"]) != 0:
        return False
    if strokes == 0 or HEADER_SIZE + (2 * strokes + 1) * 4 > sample:
        return False
    shown = min(len(head), sample) - HEADER_SIZE
    points = np.frombuffer(head[HEADER_SIZE:HEADER_SIZE + shown - shown % 4], "<i2").reshape(-1, 2)
    up = (points[:, 0] == -1) & (points[:, 1] == 0)
    end = (points[:, 0] == -1) & (points[:, 1] == -1)
    if ((points < 0).any(axis=1) & ~up & ~end).any() or int(up.sum()) > strokes:
        return False
    if end.any():  # the end marker only as the record's last point
        return HEADER_SIZE + 4 * (int(np.flatnonzero(end)[0]) + 1) == sample
    return True


# gntkit.tools.synth: what a synthetic file of this format holds, and how OLHWDB names it.
SYNTH_SAMPLES = "strokes"
SYNTH_FILE_NAME = "{writer}.pot"


def writer_id(name: str) -> str:
    """Writer id from a POT file name: `1001.pot` -> "1001", `C001-f.pot` -> "C001"."""
    stem = name.rsplit("/", 1)[-1]
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    return writer_id_from_stem(stem)


def open_file(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE,
              pen_width: float = DEFAULT_PEN_WIDTH) -> PotFile:
    """Index and validate a POT file held in memory (see PotFile)."""
    return PotFile(buf, path, on_error=on_error, max_side=max_side, pen_width=pen_width)


def encode_records(tag_codes, samples) -> bytes:
    """Serialise strokes as POT records (the inverse of reading; used by fixtures and synth).

    Args:
        tag_codes: iterable of int GB codes, high byte first (stored swapped, low byte first).
        samples: iterable, same length, of strokes: each a list of int (k, 2) arrays of
            non-negative (x, y) tablet coordinates, k >= 1.

    Returns:
        The bytes of a POT file.

    Raises:
        GntkitError: a code over 2 bytes, no strokes, an empty stroke, a coordinate outside
            0..32767, or a record over 65535 bytes.
    """
    chunks = []
    for tag_code, strokes in zip(tag_codes, samples, strict=True):
        if not 0 <= int(tag_code) <= 0xFFFF:
            raise GntkitError(f"A POT tag code must fit in 2 bytes, found {tag_code}.")
        if len(strokes) == 0:
            raise GntkitError("A POT sample needs at least one stroke, found none.")
        body = []
        for stroke in strokes:
            stroke = np.asarray(stroke)
            if stroke.ndim != 2 or stroke.shape[1] != 2 or len(stroke) == 0 or stroke.min() < 0 or stroke.max() > 32767:
                raise GntkitError(f"A POT stroke must be (k >= 1, 2) coordinates in 0..32767, found shape {stroke.shape}.")
            body.append(stroke.astype("<i2").tobytes())
            body.append(np.array([-1, 0], "<i2").tobytes())
        body.append(np.array([-1, -1], "<i2").tobytes())
        data = b"".join(body)
        size = HEADER_SIZE + len(data)
        if size > 0xFFFF:
            raise GntkitError(f"A POT record holds at most 65535 bytes, found {size} (too many points).")
        chunks.append(np.array([(size, tag_code, 0, len(strokes))], HEADER_DTYPE).tobytes())
        chunks.append(data)
    return b"".join(chunks)
