"""Plain-Python reference GNT reader (struct, no numpy kernels) for comparing with gntkit's kernels."""

import struct


def read_records(data: bytes, max_side: int = 4096):
    """Parse records strictly: returns (records, stop_offset, reason) where records is a list of
    (offset, tag_code, width, height, bitmap_bytes) and reason is None when the whole buffer parsed."""
    records = []
    pos = 0
    n = len(data)
    while pos < n:
        if pos + 10 > n:
            return records, pos, "truncated header"
        size, = struct.unpack_from("<I", data, pos)
        tag_code = data[pos + 4] << 8 | data[pos + 5]
        width, height = struct.unpack_from("<HH", data, pos + 6)
        if width == 0 or height == 0:
            return records, pos, "zero side"
        if width > max_side or height > max_side:
            return records, pos, "absurd side"
        if size != 10 + width * height:
            return records, pos, "size mismatch"
        if pos + size > n:
            return records, pos, "truncated record"
        records.append((pos, tag_code, width, height, data[pos + 10:pos + size]))
        pos += size
    return records, pos, None
