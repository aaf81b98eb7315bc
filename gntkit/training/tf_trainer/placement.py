"""Where and how a TensorFlow run computes: the distribution strategy, the dtype policy, the optimizer."""

from __future__ import annotations

import json
import os

from gntkit.errors import GntkitError, require
from gntkit.training.config import TrainConfig
from gntkit.training.schedule import cpu_has_bf16, resolve_precision
from gntkit.training.tf_trainer.optimizers import TorchAdam, TorchSGD

# tensorflow is the one heavy framework of this module; `import gntkit.training` does not load it.
tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras

__all__ = ["Placement", "make_strategy", "precision_policy", "build_optimizer", "set_learning_rate",
           "TF_CPU_AUTO_BF16"]


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
    torch trainer do); biases and batch-norm scales and offsets are excluded. The
    updates are torch's (gntkit.training.tf_trainer.optimizers).
    """
    lr = config.peak_lr
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        opt = TorchSGD(learning_rate=lr, momentum=config.momentum, weight_decay=decay)
    else:
        opt = TorchAdam(learning_rate=lr, epsilon=1e-8, weight_decay=decay)
    if decay:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def set_learning_rate(optimizer, value) -> None:
    """Set the learning rate of `optimizer` (of the one inside a LossScaleOptimizer)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.learning_rate.assign(value)
