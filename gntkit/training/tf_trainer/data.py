"""The shards of a TensorFlow run: per-epoch tf.data pipelines, distributed by the strategy."""

from __future__ import annotations

import gntkit.datasets as datasets
from gntkit.datasets import tf as datasets_tf
from gntkit.training import batches as batch_facts
from gntkit.training.config import TrainConfig, pick_val_split

__all__ = ["ShardSource", "open_sources"]


class ShardSource:
    """Per-epoch tf.data pipelines over shards (reshuffled by epoch), distributed by the strategy."""

    def __init__(self, data_dir, split, global_batch, shuffle, seed, strategy, count):
        self.data_dir, self.split, self.global_batch = data_dir, split, global_batch
        self.shuffle, self.seed, self.strategy, self.count = shuffle, seed, strategy, count
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch` (deterministic in seed and epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.count // self.global_batch)

    def __iter__(self):
        # (seed, epoch) fixes the order, as in the torch loader: a resumed run replays it.
        if self.strategy.num_replicas_in_sync > 1:
            def dataset_fn(ctx):
                """This replica's pipeline, at its share of the global batch."""
                per_replica = ctx.get_per_replica_batch_size(self.global_batch)
                return datasets_tf.make_dataset(self.data_dir, self.split, per_replica, shuffle=self.shuffle,
                                                seed=self.seed, epoch=self.epoch, input_context=ctx)
            return iter(self.strategy.distribute_datasets_from_function(dataset_fn))
        return iter(datasets_tf.make_dataset(self.data_dir, self.split, self.global_batch,
                                             shuffle=self.shuffle, seed=self.seed, epoch=self.epoch))


def open_sources(config: TrainConfig, data_dir, strategy):
    """Return (train ShardSource, validation ShardSource or None, data facts) over shards."""
    train_set = datasets.open(data_dir, config.train_split)
    val_split = pick_val_split(batch_facts.splits_in(data_dir), config.val_split, config.train_split)
    train = ShardSource(data_dir, config.train_split, config.batch_size, True, config.seed, strategy, len(train_set))
    val = None
    val_samples = 0
    if val_split is not None:
        val_samples = len(datasets.open(data_dir, val_split))
        val = ShardSource(data_dir, val_split, config.eval_batch_size or 2 * config.batch_size, False,
                           config.seed, strategy, val_samples)
    return train, val, batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
