"""A plain-Python DGRL reader (struct and loops, no numpy in the parsing): the reference that
gntkit.formats.dgrl is compared with. It reads the layout of docs/casia-formats.md and raises
ValueError on anything that does not fit; 1-bit rows are padded to whole bytes, most
significant bit first, bit 1 = ink (0), as gntkit's reader assumes."""

import struct

MAX_SIDE = 8192  # the largest page side gntkit takes as real (gntkit.formats.dgrl.DEFAULT_MAX_SIDE)


def read_dgrl(data: bytes) -> dict:
    """Parse a whole DGRL file.

    Returns:
        {"bits": int, "page": (height, width), "illustration": bytes,
         "lines": [{"codes": [int], "top", "left", "height", "width", "pixels": [[int]]}]}.
    """
    (header_size,) = struct.unpack_from("<I", data, 0)
    if data[4:7] != b"DGR" or data[7:12].strip(b"\0") not in (b"", b"L") or header_size < 36 or header_size + 12 > len(data):
        raise ValueError("not a DGRL header")
    illustration = data[12:header_size - 24].split(b"\0")[0]
    if data[header_size - 24:header_size - 4].split(b"\0")[0].upper() not in (b"GB", b"GBK", b"GB2312"):
        raise ValueError("code type")
    code_length, bits = struct.unpack_from("<hh", data, header_size - 4)
    if code_length != 2 or bits not in (1, 8):
        raise ValueError("code length or bits")
    page_height, page_width, count = struct.unpack_from("<iii", data, header_size)
    if not (1 <= page_height <= MAX_SIDE and 1 <= page_width <= MAX_SIDE) or count < 1:
        raise ValueError("page size or line count")
    pos = header_size + 12
    lines = []
    for _ in range(count):
        (chars,) = struct.unpack_from("<i", data, pos)
        if chars < 1 or pos + 4 + 2 * chars + 16 > len(data):
            raise ValueError("character count")
        codes = [data[pos + 4 + 2 * k] * 256 + data[pos + 5 + 2 * k] for k in range(chars)]
        pos += 4 + 2 * chars
        top, left, height, width = struct.unpack_from("<iiii", data, pos)
        pos += 16
        if height < 1 or width < 1 or height > page_height or width > page_width:
            raise ValueError("line size")
        rows = []
        if bits == 8:
            for r in range(height):
                rows.append(list(data[pos + r * width:pos + (r + 1) * width]))
            pos += height * width
        else:
            stride = (width + 7) // 8
            for r in range(height):
                row = []
                for c in range(width):
                    byte = data[pos + r * stride + c // 8]
                    row.append(0 if (byte >> (7 - c % 8)) & 1 else 255)
                rows.append(row)
            pos += height * stride
        if pos > len(data):
            raise ValueError("truncated")
        lines.append({"codes": codes, "top": top, "left": left, "height": height, "width": width, "pixels": rows})
    if pos != len(data):
        raise ValueError("trailing bytes")
    return {"bits": bits, "page": (page_height, page_width), "illustration": illustration, "lines": lines}
