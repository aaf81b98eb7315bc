"""ALZip's bzip2 variant (method 1 of gntkit/containers/alz.py): blocks marked "DLZ\\x01", the end
"DLZ\\x02", no stream header and no CRCs, decoded block by block with gntkit's numba kernels."""

from __future__ import annotations

import numpy as np

from gntkit.errors import FormatError
from gntkit.kernels import bzip2 as bzip2_kernels

_BLOCK_MAGIC = int.from_bytes(b"DLZ\x01", "big")
_END_MAGIC = int.from_bytes(b"DLZ\x02", "big")


def _bits_at(data: bytes, position: int, count: int) -> int:
    first, last = position >> 3, (position + count + 7) >> 3
    return (int.from_bytes(data[first:last], "big") >> ((last << 3) - position - count)) & ((1 << count) - 1)


def alz_bzip2_blocks(data: bytes, name: str):
    """Yield the decoded bytes of each block of ALZip's bzip2 variant (see the module docstring).

    Args:
        data: the member's compressed bytes.
        name: `archive:member`, for messages.

    Raises:
        FormatError: a missing block marker, damaged Huffman tables or codes, impossible counts;
            the offset is the byte in the member's compressed data.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    limit, position = len(data) * 8, 0
    column = np.empty(bzip2_kernels.MAX_BLOCK, dtype=np.uint8)
    plain = np.empty(bzip2_kernels.MAX_BLOCK, dtype=np.uint8)
    while True:
        if position + 32 > limit:
            raise FormatError(name, position // 8, 'an ALZip bzip2 block marker "DLZ\\x01" or end marker "DLZ\\x02"',
                              "the end of the member's compressed data (truncated)")
        magic = _bits_at(data, position, 32)
        position += 32
        if magic == _END_MAGIC:
            return
        if magic != _BLOCK_MAGIC:
            raise FormatError(name, (position - 32) // 8, 'an ALZip bzip2 block marker "DLZ\\x01" or end marker "DLZ\\x02"',
                              f"0x{magic:08x}")
        status, position, origin, count = bzip2_kernels.decode_block(buffer, limit, position, column)
        if status != bzip2_kernels.OK:
            expected, found = bzip2_kernels.MESSAGES[status]
            raise FormatError(name, position // 8, f"{expected} (compressed data)", found)
        bzip2_kernels.inverse_bwt(column, count, origin, plain)
        out = np.empty(bzip2_kernels.rle1_length(plain, count), dtype=np.uint8)
        bzip2_kernels.undo_rle1(plain, count, out)
        yield out.tobytes()
