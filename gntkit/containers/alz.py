"""ALZip archives (`.alz`): the old `HWDB1.1trn_gnt.zip` holds one. Members are streamed, never
unpacked to disk, and at most one member is decoded at a time.

No official specification exists. The layout below follows the source of `unalz` 0.65
(kippler/unalz: `UnAlz.h` structs `_SAlzLocalFileHeaderHead` / `SAlzLocalFileHeader`,
`CUnAlz::ReadLocalFileheader`, `FOpen` for volumes, `UnAlzBz2decompress.c` for bzip2), the
Debian package that CI uses to prove our fixtures genuine, cross-checked with the notes of
unalz-rs (`docs/specification.md`) and XADMaster's AlZipSpecs wiki page. All integers are
little-endian.

    "ALZ\\x01"  archive header, 4 more bytes (the last one is the volume number: 0 in an
               .alz, 1.. in the .a00, .a01 ... volumes of a split archive)
    "BLZ\\x01"  local file header:
               u16 name length, u8 attributes (0x10 directory), u32 DOS time,
               u8 descriptor (bit 0 encrypted, bit 3 data descriptor, high nibble 0x10 / 0x20 /
               0x40 / 0x80: the size fields are 1, 2, 4 or 8 bytes; 0: no sizes, a directory),
               u8 unknown; when the sizes are present: u8 method (0 store, 1 bzip2, 2 deflate),
               u8 unknown, u32 CRC-32, compressed size, uncompressed size;
               then the name (CP949 or UTF-8), 12 bytes of encryption header when encrypted,
               then the compressed data (the encryption header is not counted in its size)
    "CLZ\\x01"  central directory: 12 opaque bytes (unalz skips them)
    "CLZ\\x02"  end of the archive
    "CLZ\\x03"  split marker (unalz-rs), seen in split volumes

A split archive's first volume ends with a 16-byte tail and its data continue in the .a00
file (unalz's `MULTIVOL_TAIL_SIZE`, `MULTIVOL_HEAD_SIZE`); gntkit refuses split volumes and
encrypted members with one sentence each.

Method 1 is not standard bzip2: ALZip drops the "BZh9" stream header, writes "DLZ\\x01" for each
block's 48-bit magic and "DLZ\\x02" for the end-of-stream magic, and leaves out the block CRC,
the randomised bit and the combined CRC. Python's `bz2` (libbzip2) cannot read that and
checks the CRCs ALZip left out, so gntkit decodes those blocks with its own numba kernels
(gntkit/kernels/bzip2.py, driven by gntkit/containers/alz_bzip2.py). Only ALZip 4.9x wrote bzip2; ALZip 5 and later
write deflate (unalz's notes), which `zlib` inflates.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from gntkit.containers import ON_ERROR_CHOICES, ArchiveLoss
from gntkit.containers.alz_bzip2 import alz_bzip2_blocks
from gntkit.containers.zip import stream_size
from gntkit.errors import FormatError, GntkitError

SIG_ARCHIVE = b"ALZ\x01"
SIG_FILE = b"BLZ\x01"
SIG_DIRECTORY = b"CLZ\x01"
SIG_END = b"CLZ\x02"
SIG_SPLIT = b"CLZ\x03"
METHOD_STORE, METHOD_BZIP2, METHOD_DEFLATE = 0, 1, 2
METHOD_NAMES = {METHOD_STORE: "stored", METHOD_BZIP2: "bzip2", METHOD_DEFLATE: "deflate"}
FLAG_ENCRYPTED = 0x01
ATTR_DIRECTORY = 0x10
ENCRYPTION_HEADER = 12
SPLIT_TAIL = 16
#: descriptor high nibble -> width in bytes of the two size fields
SIZE_WIDTHS = {0x00: 0, 0x10: 1, 0x20: 2, 0x40: 4, 0x80: 8}
_CHUNK = 1 << 20
# Offsets beyond this are damage, not data: no file is 4 EiB, and seek() rejects > 2**63.
_MAX_OFFSET = 1 << 62
_SPLIT_HINT = "gntkit reads single-volume .alz archives only: join the volumes with `unalz` first"


@dataclass(frozen=True)
class AlzEntry:
    """One local file header.

    Attributes:
        name: the member name ('/' separated).
        header_offset: byte offset of its "BLZ\\x01" signature.
        data_offset: byte offset of its compressed data.
        method: 0 stored, 1 bzip2 (ALZip's variant), 2 deflate.
        crc32: CRC-32 of the uncompressed data.
        compressed_size / size: compressed and uncompressed sizes in bytes.
        encrypted: ALZip password protection (refused).
        directory: a directory entry (no data).
    """

    name: str
    header_offset: int
    data_offset: int
    method: int
    crc32: int
    compressed_size: int
    size: int
    encrypted: bool
    directory: bool


class AlzContainer:
    """An ALZip archive's file members (see gntkit.containers for the interface).

    The archive is read through one open file object: listing walks the local headers,
    seeking over each member's data, and reading members in archive order only seeks
    forward (a stream that cannot seek is read and discarded up to the offset). A backward
    seek opens the archive again with `opener`, which is costly when the archive is itself
    a zip member: its stream inflates again from the start. Reuse one instance to read many
    members.

    Args:
        opener: returns a new binary file object of the archive at offset 0.
        path: the archive's display name, used in messages.
        on_error: "raise" (a damaged or truncated listing is a FormatError) or "skip" (keep the
            members before the damage; `losses` says what was lost from where).
    """

    name = "alz"
    suffixes = (".alz",)

    def __init__(self, opener, path: str, on_error: str = "raise"):
        if not callable(opener):
            raise GntkitError(f"{path}: expected a callable that opens the archive, found {type(opener).__name__}.")
        if on_error not in ON_ERROR_CHOICES:
            raise GntkitError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, found {on_error!r}.")
        self.opener = opener
        self.path = str(path)
        self.on_error = on_error
        self.losses: list[ArchiveLoss] = []
        self._cut: AlzEntry | None = None  # a last member the archive cuts off (on_error="skip")
        self._stream = None
        self._position = 0
        self._index: list[AlzEntry] | None = None

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True when `head` starts with the ALZip archive header "ALZ\\x01"."""
        return bytes(head[:4]) == SIG_ARCHIVE

    # -- the one archive stream ------------------------------------------------------------

    def _read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer only at the end of the archive)."""
        if self._stream is None or offset < self._position:
            self.close()
            self._stream, self._position = self.opener(), 0
        if offset > self._position:
            if self._stream.seekable():
                self._stream.seek(offset)
            else:
                self._discard(offset - self._position)
            self._position = offset
        parts, wanted = [], size
        while wanted > 0:
            part = self._stream.read(wanted)
            if not part:
                break
            parts.append(part)
            wanted -= len(part)
        data = b"".join(parts)
        self._position += len(data)
        return data

    def _discard(self, count: int) -> None:
        while count > 0:
            part = self._stream.read(min(count, _CHUNK))
            if not part:
                return
            count -= len(part)

    def _archive_size(self) -> int:
        """The archive's length in bytes (only on error paths: a zip member stream inflates to its end)."""
        return stream_size(self.opener)

    def close(self) -> None:
        """Close the archive stream (a later read opens it again)."""
        if self._stream is not None:
            self._stream.close()
        self._stream, self._position = None, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the directory -------------------------------------------------------------------

    def index(self) -> list[AlzEntry]:
        """Every local file header, in archive order (directories included).

        Raises:
            FormatError: a damaged or truncated header, an unknown record, a split volume.
            GntkitError: a split volume, or two members with one name.
        """
        if self._index is None:
            entries: list[AlzEntry] = []
            try:
                self._scan(entries)
            except FormatError as exc:
                if self.on_error == "raise":
                    raise
                self.losses = [self._loss(entries, exc)]
            self._index = entries
        return self._index

    def _loss(self, entries: list[AlzEntry], exc: FormatError) -> ArchiveLoss:
        """What a damaged listing lost; a last member whose data the archive cuts off leaves `entries`."""
        total = self._archive_size()
        last = entries[-1] if entries else None
        if last is not None and last.data_offset + last.compressed_size > total:
            self._cut = entries.pop()
            return ArchiveLoss(self.path, last.header_offset, exc.expected, exc.found, total - last.header_offset, last.name, 1)
        offset = exc.offset if exc.offset is not None else 0
        return ArchiveLoss(self.path, offset, exc.expected, exc.found, max(total - offset, 0))

    def _scan(self, entries: list[AlzEntry]) -> None:
        """Walk the archive's records, appending each local file header to `entries` as it is read."""
        head = self._read_at(0, 8)
        if head[:4] != SIG_ARCHIVE:
            raise FormatError(self.path, 0, 'the ALZip archive header "ALZ\\x01"', repr(head[:4]))
        if len(head) < 8:
            raise FormatError(self.path, len(head), "an 8-byte ALZip archive header", f"{len(head)} bytes (truncated archive)")
        if head[7] != 0:
            raise GntkitError(f"{self.path}: volume {head[7] + 1} of a split (multi-volume) ALZip archive (.a00, .a01 ...): {_SPLIT_HINT}.")
        names, position = {}, 8
        while True:
            signature = self._read_at(position, 4)
            if signature == SIG_FILE:
                entry = self._local_header(position)
                if entry.name in names and not entry.directory:
                    raise GntkitError(f"{self.path}: two members named {entry.name!r}, at bytes {names[entry.name]} and {position}: "
                                      "expected unique names.")
                names[entry.name] = position
                entries.append(entry)
                position = entry.data_offset + entry.compressed_size
            elif signature == SIG_DIRECTORY:
                if len(self._read_at(position + 4, 12)) < 12:
                    self._raise_truncated(position, entries)
                position += 16
            elif signature == SIG_END:
                return
            elif signature == SIG_SPLIT:
                raise GntkitError(f"{self.path}: a split marker (CLZ\\x03) at byte {position}: this is one volume of a split ALZip "
                                  f"archive: {_SPLIT_HINT}.")
            elif len(signature) < 4:
                self._raise_truncated(position, entries)
            else:
                raise FormatError(self.path, position, 'an ALZip record ("BLZ\\x01" file header, "CLZ\\x01" directory or "CLZ\\x02" end)',
                                  repr(signature))

    def _local_header(self, position: int) -> AlzEntry:
        """Parse the local file header whose signature is at `position`."""
        head = self._fixed(position + 4, 9, "a 9-byte ALZip file header")
        name_length, attributes, _dos_time, descriptor, _unknown = struct.unpack("<HBIBB", head)
        width = SIZE_WIDTHS.get(descriptor & 0xF0)
        if width is None:
            raise FormatError(self.path, position + 11, "a size-field width flag of 0x00, 0x10, 0x20, 0x40 or 0x80",
                              f"0x{descriptor & 0xF0:02x}")
        cursor = position + 13
        method, crc, compressed, size = METHOD_STORE, 0, 0, 0
        if width:
            sizes = self._fixed(cursor, 6 + 2 * width, f"the method, CRC-32 and two {width}-byte sizes")
            method, crc = sizes[0], struct.unpack_from("<I", sizes, 2)[0]
            compressed = int.from_bytes(sizes[6:6 + width], "little")
            size = int.from_bytes(sizes[6 + width:], "little")
            cursor += 6 + 2 * width
        if name_length == 0:
            raise FormatError(self.path, position + 4, "a file name length of at least 1", "0")
        name = _decode_name(self._fixed(cursor, name_length, f"a {name_length}-byte file name"), self.path, cursor)
        cursor += name_length
        encrypted = bool(descriptor & FLAG_ENCRYPTED)
        if encrypted:
            cursor += ENCRYPTION_HEADER
        directory = bool(attributes & ATTR_DIRECTORY) or width == 0
        if not directory and method not in METHOD_NAMES:
            raise FormatError(self.path, position + 13, "compression method 0 (stored), 1 (bzip2) or 2 (deflate)", str(method))
        if method == METHOD_STORE and not directory and not encrypted and compressed != size:
            raise FormatError(self.path, position + 19, f"a stored member's compressed size equal to its size {size}", str(compressed))
        if cursor + compressed > _MAX_OFFSET:
            raise FormatError(self.path, position + 19, "a compressed size that fits in the archive", str(compressed))
        return AlzEntry(name, position, cursor, method, crc, compressed, size, encrypted, directory)

    def _fixed(self, offset: int, size: int, expected: str) -> bytes:
        data = self._read_at(offset, size)
        if len(data) < size:
            raise FormatError(self.path, offset, expected, f"{len(data)} bytes before the end of the archive (truncated)")
        return data

    def _raise_truncated(self, position: int, entries: list[AlzEntry]):
        """The archive ended before the "CLZ\\x02" end record: a split first volume, or truncation."""
        total = self._archive_size()
        tail = self._read_at(max(total - SPLIT_TAIL, 0), SPLIT_TAIL) if total >= SPLIT_TAIL else b""
        # The 16-byte tail's contents are not documented (unalz skips it), so a next volume beside
        # the file (unalz's naming: x.alz, x.a00) also says "split".
        next_volume = Path(self.path).with_suffix(".a00")
        if tail.startswith(SIG_SPLIT) or tail.startswith(SIG_ARCHIVE) or next_volume.is_file():
            raise GntkitError(f"{self.path}: the first volume of a split (multi-volume) ALZip archive (its data continue in an .a00 file): "
                              f"{_SPLIT_HINT}.")
        last = entries[-1] if entries else None
        if last is not None and position > total:
            raise FormatError(self.path, last.data_offset, f"{last.compressed_size} bytes of data of member {last.name!r}",
                              f"{total - last.data_offset} bytes before the end of the archive (truncated)")
        raise FormatError(self.path, min(position, total), 'another ALZip record or the "CLZ\\x02" end record',
                          "the end of the archive (truncated)")

    # -- the interface -------------------------------------------------------------------

    def entries(self) -> list[tuple[str, int]]:
        """(inner name, uncompressed size) of every file member, in archive order (no directories).

        Raises:
            FormatError / GntkitError: see `index`.
        """
        return [(entry.name, entry.size) for entry in self.index() if not entry.directory]

    def entry(self, inner: str) -> AlzEntry:
        """The file member named `inner`.

        Raises:
            GntkitError: no such file member.
        """
        for entry in self.index():
            if entry.name == inner and not entry.directory:
                return entry
        raise GntkitError(f"{self.path}: expected a member named {inner!r}, found none.")

    def open(self, inner: str):
        """A binary file object streaming one member; reading it to the end checks its size and CRC-32.

        A last member the archive cuts off (on_error="skip", see `losses`) streams the bytes it
        still has, unchecked: an archive inside it can then be salvaged in turn.

        Raises:
            GntkitError: no such member, or an encrypted one.
            FormatError (while reading): damaged compressed data, wrong size or CRC-32.
        """
        self.index()
        if self._cut is not None and self._cut.name == inner and not self._cut.encrypted:
            return io.BufferedReader(_MemberStream(self, self._cut, check=False, partial=True), buffer_size=_CHUNK)
        entry = self.entry(inner)
        if entry.encrypted:
            raise GntkitError(f"{self.path}:{inner}: the member is encrypted (ALZip password): gntkit reads unencrypted members only; "
                              "extract it with `unalz -pwd PASSWORD` first.")
        return io.BufferedReader(_MemberStream(self, entry), buffer_size=_CHUNK)

    def read(self, inner: str) -> bytes:
        """One whole member, checked against its size and CRC-32.

        Raises:
            GntkitError / FormatError: see `open`.
        """
        with self.open(inner) as stream:
            return stream.read()

    def read_unchecked(self, inner: str) -> bytes | None:
        """The member's bytes without the size and CRC-32 checks (to count what a damaged member
        held), or None when it is missing, encrypted or its compressed data cannot be decoded whole."""
        try:
            entry = self.entry(inner)
            if entry.encrypted:
                return None
            return _MemberStream(self, entry, check=False).readall()
        except GntkitError:
            return None


def _decode_name(raw: bytes, path: str, offset: int) -> str:
    """A member name: UTF-8 where it is valid, else CP949 (ALZip's Korean code page); '\\' -> '/'."""
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding).replace("\\", "/")
        except UnicodeDecodeError:
            continue
    raise FormatError(path, offset, "a file name in UTF-8 or CP949", repr(raw[:40]))


class _MemberStream(io.RawIOBase):
    """Decodes one member chunk by chunk; the end of the data checks size and CRC-32."""

    def __init__(self, container: AlzContainer, entry: AlzEntry, check: bool = True, partial: bool = False):
        self._container = container
        self._check = check
        self._partial = partial  # a member cut off: its bytes end where its data do, without an error
        self._entry = entry
        self._name = f"{container.path}:{entry.name}"
        self._next = entry.data_offset
        self._left = entry.compressed_size
        self._pending = memoryview(b"")
        self._produced = 0
        self._crc = 0
        self._done = False
        self._inflater = zlib.decompressobj(-15) if entry.method == METHOD_DEFLATE else None
        self._blocks = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not len(self._pending) and not self._done:
            try:
                data = self._decode_some()
            except FormatError:
                if not self._partial:
                    raise
                data, self._done = b"", True
            self._accept(data)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _compressed(self, size: int) -> bytes:
        size = min(size, self._left)
        data = self._container._read_at(self._next, size) if size else b""
        if self._partial and data and len(data) < size:
            self._left = size = len(data)  # a member cut off: what is there is all there is
        if len(data) < size:
            raise FormatError(self._name, self._produced, f"{self._entry.compressed_size} bytes of compressed data",
                              "the end of the archive first (truncated)")
        self._next += len(data)
        self._left -= len(data)
        return data

    def _decode_some(self) -> bytes:
        method = self._entry.method
        if method == METHOD_STORE:
            data = self._compressed(_CHUNK)
            self._done = self._left == 0
            return data
        if method == METHOD_DEFLATE:
            return self._inflate()
        if self._blocks is None:
            self._blocks = alz_bzip2_blocks(self._compressed(self._left), self._name)
        block = next(self._blocks, None)
        self._done = block is None
        return block or b""

    def _inflate(self) -> bytes:
        inflater = self._inflater
        source = inflater.unconsumed_tail or self._compressed(_CHUNK)
        if not source:
            raise FormatError(self._name, self._produced, "the end of the deflate stream", "the end of the member's compressed data")
        try:
            data = inflater.decompress(source, _CHUNK)
        except zlib.error as exc:
            raise FormatError(self._name, self._produced, "valid deflate data", f"damaged data ({exc})") from None
        if inflater.eof:
            if inflater.unused_data or self._left:
                extra = len(inflater.unused_data) + self._left
                raise FormatError(self._name, self._produced + len(data), "the deflate stream to end with the member's compressed data",
                                  f"{extra} bytes after its end")
            self._done = True
        return data

    def _accept(self, data: bytes) -> None:
        entry = self._entry
        self._produced += len(data)
        self._pending = memoryview(data)
        if not self._check:
            return
        if self._produced > entry.size:
            raise FormatError(self._name, entry.size, f"{entry.size} bytes as the file header lists", "more data than that")
        self._crc = zlib.crc32(data, self._crc)
        if self._done:
            if self._produced != entry.size:
                raise FormatError(self._name, self._produced, f"{entry.size} bytes as the file header lists", f"{self._produced} bytes")
            if self._crc != entry.crc32:
                raise FormatError(self._name, self._produced, f"CRC-32 0x{entry.crc32:08x} as the file header lists",
                                  f"0x{self._crc:08x} (damaged data)")
