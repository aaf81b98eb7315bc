"""Find source files where they are: files, folder trees, archives (zip and the other
registered containers, read as streams, never unpacked to disk), or several at once.

Every file is matched to a format of the registry (gntkit.formats): by content for a file
the user names, by file name inside folders and archives (where the format module's own
validation then checks the bytes). Members are ordered by writer id (numerically where the
id has digits), so record order is deterministic: by writer, then by position in the file.
"""

from __future__ import annotations

import collections
import dataclasses
import mmap
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gntkit.containers import ArchiveLoss, container_by_name, container_class, sniff_container
from gntkit.errors import FormatError, GntkitError
from gntkit.formats import FORMATS, describe_content, format_by_name, get_format, sniff_format, source_kinds

_HEAD_BYTES = 64


def writer_id_from_name(name: str) -> str:
    """Writer id from a source file name, by the format its name matches (GNT rules otherwise):
    `1001-c.gnt` -> "1001", `001-f.gnt` -> "001", `C001-f-f.gnt` -> "C001"."""
    module = format_by_name(Path(name).name) or get_format("gnt")
    return module.writer_id(Path(name).name)


def writer_sort_key(writer_id: str) -> tuple:
    """Sort writers by the number in their id, then by the id itself."""
    digits = re.search(r"\d+", writer_id)
    return (int(digits.group()) if digits else -1, writer_id)


@dataclass(frozen=True)
class Member:
    """One source file of some format, on disk or inside (nested) archives.

    Attributes:
        writer_id: from the file name.
        name: display name: the file path, or `archive.zip:inner/path.gnt`
            (`outer.zip:inner.alz:1001-c.gnt` when nested).
        source: the source path the user gave that holds this member.
        archive: the outermost archive's path, or None for a plain file.
        inner: the member's name inside its innermost archive, or None.
        size: uncompressed size in bytes (-1 when the container does not say).
        format: the registry name of its format ("gnt", ...).
        layers: (container name, inner name) from the outermost archive inwards.
        companions: other members this one is read with (e.g. an image file's labels).
        key_prefix: what sample keys start with when it is not the writer id: a DGRL page's
            stem (`001-P16`, one of a writer's pages), or a writer's second format in one
            conversion (HWDB1.1 `1001-c.gnt` and OLHWDB1.1 `1001.pot` are the same person, so
            the POT keys read `1001.pot/17`).
        lost: for a stretch of a damaged archive that could not be recovered (on_error="skip"),
            the gntkit.containers.ArchiveLoss saying what was lost; reading it raises. Its
            writer id is "" when the member's name is lost too.
    """

    writer_id: str
    name: str
    source: str
    archive: str | None
    inner: str | None
    size: int
    format: str = "gnt"
    layers: tuple = ()
    companions: tuple = ()
    key_prefix: str | None = None
    lost: object = None

    @property
    def key_base(self) -> str:
        """The part of a sample key before the record number."""
        return self.key_prefix if self.key_prefix is not None else self.writer_id

    @property
    def path(self) -> str:
        """The file on disk that holds the member (itself, or its outermost archive)."""
        return self.archive if self.archive is not None else self.name

    def read(self, map_file: bool = True) -> np.ndarray:
        """The member's bytes as a uint8 array (one writer file, 10-30 MB in real data).

        Args:
            map_file: for a plain file, map it read-only into memory (zero-copy: pages come
                straight from the page cache) instead of copying it into a new array.

        Raises:
            FormatError: a damaged archive member (bad CRC or compressed data) or one shorter
                than listed.
            GntkitError: the file cannot be read.
        """
        if self.lost is not None:
            raise FormatError(self.lost.path, self.lost.offset, self.lost.expected, self.lost.found)
        if not self.layers:
            try:
                if map_file:
                    return mapped_bytes(self.name)
                return np.fromfile(self.name, dtype=np.uint8)
            except OSError as exc:
                raise GntkitError(f"{self.name}: cannot read the file ({exc.strerror or exc}).") from None
        container, lock = _shared_container(self.archive, self.layers[:-1], self.layers[-1][0])
        with lock:  # one archive stream: members are read one at a time, in order, seeking forward
            data = container.read(self.layers[-1][1])
        return np.frombuffer(data, dtype=np.uint8)

    def read_unchecked(self) -> np.ndarray | None:
        """The member's bytes without its archive's CRC check (to count what a damaged member held),
        or None when they cannot be decoded whole."""
        if not self.layers:
            try:
                return self.read()
            except GntkitError:
                return None
        container, lock = _shared_container(self.archive, self.layers[:-1], self.layers[-1][0])
        with lock:
            data = container.read_unchecked(self.layers[-1][1])
        return None if data is None else np.frombuffer(data, dtype=np.uint8)

    def format_module(self):
        """The gntkit.formats module that reads this member."""
        return get_format(self.format)


def mapped_bytes(path) -> np.ndarray:
    """Read-only uint8 view of a whole file through mmap (an empty file gives an empty array)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        # The mapping stays valid after the file is closed; numpy keeps it alive.
        return np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)


def open_container(path: str, outer_layers: tuple, kind: str, on_error: str = "skip"):
    """The container of kind `kind` found at `path` inside `outer_layers` ((kind, inner) pairs).

    on_error="raise" makes a damaged listing raise (finding members); reading members that were
    listed uses "skip", which lists the same members of an archive that lists without damage.
    """
    def opener(layers=tuple(outer_layers)):
        if not layers:
            return open(path, "rb")
        outer = open_container(path, layers[:-1], layers[-1][0])
        return outer.open(layers[-1][1])

    display = ":".join([str(path)] + [inner for _, inner in outer_layers])
    return container_class(kind)(opener, display, on_error=on_error)


_OPEN_CONTAINERS: collections.OrderedDict = collections.OrderedDict()
_OPEN_CONTAINERS_LOCK = threading.Lock()
_MAX_OPEN_CONTAINERS = 8


def _shared_container(path: str, outer_layers: tuple, kind: str):
    """One container (and its lock) per archive, reused by every member read from it.

    A new container per member would rescan the archive and, for an archive inside a zip,
    re-inflate the outer zip from its start each time: quadratic in the members of the
    1.8 GB HWDB1.1 train archive. The key holds the file's size and mtime, so a rewritten
    archive is opened afresh; the few most recent archives stay open.
    """
    stat = os.stat(path)
    key = (str(path), tuple(outer_layers), kind, stat.st_size, stat.st_mtime_ns)
    with _OPEN_CONTAINERS_LOCK:
        entry = _OPEN_CONTAINERS.get(key)
        if entry is None:
            entry = (open_container(path, outer_layers, kind), threading.Lock())
            _OPEN_CONTAINERS[key] = entry
            while len(_OPEN_CONTAINERS) > _MAX_OPEN_CONTAINERS:
                _, (old, old_lock) = _OPEN_CONTAINERS.popitem(last=False)
                with old_lock:
                    getattr(old, "close", lambda: None)()
        _OPEN_CONTAINERS.move_to_end(key)
        return entry


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES)
    except OSError as exc:
        raise GntkitError(f"{path}: cannot read the file ({exc.strerror or exc}).") from None


def _container_members(path: Path, source: str, kind: str, layers: tuple = (), on_error: str = "raise") -> list[Member]:
    """Every member of a format in a container (recursing into nested containers), and with
    on_error="skip" one lost member per stretch that could not be recovered."""
    container = open_container(str(path), layers, kind, on_error)
    try:
        entries = container.entries()
    except FormatError as exc:
        if on_error == "raise":
            raise
        entries, container.losses = [], [ArchiveLoss(container.path, exc.offset, exc.expected, exc.found)]  # nothing listable
    members, skipped = [], []
    for inner, size in entries:
        base = inner.rsplit("/", 1)[-1]
        here = layers + ((kind, inner),)
        nested = container_by_name(base)
        if nested is not None:
            members.extend(_container_members(path, source, nested.name, here, on_error))
            continue
        module = format_by_name(base)
        if module is None:
            skipped.append(inner)
            continue
        display = ":".join([str(path)] + [name for _, name in here])
        members.append(Member(module.writer_id(base), display, source, str(path), inner, size, module.NAME, here))
    members.extend(_lost_members(container, path, source, layers, members))
    if not members:
        where = ":".join([str(path)] + [name for _, name in layers])
        raise GntkitError(f"{where}: expected {source_kinds()} inside the archive, found none among its {len(entries)} members.")
    return members


def _lost_members(container, path: Path, source: str, layers: tuple, found: list[Member]) -> list[Member]:
    """A Member for each ArchiveLoss of a container: named after the lost member where its name
    is known, else after the archive (writer id "", the format of the members beside it)."""
    out = []
    for loss in container.losses:
        base = (loss.name or "").rsplit("/", 1)[-1]
        nested = container_by_name(base) if base and loss.members == 1 else None
        if nested is not None:  # an archive cut off inside this one: salvage what it still holds
            out.extend(_container_members(path, source, nested.name, layers + ((container.name, loss.name),), "skip"))
            continue
        module = format_by_name(base) if base else None
        inner = loss.name if module is not None else f"@{loss.offset}"
        here = layers + ((container.name, inner),)
        name = f"{container.path}:{loss.name}" if module is not None else container.path
        writer = module.writer_id(base) if module is not None else ""
        fmt = module.NAME if module is not None else (found[0].format if found else next(iter(FORMATS)))
        out.append(Member(writer, name, source, str(path), inner, loss.lost_bytes, fmt, here, lost=loss))
    return out


def _file_members(path: Path, source: str, named: bool, on_error: str = "raise") -> list[Member]:
    """The members of one file: itself, or an archive's contents.

    named=True: the user named this file, so its content decides what it is; inside a
    folder, files are matched by name and files of no known kind are left out.
    """
    head = _read_head(path) if named else b""
    kind = sniff_container(head) if named else None
    kind = kind or container_by_name(path.name)
    if kind is not None:
        return _container_members(path, source, kind.name, on_error=on_error)
    size = path.stat().st_size
    by_name = format_by_name(path.name)
    if not named:
        return [] if by_name is None else [Member(by_name.writer_id(path.name), str(path), source, None, None, size, by_name.NAME)]
    by_content = sniff_format(head, size)
    module = by_name or by_content
    if module is None:
        raise GntkitError(f"{path}: expected {source_kinds()}, found a {path.suffix or 'suffix-less'} file "
                          f"({describe_content(head, size)}).")
    if by_name is not None and by_content is not None and by_content is not by_name:
        raise FormatError(str(path), 0, f"a {by_name.NAME.upper()} file, as its name says", f"{describe_content(head, size)}: rename it")
    return [Member(module.writer_id(path.name), str(path), source, None, None, size, module.NAME)]


def _members_of(path: Path, on_error: str = "raise") -> list[Member]:
    source = str(path)
    if not path.exists():
        raise GntkitError(f"{path}: expected {source_kinds()}, found nothing at that path.")
    if not path.is_dir():
        return _file_members(path, source, named=True, on_error=on_error)
    members = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        members.extend(_file_members(file, source, named=False, on_error=on_error))
    if not members:
        raise GntkitError(f"{path}: expected {source_kinds()} in this folder, found none.")
    return members


def _assemble(members: list[Member]) -> list[Member]:
    """Let each format pair or filter its members (e.g. image files with their label files)."""
    by_format: dict[str, list[Member]] = {}
    for member in members:
        by_format.setdefault(member.format, []).append(member)
    out = []
    for name, group in by_format.items():
        assemble = getattr(get_format(name), "assemble", None)
        out.extend(assemble(group) if assemble is not None else group)
    return out


def find_members(sources, on_error: str = "raise") -> list[Member]:
    """Every member of the given sources, sorted by writer id.

    Args:
        sources: a path or a list of paths (source files, folders, archives).
        on_error: "raise" on a damaged or truncated archive, or "skip": keep the members
            before the damage that check out, plus a lost Member (see Member.lost) for each
            stretch that could not be recovered.

    Returns:
        Members in deterministic order.

    Raises:
        GntkitError: a path that does not exist or holds no source files, a file whose
            content is another format than its name says, or two files with the same
            writer id (their sample keys would collide).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise GntkitError(f"Expected at least one source ({source_kinds()}), found none.")
    members: list[Member] = []
    for source in sources:
        if not isinstance(source, (str, os.PathLike)):
            raise GntkitError(f"A source must be a path, found {type(source).__name__}.")
        members.extend(_members_of(Path(source), on_error))
    lost = [m for m in members if m.lost is not None]  # hold no samples: neither paired nor keyed
    members = _assemble([_with_member_key(m) for m in members if m.lost is None])
    members = _check_writers(members) + lost
    members.sort(key=lambda m: (writer_sort_key(m.writer_id), _format_rank(m.format), m.key_base))
    return members


def _with_member_key(member: Member) -> Member:
    """The member with its format's own key start, for formats that hold several files of one
    writer (a DGRL page: keys "001-P16/3", writer "001")."""
    member_key = getattr(get_format(member.format), "member_key", None)
    if member_key is None:
        return member
    return dataclasses.replace(member, key_prefix=member_key(member.inner or member.name))


def _format_rank(name: str) -> int:
    return list(FORMATS).index(name)


def _check_writers(members: list[Member]) -> list[Member]:
    """Refuse a writer given twice in one format; give a writer's other formats their own keys.

    The same writer number in two formats is the same person (CASIA numbers the offline
    and online sets alike): their samples may be mixed, each format's keys kept apart.
    """
    seen: dict[tuple, Member] = {}
    formats: dict[str, set] = {}
    for member in members:
        key = (member.key_base, member.format)
        if key in seen:
            what = "Writer id" if member.key_base == member.writer_id else "Page"
            raise GntkitError(
                f"{what} {member.key_base} appears twice, in {seen[key].name} and {member.name}: "
                "each writer's file may be given once (sample keys are writer/record)."
            )
        seen[key] = member
        formats.setdefault(member.writer_id, set()).add(member.format)
    out = []
    for member in members:
        mine = formats[member.writer_id]
        first = min(mine, key=_format_rank)
        if len(mine) > 1 and member.format != first:
            member = dataclasses.replace(member, key_prefix=f"{member.key_base}.{member.format}")
        out.append(member)
    return out
