"""Kernels for the blocks of ALZip's bzip2 variant (see gntkit/containers/alz.py).

A block is bzip2's (Huffman-coded MTF/run symbols over the Burrows-Wheeler transform of the
run-length-encoded data) without the block CRC and the randomised bit. Python's `bz2` cannot
read it, and a plain-Python decoder runs at about 0.1-0.3 MB/s (measured: benchmarks/
bench_formats.py), so these kernels do the three loops: `decode_block` (header, Huffman tables,
symbols -> the BWT's last column), `inverse_bwt`, and `rle1_length` / `undo_rle1`.

The kernels take arrays and scalars only. A block's length is only known once it is decoded,
so `decode_block` checks the bit position against `nbits` before every read and returns a
status instead of reading past the data; the caller turns a status into a FormatError. The
plain-Python reference is `naive_bzip2_blocks` in gntkit/tools/reference/alz.py.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

#: ALZip always uses bzip2's 900 kB blocks (unalz: blockSize100k = 9).
MAX_BLOCK = 900_000
OK = 0
TRUNCATED = 1
NO_BYTES = 2
BAD_GROUPS = 3
BAD_SELECTORS = 4
BAD_SELECTOR = 5
BAD_CODE_LENGTH = 6
BAD_CODE = 7
TOO_MANY_SYMBOLS = 8
BLOCK_TOO_LONG = 9
BAD_ORIGIN = 10
#: status -> (expected, found) for the FormatError the caller raises
MESSAGES = {
    TRUNCATED: ("more bzip2 data", "the end of the member's data (truncated)"),
    NO_BYTES: ("at least one byte value in use in a bzip2 block", "none"),
    BAD_GROUPS: ("2 to 6 Huffman groups", "another count"),
    BAD_SELECTORS: ("at least one Huffman selector", "none"),
    BAD_SELECTOR: ("a Huffman selector below the group count", "a larger one"),
    BAD_CODE_LENGTH: ("Huffman code lengths of 1 to 20 bits", "another length"),
    BAD_CODE: ("a valid Huffman code", "bits that match none"),
    TOO_MANY_SYMBOLS: ("at most 50 symbols per selector", "more symbols"),
    BLOCK_TOO_LONG: (f"a block of at most {MAX_BLOCK} bytes", "a longer one"),
    BAD_ORIGIN: ("a block origin below the block length", "a larger one"),
}


@njit
def _bits(data, pos, count):
    """`count` bits MSB-first from bit `pos` (the caller has checked they are present)."""
    # np.int64: with NUMBA_DISABLE_JIT a uint8 would keep the uint8 type and overflow.
    value = 0
    for i in range(count):
        p = pos + i
        value = (value << 1) | np.int64((data[p >> 3] >> (7 - (p & 7))) & 1)
    return value


@njit
def _tables(lengths, groups, alpha, limit, base, perm, min_len):
    """bzip2's canonical decoding tables (hbCreateDecodeTables) for every group."""
    for t in range(groups):
        lo, hi = 32, 0
        for i in range(alpha):
            lo = min(lo, lengths[t, i])
            hi = max(hi, lengths[t, i])
        min_len[t] = lo
        pp = 0
        for size in range(lo, hi + 1):
            for j in range(alpha):
                if lengths[t, j] == size:
                    perm[t, pp] = j
                    pp += 1
        counts = np.zeros(23, np.int64)
        for i in range(alpha):
            counts[lengths[t, i] + 1] += 1
        for i in range(1, 23):
            counts[i] += counts[i - 1]
        vec = 0
        for size in range(lo, hi + 1):
            vec += counts[size + 1] - counts[size]
            limit[t, size] = vec - 1
            vec <<= 1
        for size in range(23):
            base[t, size] = counts[size]
        for size in range(lo + 1, hi + 1):
            base[t, size] = ((limit[t, size - 1] + 1) << 1) - counts[size]


@njit
def decode_block(data, nbits, pos, column):
    """Decode one block's header and symbols (after its "DLZ\\x01" marker) into `column`.

    One body on purpose: the bit reader's position and the Huffman/MTF state stay in registers
    across the header, the tables and the symbol loop; split into calls they would go through
    memory on every symbol.

    Args:
        data: uint8 compressed bytes; nbits: bits present; pos: bit position after the marker;
        column: uint8 array of MAX_BLOCK bytes, receives the BWT's last column.

    Returns:
        (status, bit position after the block, origin, column length).

    One body for speed: the header, table and symbol loops share the bit position.
    """
    if pos + 40 > nbits:
        return TRUNCATED, pos, 0, 0
    origin = _bits(data, pos, 24)
    used16 = _bits(data, pos + 24, 16)
    pos += 40
    seq = np.zeros(256, np.uint8)
    nuse = 0
    for i in range(16):
        if used16 & (0x8000 >> i):
            if pos + 16 > nbits:
                return TRUNCATED, pos, 0, 0
            mask = _bits(data, pos, 16)
            pos += 16
            for j in range(16):
                if mask & (0x8000 >> j):
                    seq[nuse] = i * 16 + j
                    nuse += 1
    if nuse == 0:
        return NO_BYTES, pos, 0, 0
    alpha = nuse + 2
    if pos + 18 > nbits:
        return TRUNCATED, pos, 0, 0
    groups = _bits(data, pos, 3)
    nsel = _bits(data, pos + 3, 15)
    pos += 18
    if groups < 2 or groups > 6:
        return BAD_GROUPS, pos, 0, 0
    if nsel < 1:
        return BAD_SELECTORS, pos, 0, 0
    selectors = np.zeros(nsel, np.uint8)
    order = np.arange(6).astype(np.uint8)
    for i in range(nsel):
        rank = 0
        while True:
            if pos >= nbits:
                return TRUNCATED, pos, 0, 0
            bit = _bits(data, pos, 1)
            pos += 1
            if bit == 0:
                break
            rank += 1
            if rank >= groups:
                return BAD_SELECTOR, pos, 0, 0
        front = order[rank]
        for k in range(rank, 0, -1):
            order[k] = order[k - 1]
        order[0] = front
        selectors[i] = front
    lengths = np.zeros((6, 258), np.int64)
    for t in range(groups):
        if pos + 5 > nbits:
            return TRUNCATED, pos, 0, 0
        length = _bits(data, pos, 5)
        pos += 5
        for i in range(alpha):
            while True:
                if length < 1 or length > 20:
                    return BAD_CODE_LENGTH, pos, 0, 0
                if pos >= nbits:
                    return TRUNCATED, pos, 0, 0
                if _bits(data, pos, 1) == 0:
                    pos += 1
                    break
                if pos + 2 > nbits:
                    return TRUNCATED, pos, 0, 0
                length += -1 if _bits(data, pos + 1, 1) else 1
                pos += 2
            lengths[t, i] = length
    limit = np.zeros((6, 23), np.int64)
    base = np.zeros((6, 23), np.int64)
    perm = np.zeros((6, 258), np.int64)
    min_len = np.zeros(6, np.int64)
    _tables(lengths, groups, alpha, limit, base, perm, min_len)
    mtf = np.arange(256).astype(np.uint8)
    n = 0
    run = 0
    weight = 1
    group_no = -1
    group_left = 0
    table = 0
    while True:
        if group_left == 0:
            group_no += 1
            if group_no >= nsel:
                return TOO_MANY_SYMBOLS, pos, 0, 0
            group_left = 50
            table = selectors[group_no]
        group_left -= 1
        size = min_len[table]
        if pos + size > nbits:
            return TRUNCATED, pos, 0, 0
        code = _bits(data, pos, size)
        pos += size
        while size > 20 or code > limit[table, size]:
            if size >= 20:
                return BAD_CODE, pos, 0, 0
            if pos >= nbits:
                return TRUNCATED, pos, 0, 0
            code = (code << 1) | _bits(data, pos, 1)
            pos += 1
            size += 1
        index = code - base[table, size]
        if index < 0 or index >= alpha:
            return BAD_CODE, pos, 0, 0
        symbol = perm[table, index]
        if symbol <= 1:  # RUNA / RUNB: bijective base-2 repeat count of the front byte
            run += weight << symbol
            weight <<= 1
            if n + run > MAX_BLOCK:
                return BLOCK_TOO_LONG, pos, 0, 0
            continue
        if run > 0:
            value = seq[mtf[0]]
            for k in range(run):
                column[n + k] = value
            n += run
            run = 0
            weight = 1
        if symbol == alpha - 1:
            break
        rank = symbol - 1
        front = mtf[rank]
        for k in range(rank, 0, -1):
            mtf[k] = mtf[k - 1]
        mtf[0] = front
        if n >= MAX_BLOCK:
            return BLOCK_TOO_LONG, pos, 0, 0
        column[n] = seq[front]
        n += 1
    if origin >= n:
        return BAD_ORIGIN, pos, 0, 0
    return OK, pos, origin, n


@njit
def inverse_bwt(column, n, origin, out):
    """Undo the Burrows-Wheeler transform of column[:n] into out[:n] (origin < n checked by the caller).

    As bzip2 does: one uint32 per position holds the successor (high 24 bits) and the byte (low
    8), so the dependent walk touches one array, not two (the walk is memory-latency bound).
    """
    start = np.zeros(257, np.int64)
    for i in range(n):
        start[np.int64(column[i]) + 1] += 1
    for b in range(256):
        start[b + 1] += start[b]
    links = np.empty(n, np.uint32)
    for i in range(n):
        links[i] = column[i]
    for i in range(n):
        b = column[i]
        links[start[b]] |= np.uint32(i << 8)
        start[b] += 1
    position = links[origin] >> 8
    for i in range(n):
        entry = links[position]
        out[i] = entry & 0xFF
        position = entry >> 8


@njit
def rle1_length(data, n):
    """Length of data[:n] after undoing bzip2's first run-length step."""
    total = 0
    i = 0
    while i < n:
        value = data[i]
        run = 1
        while run < 4 and i + run < n and data[i + run] == value:
            run += 1
        total += run
        i += run
        if run == 4 and i < n:
            total += np.int64(data[i])
            i += 1
    return total


@njit
def undo_rle1(data, n, out):
    """Undo bzip2's first run-length step (four equal bytes, then a repeat count) into out (rle1_length bytes)."""
    i = 0
    o = 0
    while i < n:
        value = data[i]
        run = 1
        while run < 4 and i + run < n and data[i + run] == value:
            run += 1
        for k in range(run):
            out[o + k] = value
        o += run
        i += run
        if run == 4 and i < n:
            repeat = np.int64(data[i])
            for k in range(repeat):
                out[o + k] = value
            o += repeat
            i += 1
    return o
