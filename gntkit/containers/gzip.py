"""Gzip files (`train-images-idx3-ubyte.gz`, `1001-c.gnt.gz`): one member, the name without `.gz`.

A gzip file holds one file, so the container lists one entry: the file's name without the
`.gz` suffix (gzip's optional FNAME field is not trusted: downloads are often renamed).
Its size comes from the ISIZE trailer (the size modulo 2**32 of the last gzip member) when
the file lies on disk, else -1 (a gzip inside a zip would have to be inflated to find it).

A gzip file cut short cannot be salvaged in part: its CRC-32 covers the whole file, so no
data before the cut can be checked. Such a file is one damaged member, whatever on_error says.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib

from gntkit.containers import ON_ERROR_CHOICES, ArchiveLoss
from gntkit.errors import FormatError, GntkitError

_MAGIC = b"\x1f\x8b"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10


class GzipContainer:
    """A gzip file's one member (see gntkit.containers for the interface).

    Args:
        opener: returns a new binary file object of the gzip file at offset 0.
        path: the file's display name (`dir/x.gz`, or `outer.zip:x.gz`), used in messages.
        on_error: "raise" or "skip"; the same for a gzip file (its one member is listed
            either way, and reading a damaged one raises FormatError).
    """

    name = "gzip"
    suffixes = (".gz",)

    def __init__(self, opener, path: str, on_error: str = "raise"):
        if on_error not in ON_ERROR_CHOICES:
            raise GntkitError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, found {on_error!r}.")
        self.opener = opener
        self.path = str(path)
        self.losses: list[ArchiveLoss] = []
        base = self.path.replace(":", "/").rsplit("/", 1)[-1]
        self.inner = base[:-3] if base.lower().endswith(".gz") else base

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True for gzip's magic bytes 1F 8B followed by method 8 (deflate)."""
        return head[:2] == _MAGIC and head[2:3] == b"\x08"

    def _size(self) -> int:
        with self.opener() as raw:
            total = _stream_size(raw)  # -1 for a stream inside another archive: no cheap way to its end
            if total < 18:  # 10-byte header + 8-byte trailer at least
                return -1
            raw.seek(total - 4)
            return struct.unpack("<I", raw.read(4))[0]

    def entries(self) -> list[tuple[str, int]]:
        """[(the name without .gz, size from ISIZE or -1)]."""
        return [(self.inner, self._size())]

    def _check_inner(self, inner: str) -> None:
        if inner != self.inner:
            raise FormatError(self.path, None, f"the member {self.inner!r} (a gzip file holds one file)", f"a request for {inner!r}")

    def read(self, inner: str) -> bytes:
        """The whole decompressed member, checked against gzip's CRC-32 and length.

        Raises:
            FormatError: not gzip data, damaged compressed data, a CRC or length mismatch,
                or a file cut short.
        """
        self._check_inner(inner)
        with self.opener() as raw:
            compressed_size = _stream_size(raw)
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return stream.read()
            except gzip.BadGzipFile as exc:
                raise FormatError(self.path, None, "valid gzip data (magic 1F 8B, deflate, matching CRC-32 and length)",
                                  f"damaged gzip data ({exc})") from None
            except EOFError:
                where = f" at byte {compressed_size}" if compressed_size >= 0 else ""
                raise FormatError(self.path, compressed_size if compressed_size >= 0 else None, "a complete gzip stream",
                                  f"the end of the file{where} before the compressed data ended (truncated)") from None
            except zlib.error as exc:
                raise FormatError(self.path, None, "valid deflate data in the gzip file", f"damaged data ({exc})") from None

    def read_unchecked(self, inner: str) -> bytes | None:
        """The member's bytes without gzip's CRC-32 and length checks (to count what a damaged
        file held), or None when its header or deflate data cannot be decoded to their end."""
        self._check_inner(inner)
        with self.opener() as raw:
            data = raw.read()
        parts, position = [], 0
        while position == 0 or data[position:position + 2] == _MAGIC:
            start = _data_offset(data, position)
            if start is None:
                return None
            inflater = zlib.decompressobj(-15)
            try:
                parts.append(inflater.decompress(data[start:]))
            except zlib.error:
                return None
            if not inflater.eof:
                return None
            position = len(data) - len(inflater.unused_data) + 8  # past the CRC-32 and ISIZE trailer
        return b"".join(parts)

    def open(self, inner: str):
        """A binary file object streaming the member (errors surface as it is read)."""
        self._check_inner(inner)
        return gzip.GzipFile(fileobj=self.opener(), mode="rb")


def _data_offset(data: bytes, position: int) -> int | None:
    """Where the deflate data of the gzip member whose header starts at `position` begins, or None."""
    if data[position:position + 3] != _MAGIC + b"\x08" or len(data) < position + 10:
        return None
    flags, cursor = data[position + 3], position + 10
    if flags & _FEXTRA:
        if len(data) < cursor + 2:
            return None
        cursor += 2 + struct.unpack_from("<H", data, cursor)[0]
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            end = data.find(b"\x00", cursor)
            if end < 0:
                return None
            cursor = end + 1
    cursor += 2 if flags & _FHCRC else 0
    return cursor if cursor <= len(data) else None


def _stream_size(raw) -> int:
    """Bytes in a file on disk, else -1."""
    try:
        return os.fstat(raw.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return -1
