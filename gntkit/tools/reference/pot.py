"""Plain-Python reference POT reader and stroke renderer (struct and loops, no numba) for
comparing with gntkit's kernels."""

import math
import struct


def read_records(data: bytes, max_extent: int = 10**9):
    """Parse records strictly: (records, stop_offset, reason); records are
    (offset, tag_code, strokes) with strokes a list of lists of (x, y); reason is None when
    the whole buffer parsed."""
    records = []
    pos, n = 0, len(data)
    while pos < n:
        if pos + 8 > n:
            return records, pos, "truncated header"
        size, low, high, pad, declared = struct.unpack_from("<HBBHH", data, pos)
        if size < 20 or (size - 8) % 4:
            return records, pos, "bad size"
        if pad != 0:
            return records, pos, "bad tag"
        if declared == 0:
            return records, pos, "no strokes"
        if 8 + (2 * declared + 1) * 4 > size:
            return records, pos, "impossible count"
        if pos + size > n:
            return records, pos, "truncated record"
        strokes, current, reason = [], [], "missing end"
        for p in range(pos + 8, pos + size, 4):
            x, y = struct.unpack_from("<hh", data, p)
            if (x, y) == (-1, -1):
                reason = "early end" if p + 4 != pos + size else ("unterminated stroke" if current else None)
                break
            if (x, y) == (-1, 0):
                if not current:
                    reason = "empty stroke"
                    break
                strokes.append(current)
                current = []
            elif x < 0 or y < 0:
                reason = "bad point"
                break
            else:
                current.append((x, y))
        if reason is None and len(strokes) != declared:
            reason = "stroke count mismatch"
        if reason is None:
            xs = [x for s in strokes for x, _ in s]
            ys = [y for s in strokes for _, y in s]
            if max(xs) - min(xs) > max_extent or max(ys) - min(ys) > max_extent:
                reason = "absurd extent"
        if reason is not None:
            return records, pos, reason
        records.append((pos, high << 8 | low, strokes))
        pos += size
    return records, pos, None


def render(strokes, pen_width: float, scale: float = 0.4):
    """The documented rendering as a list of rows: canvas = bounding box * scale + pad on each
    side; each pixel's coverage = max over segments (and dots) of clamp(r + 0.5 - distance, 0, 1)
    from the pixel centre; value 255 - round(255 * coverage)."""
    pad = math.ceil(pen_width / 2 + 0.5) + 1
    xs = [x for s in strokes for x, _ in s]
    ys = [y for s in strokes for _, y in s]
    x_min, y_min = min(xs), min(ys)
    width = (max(xs) - x_min) * 2 // 5 + 1 + 2 * pad
    height = (max(ys) - y_min) * 2 // 5 + 1 + 2 * pad
    segments = []
    for stroke in strokes:
        mapped = [((x - x_min) * scale + pad + 0.5, (y - y_min) * scale + pad + 0.5) for x, y in stroke]
        segments.append((mapped[0], mapped[0]))
        segments.extend(zip(mapped, mapped[1:]))
    radius = pen_width / 2
    rows = []
    for i in range(height):
        row = []
        for j in range(width):
            px, py = j + 0.5, i + 0.5
            value = 255
            for (ax, ay), (bx, by) in segments:
                dx, dy = bx - ax, by - ay
                length2 = dx * dx + dy * dy
                t = 0.0 if length2 == 0 else min(max(((px - ax) * dx + (py - ay) * dy) / length2, 0.0), 1.0)
                ex, ey = px - (ax + t * dx), py - (ay + t * dy)
                coverage = min(radius + 0.5 - math.sqrt(ex * ex + ey * ey), 1.0)
                if coverage > 0:
                    value = min(value, 255 - int(coverage * 255 + 0.5))
            row.append(value)
        rows.append(row)
    return rows
