"""What every shard reader in gntkit.datasets shares: record index files, record counts,
read-only buffers for the numba kernels. numpy only."""

from __future__ import annotations

import numpy as np

from gntkit.errors import FormatError
from gntkit.shards.manifest import MANIFEST, Shard


def load_index(shard: Shard, size: int) -> np.ndarray | None:
    """The shard's record offsets from its `.index.npy` file (None when it has none), checked
    to be records + 1 increasing offsets within the shard's `size` bytes.

    Raises:
        FormatError: offsets that do not fit the shard.
    """
    if shard.index is None:
        return None
    offsets = np.load(shard.index, allow_pickle=False)
    if offsets.ndim != 1 or len(offsets) != shard.records + 1 or offsets[0] < 0 or offsets[-1] > size or (np.diff(offsets) <= 0).any():
        raise FormatError(str(shard.index), None, f"{shard.records + 1} increasing byte offsets within {size} bytes",
                          f"{len(offsets)} offsets from {offsets[:1].tolist()} to {offsets[-1:].tolist()}")
    return offsets.astype(np.int64)


def check_records(shard: Shard, found: int) -> None:
    """Raise FormatError unless the shard holds the record count its manifest entry lists."""
    if found != shard.records:
        raise FormatError(str(shard.path), None, f"{shard.records} records (as {MANIFEST} says)", f"{found}")


def readonly(array: np.ndarray) -> np.ndarray:
    """The array, marked read-only (returned for chaining)."""
    # The numba kernels take one typed list of shard buffers; every entry must have the same
    # (read-only) array type.
    array.setflags(write=False)
    return array


class AbsentShard:
    """Stand-in for a shard not fetched yet (remote sets): empty buffer, zero offsets.

    The bulk record space keeps every shard's place, so global record numbers stay
    valid; no batch reads an absent shard's records (they are fetched first).
    """

    def __init__(self, shard: Shard):
        self.shard = shard
        self.buf = readonly(np.zeros(0, np.uint8))
        self.offsets = np.zeros(shard.records + 1, np.int64)
        self.positions = np.zeros(shard.records, np.int64)
        self.labels = np.zeros(shard.records, np.int64)
