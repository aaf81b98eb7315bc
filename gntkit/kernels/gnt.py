"""numba kernels over the bytes of one GNT file: index records, resynchronise (gathering bitmaps: gntkit.kernels.gather).

Kernels take a uint8 buffer and scalars, return arrays, and do no I/O. Every read
is guarded by a length check against len(buf) inside the kernel, because numba
does no bounds checking of its own.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

HEADER_SIZE = 10

# Status codes returned by scan_records; gntkit.formats.gnt turns them into sentences.
OK = 0
TRUNCATED_HEADER = 1
ZERO_SIDE = 2
ABSURD_SIDE = 3
SIZE_MISMATCH = 4
TRUNCATED_RECORD = 5


@njit
def header_status(buf, pos, max_side):
    """Status of the record header at pos: OK or the first check it fails."""
    n = buf.shape[0]
    if pos + HEADER_SIZE > n:
        return TRUNCATED_HEADER
    size = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16) | (np.int64(buf[pos + 3]) << 24)
    width = np.int64(buf[pos + 6]) | (np.int64(buf[pos + 7]) << 8)
    height = np.int64(buf[pos + 8]) | (np.int64(buf[pos + 9]) << 8)
    if width == 0 or height == 0:
        return ZERO_SIDE
    if width > max_side or height > max_side:
        return ABSURD_SIDE
    if size != HEADER_SIZE + width * height:
        return SIZE_MISMATCH
    if pos + size > n:
        return TRUNCATED_RECORD
    return OK


@njit
def scan_records(buf, start, max_side, offsets, tag_codes, widths, heights):
    """Index valid records from start until the end or the first bad header.

    Fills offsets/tag_codes/widths/heights (capacity = their length; pass empty
    arrays to only count). Returns (count, stop_position, status of stop_position).
    """
    n = buf.shape[0]
    capacity = offsets.shape[0]
    pos = start
    count = 0
    while pos < n:
        status = header_status(buf, pos, max_side)
        if status != OK:
            return count, pos, status
        width = np.int64(buf[pos + 6]) | (np.int64(buf[pos + 7]) << 8)
        height = np.int64(buf[pos + 8]) | (np.int64(buf[pos + 9]) << 8)
        if count < capacity:
            offsets[count] = pos
            tag_codes[count] = (np.uint16(buf[pos + 4]) << 8) | np.uint16(buf[pos + 5])
            widths[count] = width
            heights[count] = height
        count += 1
        pos += HEADER_SIZE + width * height
    return count, pos, OK


@njit
def find_next_record(buf, start, max_side):
    """First position after start where a valid record begins and is followed by a
    valid record or the exact end of the buffer; len(buf) if there is none."""
    n = buf.shape[0]
    pos = start + 1
    while pos + HEADER_SIZE <= n:
        if header_status(buf, pos, max_side) == OK:
            width = np.int64(buf[pos + 6]) | (np.int64(buf[pos + 7]) << 8)
            height = np.int64(buf[pos + 8]) | (np.int64(buf[pos + 9]) << 8)
            following = pos + HEADER_SIZE + width * height
            if following == n or header_status(buf, following, max_side) == OK:
                return pos
        pos += 1
    return n
