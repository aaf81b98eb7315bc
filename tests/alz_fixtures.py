"""Write ALZip archives in the real layout (the one unalz 0.65 reads; see gntkit/containers/alz.py).

Every method ALZip writes (stored, its bzip2 variant, raw deflate), several members, directories,
every size-field width, encrypted members (PKWARE traditional encryption, as unalz decrypts it),
and split volumes (.alz + .a00). CI extracts these with Debian's `unalz` and compares bytes, so
the layout here is checked against an independent reader, not only against gntkit's.
"""

from __future__ import annotations

import bz2
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_HEADER = b"ALZ\x01\x0a\x00\x00"  # + one volume-number byte; unalz skips these 4 bytes
DOS_TIME = (30 << 25) | (1 << 21) | (1 << 16)  # 2010-01-01 00:00:00
WIDTH_FLAGS = {1: 0x10, 2: 0x20, 4: 0x40, 8: 0x80}


@dataclass
class Member:
    """One member to write. method: 0 stored, 1 bzip2 (ALZip's variant), 2 deflate; width: size-field bytes
    (None: the smallest that fits); password: encrypt with it; directory: a directory entry."""

    name: str
    data: bytes = b""
    method: int = 2
    width: int | None = None
    password: bytes | None = None
    directory: bool = False


def alz_bzip2(data: bytes) -> bytes:
    """ALZip's bzip2 variant of `data`: standard bzip2 (level 9) with "BZh9", the block CRCs, the
    randomised bit and the combined CRC removed and the magics replaced by "DLZ\\x01" / "DLZ\\x02"."""
    stream = bz2.compress(data, 9)
    bits = "".join(f"{byte:08b}" for byte in stream[4:])
    block, end = f"{0x314159265359:048b}", f"{0x177245385090:048b}"
    out, position = [], 0
    while bits.startswith(block, position):
        start = position + 48 + 32 + 1  # skip the magic, the block CRC and the randomised bit
        assert bits[position + 80] == "0", "bzip2 wrote a randomised block"
        following = [p for p in (bits.find(block, start), bits.find(end, start)) if p >= 0]
        position = min(following)
        out.append(f"{int.from_bytes(b'DLZ' + bytes([1]), 'big'):032b}" + bits[start:position])
    assert bits.startswith(end, position)
    out.append(f"{int.from_bytes(b'DLZ' + bytes([2]), 'big'):032b}")
    text = "".join(out)
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big")


def _bzip2_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if c & 0x80000000 else (c << 1) & 0xFFFFFFFF
        table.append(c)
    return table


_BZIP2_TABLE = _bzip2_crc_table()


def _bzip2_register(data: bytes) -> int:
    register = 0xFFFFFFFF
    for byte in data:
        register = ((register << 8) & 0xFFFFFFFF) ^ _BZIP2_TABLE[(register >> 24) ^ byte]
    return register


def zero_bzip2_crc(data: bytes) -> bytes:
    """`data` plus 4 bytes chosen so that its bzip2 block CRC is 0.

    Why: ALZip stores no bzip2 block CRC, and Debian's unalz decodes ALZip's blocks with its own
    BZ2_decompress but the system libbz2's BZ2_bzDecompress, which compares the computed block CRC
    with the stored one it never read (0). Debian's unalz therefore extracts an ALZip bzip2 member
    only when its block CRC is 0 (checked: other data gives "inflate failed"). The CRC is affine in
    the appended bits, so a 32x32 system over GF(2) gives the 4 bytes. One block (< 900 kB) only.
    """
    assert len(data) < 800_000, "one bzip2 block only"
    base = _bzip2_register(data + bytes(4))
    basis: dict[int, tuple[int, int]] = {}
    for k in range(32):
        value, mask = _bzip2_register(data + (1 << k).to_bytes(4, "big")) ^ base, 1 << k
        for bit in range(31, -1, -1):
            if value >> bit & 1:
                if bit not in basis:
                    basis[bit] = (value, mask)
                    break
                value, mask = value ^ basis[bit][0], mask ^ basis[bit][1]
    value, mask = 0xFFFFFFFF ^ base, 0
    for bit in range(31, -1, -1):
        if value >> bit & 1:
            value, mask = value ^ basis[bit][0], mask ^ basis[bit][1]
    forced = data + mask.to_bytes(4, "big")
    assert _bzip2_register(forced) == 0xFFFFFFFF
    return forced


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


class ZipCrypto:
    """PKWARE traditional encryption (unalz's InitCryptKeys / UpdateKeys / DecryptByte)."""

    def __init__(self, password: bytes):
        self.keys = [0x12345678, 0x23456789, 0x34567890]
        for byte in password:
            self._update(byte)

    def _update(self, byte: int) -> None:
        k0, k1, k2 = self.keys
        k0 = _TABLE[(k0 ^ byte) & 0xFF] ^ (k0 >> 8)
        k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k2 = _TABLE[(k2 ^ (k1 >> 24)) & 0xFF] ^ (k2 >> 8)
        self.keys = [k0, k1, k2]

    def encrypt(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            temp = (self.keys[2] | 2) & 0xFFFF
            out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
            self._update(byte)
        return bytes(out)


def _compress(member: Member) -> bytes:
    if member.method == 0:
        return member.data
    if member.method == 1:
        return alz_bzip2(member.data)
    if member.method == 2:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return packer.compress(member.data) + packer.flush()
    raise ValueError(f"unknown method {member.method}")


def local_file(member: Member) -> bytes:
    """One "BLZ\\x01" local file header and the member's (compressed, maybe encrypted) data."""
    name = member.name.encode("cp949")
    if member.directory:
        return b"BLZ\x01" + struct.pack("<HBIBB", len(name), 0x10, DOS_TIME, 0x00, 0) + name
    payload = _compress(member)
    crc = zlib.crc32(member.data)
    width = member.width or next(w for w in (1, 2, 4, 8) if max(len(payload), len(member.data)) < 1 << (8 * w))
    descriptor = WIDTH_FLAGS[width] | (0x01 if member.password else 0)
    head = b"BLZ\x01" + struct.pack("<HBIBB", len(name), 0x20, DOS_TIME, descriptor, 0)
    head += bytes([member.method, 0]) + struct.pack("<I", crc)
    head += len(payload).to_bytes(width, "little") + len(member.data).to_bytes(width, "little") + name
    if member.password:
        crypto = ZipCrypto(member.password)
        # 11 filler bytes, then the CRC's top byte: unalz checks the password against it.
        head += crypto.encrypt(bytes(range(11)) + bytes([crc >> 24]))
        payload = crypto.encrypt(payload)
    return head + payload


def alz_bytes(members: list[Member], *, volume: int = 0) -> bytes:
    """A whole single-volume archive: header, members, central directory record, end record."""
    body = b"".join(local_file(m) for m in members)
    directory = b"CLZ\x01" + struct.pack("<II", 0, 0) + b"CLZ\x03"
    return ARCHIVE_HEADER + bytes([volume]) + body + directory + b"CLZ\x02"


def write_alz(path, members: list[Member]) -> Path:
    """Write a single-volume archive to `path`."""
    path = Path(path)
    path.write_bytes(alz_bytes(members))
    return path


def write_split(path, members: list[Member], first_volume: int) -> list[Path]:
    """Write a two-volume archive: `path` (.alz) holds the first `first_volume` bytes of the archive and
    a 16-byte tail; the .a00 holds an 8-byte volume header and the rest (unalz's FOpen layout)."""
    whole = alz_bytes(members)
    first = Path(path)
    second = first.with_suffix(".a00")
    tail = b"CLZ\x03" + struct.pack("<III", 0, len(whole), 1)  # opaque to unalz; contents are our guess
    first.write_bytes(whole[:first_volume] + tail)
    second.write_bytes(ARCHIVE_HEADER + bytes([1]) + whole[first_volume:])
    return [first, second]


def sample_members(seed: int = 0) -> list[Member]:
    """A deterministic set: every method and size width, a directory, an empty file, a nested path
    (bzip2 members have a zero block CRC so that Debian's unalz extracts them: see zero_bzip2_crc)."""
    import random

    rng = random.Random(seed)
    text = bytes(rng.choice(b"abcdefgh ") for _ in range(5000))
    noise = bytes(rng.getrandbits(8) for _ in range(3000))
    runs = b"\x00" * 700 + b"\xff" * 300 + bytes(range(256)) * 3
    # bzip2 members come first: Debian's unalz fails on a bzip2 member that follows a deflate one
    # (checked; it compares a combined CRC it never reads, apparently left over in reused memory).
    return [
        Member("data/", directory=True),
        Member("data/bzip.bin", zero_bzip2_crc(text + runs), method=1),
        Member("bzip-noise.bin", zero_bzip2_crc(noise), method=1),
        Member("data/1001-c.gnt", text, method=2),
        Member("data/stored.bin", noise, method=0),
        Member("data/empty.bin", b"", method=0),
        Member("wide8.bin", runs, method=2, width=8),
        Member("wide4.bin", noise[:100], method=0, width=4),
    ]
