"""PyTorch adapters over gntkit shards: datasets, a batch loader, a GPU-resident loader, device helpers.

- `ShardDataset`: map-style `torch.utils.data.Dataset` (random access in every format:
  HDF5 directly, TFRecord and WebDataset through the record offsets), with bulk
  `__getitems__`; pair it with `EpochSampler` for the shared epoch semantics.
- `ShardStream`: `IterableDataset` of ready batches (uint8 (B, S, S), int64 (B,)) that
  reads each batch in bulk; with `streaming=True` it reads whole shards sequentially.
- `make_loader(...)` -> `ShardLoader`: a DataLoader over `ShardStream` with `set_epoch`,
  `state_dict` / `load_state_dict` (resume mid-epoch) and optional transfer to a device.
- `GpuResidentLoader`: the whole split in device memory as uint8, batches by index on
  the device.
- `to_float`, `random_affine` (from gntkit.datasets.torch_ops): conversion / normalisation and light
  augmentation on the device.

Epoch order, rank split and worker split are the ones defined in `gntkit.datasets`
(the TensorFlow adapter uses the same), so both frameworks see the same samples.
"""

from __future__ import annotations

import time

import numpy as np

from gntkit.datasets import ShardSet, as_shardset, check_count, check_even, check_rank, epoch_order, rank_share, shuffle_mode
from gntkit.errors import GntkitError, require

# This module is the PyTorch adapter: torch is its one heavy import, with the one-sentence
# install hint when it is missing.
torch = require("torch", "torch", "The PyTorch data loaders (gntkit.datasets.torch)")
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info  # noqa: E402 - after require's hint

from gntkit.datasets.torch_ops import random_affine, to_float  # noqa: E402 - after require's hint

__all__ = [
    "ShardDataset",
    "EpochSampler",
    "ShardStream",
    "ShardLoader",
    "make_loader",
    "GpuResidentLoader",
    "to_float",
    "random_affine",
    "default_rank",
]


def default_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): the given values, else torch.distributed's when initialised, else (0, 1).

    Raises:
        GntkitError: only one of rank / world_size given without torch.distributed, or rank out of range.
    """
    dist = torch.distributed
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        elif rank is None and world_size is None:
            rank, world_size = 0, 1
        else:
            raise GntkitError("Give both rank and world_size (or neither, to take them from torch.distributed), "
                              f"found rank={rank}, world_size={world_size}.")
    return check_rank(rank, world_size)


class ShardDataset(Dataset):
    """Map-style dataset over one split: `dataset[i]` -> (uint8 tensor (H, W), int label).

    Every format has random access (TFRecord and WebDataset through the offsets written
    at conversion, or scanned once per shard). `__getitems__` reads a whole batch of
    indices in bulk, which the DataLoader uses when batching.

    Args:
        source: output folder or a `ShardSet`.
        split: split name (None: see `gntkit.datasets.open`).
    """

    def __init__(self, source, split: str | None = None):
        self.shards = as_shardset(source, split)

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index):
        image, label = self.shards.get(index)
        return torch.from_numpy(np.array(image)), label

    def __getitems__(self, indices):
        """Bulk read for DataLoader auto-batching: a list of (image tensor, label) pairs."""
        if self.shards.raw:
            return [self[int(i)] for i in indices]
        images, labels = self.shards.read_batch(np.asarray(indices, np.int64))
        return list(zip(torch.from_numpy(images).unbind(0), labels.tolist()))


class EpochSampler(Sampler):
    """Sampler with gntkit's epoch semantics (a seeded, epoch-dependent order; contiguous rank slices).

    Like `DistributedSampler`, but the order is `gntkit.datasets.epoch_order` and rank r
    takes the r-th contiguous slice (`rank_share`), so it matches `make_loader` and the
    TensorFlow adapter.

    Args:
        source: a ShardDataset, ShardSet, or an int (number of records).
        shuffle: True / "global", "shard" (needs a ShardSet/ShardDataset) or False.
        seed: seed of the order; rank, world_size: default from torch.distributed.
        even: "pad", "drop" or "none" (see `gntkit.datasets.rank_share`).
    """

    def __init__(self, source, shuffle=True, seed: int = 0, rank: int | None = None, world_size: int | None = None, even: str = "pad"):
        if isinstance(source, ShardDataset):
            source = source.shards
        if isinstance(source, ShardSet):
            self.n, self.shard_sizes = len(source), source.shard_sizes
        else:
            self.n, self.shard_sizes = check_count("number of records", source), None
        self.shuffle = shuffle_mode(shuffle)
        self.seed = check_count("seed", seed)
        self.rank, self.world_size = default_rank(rank, world_size)
        self.even = check_even(even)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of this epoch in the next iteration."""
        self.epoch = check_count("epoch", epoch)

    def indices(self) -> np.ndarray:
        """This rank's record indices for the current epoch."""
        order = epoch_order(self.n, self.seed, self.epoch, self.shuffle or False, self.shard_sizes)
        return rank_share(order, self.rank, self.world_size, self.even)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(rank_share(np.zeros(self.n, np.int64), self.rank, self.world_size, self.even)) if self.n else 0


class ShardStream(IterableDataset):
    """Iterable dataset of ready batches: (uint8 tensor (B, S, S), int64 tensor (B,)).

    Use it with `DataLoader(stream, batch_size=None, num_workers=k)`: worker w yields the
    rank's batches w, w + k, ...; the DataLoader takes them round-robin, so the batch
    sequence is the same for every k. `make_loader` does this for you.

    Args:
        source: output folder or ShardSet; split: split name.
        batch_size: records per batch.
        shuffle: True / "global", "shard" or False (see `gntkit.datasets.epoch_order`).
        seed: seed of the order.
        rank, world_size: this process among the ranks (default from torch.distributed).
        drop_last: drop the rank's last short batch.
        even: "pad", "drop" or "none" (see `gntkit.datasets.rank_share`).
        streaming: read whole shards sequentially (keep two decoded in memory) instead of
            random access; pair with shuffle="shard" or False.
    """

    def __init__(self, source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False, even: str = "pad",
                 streaming: bool = False):
        self.shards = as_shardset(source, split)
        self.shards._require_fixed_size("ShardStream")
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.shuffle = shuffle_mode(shuffle) or False
        self.seed = check_count("seed", seed)
        self.rank, self.world_size = default_rank(rank, world_size)
        self.drop_last = bool(drop_last)
        self.even = even
        self.streaming = bool(streaming)
        self.epoch = 0
        self.start_batch = 0
        self._ring = None  # set by ShardLoader while it starts its workers
        self.batches_per_epoch = self.shards.num_batches(self.batch_size, self.world_size, self.drop_last, even, self.rank)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch `epoch` next, starting at batch `start_batch` of this rank's epoch."""
        self.epoch = check_count("epoch", epoch)
        self.start_batch = check_count("start_batch", start_batch)

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = self.shards.batch_plan(self.batch_size, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, rank=self.rank,
                                      world_size=self.world_size, worker=worker, num_workers=workers,
                                      start_batch=self.start_batch, drop_last=self.drop_last, even=self.even)
        ring = getattr(self, "_ring", None) if info is not None else None
        ahead = self.shards._lookahead(plan)  # remote sets: the next shard downloads while this one is read
        for b, (_, indices) in enumerate(plan):
            ahead(b)
            if ring is None:
                images, labels = self.shards.read_batch(indices, streaming=self.streaming)
                yield torch.from_numpy(images), torch.from_numpy(labels)
            else:  # make_loader's workers: write into shared memory, send only the slot and the labels
                slot = ring.acquire(worker)
                _, labels = self.shards.read_batch(indices, streaming=self.streaming, out=ring.view(worker, slot, len(indices)))
                yield worker, slot, len(indices), labels


class _BatchRing:
    """Shared-memory batch slots that make_loader's workers reuse, so no batch creates shared memory.

    A DataLoader worker that returns a tensor moves it into a new shared-memory file (create,
    map, copy, send the descriptor, unmap), which costs more than reading the batch. Here each
    worker owns `slots` image buffers allocated once per pass; it waits until its next slot is
    free, reads the batch into it and sends (worker, slot, count, labels). The main process
    copies the images out and frees the slot, so a batch handed to the user is never
    overwritten. The DataLoader's prefetch bounds how far a worker runs ahead, so with
    slots > prefetch_factor a worker does not wait.
    """

    def __init__(self, workers: int, slots: int, batch_size: int, size: int):
        self.images = torch.empty((workers, slots, batch_size, size, size), dtype=torch.uint8).share_memory_()
        self.busy = torch.zeros((workers, slots), dtype=torch.int32).share_memory_()
        self.slots = slots
        self._next = [0] * workers

    def acquire(self, worker: int, timeout: float = 600.0) -> int:
        """The worker's next slot, once the main process has copied out what it held."""
        slot = self._next[worker]
        self._next[worker] = (slot + 1) % self.slots
        busy = self.busy.numpy()
        deadline = time.monotonic() + timeout
        while busy[worker, slot]:
            if time.monotonic() > deadline:
                raise GntkitError(f"Data-loader worker {worker} waited {timeout:.0f} s for the main process to take its batches.")
            time.sleep(0.0002)
        busy[worker, slot] = 1
        return slot

    def view(self, worker: int, slot: int, count: int) -> np.ndarray:
        """The numpy view of a slot's first `count` images, for the worker to fill."""
        return self.images[worker, slot, :count].numpy()

    def take(self, worker: int, slot: int, count: int, pin: bool) -> torch.Tensor:
        """Copy a slot's images into a fresh tensor (pinned if asked) and free the slot."""
        source = self.images[worker, slot, :count]
        # numpy's single-threaded memcpy: torch's copy runs on the intra-op thread pool, whose
        # threads then spin for a while and take CPU from the workers.
        if pin:
            images = torch.empty(source.shape, dtype=torch.uint8, pin_memory=True)
            np.copyto(images.numpy(), source.numpy())
        else:
            images = torch.from_numpy(source.numpy().copy())
        self.busy[worker, slot] = 0
        return images


def _as_is(item):
    """collate_fn that leaves worker output alone (the default would turn numpy labels into tensors in the worker)."""
    return item


class _EpochState:
    """Epoch / position bookkeeping shared by ShardLoader and GpuResidentLoader."""

    epoch: int
    batch: int
    seed: int
    batch_size: int
    rank: int
    world_size: int

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` (its own order) at its first batch on the next iteration."""
        self.epoch = check_count("epoch", epoch)
        self.batch = 0

    def state_dict(self) -> dict:
        """Where the loader stands: epoch and the number of batches of it already delivered."""
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "shuffle": self.shuffle, "batch_size": self.batch_size,
                "rank": self.rank, "world_size": self.world_size, "num_records": self._num_records, "drop_last": self.drop_last,
                "even": self.even}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`: the next iteration yields the batch after the last one delivered.

        Raises:
            GntkitError: the state comes from a loader with a different seed, batch size,
                world size, shuffle, drop_last, even or number of records.
        """
        if not isinstance(state, dict) or "epoch" not in state or "batch" not in state:
            raise GntkitError(f"load_state_dict needs a dict from state_dict() with 'epoch' and 'batch', found {state!r:.80}.")
        mine = self.state_dict()
        for key in ("seed", "shuffle", "batch_size", "world_size", "num_records", "drop_last", "even"):
            if key in state and state[key] != mine[key]:
                raise GntkitError(f"Cannot resume: the saved loader state has {key}={state[key]!r}, this loader has {key}={mine[key]!r}.")
        self.epoch = check_count("epoch", state["epoch"])
        batch = check_count("batch", state["batch"])
        if batch > len(self):
            raise GntkitError(f"Cannot resume at batch {batch}: an epoch of this loader has {len(self)} batches.")
        self.batch = batch

    def _finish_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0


class ShardLoader(_EpochState):
    """Batches of one split for one rank, from `make_loader`.

    Iterating yields (uint8 tensor (B, S, S), int64 tensor (B,)) on `device` (CPU when
    None). A completed pass advances `epoch` by one; an interrupted pass (break, or a
    `load_state_dict`) continues where it stopped on the next iteration. `set_epoch(e)`
    starts epoch e from its first batch.
    """

    def __init__(self, stream: ShardStream, num_workers: int, device, pin_memory: bool, prefetch_factor: int | None, timeout: float,
                 multiprocessing_context):
        self.stream = stream
        self.shards = stream.shards
        self.num_workers = num_workers
        self.device = device
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.timeout = timeout
        self.multiprocessing_context = multiprocessing_context
        self.seed, self.batch_size, self.rank, self.world_size = stream.seed, stream.batch_size, stream.rank, stream.world_size
        self.shuffle, self.drop_last, self.even = stream.shuffle, stream.drop_last, stream.even
        self._num_records = len(stream.shards)
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        """Batches in one epoch on this rank (the same on every rank unless even="none")."""
        return self.stream.batches_per_epoch

    def __iter__(self):
        self.stream.set_epoch(self.epoch, self.batch)
        workers = self.num_workers
        # A new DataLoader (and batch ring) per pass: workers get the current epoch and position when they start.
        extra = {"prefetch_factor": self.prefetch_factor} if workers and self.prefetch_factor else {}
        if workers and self.multiprocessing_context is not None:
            extra["multiprocessing_context"] = self.multiprocessing_context
        ring = None
        if workers:
            self.shards.prepare()  # forked workers inherit open shards and loaded kernels
            slots = (self.prefetch_factor or 2) + 2
            ring = _BatchRing(workers, slots, self.batch_size, self.shards.image_size)
        self.stream._ring = ring
        try:
            loader = DataLoader(self.stream, batch_size=None, num_workers=workers, collate_fn=_as_is,
                                pin_memory=self.pin_memory and ring is None, timeout=self.timeout, **extra)
            batches = iter(loader)  # starts the workers, which take the stream with the ring
        finally:
            self.stream._ring = None  # the stream stays usable on its own
        for item in batches:
            if ring is not None:
                worker, slot, count, labels = item
                images, labels = ring.take(worker, slot, count, self.pin_memory), torch.from_numpy(labels)
            else:
                images, labels = item
            if self.device is not None:
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
            self.batch += 1  # counted before the yield: a delivered batch is not delivered again on resume
            yield images, labels
        self._finish_epoch()


def make_loader(source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0, num_workers: int = 0,
                rank: int | None = None, world_size: int | None = None, drop_last: bool = False, device=None, *,
                even: str = "pad", streaming: bool = False, pin_memory: bool | None = None, prefetch_factor: int | None = 4,
                timeout: float = 0, multiprocessing_context=None) -> ShardLoader:
    """A loader of (uint8 (B, S, S), int64 (B,)) batches from one split, for one rank.

    Args:
        source: output folder of `gntkit convert`, or a ShardSet.
        split: split name (None: "train", or the only split).
        batch_size: records per batch on this rank.
        shuffle: True / "global" (a new random order each epoch), "shard" (shard-local
            order for sequential reads) or False (file order).
        seed: seed of the order; with the epoch number it fixes the order everywhere.
        num_workers: DataLoader worker processes (0: read in this process). The batch
            sequence does not depend on it.
        rank, world_size: this process among the ranks; default from torch.distributed
            when it is initialised, else (0, 1).
        drop_last: drop this rank's last short batch.
        device: move batches there (`non_blocking`, pinned when it is CUDA).
        even: "pad" (default; ranks get ceil(n / world_size), wrapping to the start of the
            order), "drop" (floor(n / world_size)) or "none" (see `gntkit.datasets`).
        streaming: read whole shards sequentially instead of random access.
        pin_memory: default True when device is CUDA.
        prefetch_factor: batches each worker keeps ready.
        timeout, multiprocessing_context: passed to DataLoader.

    Returns:
        A ShardLoader: iterable, `len()`, `set_epoch`, `state_dict`, `load_state_dict`.

    Raises:
        GntkitError: bad arguments, or see `gntkit.datasets.open`.
    """
    num_workers = check_count("num_workers", num_workers)
    stream = ShardStream(source, split, batch_size, shuffle, seed, rank, world_size, drop_last, even, streaming)
    device = torch.device(device) if device is not None else None
    if pin_memory is None:
        pin_memory = device is not None and device.type == "cuda"
    return ShardLoader(stream, num_workers, device, bool(pin_memory), prefetch_factor, timeout, multiprocessing_context)


class GpuResidentLoader(_EpochState):
    """The whole split in device memory as uint8; shuffled batches are gathered by index on the device.

    Loading reads the split shard by shard into one (N, S, S) uint8 device tensor. Each
    epoch computes the order once (the same `epoch_order` / `rank_share` as make_loader,
    so the same batches) and moves the rank's indices to the device; each step is one
    `index_select`, no CPU work.

    Args:
        source, split: as in make_loader.
        batch_size, shuffle, seed, rank, world_size, drop_last, even: as in make_loader.
        device: where the images live (default: CUDA when available, else CPU).
    """

    def __init__(self, source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0, device=None,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False, even: str = "pad"):
        self.shards = as_shardset(source, split)
        size = self.shards._require_fixed_size("GpuResidentLoader")
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.shuffle = shuffle_mode(shuffle) or False
        self.seed = check_count("seed", seed)
        self.rank, self.world_size = default_rank(rank, world_size)
        self.drop_last, self.even = bool(drop_last), even
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self._num_records = n = len(self.shards)
        self._batches = self.shards.num_batches(self.batch_size, self.world_size, self.drop_last, even, self.rank)
        self.images = torch.empty((n, size, size), dtype=torch.uint8, device=self.device)
        self.labels = torch.empty(n, dtype=torch.int64, device=self.device)
        for shard in self.shards.shards:  # shard by shard: host memory holds one shard at a time
            if shard.records:
                images, labels = self.shards.read_range(shard.start, shard.start + shard.records)
                self.images[shard.start:shard.start + shard.records].copy_(torch.from_numpy(images))
                self.labels[shard.start:shard.start + shard.records].copy_(torch.from_numpy(labels))
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        """Batches in one epoch on this rank."""
        return self._batches

    def __iter__(self):
        order = epoch_order(self._num_records, self.seed, self.epoch, self.shuffle, self.shards.shard_sizes)
        share = torch.from_numpy(rank_share(order, self.rank, self.world_size, self.even)).to(self.device)
        for b in range(self.batch, self._batches):
            rows = share[b * self.batch_size:(b + 1) * self.batch_size]
            self.batch = b + 1
            yield self.images.index_select(0, rows), self.labels.index_select(0, rows)
        self._finish_epoch()
