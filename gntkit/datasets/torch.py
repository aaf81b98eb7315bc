"""PyTorch adapters over gntkit shards: datasets, a batch loader, a GPU-resident loader, device helpers.

- `ShardDataset`: map-style `torch.utils.data.Dataset` (random access in every format:
  HDF5 directly, TFRecord and WebDataset through the record offsets), with bulk
  `__getitems__`; pair it with `EpochSampler` for the shared epoch semantics.
- `ShardStream`: `IterableDataset` of ready batches (uint8 (B, S, S), int64 (B,)) that
  reads each batch in bulk; with `streaming=True` it reads whole shards sequentially.
- `make_loader(...)` -> `ShardLoader`: a DataLoader over `ShardStream` with `set_epoch`,
  `state_dict` / `load_state_dict` (resume mid-epoch), persistent workers, pinned
  memory and optional transfer to a device.
- `GpuResidentLoader` (from gntkit.datasets.torch_resident): the split (or one rank's
  share of it) in device memory as uint8, batches by index on the device.
- `DevicePrefetcher`, `host_to_device` (from gntkit.datasets.torch_prefetch): batches and
  host arrays copied to the device from pinned memory without a wait, one batch ahead.
- `to_float`, `random_affine` (from gntkit.datasets.torch_ops): conversion / normalisation and light
  augmentation on the device.

Epoch order, rank split and worker split are the ones defined in `gntkit.datasets`
(the TensorFlow adapter uses the same), so both frameworks see the same samples.
"""

from __future__ import annotations

import time

import numpy as np

from gntkit.datasets import ShardSet, as_shardset, check_count, check_even, epoch_order, rank_share, shuffle_mode
from gntkit.errors import GntkitError, require

# This module is the PyTorch adapter: torch is its one heavy import, with the one-sentence
# install hint when it is missing.
torch = require("torch", "torch", "The PyTorch data loaders (gntkit.datasets.torch)")
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info  # noqa: E402 - after require's hint

from gntkit.datasets.torch_ops import random_affine, to_float  # noqa: E402 - after require's hint
from gntkit.datasets.torch_prefetch import DevicePrefetcher, host_to_device  # noqa: E402 - after require's hint
from gntkit.datasets.torch_resident import EpochState, GpuResidentLoader, default_rank, rank_device  # noqa: E402 - after require's hint

__all__ = [
    "ShardDataset",
    "EpochSampler",
    "ShardStream",
    "ShardLoader",
    "make_loader",
    "GpuResidentLoader",
    "DevicePrefetcher",
    "host_to_device",
    "rank_device",
    "to_float",
    "random_affine",
    "default_rank",
]


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
        self._position = None  # (epoch, start_batch) in shared memory, for a ShardLoader's persistent workers
        self.batches_per_epoch = self.shards.num_batches(self.batch_size, self.world_size, self.drop_last, even, self.rank)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch `epoch` next, starting at batch `start_batch` of this rank's epoch."""
        self.epoch = check_count("epoch", epoch)
        self.start_batch = check_count("start_batch", start_batch)
        if self._position is not None:
            self._position[0], self._position[1] = self.epoch, self.start_batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)

    def __iter__(self):
        if self._position is not None:  # a persistent worker: the main process set the epoch after it started
            self.epoch, self.start_batch = (int(v) for v in self._position.tolist())
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


class ShardLoader(EpochState):
    """Batches of one split for one rank, from `make_loader`.

    Iterating yields (uint8 tensor (B, S, S), int64 tensor (B,)) on `device` (CPU when
    None). A completed pass advances `epoch` by one; an interrupted pass (break, or a
    `load_state_dict`) continues where it stopped on the next iteration. `set_epoch(e)`
    starts epoch e from its first batch. With `persistent_workers` the worker processes
    (and their batch ring) live from the first pass to the loader's end and learn each
    pass's epoch and position through shared memory; an interrupted pass stops them (its
    batches in flight are dropped) and the next pass starts new ones.
    """

    def __init__(self, stream: ShardStream, num_workers: int, device, pin_memory: bool, prefetch_factor: int | None, timeout: float,
                 multiprocessing_context, persistent_workers: bool = True):
        self.stream = stream
        self.shards = stream.shards
        self.num_workers = num_workers
        self.device = device
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.timeout = timeout
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = bool(persistent_workers) and num_workers > 0
        self._loader = self._ring = None  # the persistent DataLoader and its batch ring
        self.seed, self.batch_size, self.rank, self.world_size = stream.seed, stream.batch_size, stream.rank, stream.world_size
        self.shuffle, self.drop_last, self.even = stream.shuffle, stream.drop_last, stream.even
        self._num_records = len(stream.shards)
        self.epoch = 0
        self.batch = 0

    def __len__(self) -> int:
        """Batches in one epoch on this rank (the same on every rank unless even="none")."""
        return self.stream.batches_per_epoch

    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return len(rank_share(np.zeros(self._num_records, np.int64), self.rank, self.world_size, self.even))

    def _data_loader(self):
        """(DataLoader, batch ring or None) of this pass: the persistent ones, or new ones."""
        if self._loader is not None:
            return self._loader, self._ring
        workers = self.num_workers
        extra = {"prefetch_factor": self.prefetch_factor} if workers and self.prefetch_factor else {}
        if workers and self.multiprocessing_context is not None:
            extra["multiprocessing_context"] = self.multiprocessing_context
        ring = None
        if workers:
            self.shards.prepare()  # forked workers inherit open shards and loaded kernels
            slots = (self.prefetch_factor or 2) + 2
            ring = _BatchRing(workers, slots, self.batch_size, self.shards.image_size)
        if self.persistent_workers:
            self.stream._position = torch.zeros(2, dtype=torch.int64).share_memory_()
            self.stream.set_epoch(self.epoch, self.batch)
        loader = DataLoader(self.stream, batch_size=None, num_workers=workers, collate_fn=_as_is,
                            pin_memory=self.pin_memory and ring is None, timeout=self.timeout,
                            persistent_workers=self.persistent_workers, **extra)
        if self.persistent_workers:
            self._loader, self._ring = loader, ring
        return loader, ring

    def __iter__(self):
        self.stream.set_epoch(self.epoch, self.batch)
        loader, ring = self._data_loader()
        self.stream._ring = ring
        try:
            batches = iter(loader)  # starts (or resumes) the workers, which take the stream with the ring
        finally:
            self.stream._ring = None  # the stream stays usable on its own
        finished = False
        try:
            yield from self._deliver(batches, ring)
            finished = True
        finally:
            if not finished:  # batches of the interrupted pass are in flight: the next pass starts new workers
                self._loader = self._ring = None
        self._finish_epoch()

    def _deliver(self, batches, ring):
        """The pass's batches, images copied out of the ring (pinned if asked), on `device` if set."""
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


def make_loader(source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0, num_workers: int = 0,
                rank: int | None = None, world_size: int | None = None, drop_last: bool = False, device=None, *,
                even: str = "pad", streaming: bool = False, pin_memory: bool | None = None, prefetch_factor: int | None = 4,
                timeout: float = 0, multiprocessing_context=None, persistent_workers: bool = True) -> ShardLoader:
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
        persistent_workers: keep the worker processes from one pass to the next (with
            num_workers > 0), instead of starting them for every epoch.
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
    return ShardLoader(stream, num_workers, device, bool(pin_memory), prefetch_factor, timeout, multiprocessing_context,
                       persistent_workers)
