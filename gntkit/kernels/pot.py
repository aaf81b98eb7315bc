"""numba kernels over the bytes of one POT file: index and validate records, resynchronise,
render strokes into anti-aliased bitmaps, extract the raw points.

A POT record (CASIA OLHWDB, online isolated characters):

    offset 0  uint16 LE  sample size = the whole record's length in bytes
    offset 2  4 bytes    tag: GB code LOW byte first, then two zero bytes
    offset 6  uint16 LE  stroke count
    offset 8  int16 LE (x, y) points; (-1, 0) ends a stroke, (-1, -1) ends the character

Kernels take a uint8 buffer and scalars, return arrays, and do no I/O. The index kernels
guard every read with a length check against len(buf) (numba does no bounds checking);
the render and extract kernels trust records the index kernel accepted, and their Python
wrappers check every offset against the buffer before calling them.
"""

from __future__ import annotations

import math

import numpy as np

from gntkit.jit import njit, parallel_ranges

HEADER_SIZE = 8
POINT_SIZE = 4
# The smallest record: header, one point, its pen-up marker, the end marker.
MIN_RECORD = HEADER_SIZE + 3 * POINT_SIZE

# Status codes returned by check_record / scan_records; gntkit.formats.pot turns them into sentences.
OK = 0
TRUNCATED_HEADER = 1
BAD_SIZE = 2
BAD_TAG = 3
NO_STROKES = 4
IMPOSSIBLE_COUNT = 5
TRUNCATED_RECORD = 6
EARLY_END = 7
MISSING_END = 8
EMPTY_STROKE = 9
UNTERMINATED_STROKE = 10
STROKE_COUNT_MISMATCH = 11
BAD_POINT = 12
ABSURD_EXTENT = 13


@njit
def _u16(buf, p):
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@njit
def _i16(buf, p):
    value = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
    return value - 65536 if value >= 32768 else value


@njit
def check_record(buf, pos, max_extent):
    """Validate the record at pos: (status, strokes, points, x_min, y_min, x_max, y_max).

    A kernel of one body (about 60 lines) because it runs once per record in the index loop.
    """
    n = buf.shape[0]
    if pos + HEADER_SIZE > n:
        return TRUNCATED_HEADER, 0, 0, 0, 0, 0, 0
    size = _u16(buf, pos)
    if size < MIN_RECORD or (size - HEADER_SIZE) % POINT_SIZE != 0:
        return BAD_SIZE, 0, 0, 0, 0, 0, 0
    if buf[pos + 4] != 0 or buf[pos + 5] != 0:
        return BAD_TAG, 0, 0, 0, 0, 0, 0
    declared = _u16(buf, pos + 6)
    if declared == 0:
        return NO_STROKES, 0, 0, 0, 0, 0, 0
    # Each stroke takes at least one point and its marker; the end marker follows.
    if HEADER_SIZE + (2 * declared + 1) * POINT_SIZE > size:
        return IMPOSSIBLE_COUNT, 0, 0, 0, 0, 0, 0
    end = pos + size
    if end > n:
        return TRUNCATED_RECORD, 0, 0, 0, 0, 0, 0
    markers = 0
    points = 0
    in_stroke = 0
    x_min, y_min, x_max, y_max = 65535, 65535, -1, -1
    p = pos + HEADER_SIZE
    while p < end:
        x = _i16(buf, p)
        y = _i16(buf, p + 2)
        if x == -1 and y == -1:
            if p + POINT_SIZE != end:
                return EARLY_END, markers, points, 0, 0, 0, 0
            if in_stroke != 0:
                return UNTERMINATED_STROKE, markers, points, 0, 0, 0, 0
            if markers != declared:
                return STROKE_COUNT_MISMATCH, markers, points, 0, 0, 0, 0
            if x_max - x_min > max_extent or y_max - y_min > max_extent:
                return ABSURD_EXTENT, markers, points, x_min, y_min, x_max, y_max
            return OK, markers, points, x_min, y_min, x_max, y_max
        if x == -1 and y == 0:
            if in_stroke == 0:
                return EMPTY_STROKE, markers, points, 0, 0, 0, 0
            markers += 1
            in_stroke = 0
        elif x < 0 or y < 0:
            return BAD_POINT, markers, points, 0, 0, 0, 0
        else:
            points += 1
            in_stroke += 1
            x_min = min(x_min, x)
            y_min = min(y_min, y)
            x_max = max(x_max, x)
            y_max = max(y_max, y)
        p += POINT_SIZE
    return MISSING_END, markers, points, 0, 0, 0, 0


@njit
def scan_records(buf, start, max_extent, offsets, tag_codes, stroke_counts, point_counts, boxes):
    """Index valid records from start until the end or the first bad record.

    Fills offsets / tag_codes / stroke_counts / point_counts / boxes (x_min, y_min, x_max, y_max
    rows; capacity = their length). Returns (count, stop_position, status of stop_position).
    """
    n = buf.shape[0]
    capacity = offsets.shape[0]
    pos = start
    count = 0
    while pos < n:
        status, strokes, points, x_min, y_min, x_max, y_max = check_record(buf, pos, max_extent)
        if status != OK:
            return count, pos, status
        if count < capacity:
            offsets[count] = pos
            tag_codes[count] = (np.uint16(buf[pos + 3]) << 8) | np.uint16(buf[pos + 2])
            stroke_counts[count] = strokes
            point_counts[count] = points
            boxes[count, 0] = x_min
            boxes[count, 1] = y_min
            boxes[count, 2] = x_max
            boxes[count, 3] = y_max
        count += 1
        pos += _u16(buf, pos)
    return count, pos, OK


@njit
def find_next_record(buf, start, max_extent):
    """First position after start where a whole valid record begins; len(buf) if there is none.

    Unlike GNT (where any header with size = 10 + w*h passes), a POT record checks itself end
    to end: zero tag bytes, its end marker exactly at its size, as many pen-up markers as its
    stroke count, no empty stroke, no negative coordinate. One valid record is evidence enough,
    so a good record between two damaged ones is kept.
    """
    n = buf.shape[0]
    pos = start + 1
    while pos + HEADER_SIZE <= n:
        # Cheap tests first: most positions fail on the zero tag bytes.
        if buf[pos + 4] == 0 and buf[pos + 5] == 0 and check_record(buf, pos, max_extent)[0] == OK:
            return pos
        pos += 1
    return n


# --------------------------------------------------------------------------- rendering
@njit
def _draw_segment(out, base, width, height, ax, ay, bx, by, radius):
    """Darken pixels of the (height, width) image at out[base:] by their coverage of the
    segment a-b thickened to radius (a one-pixel linear ramp at the edge anti-aliases);
    overlapping strokes keep the darker value, so joints do not get darker than ink.

    Each row visits only the columns near the part of the segment within reach of that row,
    not the segment's whole bounding box; the pixels it leaves out have zero coverage. (Exact
    per-row chords of the pen, with full-ink pixels set without a distance, measured 1.04x at
    pen width 3 on the fixtures: not worth their code.)
    """
    # Coverage needs a distance below radius + 0.5 from a pixel centre (j + 0.5, i + 0.5);
    # the 1e-7 absorbs rounding in the row's parameter range.
    reach = radius + 0.5 + 1e-7
    top = max(int(math.floor(min(ay, by) - reach - 0.5)), 0)
    bottom = min(int(math.ceil(max(ay, by) + reach - 0.5)), height - 1)
    dx = bx - ax
    dy = by - ay
    length2 = dx * dx + dy * dy
    edge2 = (radius + 0.5) * (radius + 0.5)
    for i in range(top, bottom + 1):
        py = i + 0.5
        # The part of the segment within `reach` of this row, as a parameter range [low, high].
        low, high = 0.0, 1.0
        if dy != 0.0:
            t1 = (py - reach - ay) / dy
            t2 = (py + reach - ay) / dy
            low = max(min(t1, t2), 0.0)
            high = min(max(t1, t2), 1.0)
            if low > high:
                continue
        x_low = ax + low * dx
        x_high = ax + high * dx
        left = max(int(math.floor(min(x_low, x_high) - reach - 0.5)), 0)
        right = min(int(math.ceil(max(x_low, x_high) + reach - 0.5)), width - 1)
        row = base + i * width
        for j in range(left, right + 1):
            px = j + 0.5
            t = 0.0
            if length2 > 0.0:
                t = ((px - ax) * dx + (py - ay) * dy) / length2
            t = min(max(t, 0.0), 1.0)
            ex = px - (ax + t * dx)
            ey = py - (ay + t * dy)
            distance2 = ex * ex + ey * ey
            if distance2 >= edge2:  # no coverage: skip the square root
                continue
            coverage = radius + 0.5 - math.sqrt(distance2)
            if coverage <= 0.0:
                continue
            if coverage > 1.0:
                coverage = 1.0
            value = 255 - int(coverage * 255.0 + 0.5)
            if value < out[row + j]:
                out[row + j] = value


@njit
def render_record(buf, record_offset, x_min, y_min, scale, radius, pad, out, base, width, height):
    """Render one validated record's strokes into the (height, width) image at out[base:]
    (filled with 255 first): tablet point (x, y) lands on (x - x_min) * scale + pad + 0.5."""
    for k in range(base, base + width * height):
        out[k] = 255
    p = record_offset + HEADER_SIZE
    in_stroke = 0
    px = 0.0
    py = 0.0
    while True:
        x = _i16(buf, p)
        y = _i16(buf, p + 2)
        p += POINT_SIZE
        if x == -1:
            if y == -1:
                return
            if in_stroke == 1:  # a single-point stroke is a dot (longer strokes cover their ends)
                _draw_segment(out, base, width, height, px, py, px, py, radius)
            in_stroke = 0  # pen up
            continue
        cx = (x - x_min) * scale + pad + 0.5
        cy = (y - y_min) * scale + pad + 0.5
        if in_stroke > 0:
            _draw_segment(out, base, width, height, px, py, cx, cy, radius)
        px = cx
        py = cy
        in_stroke += 1


# Records per indivisible unit of work for the threads: a record renders in about 0.1 ms.
RENDER_GRAIN = 64


def render_records(buf, record_offsets, x_mins, y_mins, scale, radius, pad, out, pixel_offsets, widths, heights):
    """render_record for every chosen record, in parallel: Python threads over the nogil
    render_range (gntkit.jit.parallel_ranges), as the other kernels, not a parallel=True kernel."""
    def body(first, end):
        render_range(buf, record_offsets, x_mins, y_mins, scale, radius, pad, out, pixel_offsets, widths, heights, first, end)

    parallel_ranges(record_offsets.shape[0], RENDER_GRAIN, body)


@njit
def render_range(buf, record_offsets, x_mins, y_mins, scale, radius, pad, out, pixel_offsets, widths, heights, first, end):
    """render_record for the chosen records first..end-1, on the calling thread."""
    for i in range(first, end):
        render_record(buf, record_offsets[i], x_mins[i], y_mins[i], scale, radius, pad, out, pixel_offsets[i], widths[i], heights[i])


def render_records_serial(buf, record_offsets, x_mins, y_mins, scale, radius, pad, out, pixel_offsets, widths, heights):
    """render_records on the calling thread only."""
    render_range(buf, record_offsets, x_mins, y_mins, scale, radius, pad, out, pixel_offsets, widths, heights, 0, record_offsets.shape[0])


# --------------------------------------------------------------------------- raw points
@njit
def extract_points(buf, record_offsets, point_offsets, stroke_offsets, points, stroke_lengths):
    """Copy each validated record's points (without markers) into points[point_offsets[i]:]
    (int16 (P, 2)) and its points per stroke into stroke_lengths[stroke_offsets[i]:]."""
    for i in range(record_offsets.shape[0]):
        p = record_offsets[i] + HEADER_SIZE
        q = point_offsets[i]
        s = stroke_offsets[i]
        run = 0
        while True:
            x = _i16(buf, p)
            y = _i16(buf, p + 2)
            p += POINT_SIZE
            if x == -1:
                if y == -1:
                    break
                stroke_lengths[s] = run
                s += 1
                run = 0
                continue
            points[q, 0] = x
            points[q, 1] = y
            q += 1
            run += 1
