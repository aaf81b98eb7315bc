"""A trained keras model out of a run folder, and its logits and probabilities."""

from __future__ import annotations

import numpy as np

from gntkit.errors import require
from gntkit.models import tf as models_tf
from gntkit.training.run_folder import RunFolder
from gntkit.training.tf_trainer.checkpoints import restore_checkpoint
from gntkit.training.tf_trainer.inputs import to_model_input
from gntkit.training.trainers import model_for_run

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")

__all__ = ["predict_logits", "predict_probabilities", "build_model_for_run", "load_run_model", "model_channels"]


def model_channels(model) -> int:
    """The number of input channels of a keras model (1 when it has no inputs yet)."""
    return int(model.inputs[0].shape[-1]) if getattr(model, "inputs", None) else 1


def predict_logits(model, batches):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    channels = model_channels(model)
    forward = tf.function(lambda x: tf.cast(model(to_model_input(x, channels), training=False), tf.float32),
                          reduce_retracing=True)
    for images, labels in batches:
        yield forward(tf.convert_to_tensor(images)).numpy(), np.asarray(labels, np.int64)


def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float32 (N, C) for uint8 images (N, S, S)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(np.ascontiguousarray(images[start:start + batch_size]))
        logits = model(to_model_input(x, model_channels(model)), training=False)
        out.append(tf.nn.softmax(tf.cast(logits, tf.float32)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_model_for_run(info: dict, dtype_policy=None):
    """Create the (untrained) keras model a run.json describes."""
    return model_for_run(models_tf, info, dtype_policy=dtype_policy)


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
