"""Archive containers: the files that hold source files (zip today, ALZip, gzip).

A container module holds one class with this interface (see gntkit/containers/zip.py):

    class SomeContainer:
        name = "zip"                     # registry name
        suffixes = (".zip",)             # file-name hint; content decides
        @staticmethod
        def sniff(head: bytes) -> bool   # recognise the archive by its first bytes
        def __init__(self, opener, path, on_error="raise")
                                         # opener(): a new binary file object at offset 0
        def entries(self) -> list[tuple[str, int]]   # (inner name, size) of every file member
        losses: list[ArchiveLoss]        # what entries() could not recover (on_error="skip")
        def read(self, inner) -> bytes   # one whole member, checked (CRC); FormatError otherwise
        def read_unchecked(self, inner) -> bytes | None
                                         # the member's bytes without the CRC check (None: undecodable)
        def open(self, inner)            # a binary file object streaming one member

Members are read as streams and never unpacked to disk; a container inside a container
(the ALZip inside the old HWDB1.1 zip) is opened through the outer one's `open`.
With on_error="raise" a damaged or truncated archive raises a FormatError when it is listed;
with on_error="skip" `entries` keeps every member before the damage that checks out and
`losses` says what was lost from where.
Adding a container is one module and one line in CONTAINERS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

ON_ERROR_CHOICES = ("raise", "skip")


@dataclass(frozen=True)
class ArchiveLoss:
    """A stretch of an archive that could not be listed (on_error="skip"): from the damage to its end.

    Attributes:
        path: the archive's display name.
        offset: byte offset in the archive where the damage starts.
        expected / found: the check that failed there, in words.
        lost_bytes: archive bytes from `offset` to the end, or -1 when the size is unknown.
        name: the member cut off or damaged there when its header could be read, else None.
        members: members lost: 1 for a named member that ends the archive, 0 when every
            member was recovered (only the directory is damaged), None when unknown.
    """

    path: str
    offset: int | None
    expected: str
    found: str
    lost_bytes: int = -1
    name: str | None = None
    members: int | None = None

    def words(self) -> str:
        """What was lost, in words: "member '1002-c.gnt'", "the rest of the archive (an unknown number of members)"."""
        if self.name is not None:
            return f"member {self.name!r}"
        count = {None: "an unknown number of members", 0: "no member"}.get(self.members, f"{self.members} member(s)")
        return f"the rest of the archive ({count})"


#: registry name -> "module:Class"; one line per container type.
CONTAINERS: dict[str, str] = {
    "zip": "gntkit.containers.zip:ZipContainer",
    "alz": "gntkit.containers.alz:AlzContainer",
    "gzip": "gntkit.containers.gzip:GzipContainer",
}


def container_class(name: str):
    """The container class registered under `name` (imported on first use)."""
    module, cls = CONTAINERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def container_classes() -> list:
    """Every registered container class, in registry order."""
    return [container_class(name) for name in CONTAINERS]


def sniff_container(head: bytes):
    """The container class whose magic bytes start `head`, or None."""
    for cls in container_classes():
        if cls.sniff(head):
            return cls
    return None


def container_by_name(name: str):
    """The container class whose suffix ends `name` (case-insensitive), or None."""
    lower = name.lower()
    for cls in container_classes():
        if lower.endswith(tuple(cls.suffixes)):
            return cls
    return None
