"""The shards of a torch run: train and validation loaders, each process's share.

`config.loader` chooses where batches come from: "host" (gntkit.datasets.torch.make_loader:
DataLoader workers, batches in pinned memory, persistent workers) or "gpu"
(gntkit.datasets.torch.GpuResidentLoader on this rank's device, holding only this rank's
share of each split). The trainer's backend copies host batches to the device one step
ahead (gntkit.datasets.torch.DevicePrefetcher).
"""

from __future__ import annotations

import gntkit.datasets as datasets
from gntkit.datasets import torch as datasets_torch
from gntkit.errors import GntkitError
from gntkit.training import batches as batch_facts
from gntkit.training.config import TrainConfig, pick_val_split
from gntkit.training.torch_trainer.device import Distributed

__all__ = ["open_loaders", "make_split_loader"]


def make_split_loader(config: TrainConfig, data_dir, split: str, batch_size: int, dist: Distributed, *, train: bool):
    """The loader of one split for this rank: host batches or GPU-resident ones (`config.loader`).

    Training shares are padded to equal length (every rank runs the same number of
    steps); validation shares are not (each sample counted once; only sums are all-reduced).

    Raises:
        GntkitError: `--loader gpu` on a device that is not a CUDA GPU.
    """
    even = "pad" if train else "none"
    if config.loader == "gpu":
        if dist.device.type != "cuda":
            raise GntkitError(f"--loader gpu keeps the data in GPU memory, found the device {dist.device} "
                              "(no CUDA GPU): use --loader host.")
        return datasets_torch.GpuResidentLoader(
            data_dir, split, batch_size, shuffle=train, seed=config.seed, device=dist.device, rank=dist.rank,
            world_size=dist.world_size, drop_last=False, even=even, hold="rank")
    return datasets_torch.make_loader(
        data_dir, split, batch_size, shuffle=train, seed=config.seed, num_workers=config.num_workers,
        rank=dist.rank, world_size=dist.world_size, drop_last=False, even=even,
        pin_memory=dist.device.type == "cuda", persistent_workers=True)


def open_loaders(config: TrainConfig, data_dir, dist: Distributed):
    """Open train/validation loaders over shards; return (train, val, data facts)."""
    train_set = datasets.open(data_dir, config.train_split)
    available = batch_facts.splits_in(data_dir)
    val_split = pick_val_split(available, config.val_split, config.train_split)
    per_rank = max(1, config.batch_size // dist.world_size)
    eval_batch = max(1, (config.eval_batch_size or 2 * config.batch_size) // dist.world_size)
    train = make_split_loader(config, data_dir, config.train_split, per_rank, dist, train=True)
    val = None
    val_samples = 0
    if val_split is not None:
        val = make_split_loader(config, data_dir, val_split, eval_batch, dist, train=False)
        val_samples = len(datasets.open(data_dir, val_split))
    facts = batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
    return train, val, facts
