"""Epoch order, rank share, worker partition and batch plan: the one definition of an epoch that
`ShardSet` and both framework adapters (`gntkit.datasets.torch`, `gntkit.datasets.tf`) use, so
PyTorch and TensorFlow see the same samples in every epoch.

1. `epoch_order(n, seed, epoch, shuffle)` gives the epoch's order of all n records:
   identity (`shuffle=False`), a full permutation seeded by (seed, epoch)
   (`shuffle=True` or `"global"`), or shards in a permuted order with records permuted
   inside each shard (`shuffle="shard"`, for sequential streaming).
2. `rank_share(order, rank, world_size, even)` gives rank r the r-th contiguous slice.
   `even="pad"` (default, like DDP's DistributedSampler) wraps around to the start of the
   order so every rank gets ceil(n / world_size) records: at most world_size - 1 records
   repeat once per epoch. `even="drop"` drops the last n % world_size records of the
   (shuffled) order instead, so every rank gets floor(n / world_size) and none repeats.
   `even="none"` splits without padding or dropping (counts differ by at most one;
   for evaluation, not for DDP training, where unequal step counts hang).
3. The rank's records are cut into batches of batch_size (the last one short unless
   drop_last). Data-loader worker w of k produces batches w, w + k, w + 2k, ...; loaders
   hand them out round-robin, so the batch sequence does not depend on k.

numpy only.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError

__all__ = [
    "EVEN_MODES",
    "check_count",
    "check_even",
    "check_rank",
    "shuffle_mode",
    "epoch_order",
    "rank_share",
    "num_batches",
    "batch_plan",
    "partition",
]

# How ranks share an epoch whose length world_size does not divide (see rank_share).
EVEN_MODES = ("pad", "drop", "none")


def check_count(name: str, value, minimum: int = 0) -> int:
    """`value` as an int, checked to be an integer (not a bool) >= minimum.

    Args:
        name: the argument's name, for the message.
        value: the value given.
        minimum: the smallest value allowed.

    Raises:
        GntkitError: not an integer, or below minimum.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GntkitError(f"{name} must be an integer >= {minimum}, found {value!r}.")
    return int(value)


def check_rank(rank, world_size) -> tuple[int, int]:
    """(rank, world_size) as ints, checked: world_size >= 1, 0 <= rank < world_size.

    Raises:
        GntkitError: a value out of range or not an integer.
    """
    world_size = check_count("world_size", world_size, 1)
    rank = check_count("rank", rank)
    if rank >= world_size:
        raise GntkitError(f"rank must be below world_size={world_size}, found {rank}.")
    return rank, world_size


def check_even(even) -> str:
    """`even` checked to be one of EVEN_MODES ("pad", "drop", "none"); returns it.

    Raises:
        GntkitError: any other value.
    """
    if not isinstance(even, str) or even not in EVEN_MODES:
        raise GntkitError(f"even must be one of {', '.join(EVEN_MODES)}, found {even!r}.")
    return even


def shuffle_mode(shuffle) -> str | None:
    """The `shuffle` argument normalised to None (file order), "global" or "shard".

    Raises:
        GntkitError: anything but True, False, None, "none", "global" or "shard".
    """
    if shuffle is False or shuffle is None or shuffle == "none":
        return None
    if shuffle is True or shuffle == "global":
        return "global"
    if shuffle == "shard":
        return "shard"
    raise GntkitError(f"shuffle must be True, False, 'global' or 'shard', found {shuffle!r}.")


def epoch_order(n: int, seed: int, epoch: int, shuffle=True, shard_sizes=None) -> np.ndarray:
    """The order in which one epoch visits records 0..n-1 (before splitting across ranks).

    Args:
        n: number of records in the split.
        seed: non-negative integer; the same (seed, epoch) gives the same order everywhere.
        epoch: non-negative epoch number; each epoch gets a different order.
        shuffle: False (identity), True / "global" (a full random permutation), or
            "shard" (shards in random order, records permuted inside each shard; keeps
            reads within one or two shards at a time, for streaming).
        shard_sizes: records per shard, in file order; required for shuffle="shard".

    Returns:
        int64 array of the n record indices.

    Raises:
        GntkitError: a negative or non-integer argument, or shard sizes that do not add up to n.
    """
    n = check_count("n", n)
    seed = check_count("seed", seed)
    epoch = check_count("epoch", epoch)
    mode = shuffle_mode(shuffle)
    if mode is None:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    if mode == "global":
        return rng.permutation(n).astype(np.int64)
    if shard_sizes is None:
        raise GntkitError("shuffle='shard' needs shard_sizes (records per shard, in file order).")
    sizes = np.asarray(shard_sizes, dtype=np.int64)
    if sizes.ndim != 1 or (sizes < 0).any() or int(sizes.sum()) != n:
        raise GntkitError(f"shard_sizes must be non-negative and add up to n={n}, found a total of {int(sizes.sum())}.")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    parts = [starts[s] + rng.permutation(int(sizes[s])) for s in rng.permutation(len(sizes))]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def rank_share(indices, rank: int, world_size: int, even: str = "pad") -> np.ndarray:
    """The records of one rank: the rank-th contiguous slice of an epoch order.

    Args:
        indices: the epoch order (1-D integer array).
        rank: 0 <= rank < world_size.
        world_size: number of ranks (processes / GPUs).
        even: "pad" (wrap to the start so every rank gets ceil(n / world_size)),
            "drop" (drop the tail so every rank gets floor(n / world_size)) or "none".

    Returns:
        int64 array of record indices for this rank.

    Raises:
        GntkitError: bad rank / world_size / even.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1:
        raise GntkitError(f"indices must be a 1-D array, found shape {indices.shape}.")
    rank, world_size = check_rank(rank, world_size)
    even = check_even(even)
    n = len(indices)
    if even == "none":
        bounds = (np.arange(world_size + 1) * n) // world_size
        return indices[bounds[rank]:bounds[rank + 1]]
    per = -(-n // world_size) if even == "pad" else n // world_size
    if even == "pad" and per * world_size > n:
        indices = np.resize(indices, per * world_size)  # cyclic: the order, then its start again
    return indices[rank * per:(rank + 1) * per]


def num_batches(count: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches that `count` records make (a short last batch counts unless drop_last)."""
    count = check_count("count", count)
    batch_size = check_count("batch_size", batch_size, 1)
    return count // batch_size if drop_last else -(-count // batch_size)


def batch_plan(indices, rank: int = 0, world_size: int = 1, worker: int = 0, num_workers: int = 1, *,
               batch_size: int = 1, drop_last: bool = False, even: str = "pad", start_batch: int = 0) -> list[tuple[int, np.ndarray]]:
    """The batches one worker of one rank produces, as (batch number, record indices) pairs.

    The rank's share (see `rank_share`) is cut into batches; batches before `start_batch`
    are skipped (resume), and the remaining ones go round-robin to the workers:
    worker w gets remaining batches w, w + num_workers, ... . A loader that takes one
    batch from each worker in turn therefore yields batch start_batch, start_batch + 1, ...
    whatever num_workers is.

    Returns:
        list of (batch number within the rank's epoch, int64 index array).

    Raises:
        GntkitError: any argument out of range.
    """
    num_workers = check_count("num_workers", num_workers, 1)
    worker = check_count("worker", worker)
    if worker >= num_workers:
        raise GntkitError(f"worker must be below num_workers={num_workers}, found {worker}.")
    start_batch = check_count("start_batch", start_batch)
    batch_size = check_count("batch_size", batch_size, 1)
    share = rank_share(indices, rank, world_size, even)
    total = num_batches(len(share), batch_size, drop_last)
    return [(b, share[b * batch_size:(b + 1) * batch_size]) for b in range(start_batch + worker, total, num_workers)]


def partition(indices, rank: int, world_size: int, worker: int = 0, num_workers: int = 1, *,
              batch_size: int = 1, drop_last: bool = False, even: str = "pad", start_batch: int = 0) -> np.ndarray:
    """The record indices that one worker of one rank reads in an epoch, in order.

    Across ranks: no record is lost or repeated except by the documented `even` policy
    ("pad" repeats at most world_size - 1 records, "drop" leaves out at most
    world_size - 1), and every rank gets the same count. Within a rank, workers get whole
    batches round-robin (see `batch_plan`), so the order a loader yields does not depend
    on num_workers.

    Args:
        indices: the epoch order (`epoch_order(...)`).
        rank, world_size: this process's place among the ranks.
        worker, num_workers: this data-loader worker among the rank's workers.
        batch_size, drop_last: how the rank's records are cut into batches.
        even: "pad", "drop" or "none" (see `rank_share`).
        start_batch: skip the rank's first start_batch batches (resume mid-epoch).

    Returns:
        int64 array: the worker's batches concatenated.
    """
    plan = batch_plan(indices, rank, world_size, worker, num_workers, batch_size=batch_size,
                      drop_last=drop_last, even=even, start_batch=start_batch)
    return np.concatenate([idx for _, idx in plan]) if plan else np.zeros(0, np.int64)
