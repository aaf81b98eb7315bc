"""The shards of a torch run: train and validation DataLoaders, each process's share."""

from __future__ import annotations

import gntkit.datasets as datasets
from gntkit.datasets import torch as datasets_torch
from gntkit.training import batches as batch_facts
from gntkit.training.config import TrainConfig, pick_val_split
from gntkit.training.torch_trainer.device import Distributed

__all__ = ["open_loaders"]


def open_loaders(config: TrainConfig, data_dir, dist: Distributed):
    """Open train/validation loaders over shards; return (train, val, data facts)."""
    train_set = datasets.open(data_dir, config.train_split)
    available = batch_facts.splits_in(data_dir)
    val_split = pick_val_split(available, config.val_split, config.train_split)
    per_rank = max(1, config.batch_size // dist.world_size)
    eval_batch = max(1, (config.eval_batch_size or 2 * config.batch_size) // dist.world_size)
    train = datasets_torch.make_loader(
        data_dir, config.train_split, per_rank, shuffle=True, seed=config.seed,
        num_workers=config.num_workers, rank=dist.rank, world_size=dist.world_size, drop_last=False)
    val = None
    val_samples = 0
    if val_split is not None:
        val = datasets_torch.make_loader(
            data_dir, val_split, eval_batch, shuffle=False, seed=config.seed,
            num_workers=config.num_workers, rank=dist.rank, world_size=dist.world_size, drop_last=False,
            even="none")  # no padding: each validation sample counted once (only sums are all-reduced)
        val_samples = len(datasets.open(data_dir, val_split))
    facts = batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
    return train, val, facts
