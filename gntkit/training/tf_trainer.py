"""The TensorFlow trainer (imports tensorflow): `main()`, `train_one_epoch()`, `validate()`.

A custom loop (not `model.fit`) so that the schedule, label smoothing, weight
decay, augmentation, metrics, checkpoints and resume mean exactly what they
mean in the torch trainer. The loops take iterables of (uint8 images
(B, S, S), int64 labels (B,)) batches: numpy arrays, tensors or a
`tf.data.Dataset`; conversion to float (x / 255, one channel), augmentation and
mixed precision happen on the device inside one compiled step.

Distribution uses TensorFlow's own engines: `MultiWorkerMirroredStrategy`
when TF_CONFIG names more than one worker, `MirroredStrategy` when more than
one GPU is visible, one device otherwise. Only the chief writes the run
folder (other workers write checkpoints to a temporary folder, as the
strategy requires every worker to take part in saving).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training import common
from gntkit.training.common import (
    AUGMENT_RANGES,
    EarlyStopping,
    RunFolder,
    TrainConfig,
    learning_rate_at,
)

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
    "apply_affine",
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


def precision_policy(requested: str, on_gpu: bool) -> tuple[str | None, str]:
    """Return (keras dtype policy or None, resolved precision name)."""
    resolved = common.resolve_precision(requested, on_gpu, _bf16_supported() if on_gpu else False)
    return {"fp32": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[resolved], resolved


def build_optimizer(config: TrainConfig, loss_scale: bool):
    """SGD (momentum) / Adam / AdamW; the learning rate is a variable set every step.

    Weight decay: L2 added to the loss for SGD and Adam (as torch's weight_decay),
    decoupled for AdamW (as torch's AdamW); biases and batch norm are excluded.
    """
    lr = config.peak_lr
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum)
    elif config.optimizer == "adam":
        opt = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
    else:
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, epsilon=1e-8)
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _set_lr(optimizer, value: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.learning_rate.assign(value)


# --- augmentation -------------------------------------------------------------------------

def _affine_params(batch, seed):
    """Random affines as in common.affine_matrices, drawn with stateless TF ops from `seed` (int32[2])."""
    r = AUGMENT_RANGES
    u = tf.random.stateless_uniform([batch, 6], seed=seed, minval=-1.0, maxval=1.0)
    angle = u[:, 0] * (r["rotation_degrees"] * math.pi / 180)
    shear = u[:, 1] * (r["shear_degrees"] * math.pi / 180)
    scale = 1.0 + u[:, 2] * r["scale"]
    shift = u[:, 3:5] * (2 * r["translate"])
    cos, sin, tan = tf.cos(angle), tf.sin(angle), tf.tan(shear)
    row0 = tf.stack([cos / scale, (cos * tan - sin) / scale, shift[:, 0]], axis=1)
    row1 = tf.stack([sin / scale, (sin * tan + cos) / scale, shift[:, 1]], axis=1)
    return tf.stack([row0, row1], axis=1)  # (B, 2, 3) normalised output -> input


def _to_pixel_transforms(matrices, size: int):
    """TF version of common.normalized_to_pixel_transform: (B, 2, 3) -> (B, 8)."""
    s = float(size)
    to_norm = tf.constant([[2 / s, 0, 1 / s - 1], [0, 2 / s, 1 / s - 1], [0, 0, 1]], tf.float32)
    to_pixel = tf.constant([[s / 2, 0, (s - 1) / 2], [0, s / 2, (s - 1) / 2], [0, 0, 1]], tf.float32)
    b = tf.shape(matrices)[0]
    last = tf.tile(tf.constant([[[0.0, 0.0, 1.0]]]), [b, 1, 1])
    full = tf.concat([tf.cast(matrices, tf.float32), last], axis=1)
    pixel = tf.einsum("ij,bjk,kl->bil", to_pixel, full, to_norm)
    return tf.reshape(pixel, [b, 9])[:, :8]


def apply_affine(images, matrices):
    """Warp float images (B, S, S, C) by (B, 2, 3) normalised output->input affines (bilinear, zero fill).

    Gives the same result as torch's affine_grid + grid_sample(align_corners=False).
    """
    size = images.shape[1]
    transforms = _to_pixel_transforms(matrices, size)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)


def to_model_input(images):
    """uint8 (B, S, S) -> float32 (B, S, S, 1) in [0, 1] (inside the compiled step, on the device)."""
    return tf.expand_dims(tf.cast(images, tf.float32) / 255.0, -1)


def smoothed_cross_entropy(labels, logits, label_smoothing: float):
    """Per-example cross entropy with torch's label smoothing (uniform mass over all classes)."""
    logits = tf.cast(logits, tf.float32)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    nll = -tf.gather(log_probs, tf.cast(labels, tf.int32), axis=1, batch_dims=1)
    if label_smoothing == 0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, axis=-1)


# --- compiled steps ------------------------------------------------------------------------------

class Steps:
    """The compiled train and validation steps of one model/optimizer under a strategy."""

    def __init__(self, model, optimizer, config: TrainConfig, strategy, top_k: int = 5):
        self.model = model
        self.optimizer = optimizer
        self.config = config
        self.strategy = strategy
        self.top_k = top_k
        self.loss_scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.l2 = config.weight_decay if config.optimizer in ("sgd", "adam") else 0.0
        self.decayed = [v for v in model.trainable_variables if len(v.shape) > 1]
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self.eval_step = tf.function(self._eval_step, reduce_retracing=True)

    def _replica_train(self, images, labels, seed):
        x = to_model_input(images)
        labels = tf.cast(labels, tf.int64)
        if self.config.augment:
            ctx = tf.distribute.get_replica_context()
            replica = tf.cast(ctx.replica_id_in_sync_group if ctx else 0, tf.int32)
            x = apply_affine(x, _affine_params(tf.shape(x)[0], seed + tf.stack([replica, 0])))
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            per_example = smoothed_cross_entropy(labels, logits, self.config.label_smoothing)
            loss = tf.nn.compute_average_loss(per_example)
            if self.l2:
                penalty = self.l2 * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in self.decayed])
                loss += tf.nn.scale_regularization_loss(penalty)
            scaled = self.optimizer.scale_loss(loss) if self.loss_scale else loss
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float64))
        return (tf.reduce_sum(tf.cast(per_example, tf.float64)), correct,
                tf.cast(tf.shape(labels)[0], tf.float64))

    def _train_step(self, images, labels, seed):
        per_replica = self.strategy.run(self._replica_train, args=(images, labels, seed))
        return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    def _replica_eval(self, images, labels):
        logits = tf.cast(self.model(to_model_input(images), training=False), tf.float32)
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


def _seed_dropout(model, config: TrainConfig, epoch: int) -> None:
    """Reset every keras seed generator (dropout) to a state derived from (seed, epoch, layer).

    Keras does not put these states in checkpoints; reseeding each epoch makes a
    resumed run draw the same dropout masks as an uninterrupted one.
    """
    states = [v for v in model.variables if "seed_generator" in v.path]
    for i, v in enumerate(states):
        value = int(np.random.SeedSequence([config.seed, epoch, i, 13]).generate_state(1)[0] & 0x7FFFFFFF)
        v.assign(np.array([value, 0], dtype=v.dtype))


def _epoch_seed(config: TrainConfig, epoch: int, step: int) -> "tf.Tensor":
    base = int(np.random.SeedSequence([config.seed, epoch, 11]).generate_state(1)[0] & 0x7FFFFFFF)
    return tf.constant([base, step], tf.int32)


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
    for images, _ in batches:  # peek for the image size
        spec = (tf.TensorSpec([None, *np.shape(images)[1:]], tf.uint8), tf.TensorSpec([None], tf.int64))
        break
    if spec is None:
        raise GntkitError("The batch source gave no batches: expected at least one.")
    return tf.data.Dataset.from_generator(lambda: ((np.asarray(x), np.asarray(y, np.int64)) for x, y in batches),
                                          output_signature=spec)


# --- the loops ---------------------------------------------------------------------------------

def train_one_epoch(steps: Steps, batches, config: TrainConfig, *, epoch: int, steps_per_epoch: int) -> dict:
    """Train one epoch; return {"loss", "accuracy", "images", "seconds", "lr", "steps"}.

    Raises:
        GntkitError: the loss became NaN or infinite (the run diverged).
    """
    totals = np.zeros(3)
    lr = learning_rate_at(config, epoch * steps_per_epoch, steps_per_epoch)
    start = time.perf_counter()
    i = 0
    pending = []
    for i, (images, labels) in enumerate(_distribute(steps.strategy, batches)):
        lr = learning_rate_at(config, epoch * steps_per_epoch + i, steps_per_epoch)
        _set_lr(steps.optimizer, lr)
        pending.append(steps.train_step(images, labels, _epoch_seed(config, epoch, i)))
        if len(pending) >= 64:  # read sums now and then, not every step (no per-step sync)
            totals += np.sum([[float(v) for v in p] for p in pending], axis=0)
            pending = []
    if pending:
        totals += np.sum([[float(v) for v in p] for p in pending], axis=0)
    seconds = time.perf_counter() - start
    loss_sum, correct, count = totals
    if count == 0:
        raise GntkitError(f"Epoch {epoch + 1} saw no training batches: expected a non-empty training split.")
    loss = loss_sum / count
    if not math.isfinite(loss):
        raise GntkitError(
            f"Training diverged in epoch {epoch + 1}: expected a finite loss, found {loss}; "
            f"lower the learning rate (now {config.peak_lr:g}) or use a batch-norm model."
        )
    return {"loss": loss, "accuracy": correct / count, "images": int(count), "seconds": seconds,
            "lr": lr, "steps": i + 1}


def validate(steps: Steps, batches) -> dict:
    """Evaluate on `batches`; return {"loss", "accuracy", "top5", "images"} (plain cross entropy)."""
    totals = np.zeros(4)
    for images, labels in _distribute(steps.strategy, batches):
        totals += [float(v) for v in steps.eval_step(images, labels)]
    loss_sum, correct, correct_k, count = totals
    if count == 0:
        raise GntkitError("The validation split has no samples: expected at least one batch.")
    return {"loss": loss_sum / count, "accuracy": correct / count, "top5": correct_k / count, "images": int(count)}


def predict_logits(model, batches):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    forward = tf.function(lambda x: tf.cast(model(to_model_input(x), training=False), tf.float32),
                          reduce_retracing=True)
    for images, labels in batches:
        yield forward(tf.convert_to_tensor(images)).numpy(), np.asarray(labels, np.int64)


def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float32 (N, C) for uint8 images (N, S, S)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(np.ascontiguousarray(images[start:start + batch_size]))
        out.append(tf.nn.softmax(tf.cast(model(to_model_input(x), training=False), tf.float32)).numpy())
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
    val_split = common.pick_val_split(common.splits_in(data_dir), config.val_split, config.train_split)
    train = _ShardSource(data_dir, config.train_split, config.batch_size, True, config.seed, strategy, len(train_set))
    val = None
    val_samples = 0
    if val_split is not None:
        val_samples = len(datasets.open(data_dir, val_split))
        val = _ShardSource(data_dir, val_split, config.eval_batch_size or 2 * config.batch_size, False,
                           config.seed, strategy, val_samples)
    return train, val, common.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)


def main(config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None, preprocess=None,
         resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train a model with TensorFlow and write a run folder; return the summary dict.

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` and `preprocess` must be given.

    Raises:
        GntkitError: bad options or data; OutputExistsError for an existing run folder.
    """
    placement = make_strategy(config.device)
    strategy, is_chief, worker, where = (placement.strategy, placement.is_chief, placement.worker,
                                         placement.description)
    if data_dir is not None:
        train_batches, val_batches, facts = _open_sources(config, data_dir, strategy)
    else:
        # Global batches; the strategy splits them over replicas.
        train_batches, val_batches, facts = common.array_sources(arrays, classes, preprocess, config)
    run = RunFolder(out_dir, "tf")
    policy, precision = precision_policy(config.precision, placement.on_gpu)
    if is_chief:
        run.prepare(resume=resume, overwrite=overwrite)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = create_model(config.model, facts["num_classes"], facts["image_size"], 1,
                             batch_norm=config.batch_norm, width=config.width, dtype_policy=policy)
        optimizer = build_optimizer(config, loss_scale=precision == "fp16")
        optimizer.build(model.trainable_variables)
        steps = Steps(model, optimizer, config, strategy)
    parameters = count_parameters(model)

    early = EarlyStopping(config.early_stopping)
    start_epoch = 0
    if resume:
        state = restore_checkpoint(run.checkpoint_path("last"), model, optimizer)
        start_epoch = int(state["epoch"])
        early.load_state(state["early_stopping"])
    rows = []
    if is_chief:
        if resume:
            rows = run.truncate_metrics(start_epoch)
        else:
            if data_dir is not None:
                run.copy_data_files(data_dir)
            else:
                run.write_charset(classes)
            run.write_preprocess(facts["preprocess"])
        run.write_run_info(common.run_info(config, facts, parameters, precision,
                                           strategy.num_replicas_in_sync, where, False,
                                           framework_version=tf.__version__))

    def log(message):
        if is_chief:
            run.log(message, quiet)

    for line in common.startup_messages(
            config, facts, f"tensorflow {tf.__version__}",
            f"device {where}, {strategy.num_replicas_in_sync} replica(s), precision {precision}",
            val_batches is not None, resume, start_epoch):
        log(line)

    steps_per_epoch = len(train_batches)
    stopped_early = early.patience is not None and early.bad_epochs >= early.patience
    t0 = time.perf_counter()
    scratch = None if is_chief else Path(tempfile.mkdtemp(prefix=f"gntkit-worker{worker}-"))
    try:
        for epoch in range(start_epoch, config.epochs):
            if stopped_early:
                break
            train_batches.set_epoch(epoch)
            _seed_dropout(model, config, epoch)
            tr = train_one_epoch(steps, train_batches, config, epoch=epoch, steps_per_epoch=steps_per_epoch)
            va = validate(steps, val_batches) if val_batches is not None else None
            row = common.metrics_row(epoch + 1, tr, va)
            monitored = va["accuracy"] if va else tr["accuracy"]
            improved = early.improved(monitored)
            stopped_early = early.step(monitored, epoch + 1) and va is not None
            state = {"epoch": epoch + 1, "early_stopping": early.state(), "config": config.to_json()}
            folder = run.checkpoint_dir if is_chief else scratch
            save_checkpoint(folder / "last", model, optimizer, state)
            if improved:
                save_checkpoint(folder / "best", model, state=state)
            if is_chief:
                run.append_metrics(row)
                rows.append(row)
                common.draw_curves(rows, run.curves_file, title=f"{run.path.name}: {config.model} (tensorflow)")
            log(common.format_epoch(row, config.epochs) + ("  *best" if improved else ""))
            if stopped_early:
                log(f"early stopping: no better validation accuracy for {config.early_stopping} epochs")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = common.read_metrics(run.metrics_file) if is_chief else rows
    return common.summarize(run, config, rows, parameters, stopped_early, time.perf_counter() - t0)
