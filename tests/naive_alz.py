"""Plain-Python reference ALZip reader (whole archive in memory, struct and zlib only), for
comparing with gntkit.containers.alz. Follows unalz 0.65's CUnAlz::Open / ReadLocalFileheader.
Stored and deflate members are decoded; ALZip's bzip2 variant is listed but not decoded here
(Python's bz2 cannot read it: its members are checked against unalz and the source bytes)."""

import struct
import zlib


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
