"""The output formats: every shard format gntkit writes and reads, defined once.

Each entry names the format's module (its `ShardWriter` subclass, `feature_spec` and the
stock reader `read_shard`), the gntkit.datasets reader module (`ShardReader`, and for bulk
batch reads `prepare_bulk` / `read_rows`), the shard file extension, the names users may
type, the compressions it supports, whether uncompressed shards get a record index, and
the optional package it needs. The CLI's choices, convert, verify, preview, warmup, demo
and the loaders all look formats up here, so a new output format is one module plus one
`register(OutputFormat(...))`.

Modules are named as strings and imported on first use: this module imports nothing
heavy, so the CLI can list the formats without loading numba, h5py or webdataset.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from gntkit.errors import GntkitError

#: the format `gntkit convert` writes when none is named
DEFAULT_FORMAT = "tfrecord"


@dataclass(frozen=True)
class OutputFormat:
    """One shard format gntkit writes and reads.

    Attributes:
        name: the canonical name ("tfrecord", "hdf5", "webdataset"), stored in manifests.
        title: how documents and help texts spell it ("TFRecord").
        extension: the shard file extension, without the dot.
        writer: the ShardWriter subclass, or "module:Class" naming it (imported on first use);
            its module also has `feature_spec(raw, image_size, strokes=, lines=)` and the stock
            reader `read_shard(path, compression=)` that yields one dict per sample.
        reader: the module that reads its shards for gntkit.datasets (`ShardReader(shard,
            image_size, compression)`; `prepare_bulk` and `read_rows` for bulk reads), or its
            dotted name (imported on first use); None for a layout that other toolkits read,
            which `gntkit.datasets.open` refuses (text lines still load through the stock
            reader: gntkit.datasets.lines).
        aliases: other names users may type (`--to h5`, a manifest's "wds").
        compressions: the compression values its writer accepts (None: uncompressed).
        has_index: uncompressed shards get a `{shard}.index.npy` of record offsets.
        tfds_names: shard names in the TFDS style (`name-split.ext-00000-of-00010`)
            instead of ending in the extension (`name-split-00000-of-00010.ext`).
        requires: the optional package its writer or readers need (None: numpy only).
        folder: a shard is a folder of files (the layouts of text-recognition toolkits) rather
            than one file; its name in the manifest is still a plain name, its size and sha256
            cover the files inside (gntkit.shards.digest.sha256_shards), and the remote reader
            refuses it.
        scratch_files: files a stock reader may add inside a folder shard (LMDB's `lock.mdb`),
            left out of its size and digest.
    """

    name: str
    title: str
    extension: str
    writer: type | str
    reader: ModuleType | str | None
    aliases: tuple[str, ...] = ()
    compressions: tuple = (None,)
    has_index: bool = False
    tfds_names: bool = False
    requires: str | None = None
    folder: bool = False
    scratch_files: tuple[str, ...] = ()

    @property
    def loadable(self) -> bool:
        """Whether gntkit.datasets.open reads this format (it has a ShardReader module)."""
        return self.reader is not None

    def writer_class(self) -> type:
        """The ShardWriter subclass (its module is imported now, on first use)."""
        if not isinstance(self.writer, str):
            return self.writer
        module, cls = self.writer.split(":")
        return getattr(importlib.import_module(module), cls)

    def writer_module(self):
        """The writer's module, which also has `feature_spec` and `read_shard` (the stock reader)."""
        if not isinstance(self.writer, str):
            return importlib.import_module(self.writer.__module__)
        return importlib.import_module(self.writer.split(":")[0])

    def reader_module(self):
        """The module that reads this format's shards for gntkit.datasets.

        Raises:
            GntkitError: a format that gntkit.datasets does not read (reader None).
        """
        if self.reader is None:
            readable = ", ".join(f.name for f in FORMATS.values() if f.loadable)
            raise GntkitError(f"{self.title} output is a layout for other toolkits: expected a format that gntkit.datasets reads "
                              f"({readable}), found {self.name} (text lines of it load with gntkit.datasets.lines.open_lines; "
                              "convert again with --to one of those to train with gntkit).")
        return importlib.import_module(self.reader) if isinstance(self.reader, str) else self.reader

    def read_shard(self, path, compression: str | None = None):
        """The stock reader: one dict per sample of a shard (see the writer module's `read_shard`)."""
        return self.writer_module().read_shard(path, compression=compression)


FORMATS: dict[str, OutputFormat] = {}


def register(fmt: OutputFormat) -> OutputFormat:
    """Add an output format; it is then known to convert, verify, the loaders and warmup.

    Raises:
        GntkitError: its name or an alias is already taken.
    """
    taken = _names()
    clash = [n for n in (fmt.name, *fmt.aliases) if n.lower() in taken]
    if clash:
        raise GntkitError(f"Output format {fmt.name!r}: expected new names, found {', '.join(map(repr, clash))} already registered.")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a registered output format (by its canonical name); unknown names are ignored."""
    FORMATS.pop(name, None)


def _names() -> dict[str, OutputFormat]:
    return {alias.lower(): f for f in FORMATS.values() for alias in (f.name, *f.aliases)}


def output_format(name) -> OutputFormat:
    """The output format for a name or alias (case-insensitive); an OutputFormat is returned as is.

    Raises:
        GntkitError: unknown name.
    """
    if isinstance(name, OutputFormat):
        return name
    found = _names().get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise GntkitError(f"Unknown shard format {name!r}: expected one of {', '.join(FORMATS)}.")
    return found


def is_known(name) -> bool:
    """Whether a name or alias (case-insensitive) names a registered output format."""
    return isinstance(name, str) and name.lower() in _names()


def get_writer_class(name: str) -> type:
    """The ShardWriter subclass of a format (by name or alias); instantiate as
    `cls(path, split=..., attrs=..., compression=...)`.

    Raises:
        GntkitError: unknown format.
    """
    return output_format(name).writer_class()


def get_format_module(name: str):
    """The module of a format's writer, with its `feature_spec` and stock reader `read_shard`.

    Raises:
        GntkitError: unknown format.
    """
    return output_format(name).writer_module()


register(OutputFormat("tfrecord", "TFRecord", "tfrecord", "gntkit.shards.tfrecord:TFRecordWriter", "gntkit.datasets.tfrecord",
                      ("tfrecords",), compressions=(None, "gzip"), has_index=True, tfds_names=True))
register(OutputFormat("hdf5", "HDF5", "h5", "gntkit.shards.hdf5:HDF5Writer", "gntkit.datasets.hdf5", ("h5",),
                      compressions=(None, "lzf", "gzip"), requires="h5py"))
register(OutputFormat("webdataset", "WebDataset", "tar", "gntkit.shards.webdataset:WebDatasetWriter", "gntkit.datasets.webdataset",
                      ("wds", "tar"), has_index=True))
# The layouts text-recognition toolkits read (deep-text-recognition-benchmark, PARSeq, MMOCR; PaddleOCR):
# a shard is a folder; gntkit reads them back with their stock readers (verify, gntkit.datasets.lines).
register(OutputFormat("lmdb", "LMDB", "lmdb", "gntkit.shards.lmdb:LMDBWriter", None, folder=True, scratch_files=("lock.mdb",),
                      requires="lmdb"))
register(OutputFormat("paddleocr", "PaddleOCR", "paddleocr", "gntkit.shards.paddleocr:PaddleOCRWriter", None, ("ppocr",), folder=True))
