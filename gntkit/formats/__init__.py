"""Source formats: one module per record format, found through one registry.

A format module (see gntkit/formats/gnt.py; what formats share is in gntkit/formats/base.py) defines:

    NAME = "gnt"                         # registry name, also in manifests and messages
    DESCRIPTION = "CASIA offline isolated characters (HWDB1.x)"
    DEFAULT_CHARSET = "gb2312-1"         # what `convert` uses when no charset is given
    def matches_name(name) -> bool       # file-name hint (suffix or pattern), for folders and archives
    def sniff(head: bytes, size) -> bool # recognise the file by content (magic bytes, structure)
    def writer_id(name) -> str           # writer id from the file name
    def open_file(buf, path, on_error="raise", max_side=...) -> record file
        # indexes and validates every record against the bytes present; the record file has
        # `buf`, `path`, `len()`, `index` (tag_codes, widths, heights, record_numbers, problems),
        # `gather(chosen, serial=False) -> (pixels, pixel_offsets)` (bitmaps, 255 = background)
        # and `locate(chosen, serial=False, pen_width=None) -> base.Bitmaps`: where the bitmaps
        # lie, for preprocessing to read them in place (base.BitmapFile does both for bitmaps
        # stored in the file).

and optionally `SUFFIX` (the file-name suffix, for default output names), `assemble(members) ->
members` (pair or drop files after discovery, e.g. image and label files), `native_charset(members)`
(a format whose labels carry their own class names: a base.CharsetSpec), and `POLARITY`
("dark-on-light", the CASIA scans, or "light-on-dark", MNIST).

Adding a format is one module and one line in FORMATS (or a `register_format` call); inspect,
convert, preview and synth reach it through `get_format`, `format_by_name` and `sniff_format`.
"""

from __future__ import annotations

import importlib
import re

from gntkit.containers import container_classes
from gntkit.errors import GntkitError
from gntkit.formats.base import other_magic

#: registry name -> module; one line per format. Order matters for sniffing: formats with
#: magic bytes first, then those recognised by structure alone.
FORMATS: dict[str, str] = {
    "idx": "gntkit.formats.idx",
    "dgrl": "gntkit.formats.dgrl",
    "gnt": "gntkit.formats.gnt",
    "pot": "gntkit.formats.pot",
}

_CASIA_WRITER = re.compile(r"^([A-Za-z]*\d+)(?:-[A-Za-z]+)*$")


def writer_id_from_stem(stem: str) -> str:
    """Writer id from a CASIA file name without its suffix: `1001-c` -> "1001", `001-f` -> "001",
    `C001-f-f` -> "C001", `1241` -> "1241"; otherwise the stem with any character other than
    letters, digits, '_' and '-' replaced by '_'."""
    match = _CASIA_WRITER.match(stem)
    if match:
        return match.group(1)
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "_"


def register_format(name: str, module: str) -> None:
    """Add a source format to the registry, after the built-in ones.

    Args:
        name: the format's NAME.
        module: the importable name of its module ("mypackage.myformat").

    Raises:
        GntkitError: a name already registered for another module.
    """
    if FORMATS.get(name, module) != module:
        raise GntkitError(f"register_format: format {name!r} is already registered for {FORMATS[name]}, found {module}.")
    FORMATS[name] = module


def source_suffixes() -> tuple[str, ...]:
    """The file-name suffixes of every registered format that has one (".gnt", ...), and of every container."""
    formats = (getattr(get_format(name), "SUFFIX", None) for name in FORMATS)
    return tuple(s for s in formats if s) + tuple(s for cls in container_classes() for s in cls.suffixes)


def get_format(name: str):
    """The format module registered under `name` (imported on first use).

    Raises:
        KeyError: unknown name (a bug in gntkit: names come from the registry).
    """
    return importlib.import_module(FORMATS[name])


def format_modules() -> list:
    """Every registered format module, in registry order."""
    return [get_format(name) for name in FORMATS]


def format_by_name(name: str):
    """The format whose file-name pattern matches `name`, or None."""
    for module in format_modules():
        if module.matches_name(name):
            return module
    return None


def sniff_format(head: bytes, size: int):
    """The first format that recognises these leading bytes of a file of `size` bytes, or None."""
    for module in format_modules():
        if module.sniff(head, size):
            return module
    return None


def describe_content(head: bytes, size: int) -> str:
    """What a file's first bytes say it is, in words ("a POT file (...)", "a PNG image", ...)."""
    module = sniff_format(head, size)
    if module is not None:
        return f"a {module.NAME.upper()} file ({module.DESCRIPTION})"
    what = other_magic(head)
    if what is not None:
        return what
    if size == 0:
        return "an empty file"
    return "bytes of no format gntkit reads"


def foreign_content(buf, name: str) -> str | None:
    """When a file read as format `name` is plainly something else: "a PNG image, not a GNT file",
    "a POT file (...), not a DGRL file"; None when its first bytes do not say so."""
    head = bytes(buf[:64])
    what = other_magic(head)
    if what is not None:
        return f"{what}, not a {name.upper()} file"
    other = sniff_format(head, len(buf))
    if other is not None and other.NAME != name:
        return f"a {other.NAME.upper()} file ({other.DESCRIPTION}), not a {name.upper()} file"
    return None


def source_kinds() -> str:
    """The inputs gntkit reads, for messages: ".gnt files, folders, .zip archives, ..."."""
    files = ", ".join(getattr(get_format(n), "KIND_WORDS", f".{n} files") for n in FORMATS)
    archives = ", ".join(s for cls in container_classes() for s in cls.suffixes)
    return f"{files}, folders or archives ({archives})"
