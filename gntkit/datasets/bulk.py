"""Several shards seen as one record space for the numba kernels: one kernel call per batch."""

from __future__ import annotations

import numpy as np

__all__ = ["BulkReader"]


class BulkReader:
    """Shards 0..k-1 as one record space (0..total-1), read by their format module's kernels.

    Built per process from the shard readers (mmaps stay shared with the page cache).

    Args:
        module: the format's reader module (`gntkit.datasets.tfrecord`, `.hdf5`, `.webdataset`):
            its `prepare_bulk(bulk, readers)` adds the format's arrays, its
            `read_rows(bulk, rows, images, labels)` reads.
        readers: one `ShardReader` (or `AbsentShard` stand-in) per shard, in order.
        image_size: side S of the (S, S) images.
    """

    def __init__(self, module, readers: list, image_size: int):
        from numba.typed import List  # numba is a core dependency; typed lists carry the shard buffers into the kernels

        self.module = module
        self.readers = readers
        self.size = image_size
        counts = np.asarray([r.shard.records for r in readers], np.int64)
        self.first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.shard_of = np.repeat(np.arange(len(readers), dtype=np.int64), counts)
        self.bufs = List([r.buf for r in readers])
        self.views = [memoryview(r.buf) for r in readers]  # cheap slicing for zlib
        module.prepare_bulk(self, readers)

    def where(self, row: int) -> tuple[object, int]:
        """(shard reader, record number inside its shard) of record `row` of this record space."""
        k = int(self.shard_of[row])
        return self.readers[k], int(row - self.first[k])

    def read(self, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
        """Records `rows` of this record space into images (B, S, S) and labels (B,)."""
        self.module.read_rows(self, rows, images, labels)
