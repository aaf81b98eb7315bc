"""The GPU-resident loader of PyTorch batches (`GpuResidentLoader`) and the epoch bookkeeping
(`EpochState`) it shares with gntkit.datasets.torch.ShardLoader. Re-exported by gntkit.datasets.torch."""

from __future__ import annotations

import os

import numpy as np

from gntkit.datasets import as_shardset, check_count, check_even, check_rank, epoch_order, rank_share, shuffle_mode
from gntkit.errors import GntkitError, require

# torch is this module's one heavy import, with the one-sentence install hint when it is missing.
torch = require("torch", "torch", "The PyTorch GPU-resident loader (gntkit.datasets.torch_resident)")

__all__ = ["EpochState", "GpuResidentLoader", "default_rank", "rank_device", "HOLD_MODES"]

# What a GpuResidentLoader keeps in device memory (see its docstring).
HOLD_MODES = ("split", "rank")
# Records read from the shards per host-to-device copy while a loader fills its device memory.
FILL_CHUNK = 8192


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


def rank_device():
    """This process's CUDA device (the one of LOCAL_RANK under torchrun, else the current one), or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = os.environ.get("LOCAL_RANK")
    index = int(local_rank) % torch.cuda.device_count() if local_rank is not None else torch.cuda.current_device()
    return torch.device("cuda", index)


class EpochState:
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


class GpuResidentLoader(EpochState):
    """Images and labels of a split in device memory as uint8; batches are gathered by index on the device.

    Loading reads the records a chunk at a time into one (N, S, S) uint8 device tensor
    (host memory holds one chunk). Each epoch computes the order once and moves the
    rank's indices to the device; each step is one `index_select`, no CPU work.

    `hold` chooses what a rank keeps:

    - "split" (default): the whole split; each epoch's order and rank share are those of
      make_loader (`epoch_order` / `rank_share`), so the batches are make_loader's.
    - "rank": only this rank's share of the split in file order (`rank_share` with
      `even`, about 1 / world_size of the memory), reordered inside the share each epoch
      (a permutation seeded by seed and epoch for any shuffle mode, file order without);
      samples then stay on their rank across epochs. With one rank and shuffle True or
      False both modes give the same batches.

    Args:
        source, split: as in make_loader.
        batch_size, shuffle, seed, rank, world_size, drop_last, even: as in make_loader.
        device: where the images live (default: `rank_device()`, the GPU of LOCAL_RANK
            under torchrun, else the current CUDA device, else the CPU).
        hold: "split" or "rank" (above).

    Raises:
        GntkitError: bad arguments, raw-mode shards, or see `gntkit.datasets.open`.
    """

    def __init__(self, source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0, device=None,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False, even: str = "pad",
                 hold: str = "split"):
        self.shards = as_shardset(source, split)
        size = self.shards._require_fixed_size("GpuResidentLoader")
        self.batch_size = check_count("batch_size", batch_size, 1)
        self.shuffle = shuffle_mode(shuffle) or False
        self.seed = check_count("seed", seed)
        self.rank, self.world_size = default_rank(rank, world_size)
        self.drop_last, self.even = bool(drop_last), check_even(even)
        if hold not in HOLD_MODES:
            raise GntkitError(f"hold must be one of {', '.join(HOLD_MODES)}, found {hold!r}.")
        self.hold = hold
        self.device = torch.device(device) if device is not None else rank_device()
        self._num_records = n = len(self.shards)
        self._batches = self.shards.num_batches(self.batch_size, self.world_size, self.drop_last, self.even, self.rank)
        held = np.arange(n, dtype=np.int64)
        if hold == "rank":
            held = rank_share(held, self.rank, self.world_size, self.even)
        self.held = held
        self.images = torch.empty((len(held), size, size), dtype=torch.uint8, device=self.device)
        self.labels = torch.empty(len(held), dtype=torch.int64, device=self.device)
        self._fill()
        self.epoch = 0
        self.batch = 0

    def _fill(self) -> None:
        """Read the held records into device memory, a chunk at a time."""
        whole = len(self.held) == self._num_records
        for start in range(0, len(self.held), FILL_CHUNK):
            stop = min(start + FILL_CHUNK, len(self.held))
            if whole:
                images, labels = self.shards.read_range(start, stop)
            else:
                images, labels = self.shards.read_batch(self.held[start:stop])
            self.images[start:stop].copy_(torch.from_numpy(images))
            self.labels[start:stop].copy_(torch.from_numpy(labels))

    def __len__(self) -> int:
        """Batches in one epoch on this rank."""
        return self._batches

    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        if self.hold == "rank":
            return len(self.held)
        return len(rank_share(np.zeros(self._num_records, np.int64), self.rank, self.world_size, self.even))

    def _rows(self) -> np.ndarray:
        """Rows of the held tensors this rank reads in the current epoch, in order."""
        if self.hold == "rank":
            return epoch_order(len(self.held), self.seed, self.epoch, "global" if self.shuffle else False)
        order = epoch_order(self._num_records, self.seed, self.epoch, self.shuffle, self.shards.shard_sizes)
        return rank_share(order, self.rank, self.world_size, self.even)

    def __iter__(self):
        share = torch.from_numpy(self._rows()).to(self.device)
        for b in range(self.batch, self._batches):
            rows = share[b * self.batch_size:(b + 1) * self.batch_size]
            self.batch = b + 1
            yield self.images.index_select(0, rows), self.labels.index_select(0, rows)
        self._finish_epoch()
