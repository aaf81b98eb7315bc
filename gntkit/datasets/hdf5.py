"""Reading HDF5 shards: labels in memory; fixed-size images by a memmap gather of the raw chunks
when the dataset is stored unfiltered, else through h5py (compressed images, raw bitmaps).
h5py is imported when a shard is opened (gntkit.shards.registry names this module)."""

from __future__ import annotations

import numpy as np

from gntkit.datasets._files import check_records, readonly
from gntkit.errors import FormatError, GntkitError, require
from gntkit.formats.sources import mapped_bytes
from gntkit.kernels import shards as _kernels
from gntkit.shards.manifest import Shard

__all__ = ["ShardReader", "prepare_bulk", "read_rows", "read_strokes"]


class ShardReader:
    """One HDF5 shard: `labels` in memory, `buf` / `positions` for the memmap gather (None when h5py must read).

    Args:
        shard: the manifest's entry for the file.
        image_size: side of the fixed-size images, or None (raw bitmaps).
        compression: unused (HDF5 records its filters itself); accepted for a uniform signature.

    Raises:
        MissingDependencyError: h5py is not installed.
        FormatError: no labels, images of another shape or type, or a record count other
            than the manifest's.
    """

    def __init__(self, shard: Shard, image_size: int | None, compression: str | None = None):
        h5py = require("h5py", "h5py", "Reading HDF5 shards")  # heavy; only HDF5 users need it
        self.shard = shard
        self.image_size = image_size
        # A chunk cache as large as the shard's images: each compressed chunk is decompressed once.
        cache_bytes = max(1 << 20, shard.records * (image_size or 1) ** 2 + (1 << 20))
        self.file = h5py.File(shard.path, "r", rdcc_nbytes=cache_bytes, rdcc_nslots=100003)
        try:
            self.labels = np.asarray(self.file["labels"][:], np.int64)
        except KeyError:
            raise FormatError(str(shard.path), None, "a 'labels' dataset", "none") from None
        check_records(shard, len(self.labels))
        self.images = self.file.get("images")
        self.positions = None
        self.buf = None
        if image_size is not None:
            if self.images is None or self.images.shape[1:] != (image_size, image_size) or self.images.dtype != np.uint8:
                found = "no 'images' dataset" if self.images is None else f"{self.images.dtype} {self.images.shape}"
                raise FormatError(str(shard.path), None, f"an 'images' dataset uint8 (N, {image_size}, {image_size})", found)
            self.positions = self._raw_positions()
            if self.positions is not None:
                self.buf = readonly(mapped_bytes(shard.path))

    def _raw_positions(self) -> np.ndarray | None:
        """Byte position of each image in the file when the dataset is stored unfiltered, else None."""
        ds, n, block = self.images, self.shard.records, self.image_size ** 2
        if n == 0 or ds.id.get_create_plist().get_nfilters() != 0:
            return None
        if ds.chunks is None:
            offset = ds.id.get_offset()
            return None if offset is None else offset + np.arange(n, dtype=np.int64) * block
        rows = ds.chunks[0]
        if ds.chunks[1:] != ds.shape[1:]:
            return None
        chunk_bytes = np.full(-(-n // rows), -1, np.int64)
        for k in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(k)
            chunk_bytes[info.chunk_offset[0] // rows] = info.byte_offset
        if (chunk_bytes < 0).any():
            return None  # unwritten chunks read as fill values: leave that to h5py
        r = np.arange(n, dtype=np.int64)
        return chunk_bytes[r // rows] + (r % rows) * block

    def read(self, local: np.ndarray, out_images: np.ndarray, out_labels: np.ndarray) -> None:
        """h5py reads, for filtered (compressed) images: one slab when the records are close, else a sorted selection."""
        out_labels[:] = self.labels[local]
        order = np.argsort(local, kind="stable")
        sorted_local = local[order]
        lo, hi = int(sorted_local[0]), int(sorted_local[-1]) + 1
        if hi - lo <= 4 * len(local):
            out_images[order] = self.images[lo:hi][sorted_local - lo]
        else:
            unique, inverse = np.unique(sorted_local, return_inverse=True)
            out_images[order] = self.images[unique][inverse]

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Record j of this shard through h5py (fixed-size or raw).

        Raises:
            FormatError: a raw-mode shard without its pixel datasets.
        """
        if self.images is not None:
            return np.asarray(self.images[j]), int(self.labels[j])
        try:
            offsets = self.file["pixel_offsets"]
            start, end = int(offsets[j]), int(offsets[j + 1])
            height, width = int(self.file["heights"][j]), int(self.file["widths"][j])
            return np.asarray(self.file["pixels"][start:end]).reshape(height, width), int(self.labels[j])
        except (KeyError, ValueError) as exc:
            raise FormatError(str(self.shard.path), None, f"record {j} in 'pixels' / 'pixel_offsets' / 'heights' / 'widths'",
                              str(exc)) from None


def prepare_bulk(bulk, readers: list) -> None:
    """Give a BulkReader every image's byte position and every label, in its record space."""
    bulk.positions = np.concatenate([r.positions for r in readers]).astype(np.int64)
    bulk.labels = np.concatenate([r.labels for r in readers])


def read_rows(bulk, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """Records `rows` of a BulkReader's record space into images (B, S, S) and labels (B,): one memmap gather."""
    _kernels.gather_blocks(bulk.bufs, bulk.shard_of, bulk.positions, rows, bulk.size * bulk.size, images.reshape(len(rows), -1))
    labels[:] = bulk.labels[rows]


def read_strokes(path) -> tuple:
    """A shard's raw strokes, labels and keys straight from its datasets (gntkit.datasets.strokes).

    Returns:
        (points, point offsets, stroke lengths, stroke offsets, labels, keys).

    Raises:
        GntkitError: a shard of a conversion without --strokes.
        MissingDependencyError: h5py is not installed.
    """
    h5py = require("h5py", "h5py", "Reading HDF5 shards")
    with h5py.File(path, "r") as f:
        if "points" not in f:
            raise GntkitError(f"{path}: expected the datasets points and stroke_lengths of a conversion with --strokes, found none.")
        return (f["points"][:], f["points_offsets"][:], f["stroke_lengths"][:], f["stroke_lengths_offsets"][:],
                f["labels"][:], list(f["keys"].asstr()[:]))
