"""Training and running the line model (crnn) with TensorFlow: CTC steps, validation by CER, per-frame log-probs.

What gntkit.training.torch_trainer.lines does in torch, with tf.nn.ctc_loss: the same batches,
loss (per line, averaged over the batch's lines; impossible alignments count 0), accurate rate
and validation. One replica: line training runs on one device.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import require
from gntkit.models import tf as models_tf
from gntkit.training.line_data import LinePreviews, edit_totals, line_sources, validation_totals
from gntkit.training.tf_trainer.backend import TFBackend
from gntkit.training.tf_trainer.inputs import to_model_input
from gntkit.training.tf_trainer.placement import build_optimizer, set_learning_rate
from gntkit.training.tf_trainer.steps import _seed_dropout
from gntkit.training.trainers import build_model

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras

__all__ = ["TFLineSteps", "TFLineBackend", "ctc_losses", "line_log_probs", "validate_lines"]


def ctc_losses(logits, frames, labels, label_lengths):
    """Per-line CTC loss (float32) of logits (B, T, C + 1); impossible alignments count 0."""
    losses = tf.nn.ctc_loss(labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32),
                            label_length=tf.cast(label_lengths, tf.int32), logit_length=tf.cast(frames, tf.int32),
                            logits_time_major=False, blank_index=int(logits.shape[-1]) - 1)
    return tf.where(tf.math.is_finite(losses), losses, tf.zeros_like(losses))


def _forward(model, images, widths, training: bool):
    """(float32 logits (B, T, C + 1), frames (B,)) of uint8 lines (B, H, W) and their widths."""
    logits = model((to_model_input(images, model.channels), widths), training=training)
    return logits, tf.minimum(model.frames(widths), tf.shape(logits)[1])


def _signature(height):
    return [tf.TensorSpec([None, height, None], tf.uint8), tf.TensorSpec([None], tf.int64)]


class TFLineSteps:
    """The step hooks of gntkit.training.loop for a keras CRNN: one compiled CTC step per batch."""

    def __init__(self, model, optimizer, config, height: int, loss_scale: bool = False):
        self.model, self.optimizer, self.config, self.loss_scale = model, optimizer, config, loss_scale
        spec = _signature(height) + [tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None], tf.int64),
                                     tf.TensorSpec([], tf.float32)]
        self.step_fn = tf.function(self._step, input_signature=spec)

    def _step(self, images, widths, labels, lengths, lr):
        set_learning_rate(self.optimizer, lr)
        with tf.GradientTape() as tape:
            logits, frames = _forward(self.model, images, widths, True)
            losses = ctc_losses(logits, frames, labels, lengths)
            loss = tf.reduce_mean(losses)
            scaled = self.optimizer.scale_loss(loss) if self.loss_scale else loss
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return tf.reduce_sum(tf.cast(losses, tf.float64)), tf.argmax(logits, axis=-1), frames

    def begin_epoch(self, epoch: int) -> None:
        """Reseed dropout for `epoch` and zero the sums."""
        _seed_dropout(self.model, self.config, epoch)
        self.loss_sum, self.count, self.edits, self.characters = 0.0, 0, 0, 0

    def distribute(self, batches):
        """Batches as they come (one replica)."""
        return batches

    def train_step(self, inputs, targets, lr: float, index: int) -> None:
        """One optimizer step on a batch of lines; the greedy reading's edits are counted on the host."""
        (images, widths), (labels, lengths) = inputs, targets
        loss_sum, paths, frames = self.step_fn(images, widths, labels, lengths, np.float32(lr))
        self.loss_sum += float(loss_sum)
        self.count += len(lengths)
        e, c = edit_totals(paths.numpy(), frames.numpy(), labels, lengths, self.model.num_classes)
        self.edits, self.characters = self.edits + e, self.characters + c

    def totals(self, reduce: bool) -> list[float]:
        """[loss sum, lines x accurate rate, lines] of this epoch so far."""
        rate = 1.0 - self.edits / self.characters if self.characters else 0.0
        return [self.loss_sum, self.count * rate, self.count]


def line_log_probs(model, batches):
    """Yield (float32 log-probs numpy (B, T, C + 1), frames (B,), targets) per batch of LineBatches."""
    forward = tf.function(lambda images, widths: (lambda out: (tf.nn.log_softmax(out[0]), out[1]))(
        _forward(model, images, widths, False)), input_signature=_signature(model.image_size))
    for (images, widths), targets in batches:
        log_probs, frames = forward(images, np.asarray(widths, np.int64))
        yield log_probs.numpy(), frames.numpy(), targets


def validate_lines(model, batches) -> dict:
    """{"loss" (mean CTC per line), "accuracy" (AR = 1 - CER), "top5": None, "cer", "images" (lines)}."""
    def summed():
        for log_probs, frames, (labels, lengths) in line_log_probs(model, batches):
            yield float(tf.reduce_sum(ctc_losses(log_probs, frames, labels, lengths))), log_probs, frames, labels, lengths

    return validation_totals(summed())


class TFLineBackend(LinePreviews, TFBackend):
    """TFBackend for line conversions and line models: LineBatches, CTC steps, validation by CER."""

    def open_shards(self, config, data_dir):
        """Train and validation LineBatches and the data facts (one replica)."""
        return line_sources(config, data_dir, self.world_size)

    def build(self, config, facts) -> int:
        """Model (seeded), optimizer and compiled CTC step; a float32 twin for validation under a mixed policy."""
        keras.utils.set_random_seed(config.seed)
        model = build_model(models_tf, config, facts["num_classes"], facts["image_size"], dtype_policy=self.policy)
        self.optimizer = build_optimizer(config, loss_scale=self.precision == "fp16")
        self.optimizer.build(model.trainable_variables)
        self.model = model
        self.steps = TFLineSteps(model, self.optimizer, config, facts["image_size"], self.precision == "fp16")
        self.eval_model = model if self.policy is None else models_tf.create_model(
            config.model, facts["num_classes"], facts["image_size"], config.channels, batch_norm=config.batch_norm,
            width=config.width)
        return models_tf.count_parameters(model)

    def validate(self, batches) -> dict:
        """Validation in float32 (the twin gets the current weights first)."""
        if self.eval_model is not self.model:
            self.eval_model.set_weights(self.model.get_weights())
        return validate_lines(self.eval_model, batches)
