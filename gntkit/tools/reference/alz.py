"""Plain-Python reference ALZip reader (whole archive in memory, struct and zlib only), for
comparing with gntkit.containers.alz. Follows unalz 0.65's CUnAlz::Open / ReadLocalFileheader.
Stored and deflate members are decoded by read_archive; ALZip's bzip2 variant (Python's bz2 cannot
read it) by naive_bzip2_blocks, a straightforward bit-by-bit decoder: the reference for the numba
kernels in gntkit/kernels/bzip2.py."""

import struct
import zlib

import numpy as np  # the inverse BWT's stable sort


def read_archive(data: bytes):
    """Returns (entries, reason): entries is a list of dicts (name, offset, method, crc, compressed_size,
    size, encrypted, directory, payload, data) in archive order; reason is None when the archive
    parsed to its "CLZ\\x02" end record, else a short description of where it stopped."""
    if data[:4] != b"ALZ\x01" or len(data) < 8:
        return [], "no archive header"
    pos, entries = 8, []
    while True:
        sig = data[pos:pos + 4]
        if sig == b"CLZ\x02":
            return entries, None
        if sig == b"CLZ\x01":
            if pos + 16 > len(data):
                return entries, "truncated directory"
            pos += 16
            continue
        if sig != b"BLZ\x01":
            return entries, f"unknown signature {sig!r} at {pos}"
        if pos + 13 > len(data):
            return entries, "truncated header"
        name_length, attributes, _time, descriptor, _ = struct.unpack_from("<HBIBB", data, pos + 4)
        widths = {0x00: 0, 0x10: 1, 0x20: 2, 0x40: 4, 0x80: 8}
        if descriptor & 0xF0 not in widths:
            return entries, "bad size width"
        width = widths[descriptor & 0xF0]
        cursor = pos + 13
        method = crc = compressed = size = 0
        if width:
            if cursor + 6 + 2 * width > len(data):
                return entries, "truncated sizes"
            method = data[cursor]
            crc, = struct.unpack_from("<I", data, cursor + 2)
            compressed = int.from_bytes(data[cursor + 6:cursor + 6 + width], "little")
            size = int.from_bytes(data[cursor + 6 + width:cursor + 6 + 2 * width], "little")
            cursor += 6 + 2 * width
        name = data[cursor:cursor + name_length].decode("cp949").replace("\\", "/")
        cursor += name_length
        encrypted = bool(descriptor & 1)
        if encrypted:
            cursor += 12
        if cursor + compressed > len(data):
            return entries, "truncated data"
        payload = data[cursor:cursor + compressed]
        decoded = None
        if not encrypted and method == 0:
            decoded = payload
        elif not encrypted and method == 2:
            decoded = zlib.decompress(payload, -15)
        entries.append({"name": name, "offset": pos, "method": method, "crc": crc, "compressed_size": compressed,
                        "size": size, "encrypted": encrypted, "directory": bool(attributes & 0x10) or width == 0,
                        "payload": payload, "data": decoded})
        pos = cursor + compressed


_BLOCK_MAGIC = int.from_bytes(b"DLZ\x01", "big")
_END_MAGIC = int.from_bytes(b"DLZ\x02", "big")
_MAX_BLOCK = 900_000  # ALZip always uses bzip2's 900 kB blocks (unalz: blockSize100k = 9)


class _Bits:
    """MSB-first bit reader over a member's compressed bytes."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name, self.position, self.limit = data, name, 0, len(data) * 8

    def read(self, count: int) -> int:
        end = self.position + count
        if end > self.limit:
            raise ValueError(f"expected {count} more bits of bzip2 data, found the end of the member's data")
        first, last = self.position >> 3, (end + 7) >> 3
        value = int.from_bytes(self.data[first:last], "big") >> ((last << 3) - end)
        self.position = end
        return value & ((1 << count) - 1)

    def peek(self, count: int) -> int:
        """The next `count` bits without consuming them (zeros past the end)."""
        end = self.position + count
        first, last = self.position >> 3, (end + 7) >> 3
        chunk = self.data[first:last]
        value = int.from_bytes(chunk + bytes(last - first - len(chunk)), "big") >> ((last << 3) - end)
        return value & ((1 << count) - 1)

    def skip(self, count: int) -> None:
        if self.position + count > self.limit:
            raise ValueError(f"expected {count} more bits of bzip2 data, found the end of the member's data")
        self.position += count

    def fail(self, expected: str, found) -> ValueError:
        return ValueError(f"{expected}: found {found}")


def naive_bzip2_blocks(data: bytes, name: str = "member"):
    """Yield the decoded bytes of each block of ALZip's bzip2 variant, in plain Python (slow):
    the reference for gntkit/kernels/bzip2.py. Raises ValueError on damaged data."""
    bits = _Bits(data, name)
    while True:
        magic = bits.read(32)
        if magic == _END_MAGIC:
            return
        if magic != _BLOCK_MAGIC:
            raise bits.fail('an ALZip bzip2 block marker "DLZ\\x01" or end marker "DLZ\\x02"', f"0x{magic:08x}")
        yield _undo_rle1(_inverse_bwt(*_block_symbols(bits)))


def _huffman_tables(bits: _Bits, alphabet: int) -> tuple[list, list]:
    """The selectors and one canonical decoding table ({(length, code): symbol}) per group."""
    groups = bits.read(3)
    if not 2 <= groups <= 6:
        raise bits.fail("2 to 6 Huffman groups", groups)
    count = bits.read(15)
    if count < 1:
        raise bits.fail("at least one selector", count)
    order, selectors = list(range(groups)), []
    for _ in range(count):
        rank = 0
        while bits.read(1):
            rank += 1
            if rank >= groups:
                raise bits.fail(f"a selector below {groups}", rank)
        order.insert(0, order.pop(rank))
        selectors.append(order[0])
    tables = []
    for _ in range(groups):
        length, lengths = bits.read(5), []
        for _ in range(alphabet):
            while True:
                if not 1 <= length <= 20:
                    raise bits.fail("Huffman code lengths of 1 to 20 bits", length)
                if not bits.read(1):
                    break
                length += -1 if bits.read(1) else 1
            lengths.append(length)
        table, code = {}, 0
        for size in range(1, 21):  # canonical codes: by length, then by symbol (bzip2's hbAssignCodes)
            for symbol, symbol_length in enumerate(lengths):
                if symbol_length == size:
                    table[(size, code)] = symbol
                    code += 1
            code <<= 1
        tables.append(table)
    return selectors, tables


def _block_symbols(bits: _Bits) -> tuple[bytes, int]:
    """Decode one block's Huffman/MTF/run-length symbols: (the BWT's last column, origPtr)."""
    origin = bits.read(24)
    used = bits.read(16)
    byte_values = []
    for row in range(16):
        if used & (0x8000 >> row):
            mask = bits.read(16)
            byte_values.extend(row * 16 + col for col in range(16) if mask & (0x8000 >> col))
    if not byte_values:
        raise bits.fail("at least one byte value in use", 0)
    alphabet = len(byte_values) + 2
    selectors, tables = _huffman_tables(bits, alphabet)
    mtf, column, run, weight, decoded = list(range(len(byte_values))), bytearray(), 0, 1, 0
    while True:
        group = decoded // 50
        if group >= len(selectors):
            raise bits.fail(f"at most {50 * len(selectors)} symbols for {len(selectors)} selectors", "more")
        # One 20-bit window per symbol, then the shortest code length that is in the table.
        table, window = tables[selectors[group]], bits.peek(20)
        for length in range(1, 21):
            symbol = table.get((length, window >> (20 - length)))
            if symbol is not None:
                break
        else:
            raise bits.fail("a Huffman code of at most 20 bits", "none that matches")
        bits.skip(length)
        decoded += 1
        if symbol <= 1:  # RUNA / RUNB: a bijective base-2 repeat count of the front byte
            run += weight << symbol
            weight <<= 1
            if len(column) + run > _MAX_BLOCK:
                raise bits.fail(f"a block of at most {_MAX_BLOCK} bytes", "a longer run")
            continue
        if run:
            column += bytes([byte_values[mtf[0]]]) * run
            run, weight = 0, 1
        if symbol == alphabet - 1:
            break
        mtf.insert(0, mtf.pop(symbol - 1))
        column.append(byte_values[mtf[0]])
        if len(column) > _MAX_BLOCK:
            raise bits.fail(f"a block of at most {_MAX_BLOCK} bytes", "more")
    if len(column) > _MAX_BLOCK or origin >= len(column):
        raise bits.fail(f"a block origin below the block length {len(column)} (at most {_MAX_BLOCK})", origin)
    return bytes(column), origin


def _inverse_bwt(column: bytes, origin: int) -> bytes:
    """Undo the Burrows-Wheeler transform: follow the stable sort of the last column."""
    last = np.frombuffer(column, dtype=np.uint8)
    successor = np.argsort(last, kind="stable").tolist()
    out, position = bytearray(len(column)), successor[origin]
    for i in range(len(column)):
        out[i] = column[position]
        position = successor[position]
    return bytes(out)


def _undo_rle1(data: bytes) -> bytes:
    """Undo bzip2's first run-length step: four equal bytes are followed by a repeat count."""
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        value, run = data[i], 1
        while run < 4 and i + run < n and data[i + run] == value:
            run += 1
        out += bytes([value]) * run
        i += run
        if run == 4 and i < n:
            out += bytes([value]) * data[i]
            i += 1
    return bytes(out)
