"""The TensorFlow hooks of gntkit.training.loop (`TFBackend`).

Distribution uses TensorFlow's own engines (placement.make_strategy). Only the chief
writes the run folder; other workers write checkpoints to a temporary folder, as the
strategy requires every worker to take part in saving.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from gntkit.errors import require
from gntkit.models import tf as models_tf
from gntkit.training.augment import random_warp_batch
from gntkit.training.config import TrainConfig
from gntkit.training.loop import Backend
from gntkit.training.tf_trainer.board import TFBoard
from gntkit.training.tf_trainer.checkpoints import restore_checkpoint, save_checkpoint
from gntkit.training.tf_trainer.data import ShardSource, open_sources
from gntkit.training.tf_trainer.inputs import apply_affine, to_model_input, warp_params
from gntkit.training.tf_trainer.placement import build_optimizer, make_strategy, precision_policy
from gntkit.training.tf_trainer.steps import Steps, validate
from gntkit.training.trainers import build_model

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")
keras = tf.keras

__all__ = ["TFBackend"]


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
        return open_sources(config, data_dir, self.strategy)

    def build(self, config, facts) -> int:
        """Create model (seeded), optimizer and compiled steps under the strategy."""
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            model = build_model(models_tf, config, facts["num_classes"], facts["image_size"],
                                dtype_policy=self.policy)
            self.optimizer = build_optimizer(config, loss_scale=self.precision == "fp16")
            self.optimizer.build(model.trainable_variables)
            self.steps = Steps(model, self.optimizer, config, self.strategy, on_gpu=self.placement.on_gpu)
            if self.policy is not None:
                # Validation runs in float32 on a twin of the model, so that it equals what
                # `gntkit evaluate` (which loads the checkpoint as float32) reports.
                self.steps.eval_model = models_tf.create_model(
                    config.model, facts["num_classes"], facts["image_size"], config.channels,
                    batch_norm=config.batch_norm, width=config.width)
        self.model = model
        return models_tf.count_parameters(model)

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
        return TFBoard(logdir)

    def sample_images(self, train_batches, count: int = 8) -> np.ndarray:
        """uint8 (N <= count, S, S): the first training images, from this process's own pipeline.

        A distributed source is not iterated here: under MultiWorkerMirroredStrategy every
        batch it yields takes part in a collective, which the other workers would not join.
        """
        if isinstance(train_batches, ShardSource):
            for images, _ in train_batches.local_batches().take(1):
                return images.numpy()[:count]
            return np.zeros((0, 1, 1), np.uint8)
        return super().sample_images(train_batches, count)

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
