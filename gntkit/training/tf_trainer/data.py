"""The shards of a TensorFlow run: per-epoch tf.data pipelines, distributed by the strategy.

One process (one device, or MirroredStrategy over the GPUs of one machine) reads the
global batches a one-replica run reads and the strategy splits each over the replicas,
so every step sees the same samples whatever the number of GPUs. Several workers
(MultiWorkerMirroredStrategy) each read their own share of the epoch
(`gntkit.datasets.rank_share`) at the per-replica batch size.

Training shares are padded to equal length (every worker runs the same number of
steps); validation shares are not (`even="none"`): each sample is counted exactly once,
and a worker whose share ends first takes part in the remaining steps with empty
batches, which the strategy's iterator provides.
"""

from __future__ import annotations

import gntkit.datasets as datasets
from gntkit.datasets import tf as datasets_tf
from gntkit.errors import GntkitError, require
from gntkit.training import batches as batch_facts
from gntkit.training.config import TrainConfig, pick_val_split

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")

__all__ = ["ShardSource", "open_sources"]


class ShardSource:
    """Per-epoch tf.data pipelines over shards (reshuffled by epoch), distributed by the strategy.

    Iterating yields what the strategy's steps take: plain batches on one replica,
    `PerReplica` values on several (the source is distributed already; see
    `distributed`).

    Args:
        data_dir, split: the shards.
        global_batch: samples per step over all replicas.
        shuffle, seed: the order (deterministic in seed and epoch, as in the torch loader).
        strategy: the run's tf.distribute strategy.
        count: records in the split.
        even: how workers share an epoch ("pad" for training, "none" for validation).
    """

    def __init__(self, data_dir, split, global_batch, shuffle, seed, strategy, count, even: str = "pad"):
        self.data_dir, self.split, self.global_batch = data_dir, split, global_batch
        self.shuffle, self.seed, self.strategy, self.count = shuffle, seed, strategy, count
        self.even = even
        self.epoch = 0
        self.workers = num_workers(strategy)

    @property
    def distributed(self) -> bool:
        """Whether iterating yields per-replica values (more than one replica)."""
        return self.strategy.num_replicas_in_sync > 1

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch` (deterministic in seed and epoch)."""
        self.epoch = epoch

    def _share(self) -> int:
        """Records of the largest worker share (all shares when padded)."""
        return -(-self.count // self.workers)

    def num_samples(self) -> int:
        """Samples per epoch over all workers (the progress bar counts the strategy's global sums)."""
        return self._share() * self.workers if self.even == "pad" else self.count

    def __len__(self) -> int:
        if self.workers == 1:
            return -(-self.count // self.global_batch)
        per_worker = self.global_batch // self.workers
        return -(-self._share() // per_worker)

    def local_batches(self):
        """The epoch's batches as one process reads them (plain, not distributed), for a look at the data."""
        return datasets_tf.make_dataset(self.data_dir, self.split, max(1, self.global_batch // self.workers),
                                        shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, even=self.even)

    def __iter__(self):
        # (seed, epoch) fixes the order, as in the torch loader: a resumed run replays it.
        if self.workers > 1:
            def dataset_fn(ctx):
                """This worker's pipeline over its share, at its replicas' share of the global batch."""
                per_replica = ctx.get_per_replica_batch_size(self.global_batch)
                return datasets_tf.make_dataset(self.data_dir, self.split, per_replica, shuffle=self.shuffle,
                                                seed=self.seed, epoch=self.epoch, input_context=ctx, even=self.even)
            return iter(self.strategy.distribute_datasets_from_function(dataset_fn))
        dataset = datasets_tf.make_dataset(self.data_dir, self.split, self.global_batch, shuffle=self.shuffle,
                                           seed=self.seed, epoch=self.epoch)
        if self.distributed:
            # One process, several replicas: each global batch is split over them, so the steps
            # see the batches of a one-replica run. The pipeline is this process's alone.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            return iter(self.strategy.experimental_distribute_dataset(dataset.with_options(options)))
        return iter(dataset)


def num_workers(strategy) -> int:
    """Input pipelines (worker processes) of `strategy`: more than one under MultiWorkerMirroredStrategy."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
        return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))
    return 1


def open_sources(config: TrainConfig, data_dir, strategy):
    """Return (train ShardSource, validation ShardSource or None, data facts) over shards.

    Raises:
        GntkitError: `--loader gpu` (a torch loader; tf.data prefetches to the devices itself).
    """
    if config.loader != "host":
        raise GntkitError("--loader gpu is a PyTorch loader: with --framework tf use --loader host "
                          "(tf.data reads the shards and prefetches to the devices).")
    train_set = datasets.open(data_dir, config.train_split)
    val_split = pick_val_split(batch_facts.splits_in(data_dir), config.val_split, config.train_split)
    train = ShardSource(data_dir, config.train_split, config.batch_size, True, config.seed, strategy, len(train_set))
    val = None
    val_samples = 0
    if val_split is not None:
        val_samples = len(datasets.open(data_dir, val_split))
        val = ShardSource(data_dir, val_split, config.eval_batch_size or 2 * config.batch_size, False,
                          config.seed, strategy, val_samples, even="none")
    return train, val, batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
