"""Zip archives (the CASIA downloads): members listed from the central directory, read as streams."""

from __future__ import annotations

import zipfile
import zlib

from gntkit.errors import FormatError


class ZipContainer:
    """A zip archive's file members (see gntkit.containers for the interface).

    Args:
        opener: returns a new binary file object of the archive at offset 0.
        path: the archive's display name, used in messages.
    """

    name = "zip"
    suffixes = (".zip",)

    def __init__(self, opener, path: str):
        self.opener = opener
        self.path = str(path)

    @staticmethod
    def sniff(head: bytes) -> bool:
        """True for a local file header or an empty archive's end record."""
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")

    def _archive(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.opener())
        except zipfile.BadZipFile:
            raise FormatError(self.path, 0, "a zip archive", "bytes that are not a readable zip archive") from None

    def entries(self) -> list[tuple[str, int]]:
        """(name, uncompressed size) of every file member, in directory order."""
        with self._archive() as archive:
            return [(info.filename, info.file_size) for info in archive.infolist() if not info.is_dir()]

    def read(self, inner: str) -> bytes:
        """One member's bytes, checked against its CRC-32 and listed size.

        Raises:
            FormatError: a damaged member (CRC, deflate data) or one shorter than listed.
        """
        name = f"{self.path}:{inner}"
        try:
            with self._archive() as archive:
                size = archive.getinfo(inner).file_size
                with archive.open(inner) as stream:
                    data = stream.read()
        except zipfile.BadZipFile as exc:
            raise FormatError(name, None, "a zip member whose data matches its stored CRC-32", f"a damaged member ({exc})") from None
        except (zlib.error, EOFError) as exc:
            raise FormatError(name, None, "valid compressed data in the zip member", f"damaged data ({exc})") from None
        if len(data) != size:
            raise FormatError(name, len(data), f"{size} bytes as the zip directory lists", f"{len(data)} bytes")
        return data

    def open(self, inner: str):
        """A binary file object streaming one member (seekable; a backward seek re-inflates)."""
        archive = self._archive()
        try:
            return archive.open(inner)
        except (zipfile.BadZipFile, zlib.error) as exc:
            raise FormatError(f"{self.path}:{inner}", None, "a readable zip member", f"a damaged member ({exc})") from None
