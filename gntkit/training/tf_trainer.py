"""The TensorFlow trainer (imports tensorflow): `main()`, `train_one_epoch()`, `validate()`.

A custom step (not `model.fit`) so that the schedule, label smoothing, weight
decay, augmentation, metrics, checkpoints and resume mean exactly what they
mean in the torch trainer; the epochs themselves are gntkit.training.loop's.
The steps take (uint8 images (B, S, S), int64 labels (B,)) batches: numpy
arrays, tensors or a `tf.data.Dataset`; conversion to float (x / 255),
augmentation and mixed precision happen on the device inside one compiled step.
On a CPU with one replica the augmentation runs on the host instead, before the
step (`Steps.host_warp`): the torch trainer's draws and a numba kernel
(gntkit.training.augment.random_warp_batch), so both trainers warp a batch alike.

Distribution uses TensorFlow's own engines: `MultiWorkerMirroredStrategy`
when TF_CONFIG names more than one worker, `MirroredStrategy` when more than
one GPU is visible, one device otherwise. Only the chief writes the run
folder (other workers write checkpoints to a temporary folder, as the
strategy requires every worker to take part in saving).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training import batches as batch_facts
from gntkit.training.augment import AUGMENT, affine_from_uniform, random_warp_batch, upsample_matrix
from gntkit.training.config import TrainConfig, pick_val_split
from gntkit.training.loop import Backend, run_training, train_epoch
from gntkit.training.run_folder import RunFolder
from gntkit.training.schedule import cpu_has_bf16, resolve_precision

# tensorflow is the one heavy framework of this module; `import gntkit.training` does not load it.
tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras

from gntkit.models.tf import count_parameters, create_model  # noqa: E402  (needs tensorflow first)

__all__ = [
    "main",
    "train_one_epoch",
    "validate",
    "predict_logits",
    "predict_probabilities",
    "load_run_model",
    "make_strategy",
    "Placement",
    "Steps",
    "TFBackend",
    "apply_affine",
    "warp_params",
    "host_warp",
]


# --- strategy and precision -------------------------------------------------------------------

class Placement:
    """Where a TF run trains: strategy, is_chief, worker index, on_gpu and a description."""

    def __init__(self, strategy, is_chief: bool, worker: int, on_gpu: bool, description: str):
        self.strategy, self.is_chief, self.worker = strategy, is_chief, worker
        self.on_gpu, self.description = on_gpu, description


def make_strategy(device: str = "auto") -> Placement:
    """Pick the distribution strategy for `device` and the TF_CONFIG environment.

    MultiWorkerMirroredStrategy when TF_CONFIG names more than one task,
    MirroredStrategy over all GPUs when more than one is visible, one GPU, or
    the CPU ("cpu" forces it).

    Raises:
        GntkitError: a GPU is asked for and none is visible, or the device name is unknown.
    """
    if not isinstance(device, str) or (device not in ("auto", "cpu", "gpu")
                                       and not device.startswith(("gpu:", "cuda"))):
        raise GntkitError(f"Unknown TensorFlow device {device!r}: expected auto, cpu, gpu or gpu:N.")
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError:
        raise GntkitError("The TF_CONFIG environment variable is not valid JSON.") from None
    cluster = tf_config.get("cluster", {})
    tasks = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    # physical, not logical: listing logical devices starts the runtime, after which
    # MultiWorkerMirroredStrategy can no longer configure its collective ops.
    gpus = tf.config.list_physical_devices("GPU")
    if tasks > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
        is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
        return Placement(strategy, is_chief, task_id, bool(gpus),
                         f"MultiWorkerMirroredStrategy ({tasks} workers, {strategy.num_replicas_in_sync} replicas)")
    if device == "cpu":
        return Placement(tf.distribute.OneDeviceStrategy("/cpu:0"), True, 0, False, "CPU")
    if device != "auto" and not gpus:
        raise GntkitError(f"device {device!r} asks for a GPU, found none visible to TensorFlow.")
    if device.startswith(("gpu:", "cuda:")):
        index = device.split(":", 1)[1]
        return Placement(tf.distribute.OneDeviceStrategy(f"/gpu:{index}"), True, 0, True, f"GPU {index}")
    if len(gpus) > 1:
        return Placement(tf.distribute.MirroredStrategy(), True, 0, True, f"MirroredStrategy ({len(gpus)} GPUs)")
    if len(gpus) == 1:
        return Placement(tf.distribute.OneDeviceStrategy("/gpu:0"), True, 0, True, "GPU 0")
    return Placement(tf.distribute.get_strategy(), True, 0, False, "CPU")


def _bf16_supported() -> bool:
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if cc and cc[0] < 8:
            return False
    return True


# "auto" uses mixed_bfloat16 on CPUs with native bf16: cnn3 at 64x64 trained about 2x faster than fp32
# on an AVX-512 BF16 CPU (benchmarks/bench_train.py, docs/benchmarks.md).
TF_CPU_AUTO_BF16 = True


def precision_policy(requested: str, on_gpu: bool) -> tuple[str | None, str]:
    """Return (keras dtype policy or None, resolved precision name)."""
    bf16 = _bf16_supported() if on_gpu else (TF_CPU_AUTO_BF16 and cpu_has_bf16())
    resolved = resolve_precision(requested, on_gpu, bf16)
    return {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[resolved], resolved


def build_optimizer(config: TrainConfig, loss_scale: bool):
    """SGD (momentum) / Adam / AdamW; the learning rate is a variable set every step.

    Weight decay is decoupled in every optimizer (keras applies
    w -= w x lr x weight_decay before each update, as torch's AdamW and gntkit's
    torch trainer do); biases and batch-norm scales and offsets are excluded.
    """
    lr = config.peak_lr
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum, weight_decay=decay)
    else:
        opt = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8, weight_decay=decay)
    if decay:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _set_lr(optimizer, value: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.learning_rate.assign(value)


# --- augmentation -------------------------------------------------------------------------

def warp_params(count, seed, size: int):
    """Random warps as gntkit.training.augment draws them, with stateless TF ops from `seed` (int32[2]).

    Returns:
        (matrices (count, 2, 3), elastic offsets (count, G, G, 2) or None), normalised units.
    """
    u = tf.random.stateless_uniform([count, 5], seed=seed, minval=-1.0, maxval=1.0)
    matrices = affine_from_uniform(u, AUGMENT, xp=tf)
    if AUGMENT.elastic_pixels <= 0:
        return matrices, None
    g = AUGMENT.elastic_grid
    v = tf.random.stateless_uniform([count, g, g, 2], seed=seed + tf.constant([0, 1 << 20], tf.int32),
                                    minval=-1.0, maxval=1.0)
    return matrices, v * (2.0 * AUGMENT.elastic_pixels / size)


def sample_grid(images, grid):
    """Bilinear sampling of float images (B, S, S, C) at normalised points grid (B, S, S, 2), zero outside.

    The same arithmetic as torch's grid_sample(align_corners=False, padding_mode="zeros"). The
    image gets a one-pixel zero border and all four corners come from one batched gather (half
    the time of four gather_nd calls: 11 vs 21 ms for 64 images of 64x64 on the 2-core CPU).
    """
    b, size, c = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[3]
    s = tf.cast(size, tf.float32)
    ix = ((grid[..., 0] + 1.0) * s - 1.0) / 2.0
    iy = ((grid[..., 1] + 1.0) * s - 1.0) / 2.0
    x0, y0 = tf.floor(ix), tf.floor(iy)
    wx, wy = ix - x0, iy - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    flat = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), [b, (size + 2) * (size + 2), c])

    def index(yy, xx):  # into the padded image; every point outside lands on the zero border
        yy, xx = tf.clip_by_value(yy + 1, 0, size + 1), tf.clip_by_value(xx + 1, 0, size + 1)
        return tf.reshape(yy * (size + 2) + xx, [b, -1])

    corners = tf.concat([index(y0, x0), index(y0, x0 + 1), index(y0 + 1, x0), index(y0 + 1, x0 + 1)], axis=1)
    values = tf.reshape(tf.gather(flat, corners, batch_dims=1), [b, 4, size, size, c])
    weights = tf.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], axis=1)[..., None]
    return tf.reduce_sum(values * weights, axis=1)


def apply_affine(images, matrices, offsets=None):
    """Warp float images (B, S, S, C) by (B, 2, 3) normalised output->input affines plus elastic offsets.

    Bilinear, zero fill; the same result as gntkit.training.torch_trainer.augment_batch.
    """
    size = images.shape[1]
    centres = tf.constant((2 * np.arange(size) + 1) / size - 1, tf.float32)
    gx, gy = tf.meshgrid(centres, centres)
    base = tf.stack([gx, gy, tf.ones_like(gx)], axis=-1)  # (S, S, 3)
    grid = tf.einsum("hwk,bjk->bhwj", base, tf.cast(matrices, tf.float32))
    if offsets is not None:
        up = tf.constant(upsample_matrix(size, int(offsets.shape[1])))
        grid += tf.einsum("hg,bgki,wk->bhwi", up, tf.cast(offsets, tf.float32), up)
    return sample_grid(tf.cast(images, tf.float32), grid)


def to_model_input(images, channels: int = 1):
    """uint8 (B, S, S) -> float32 (B, S, S, channels) in [0, 1] (inside the compiled step, on the device)."""
    return _with_channels(tf.cast(images, tf.float32) / 255.0, channels)


def _with_channels(x, channels: int):
    """float32 (B, S, S) -> (B, S, S, channels): the gray image in each channel."""
    x = tf.expand_dims(x, -1)
    return tf.repeat(x, channels, axis=-1) if channels > 1 else x


def host_warp(images, seed: int, epoch: int, index: int) -> np.ndarray:
    """The warped float32 (B, S, S) images in [0, 1] of batch `index` of `epoch`, made on the host.

    The torch trainer's warp of the same batch on one process: its rng
    (default_rng([seed, epoch, index, 7])), its draws and the same bilinear sample
    (gntkit.training.augment.random_warp_batch).

    Raises:
        GntkitError: the images are not uint8 (B, S, S).
    """
    pixels = images.numpy() if tf.is_tensor(images) else np.asarray(images)
    return random_warp_batch(pixels, np.random.default_rng([seed, epoch, index, 7]))


def smoothed_cross_entropy(labels, logits, label_smoothing: float):
    """Per-example cross entropy with torch's label smoothing (uniform mass over all classes)."""
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, tf.cast(labels, tf.int32), axis=1, batch_dims=1)
    if label_smoothing == 0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, axis=-1)


# --- compiled steps ------------------------------------------------------------------------------

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
    TensorFlow about as much time as bf16 saved on the 2-core CPU (docs/benchmarks.md,
    issue 12). On GPUs and with several replicas the step warps in the graph.

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
        x = _with_channels(images, self.channels) if warped else to_model_input(images, self.channels)
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
        _set_lr(self.optimizer, lr)
        per_replica = self.strategy.run(self._replica_fn, args=(images, labels, seed))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    def _train_steps(self, images, labels, seeds, lrs):
        # K optimizer steps in one call (one replica): images (K, B, ...), labels (K, B), seeds
        # (K, 2), lrs (K,); step k is exactly _train_step(images[k], labels[k], seeds[k], lrs[k]).
        sums = tf.zeros([3], tf.float64)
        for k in tf.range(tf.shape(images)[0]):
            _set_lr(self.optimizer, lrs[k])
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
        if self.host_warp_global and not isinstance(batches, (tf.data.Dataset, _ShardSource)) \
                and not isinstance(batches, tf.distribute.DistributedDataset):
            seed, epoch = self.config.seed, self.epoch
            source = batches

            class _Warped:
                def __iter__(self):
                    for i, (images, labels) in enumerate(source):
                        yield host_warp(images, seed, epoch, i), labels

            batches = _Warped()
        return _distribute(self.strategy, batches)

    def train_step(self, images, labels, lr: float, index: int) -> None:
        """One optimizer step (batch `index` of the epoch); sums stay as tensors until `totals`.

        On one replica, steps are queued and run `steps_per_call` at a time in one call of a
        compiled loop (`_train_steps`), as keras' steps_per_execution does: each call of a
        compiled function from Python costs about as much as a small layer, and a small
        network on 28 x 28 digits spends a tenth of its step there (docs/benchmarks.md,
        issue 11). Every step keeps its own learning rate and seed, so the result does not
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



def _distribute(strategy, batches):
    """Iterate a batch source under the strategy (splitting global batches over replicas)."""
    if isinstance(batches, tf.distribute.DistributedDataset) or hasattr(batches, "_input_workers"):
        return batches
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


# --- the loops ---------------------------------------------------------------------------------

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
    totals = np.zeros(4)
    for images, labels in _distribute(steps.strategy, batches):
        totals += [float(v) for v in steps.eval_step(images, labels)]
    loss_sum, correct, correct_k, count = totals
    if count == 0:
        raise GntkitError("The validation split has no samples: expected at least one batch.")
    return {"loss": loss_sum / count, "accuracy": correct / count, "top5": correct_k / count, "images": int(count)}


def _model_channels(model) -> int:
    return int(model.inputs[0].shape[-1]) if getattr(model, "inputs", None) else 1


def predict_logits(model, batches):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    channels = _model_channels(model)
    forward = tf.function(lambda x: tf.cast(model(to_model_input(x, channels), training=False), tf.float32),
                          reduce_retracing=True)
    for images, labels in batches:
        yield forward(tf.convert_to_tensor(images)).numpy(), np.asarray(labels, np.int64)


def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float32 (N, C) for uint8 images (N, S, S)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(np.ascontiguousarray(images[start:start + batch_size]))
        logits = model(to_model_input(x, _model_channels(model)), training=False)
        out.append(tf.nn.softmax(tf.cast(logits, tf.float32)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# --- checkpoints -----------------------------------------------------------------------------

def save_checkpoint(prefix: Path, model, optimizer=None, state: dict | None = None) -> None:
    """Write a tf.train.Checkpoint at `prefix` (model, optimizer when given) and `prefix.json` (trainer state)."""
    objects = {"model": model}
    if optimizer is not None:
        objects["optimizer"] = optimizer
    # Write under a temporary prefix and rename, so a crash never leaves a half checkpoint as "last".
    tmp = prefix.with_name(prefix.name + "-partial")
    tf.train.Checkpoint(**objects).write(str(tmp))
    # The .index file goes last: RunFolder.has_checkpoint treats it as "complete".
    for f in sorted(prefix.parent.glob(prefix.name + "-partial.*"), key=lambda f: f.suffix == ".index"):
        os.replace(f, prefix.parent / (prefix.name + f.name[len(prefix.name + "-partial"):]))
    state_path = prefix.with_name(prefix.name + ".json")
    tmp_state = prefix.with_name(prefix.name + ".json.partial")
    tmp_state.write_text(json.dumps(state or {}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_state, state_path)


def restore_checkpoint(prefix: Path, model, optimizer=None) -> dict:
    """Restore model (and optimizer) from a checkpoint prefix; return the trainer state.

    Raises:
        GntkitError: no checkpoint at `prefix`, or it does not fit the model.
    """
    prefix = Path(prefix)
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise GntkitError(f"{prefix}: expected a TensorFlow checkpoint (.index file), found none.")
    objects = {"model": model}
    if optimizer is not None:
        objects["optimizer"] = optimizer
    try:
        status = tf.train.Checkpoint(**objects).read(str(prefix))
        if optimizer is None:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as exc:
        raise GntkitError(f"{prefix}: the checkpoint does not fit the model of this run ({exc}).") from None
    state_path = prefix.with_name(prefix.name + ".json")
    return json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}


def build_model_for_run(info: dict, dtype_policy=None):
    """Create the (untrained) keras model a run.json describes."""
    config = TrainConfig.from_json(info["config"])
    return create_model(config.model, info["num_classes"], info["image_size"], info["channels"],
                        batch_norm=config.batch_norm, width=config.width, dtype_policy=dtype_policy)


def load_run_model(run_dir, which: str = "best", device: str = "auto"):
    """Load a trained keras model from a run folder.

    Args:
        run_dir: a folder written by gntkit.training.train(framework="tf").
        which: "best" (falls back to "last" when no best exists) or "last".
        device: unused placeholder for symmetry with torch ("auto"/"cpu"/"gpu").

    Returns:
        (model, run info dict from run.json).

    Raises:
        GntkitError: not a tf run, or no checkpoint.
    """
    run = RunFolder(run_dir, "tf")
    info = run.read_run_info_of_framework()
    model = build_model_for_run(info)
    restore_checkpoint(run.checkpoint_to_load(which), model)
    return model, info


# --- the run ---------------------------------------------------------------------------------

class _ShardSource:
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
        from gntkit.datasets import tf as datasets_tf

        # (seed, epoch) fixes the order, as in the torch loader: a resumed run replays it.
        if self.strategy.num_replicas_in_sync > 1:
            def dataset_fn(ctx):
                per_replica = ctx.get_per_replica_batch_size(self.global_batch)
                return datasets_tf.make_dataset(self.data_dir, self.split, per_replica, shuffle=self.shuffle,
                                                seed=self.seed, epoch=self.epoch, input_context=ctx)
            return iter(self.strategy.distribute_datasets_from_function(dataset_fn))
        return iter(datasets_tf.make_dataset(self.data_dir, self.split, self.global_batch,
                                             shuffle=self.shuffle, seed=self.seed, epoch=self.epoch))


def _open_sources(config: TrainConfig, data_dir, strategy):
    import gntkit.datasets as datasets

    train_set = datasets.open(data_dir, config.train_split)
    val_split = pick_val_split(batch_facts.splits_in(data_dir), config.val_split, config.train_split)
    train = _ShardSource(data_dir, config.train_split, config.batch_size, True, config.seed, strategy, len(train_set))
    val = None
    val_samples = 0
    if val_split is not None:
        val_samples = len(datasets.open(data_dir, val_split))
        val = _ShardSource(data_dir, val_split, config.eval_batch_size or 2 * config.batch_size, False,
                           config.seed, strategy, val_samples)
    return train, val, batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)


class _TFBoard:
    """TensorBoard event files through tf.summary."""

    def __init__(self, logdir):
        self.writer = tf.summary.create_file_writer(str(logdir))

    def scalars(self, values: dict, step: int) -> None:
        """Write each value under its tag at `step` and flush."""
        with self.writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, value, step=step)
        self.writer.flush()

    def images(self, tag: str, images, step: int) -> None:
        """Write uint8 images (N, S, S)."""
        with self.writer.as_default():
            tf.summary.image(tag, np.asarray(images, np.uint8)[..., None], step=step, max_outputs=len(images))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class TFBackend(Backend):
    """gntkit.training.loop hooks for TensorFlow: strategy, model, checkpoints, TensorBoard."""

    framework = "tf"
    channels_last = False

    def __init__(self, config: TrainConfig):
        self.config = config
        self.placement = make_strategy(config.device)
        self.strategy = self.placement.strategy
        self.is_main = self.placement.is_chief
        self.world_size = self.strategy.num_replicas_in_sync
        self.policy, self.precision = precision_policy(config.precision, self.placement.on_gpu)
        self.version = tf.__version__
        self.label = f"tensorflow {tf.__version__}"
        self.device_name = self.placement.description
        self.device_text = (f"device {self.placement.description}, {self.world_size} replica(s), precision "
                            f"{self.precision}" + (", XLA-compiled" if config.compile else ""))
        self.scratch = None

    def open_shards(self, config, data_dir):
        """Per-epoch tf.data pipelines over shards, and the data facts."""
        return _open_sources(config, data_dir, self.strategy)

    def build(self, config, facts) -> int:
        """Create model (seeded), optimizer and compiled steps under the strategy."""
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            model = create_model(config.model, facts["num_classes"], facts["image_size"], config.channels,
                                 batch_norm=config.batch_norm, width=config.width, dtype_policy=self.policy)
            if config.pretrained is not None:
                _apply_pretrained(model, config)
            self.optimizer = build_optimizer(config, loss_scale=self.precision == "fp16")
            self.optimizer.build(model.trainable_variables)
            self.steps = Steps(model, self.optimizer, config, self.strategy, on_gpu=self.placement.on_gpu)
            if self.policy is not None:
                # Validation runs in float32 on a twin of the model, so that it equals what
                # `gntkit evaluate` (which loads the checkpoint as float32) reports.
                self.steps.eval_model = create_model(
                    config.model, facts["num_classes"], facts["image_size"], config.channels,
                    batch_norm=config.batch_norm, width=config.width)
        self.model = model
        return count_parameters(model)

    def validate(self, batches) -> dict:
        """Validation under the strategy, in float32 (the twin gets the current weights first)."""
        if self.steps.eval_model is not self.model:
            self.steps.eval_model.set_weights(self.model.get_weights())
        return validate(self.steps, batches)

    def save(self, folder, which, state, with_optimizer) -> None:
        """Every worker saves (the strategy needs all); only the chief into the run folder."""
        if not self.is_main:
            if self.scratch is None:
                self.scratch = Path(tempfile.mkdtemp(prefix=f"gntkit-worker{self.placement.worker}-"))
            folder = self.scratch
        save_checkpoint(Path(folder) / which, self.model, self.optimizer if with_optimizer else None, state)

    def load(self, path, with_optimizer) -> dict:
        """Restore model (and optimizer) from a checkpoint prefix; return the trainer state."""
        return restore_checkpoint(path, self.model, self.optimizer if with_optimizer else None)

    def tensorboard(self, logdir):
        """A tf.summary-backed writer."""
        return _TFBoard(logdir)

    def augmented_preview(self, images) -> np.ndarray:
        """uint8 (N, S, S): images after one random warp (as in training; on the host on a CPU)."""
        if self.config.augment and not self.placement.on_gpu and self.world_size == 1:
            # the warp training uses here (Steps.host_warp), from the torch trainer's preview rng
            x = random_warp_batch(np.asarray(images), np.random.default_rng([self.config.seed, 99]))
            return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
        x = to_model_input(tf.convert_to_tensor(images))
        if self.config.augment:
            matrices, offsets = warp_params(int(x.shape[0]), tf.constant([self.config.seed, 99], tf.int32),
                                            int(x.shape[1]))
            x = apply_affine(x, matrices, offsets)
        return np.clip(np.round(x.numpy()[..., 0] * 255), 0, 255).astype(np.uint8)

    def close(self) -> None:
        """Remove a worker's scratch checkpoints."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _apply_pretrained(model, config: TrainConfig) -> None:
    """Load `config.pretrained` into `model` through gntkit.models.tf.apply_pretrained."""
    import gntkit.models.tf as models_tf

    apply = getattr(models_tf, "apply_pretrained", None)
    if apply is None:
        raise GntkitError("pretrained weights need gntkit.models.tf.apply_pretrained, found none in this "
                          "gntkit version.")
    apply(model, config.pretrained, config.freeze, config.channels)


def main(config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None, preprocess=None,
         resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train a model with TensorFlow and write a run folder; return the summary dict.

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` and `preprocess` must be given.

    Raises:
        GntkitError: bad options or data; OutputExistsError for an existing run folder.
    """
    backend = TFBackend(config)
    try:
        return run_training(backend, config, out_dir, data_dir=data_dir, arrays=arrays, classes=classes,
                            preprocess=preprocess, resume=resume, overwrite=overwrite, quiet=quiet)
    finally:
        backend.close()
