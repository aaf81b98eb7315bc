"""Zip archives (the CASIA downloads): members listed from the central directory, read as streams.

Python's zipfile lists members from the central directory at the end of the archive, which a
download cut short lacks. With on_error="skip" such an archive (or one whose directory is
damaged) is listed by walking the local file headers from the start instead: each member's
data is inflated and checked against its CRC-32, and the walk stops at the first member that
is cut off or does not check out; `losses` says what was lost from there.
"""

from __future__ import annotations

import errno
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace

from gntkit.containers import ON_ERROR_CHOICES, ArchiveLoss
from gntkit.errors import FormatError, GntkitError

SIG_LOCAL = b"PK\x03\x04"
SIG_DIRECTORY = (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06")
SIG_DESCRIPTOR = b"PK\x07\x08"
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # signature, version, flags, method, time, date, crc, sizes, name and extra lengths
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x01, 0x08, 0x800
METHOD_STORED, METHOD_DEFLATED = 0, 8
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalEntry:
    """One member as its local file header describes it.

    Attributes:
        name: the member name.
        header_offset / data_offset: where its header and its compressed data start.
        method: 0 stored, 8 deflate.
        crc32, compressed_size, size: from the header (compressed_size -1: a data descriptor
            after the data holds them, and the deflate stream's end marks the data's end).
        zip64: the sizes are 8-byte fields (zip64 extra field), also in the data descriptor.
    """

    name: str
    header_offset: int
    data_offset: int
    method: int
    crc32: int
    compressed_size: int
    size: int
    zip64: bool = False


class ZipContainer:
    """A zip archive's file members (see gntkit.containers for the interface).

    Args:
        opener: returns a new binary file object of the archive at offset 0.
        path: the archive's display name, used in messages.
        on_error: "raise" (an unreadable directory is a FormatError) or "skip" (recover the
            members by their local headers, see the module docstring).
    """

    name = "zip"
    suffixes = (".zip",)

    def __init__(self, opener, path: str, on_error: str = "raise"):
        if on_error not in ON_ERROR_CHOICES:
            raise GntkitError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, found {on_error!r}.")
        self.opener = opener
        self.path = str(path)
        self.on_error = on_error
        self.losses: list[ArchiveLoss] = []
        self._scanned: dict[str, LocalEntry] | None = None  # set when the directory could not be used
        self._lost: dict[str, LocalEntry] = {}
        self._listed = False  # entries() has run: the directory was read, or the local headers scanned

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True for a local file header or an empty archive's end record."""
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def _archive(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.opener())
        except Exception as exc:
            if not damaged(exc):
                raise
            raise FormatError(self.path, 0, "a zip archive", "bytes that are not a readable zip archive") from None

    def entries(self) -> list[tuple[str, int]]:
        """(name, uncompressed size) of every file member, in directory order (archive order when scanned)."""
        if self._scanned is None:
            try:
                with self._archive() as archive:
                    self._listed = True
                    return [(info.filename, info.file_size) for info in archive.infolist() if not info.is_dir()]
            except FormatError as exc:
                if self.on_error == "raise":
                    raise
                self._scanned, self._lost, self.losses = scan_local_headers(self.opener, self.path, exc.found)
                self._listed = True
        return [(entry.name, entry.size) for entry in self._scanned.values() if not entry.name.endswith("/")]

    def read(self, inner: str) -> bytes:
        """One member's bytes, checked against its CRC-32 and listed size.

        Raises:
            FormatError: a damaged member (CRC, deflate data) or one shorter than listed.
        """
        if self.on_error == "skip" and not self._listed:
            self.entries()
        if self._scanned is not None:
            with self.open(inner) as stream:
                return stream.read()
        name = f"{self.path}:{inner}"
        try:
            with self._archive() as archive:
                size = archive.getinfo(inner).file_size
                with archive.open(inner) as stream:
                    data = stream.read()
        except zipfile.BadZipFile as exc:
            raise FormatError(name, None, "a zip member whose data matches its stored CRC-32", f"a damaged member ({exc})") from None
        except Exception as exc:
            if not damaged(exc):
                raise
            raise FormatError(name, None, "valid compressed data in the zip member", f"damaged data ({exc})") from None
        if len(data) != size:
            raise FormatError(name, len(data), f"{size} bytes as the zip directory lists", f"{len(data)} bytes")
        return data

    def read_unchecked(self, inner: str) -> bytes | None:
        """The member's bytes without the CRC-32 check (to count what a damaged member held),
        or None when its header or compressed data cannot be decoded whole."""
        try:
            if not self._listed:
                self.entries()
            entry = self._lost.get(inner) or (self._scanned or {}).get(inner)
            if entry is None:
                with self._archive() as archive:
                    info = archive.getinfo(inner)
                with _Source(self.opener) as source:
                    entry = replace(local_entry(source, info.header_offset, self.path), compressed_size=info.compress_size,
                                    size=info.file_size)
            with _Source(self.opener) as source:
                return _MemberStream(source, entry, f"{self.path}:{inner}", check=False).readall()
        except (GntkitError, KeyError):
            return None

    def open(self, inner: str):
        """A binary file object streaming one member (seekable; a backward seek re-inflates).

        With on_error="skip", a member cut off or damaged (see `losses`) streams the bytes it
        still has, unchecked: an archive inside it can then be salvaged in turn.
        """
        if self.on_error == "skip" and not self._listed:
            self.entries()
        if self._scanned is not None:
            entry = self._scanned.get(inner) or self._lost.get(inner)
            if entry is None:
                raise GntkitError(f"{self.path}: expected a member named {inner!r}, found none.")
            partial = inner not in self._scanned
            stream = _MemberStream(_Source(self.opener), entry, f"{self.path}:{inner}", check=not partial, owns=True, partial=partial)
            return io.BufferedReader(stream, buffer_size=_CHUNK)
        archive = self._archive()
        try:
            return _Checked(archive.open(inner), f"{self.path}:{inner}")
        except Exception as exc:
            if not damaged(exc):
                raise
            raise FormatError(f"{self.path}:{inner}", None, "a readable zip member", f"a damaged member ({exc})") from None


def damaged(exc: BaseException) -> bool:
    """True for the exceptions zipfile raises on damaged bytes (not on a failing disk): bad CRCs,
    deflate data, impossible offsets (a seek before the start), unsupported or encrypted members."""
    if isinstance(exc, OSError):
        return exc.errno == errno.EINVAL
    return isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError))


class _Checked(io.RawIOBase):
    """A zipfile member stream whose damage surfaces as FormatError, the one error type readers expect."""

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name

    def _call(self, method, *args):
        try:
            return method(*args)
        except Exception as exc:
            if not damaged(exc):
                raise
            raise FormatError(self._name, None, "a zip member whose data matches its stored CRC-32", f"a damaged member ({exc})") from None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._call(self._stream.read, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(self._stream.seek, offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def scan_local_headers(opener, path: str, directory_problem: str) -> tuple[dict, dict, list[ArchiveLoss]]:
    """Recover a zip's members by walking its local file headers from the start.

    Args:
        opener: returns a new binary file object of the archive at offset 0.
        path: the archive's display name.
        directory_problem: why the central directory could not be used, in words.

    Returns:
        (name -> LocalEntry of every member that checks out, name -> LocalEntry of a member
        whose data did not check out but could be located, the losses).
    """
    found: dict[str, LocalEntry] = {}
    with _Source(opener) as source:
        position = 0
        while True:
            signature = source.read_at(position, 4)
            if signature in SIG_DIRECTORY:
                return found, {}, [ArchiveLoss(path, position, "a readable zip central directory", directory_problem,
                                               source.size() - position, None, 0)]
            if signature != SIG_LOCAL:
                what = "the end of the archive (truncated)" if len(signature) < 4 else repr(signature)
                return found, {}, [ArchiveLoss(path, position, "a zip local file header or the central directory", what,
                                               source.size() - position)]
            try:
                entry = local_entry(source, position, path)
            except FormatError as exc:
                return found, {}, [ArchiveLoss(path, exc.offset, exc.expected, exc.found, source.size() - position)]
            try:
                entry, end = _checked_extent(source, entry, path)
            except FormatError as exc:
                return found, {entry.name: entry}, _member_losses(source, path, entry, exc)
            if entry.name in found:
                return found, {}, [ArchiveLoss(path, position, "unique member names", f"a second member named {entry.name!r}",
                                               source.size() - position)]
            found[entry.name] = entry
            position = end


def _member_losses(source, path: str, entry: LocalEntry, exc: FormatError) -> list[ArchiveLoss]:
    """The loss of a member that is cut off or does not check out, and of whatever follows it."""
    total = source.size()
    end = entry.data_offset + entry.compressed_size if entry.compressed_size >= 0 else -1
    if end < 0 or end >= total:  # the member runs to the end of the archive: it is the last one
        return [ArchiveLoss(path, entry.header_offset, exc.expected, exc.found, total - entry.header_offset, entry.name, 1)]
    losses = [ArchiveLoss(path, entry.header_offset, exc.expected, exc.found, end - entry.header_offset, entry.name, 1)]
    if source.read_at(end, 4) not in SIG_DIRECTORY:
        losses.append(ArchiveLoss(path, end, f"members after {entry.name!r}", "the walk stopped at that damaged member", total - end))
    return losses


def local_entry(source, position: int, path: str) -> LocalEntry:
    """Parse the local file header at `position` (FormatError when it is cut off or impossible)."""
    head = source.read_at(position, _LOCAL.size)
    if len(head) < _LOCAL.size:
        raise FormatError(path, position, "a 30-byte zip local file header", f"{len(head)} bytes before the end of the archive (truncated)")
    _, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = _LOCAL.unpack(head)
    tail = source.read_at(position + _LOCAL.size, name_length + extra_length)
    if len(tail) < name_length + extra_length:
        raise FormatError(path, position + _LOCAL.size, f"a {name_length}-byte name and {extra_length}-byte extra field",
                          "the end of the archive (truncated)")
    raw_name = tail[:name_length]
    name = raw_name.decode("utf-8" if flags & FLAG_UTF8 else "cp437", errors="replace")
    if flags & FLAG_ENCRYPTED:
        raise FormatError(path, position + 6, f"an unencrypted member ({name!r})", "an encrypted one")
    if method not in (METHOD_STORED, METHOD_DEFLATED):
        raise FormatError(path, position + 8, f"compression method 0 (stored) or 8 (deflate) for {name!r}", str(method))
    zip64 = False
    extra = tail[name_length:]
    while len(extra) >= 4:  # the zip64 extra field holds the real sizes when the header says 0xFFFFFFFF
        tag, length = struct.unpack_from("<HH", extra)
        if tag == 0x0001 and length >= 16:
            size, compressed = struct.unpack_from("<QQ", extra, 4)
            zip64 = True
        extra = extra[4 + length:]
    if flags & FLAG_DESCRIPTOR:
        if method == METHOD_STORED:
            raise FormatError(path, position + 6, f"sizes in the local header of stored member {name!r}", "a data descriptor only")
        compressed = -1
    return LocalEntry(name, position, position + _LOCAL.size + name_length + extra_length, method, crc, compressed, size, zip64)


def _checked_extent(source, entry: LocalEntry, path: str) -> tuple[LocalEntry, int]:
    """Decode a member whole, checking CRC-32 and size; (the entry with its real sizes, the offset after it)."""
    stream = _MemberStream(source, entry, f"{path}:{entry.name}", check=entry.compressed_size >= 0)
    while stream.read(_CHUNK):
        pass
    if entry.compressed_size >= 0:
        return entry, entry.data_offset + entry.compressed_size
    end = entry.data_offset + stream.consumed
    width = 8 if entry.zip64 else 4
    descriptor = source.read_at(end, 4 + 4 + 2 * width)
    if descriptor[:4] == SIG_DESCRIPTOR:
        descriptor = descriptor[4:] + source.read_at(end + len(descriptor), 4)
        end += 4
    if len(descriptor) < 4 + 2 * width:
        raise FormatError(f"{path}:{entry.name}", end, "a data descriptor after the compressed data", "the end of the archive (truncated)")
    crc = struct.unpack_from("<I", descriptor)[0]
    compressed = int.from_bytes(descriptor[4:4 + width], "little")
    size = int.from_bytes(descriptor[4 + width:4 + 2 * width], "little")
    entry = replace(entry, crc32=crc, compressed_size=compressed, size=size)
    if compressed != stream.consumed or size != stream.produced or crc != stream.crc:
        raise FormatError(f"{path}:{entry.name}", end, f"a data descriptor matching the data (CRC-32 0x{stream.crc:08x}, "
                          f"{stream.consumed} compressed and {stream.produced} bytes)", f"0x{crc:08x}, {compressed} and {size}")
    return entry, end + 4 + 2 * width


def stream_size(opener) -> int:
    """Bytes in the stream `opener` returns: by seeking to its end, or by reading it through
    where it cannot seek (a cut-off member's bytes)."""
    with opener() as stream:
        try:
            return stream.seek(0, io.SEEK_END)
        except (OSError, io.UnsupportedOperation):
            total = 0
            while part := stream.read(_CHUNK):
                total += len(part)
            return total


class _Source:
    """One archive stream read at offsets: forward seeks only; a backward one opens it again."""

    def __init__(self, opener):
        self.opener = opener
        self._stream, self._position = None, 0

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer only at the end of the archive)."""
        if self._stream is None or offset < self._position:
            self.close()
            self._stream, self._position = self.opener(), 0
        if offset > self._position:
            if self._stream.seekable():
                self._stream.seek(offset)
            else:
                left = offset - self._position
                while left > 0:
                    part = self._stream.read(min(left, _CHUNK))
                    if not part:
                        break
                    left -= len(part)
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

    def size(self) -> int:
        """The archive's length in bytes (error paths only: a zip member stream inflates to its end)."""
        return stream_size(self.opener)

    def close(self) -> None:
        """Close the stream (a later read opens it again)."""
        if self._stream is not None:
            self._stream.close()
        self._stream, self._position = None, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _MemberStream(io.RawIOBase):
    """Inflates one member chunk by chunk from its local header's data offset; with check=True
    the end of the data checks the size and CRC-32 the header lists."""

    def __init__(self, source: _Source, entry: LocalEntry, name: str, check: bool = True, owns: bool = False, partial: bool = False):
        self._source, self._entry, self._name, self._check, self._owns = source, entry, name, check, owns
        self._partial = partial  # a member cut off: its bytes end where its data do, without an error
        self._next, self._left = entry.data_offset, entry.compressed_size
        self._inflater = zlib.decompressobj(-15) if entry.method == METHOD_DEFLATED else None
        self._pending = memoryview(b"")
        self.consumed = self.produced = self.crc = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._owns and not self.closed:
            self._source.close()
        super().close()

    def readinto(self, buffer) -> int:
        while not len(self._pending) and not self._done:
            try:
                data = self._decode_some()
            except FormatError:
                if not self._partial:
                    raise
                data, self._done = b"", True
            self.produced += len(data)
            self.crc = zlib.crc32(data, self.crc)
            self._pending = memoryview(data)
            if self._done and self._check:
                self._verify()
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _compressed(self) -> bytes:
        size = _CHUNK if self._left < 0 else min(_CHUNK, self._left)
        data = self._source.read_at(self._next, size) if size else b""
        if self._partial and data and len(data) < size:
            self._left = len(data)  # a member cut off: what is there is all there is
        elif len(data) < size and self._left >= 0 or not data and size:
            raise FormatError(self._name, self.produced, f"{self._entry.compressed_size} bytes of compressed data"
                              if self._left >= 0 else "the end of the deflate stream", "the end of the archive first (truncated)")
        self._next += len(data)
        self._left -= len(data) if self._left >= 0 else 0
        return data

    def _decode_some(self) -> bytes:
        if self._inflater is None:
            data = self._compressed()
            self.consumed += len(data)
            self._done = self._left == 0
            return data
        source = self._inflater.unconsumed_tail or self._compressed()
        fresh = 0 if self._inflater.unconsumed_tail else len(source)
        if not source:
            raise FormatError(self._name, self.produced, "the end of the deflate stream", "the end of the member's compressed data")
        try:
            data = self._inflater.decompress(source, _CHUNK)
        except zlib.error as exc:
            raise FormatError(self._name, self.produced, "valid deflate data", f"damaged data ({exc})") from None
        self.consumed += fresh
        if self._inflater.eof:
            self.consumed -= len(self._inflater.unused_data)
            if self._left > 0 or (self._left == 0 and self._inflater.unused_data):
                raise FormatError(self._name, self.produced, "the deflate stream to end with the member's compressed data",
                                  "bytes after its end")
            self._done = True
        return data

    def _verify(self) -> None:
        entry = self._entry
        if self.produced != entry.size:
            raise FormatError(self._name, self.produced, f"{entry.size} bytes as the local header lists", f"{self.produced} bytes")
        if self.crc != entry.crc32:
            raise FormatError(self._name, self.produced, f"CRC-32 0x{entry.crc32:08x} as the local header lists",
                              f"0x{self.crc:08x} (damaged data)")
