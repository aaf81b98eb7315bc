"""The compiled TensorFlow steps (`Steps`) and the epoch and validation loops over them.

A custom step (not `model.fit`) so that the schedule, label smoothing, weight
decay, augmentation, metrics, checkpoints and resume mean exactly what they
mean in the torch trainer; the epochs themselves are gntkit.training.loop's.
"""

from __future__ import annotations

import time

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training.config import TrainConfig
from gntkit.training.loop import train_epoch
from gntkit.training.tf_trainer.data import ShardSource
from gntkit.training.tf_trainer.inputs import apply_affine, host_warp, to_model_input, warp_params, with_channels
from gntkit.training.tf_trainer.placement import set_learning_rate

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras

__all__ = ["Steps", "train_one_epoch", "validate", "smoothed_cross_entropy", "distributed_batches",
           "MAX_STEPS_PER_CALL", "CALL_SECONDS"]


def smoothed_cross_entropy(labels, logits, label_smoothing: float):
    """Per-example cross entropy with torch's label smoothing (uniform mass over all classes)."""
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, tf.cast(labels, tf.int32), axis=1, batch_dims=1)
    if label_smoothing == 0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, axis=-1)


# Steps per call of the compiled training loop (one replica): at most MAX_STEPS_PER_CALL, and
# about CALL_SECONDS of work per call, so a progress bar still moves several times a second.
MAX_STEPS_PER_CALL = 32
CALL_SECONDS = 0.2

class Steps:
    """The compiled train and validation steps of one model/optimizer under a strategy.

    Also the step hooks of gntkit.training.loop (begin_epoch, distribute,
    train_step, totals). With `config.compile` the per-replica step is compiled by XLA.

    `host_warp`: with augmentation on a CPU and one replica, train_step warps each batch on
    the host (`host_warp`, a numba kernel) and the compiled step gets float32 images in
    [0, 1]; the in-graph warp (stateless TF draws, a sampling grid and a gather) cost
    TensorFlow about as much time as bf16 saved on the 2-core CPU (docs/benchmarks.md).
    On GPUs and with several replicas the step warps in the graph.

    Args:
        on_gpu: whether the strategy computes on GPUs; None: ask the strategy (the default
            strategy computes on a GPU when TensorFlow sees one).
    """

    def __init__(self, model, optimizer, config: TrainConfig, strategy, top_k: int = 5, on_gpu: bool | None = None):
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.strategy = strategy
        self.top_k = top_k
        self.channels = int(model.inputs[0].shape[-1]) if getattr(model, "inputs", None) else 1
        self.loss_scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        replica = tf.function(self._replica_train, jit_compile=True) if config.compile else self._replica_train
        self._replica_fn = replica
        self.train_step_fn = tf.function(self._train_step, reduce_retracing=True)
        self.train_steps_fn = tf.function(self._train_steps, reduce_retracing=True)
        self.eval_step = tf.function(self._eval_step, reduce_retracing=True)
        self.epoch, self.sums, self.pending = 0, np.zeros(3), []
        self.eval_model = model  # TFBackend puts a float32 twin here under a mixed policy
        # Several steps per call of the compiled function (one replica only): see train_step.
        self.max_steps_per_call = MAX_STEPS_PER_CALL if strategy.num_replicas_in_sync == 1 else 1
        self.steps_per_call = 1
        self.queue: list = []
        self._calls_seen = 0
        on_gpu = _strategy_on_gpu(strategy) if on_gpu is None else bool(on_gpu)
        self.host_warp = bool(config.augment) and not on_gpu and strategy.num_replicas_in_sync == 1
        # Several CPU replicas (MultiWorkerMirroredStrategy on CPU hosts): batches from the host
        # are warped whole, as one process would warp them, before the strategy splits them.
        self.host_warp_global = bool(config.augment) and not on_gpu and strategy.num_replicas_in_sync > 1

    def _replica_train(self, images, labels, seed):
        labels = tf.cast(labels, tf.int64)
        # float32 images were warped on the host (host_warp) and are in [0, 1]: tf.function
        # traces a second variant for them, which neither scales nor warps again.
        warped = images.dtype == tf.float32
        x = with_channels(images, self.channels) if warped else to_model_input(images, self.channels)
        if self.config.augment and not warped:
            # Draw the warps of the whole global batch and keep this replica's contiguous share,
            # so that the split over replicas does not change which sample gets which warp.
            ctx = tf.distribute.get_replica_context()
            replica = tf.cast(ctx.replica_id_in_sync_group if ctx else 0, tf.int32)
            n = tf.shape(x)[0]
            matrices, offsets = warp_params(n * self.strategy.num_replicas_in_sync, seed, x.shape[1])
            share = tf.range(replica * n, (replica + 1) * n)
            x = apply_affine(x, tf.gather(matrices, share), None if offsets is None else tf.gather(offsets, share))
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            per_example = smoothed_cross_entropy(labels, logits, self.config.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.optimizer.scale_loss(loss) if self.loss_scale else loss
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float64))
        return (tf.reduce_sum(tf.cast(per_example, tf.float64)), correct,
                tf.cast(tf.shape(labels)[0], tf.float64))

    def _train_step(self, images, labels, seed, lr):
        # The learning rate is set inside the compiled step: an eager assignment per step (the
        # cosine schedule changes it every step) cost as much as a small layer.
        set_learning_rate(self.optimizer, lr)
        per_replica = self.strategy.run(self._replica_fn, args=(images, labels, seed))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    def _train_steps(self, images, labels, seeds, lrs):
        # K optimizer steps in one call (one replica): images (K, B, ...), labels (K, B), seeds
        # (K, 2), lrs (K,); step k is exactly _train_step(images[k], labels[k], seeds[k], lrs[k]).
        sums = tf.zeros([3], tf.float64)
        for k in tf.range(tf.shape(images)[0]):
            set_learning_rate(self.optimizer, lrs[k])
            sums += tf.stack(self._replica_fn(images[k], labels[k], seeds[k]))
        return tf.unstack(sums)

    def _replica_eval(self, images, labels):
        logits = tf.cast(self.eval_model(to_model_input(images, self.channels), training=False), tf.float32)
        labels = tf.cast(labels, tf.int64)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        k = min(self.top_k, int(logits.shape[-1]))
        top = tf.math.top_k(logits, k=k).indices
        hits = tf.equal(tf.cast(top, tf.int64), labels[:, None])
        return (tf.reduce_sum(tf.cast(loss, tf.float64)),
                tf.reduce_sum(tf.cast(hits[:, 0], tf.float64)),
                tf.reduce_sum(tf.cast(tf.reduce_any(hits, axis=1), tf.float64)),
                tf.cast(tf.shape(labels)[0], tf.float64))

    def _eval_step(self, images, labels):
        per_replica = self.strategy.run(self._replica_eval, args=(images, labels))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    # step hooks of gntkit.training.loop ------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Reseed dropout for `epoch` and zero the running sums."""
        self.epoch = epoch
        _seed_dropout(self.model, self.config, epoch)
        self.sums, self.pending = np.zeros(3), []
        self._seed_base = _epoch_seed_base(self.config, epoch)  # once per epoch, not per step

    def distribute(self, batches):
        """Batches under the strategy (global batches split over replicas).

        With `host_warp_global`, each global batch from a host iterable is warped on the host
        (`host_warp` with the batch's index) before the split, so every replica trains on its
        share of the very pixels a one-process run warps; tf.data sources keep the in-graph warp.
        """
        if self.host_warp_global and not isinstance(batches, (tf.data.Dataset, ShardSource)) \
                and not isinstance(batches, tf.distribute.DistributedDataset):
            seed, epoch = self.config.seed, self.epoch
            source = batches

            class _Warped:
                def __iter__(self):
                    for i, (images, labels) in enumerate(source):
                        yield host_warp(images, seed, epoch, i), labels

            batches = _Warped()
        return distributed_batches(self.strategy, batches)

    def train_step(self, images, labels, lr: float, index: int) -> None:
        """One optimizer step (batch `index` of the epoch); sums stay as tensors until `totals`.

        On one replica, steps are queued and run `steps_per_call` at a time in one call of a
        compiled loop (`_train_steps`), as keras' steps_per_execution does: each call of a
        compiled function from Python costs about as much as a small layer, and a small
        network on 28 x 28 digits spends a tenth of its step there (docs/benchmarks.md).
        Every step keeps its own learning rate and seed, so the result does not
        depend on how steps are grouped. `steps_per_call` adapts so that a call takes about
        CALL_SECONDS: a slow step (a large network on a CPU) still runs one at a time and the
        progress bar stays live. With `host_warp` the batch is warped here, before it is
        queued, and the queue holds float32 images in [0, 1] (as does a float32 batch given
        here: the step takes float32 images as scaled already).
        """
        seed = np.array([self._seed_base, index], np.int32)
        if self.host_warp:
            images = host_warp(images, self.config.seed, self.epoch, index)
        if self.max_steps_per_call == 1:
            self.pending.append(self.train_step_fn(images, labels, seed, np.float32(lr)))
        else:
            if self.queue and tuple(np.shape(images)) != tuple(np.shape(self.queue[0][0])):
                self._run_queue()  # a batch of another size (the epoch's last) runs apart
            self.queue.append((images, labels, seed, lr))
            if len(self.queue) >= self.steps_per_call:
                self._run_queue()
        if len(self.pending) >= 64:
            self._fold()

    def _run_queue(self) -> None:
        """Run the queued steps: one call of the single step, or of the compiled loop over them."""
        queue, self.queue = self.queue, []
        if not queue:
            return
        started = time.perf_counter()
        if len(queue) == 1:
            images, labels, seed, lr = queue[0]
            self.pending.append(self.train_step_fn(images, labels, seed, np.float32(lr)))
        else:
            stack = tf.stack if any(tf.is_tensor(q[0]) for q in queue) else np.stack
            images = stack([q[0] for q in queue])
            labels = stack([q[1] for q in queue])
            seeds = np.stack([q[2] for q in queue])
            lrs = np.array([q[3] for q in queue], np.float32)
            self.pending.append(self.train_steps_fn(images, labels, seeds, lrs))
        per_step = (time.perf_counter() - started) / len(queue)
        # The first calls include tracing: adapt only from what a traced call costs.
        if self._calls_seen >= 2:
            wanted = int(CALL_SECONDS / max(per_step, 1e-6))
            self.steps_per_call = max(1, min(self.max_steps_per_call, wanted))
        else:
            self.steps_per_call = min(self.max_steps_per_call, 2)
        self._calls_seen += 1

    def _fold(self) -> None:
        if self.pending:
            self.sums += np.sum([[float(v) for v in p] for p in self.pending], axis=0)
            self.pending = []

    def totals(self, reduce: bool) -> list[float]:
        """[loss sum, correct, count] so far (already summed over replicas by the strategy)."""
        self._run_queue()
        self._fold()
        return [float(v) for v in self.sums]


def _strategy_on_gpu(strategy) -> bool:
    """Whether `strategy` computes on GPUs (its devices; the default strategy's are TF's choice)."""
    try:
        devices = strategy.extended.worker_devices
    except (RuntimeError, NotImplementedError, AttributeError):
        # the default strategy has no device list: TF places the step on a GPU when it sees one
        return bool(tf.config.list_physical_devices("GPU"))
    return any("GPU" in str(device).upper() for device in devices)


def _seed_dropout(model, config: TrainConfig, epoch: int) -> None:
    """Reset every keras seed generator (dropout) to a state derived from (seed, epoch, layer).

    Keras does not put these states in checkpoints; reseeding each epoch makes a
    resumed run draw the same dropout masks as an uninterrupted one.
    """
    states = [v for v in model.variables if "seed_generator" in v.path]
    for i, v in enumerate(states):
        value = int(np.random.SeedSequence([config.seed, epoch, i, 13]).generate_state(1)[0] & 0x7FFFFFFF)
        v.assign(np.array([value, 0], dtype=v.dtype))


def _epoch_seed_base(config: TrainConfig, epoch: int) -> int:
    """The first word of every step's stateless seed in an epoch (the second is the step index)."""
    return int(np.random.SeedSequence([config.seed, epoch, 11]).generate_state(1)[0] & 0x7FFFFFFF)



def distributed_batches(strategy, batches):
    """Iterate a batch source under the strategy (splitting global batches over replicas)."""
    if isinstance(batches, (tf.distribute.DistributedDataset, ShardSource)) or hasattr(batches, "_input_workers"):
        return batches  # distributed already (a ShardSource yields per-replica values itself)
    if strategy.num_replicas_in_sync > 1:
        if not isinstance(batches, tf.data.Dataset):
            batches = _as_dataset(batches)
        return strategy.experimental_distribute_dataset(batches)
    return batches


def _as_dataset(batches):
    spec = None
    for images, _ in batches:  # peek for the image size and type (uint8, or float32 warped on the host)
        dtype = tf.float32 if np.asarray(images).dtype == np.float32 else tf.uint8
        spec = (tf.TensorSpec([None, *np.shape(images)[1:]], dtype), tf.TensorSpec([None], tf.int64))
        break
    if spec is None:
        raise GntkitError("The batch source gave no batches: expected at least one.")
    return tf.data.Dataset.from_generator(lambda: ((np.asarray(x), np.asarray(y, np.int64)) for x, y in batches),
                                          output_signature=spec)


def train_one_epoch(steps: Steps, batches, config: TrainConfig, *, epoch: int, steps_per_epoch: int,
                    progress=None) -> dict:
    """Train one epoch; return {"loss", "accuracy", "images", "seconds", "lr", "steps"}.

    The epoch is gntkit.training.loop.train_epoch over `steps`.

    Raises:
        GntkitError: no batches, or the loss became NaN or infinite (the run diverged).
    """
    return train_epoch(steps, batches, config, epoch=epoch, steps_per_epoch=steps_per_epoch, progress=progress)


def validate(steps: Steps, batches) -> dict:
    """Evaluate on `batches`; return {"loss", "accuracy", "top5", "images"} (plain cross entropy)."""
    sums = [tf.zeros([], tf.float64)] * 4  # on the device: read once, after the last batch
    for images, labels in distributed_batches(steps.strategy, batches):
        sums = [a + b for a, b in zip(sums, steps.eval_step(images, labels))]
    loss_sum, correct, correct_k, count = (float(v) for v in sums)
    if count == 0:
        raise GntkitError("The validation split has no samples: expected at least one batch.")
    return {"loss": loss_sum / count, "accuracy": correct / count, "top5": correct_k / count, "images": int(count)}
