"""Archive containers: the files that hold source files (zip today, ALZip, gzip).

A container module holds one class with this interface (see gntkit/containers/zip.py):

    class SomeContainer:
        name = "zip"                     # registry name
        suffixes = (".zip",)             # file-name hint; content decides
        @staticmethod
        def sniff(head: bytes) -> bool   # recognise the archive by its first bytes
        def __init__(self, opener, path) # opener(): a new binary file object at offset 0
        def entries(self) -> list[tuple[str, int]]   # (inner name, size) of every file member
        def read(self, inner) -> bytes   # one whole member, checked (CRC); FormatError otherwise
        def open(self, inner)            # a binary file object streaming one member

Members are read as streams and never unpacked to disk; a container inside a container
(the ALZip inside the old HWDB1.1 zip) is opened through the outer one's `open`.
Adding a container is one module and one line in CONTAINERS.
"""

from __future__ import annotations

import importlib

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
