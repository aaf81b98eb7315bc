"""Find GNT files where they are: a .gnt file, a folder tree, a .zip (members read as
streams, never unpacked to disk), or several of these at once.

Members are ordered by writer id (numerically where the id has digits), so record
order is deterministic: by writer, then by position in the file.
"""

from __future__ import annotations

import mmap
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gntkit.errors import FormatError, GntkitError

GNT_SUFFIX = ".gnt"
_WRITER_RE = re.compile(r"^([A-Za-z]*\d+)(?:-[A-Za-z]+)*$")


def writer_id_from_name(name: str) -> str:
    """Writer id from a GNT file name: `1001-c.gnt` -> "1001", `001-f.gnt` -> "001",
    `006-t.gnt` -> "006", `C001-f-f.gnt` -> "C001"; otherwise the stem with any
    character other than letters, digits, '_' and '-' replaced by '_'."""
    stem = Path(name).name
    if stem.lower().endswith(GNT_SUFFIX):
        stem = stem[: -len(GNT_SUFFIX)]
    match = _WRITER_RE.match(stem)
    if match:
        return match.group(1)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "_"


def writer_sort_key(writer_id: str) -> tuple:
    """Sort writers by the number in their id, then by the id itself."""
    digits = re.search(r"\d+", writer_id)
    return (int(digits.group()) if digits else -1, writer_id)


@dataclass(frozen=True)
class GntMember:
    """One writer's GNT file, on disk or inside a zip.

    Attributes:
        writer_id: from the file name.
        name: display name: the file path, or `archive.zip:inner/path.gnt`.
        source: the source path the user gave that holds this member.
        archive: the zip's path, or None for a plain file.
        inner: the member name inside the zip, or None.
        size: uncompressed size in bytes.
    """

    writer_id: str
    name: str
    source: str
    archive: str | None
    inner: str | None
    size: int

    def read(self, map_file: bool = True) -> np.ndarray:
        """The member's bytes as a uint8 array (one writer file, 10-30 MB in real data).

        Args:
            map_file: for a plain file, map it read-only into memory (zero-copy: pages come
                straight from the page cache) instead of copying it into a new array.

        Raises:
            FormatError: the zip member is damaged (bad CRC or deflate data) or shorter than listed.
        """
        if self.archive is None:
            try:
                if map_file:
                    return mapped_bytes(self.name)
                return np.fromfile(self.name, dtype=np.uint8)
            except OSError as exc:
                raise GntkitError(f"{self.name}: cannot read the file ({exc.strerror or exc}).") from None
        try:
            with zipfile.ZipFile(self.archive) as archive, archive.open(self.inner) as stream:
                data = stream.read()
        except zipfile.BadZipFile as exc:
            raise FormatError(self.name, None, "a zip member whose data matches its stored CRC-32", f"a damaged member ({exc})") from None
        except (zlib.error, EOFError) as exc:
            raise FormatError(self.name, None, "valid compressed data in the zip member", f"damaged data ({exc})") from None
        if len(data) != self.size:
            raise FormatError(self.name, len(data), f"{self.size} bytes as the zip directory lists", f"{len(data)} bytes")
        return np.frombuffer(data, dtype=np.uint8)


def mapped_bytes(path) -> np.ndarray:
    """Read-only uint8 view of a whole file through mmap (an empty file gives an empty array)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        # The mapping stays valid after the file is closed; numpy keeps it alive.
        return np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)


def _zip_members(path: Path, source: str) -> list[GntMember]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FormatError(str(path), 0, "a zip archive", "bytes that are not a readable zip archive") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
    members = [
        GntMember(writer_id_from_name(info.filename), f"{path}:{info.filename}", source, str(path), info.filename, info.file_size)
        for info in infos
        if info.filename.lower().endswith(GNT_SUFFIX)
    ]
    if not members:
        nested = [info.filename for info in infos if info.filename.lower().endswith((".alz", ".zip", ".rar"))]
        if nested:
            raise GntkitError(
                f"{path}: expected .gnt files inside the zip, found the archive {nested[0]!r} instead: "
                "unpack it first (ALZip .alz files need `unalz`), then point gntkit at the folder or the .gnt files."
            )
        raise GntkitError(f"{path}: expected .gnt files inside the zip, found none among its {len(infos)} members.")
    return members


def _members_of(path: Path) -> list[GntMember]:
    source = str(path)
    if not path.exists():
        raise GntkitError(f"{path}: expected a .gnt file, a folder or a .zip, found nothing at that path.")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == GNT_SUFFIX)
        members = [GntMember(writer_id_from_name(p.name), str(p), source, None, None, p.stat().st_size) for p in files]
        zips = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".zip")
        for zip_path in zips:
            members.extend(_zip_members(zip_path, source))
        if not members:
            raise GntkitError(f"{path}: expected .gnt files or zips of them in this folder, found none.")
        return members
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path) and path.suffix.lower() != GNT_SUFFIX:
        return _zip_members(path, source)
    if path.suffix.lower() == GNT_SUFFIX:
        return [GntMember(writer_id_from_name(path.name), str(path), source, None, None, path.stat().st_size)]
    if path.suffix.lower() == ".alz":
        raise GntkitError(f"{path}: expected a .gnt file, a folder or a .zip, found an ALZip archive: unpack it with `unalz` first.")
    raise GntkitError(f"{path}: expected a .gnt file, a folder or a .zip, found a {path.suffix or 'suffix-less'} file.")


def find_members(sources) -> list[GntMember]:
    """Every GNT member of the given sources, sorted by writer id.

    Args:
        sources: a path or a list of paths (.gnt files, folders, .zip archives).

    Returns:
        Members in deterministic order.

    Raises:
        GntkitError: a path that does not exist or holds no GNT files, or two files
            with the same writer id (their sample keys would collide).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise GntkitError("Expected at least one source (.gnt file, folder or .zip), found none.")
    members: list[GntMember] = []
    for source in sources:
        members.extend(_members_of(Path(source)))
    seen: dict[str, GntMember] = {}
    for member in members:
        if member.writer_id in seen:
            raise GntkitError(
                f"Writer id {member.writer_id} appears twice, in {seen[member.writer_id].name} and {member.name}: "
                "each writer's file may be given once (sample keys are writer/record)."
            )
        seen[member.writer_id] = member
    members.sort(key=lambda m: writer_sort_key(m.writer_id))
    return members
