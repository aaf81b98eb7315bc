"""The torch hooks of gntkit.training.loop (`TorchBackend`): device and processes, model, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gntkit.datasets.torch_prefetch import DevicePrefetcher
from gntkit.errors import require
from gntkit.models import torch as models_torch
from gntkit.training.config import TrainConfig
from gntkit.training.loop import Backend
from gntkit.training.torch_trainer.board import TorchBoard
from gntkit.training.torch_trainer.checkpoints import CheckpointWriter, load_checkpoint
from gntkit.training.torch_trainer.data import open_loaders
from gntkit.training.torch_trainer.device import Distributed, precision_setup
from gntkit.training.torch_trainer.inputs import random_warp, to_model_input
from gntkit.training.torch_trainer.steps import TorchSteps, build_optimizer, validate
from gntkit.training.trainers import build_model

torch = require("torch", "torch", "Training with PyTorch")

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """gntkit.training.loop hooks for PyTorch: device and processes, model, checkpoints, TensorBoard."""

    framework = "torch"

    def __init__(self, config: TrainConfig):
        self.config = config
        self.dist = Distributed(config.device)
        self.device = device = self.dist.device
        self.is_main, self.world_size = self.dist.is_main, self.dist.world_size
        self.autocast_dtype, self.scaler, self.precision = precision_setup(config.precision, device)
        # channels-last is what oneDNN's and cuDNN's fast bf16/fp16 convolutions read.
        default_last = device.type == "cuda" or (device.type == "cpu" and self.precision == "bf16")
        self.channels_last = default_last if config.channels_last is None else config.channels_last
        self.writer = CheckpointWriter()
        self.version = torch.__version__
        self.label = f"torch {torch.__version__}"
        self.device_name = str(device)
        self.device_text = (f"device {device}, {self.world_size} process(es), precision {self.precision}, "
                            f"channels-last {'on' if self.channels_last else 'off'}"
                            + (", compiled" if config.compile else ""))

    def open_shards(self, config, data_dir):
        """Train and validation loaders over shards (host or GPU-resident, `config.loader`), and the data facts."""
        return open_loaders(config, data_dir, self.dist)

    def device_batches(self, batches):
        """`batches` on this rank's device: copied from pinned memory one batch ahead (`DevicePrefetcher`)."""
        return DevicePrefetcher(batches, self.device)

    def rank_share(self):
        """(rank, world size): each process trains on its share of in-memory arrays."""
        return self.dist.rank, self.world_size

    def build(self, config, facts) -> int:
        """Create the model (seeded), apply pretrained weights, move it, make the optimizer and steps."""
        device = self.device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # speed over bitwise reproducibility on GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        model = build_model(models_torch, config, facts["num_classes"], facts["image_size"])
        parameters = models_torch.count_parameters(model)
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        train_model = model
        if self.world_size > 1:
            ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            train_model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        self.steps = TorchSteps(train_model, self.optimizer, config, device, self.autocast_dtype, self.scaler,
                                self.channels_last, self.dist, config.channels)
        return parameters

    def validate(self, batches) -> dict:
        """Validation in float32 (no autocast), so it equals what `gntkit evaluate` reports for the checkpoint."""
        return validate(self.model, batches, device=self.device, autocast_dtype=None,
                        channels_last=self.channels_last, dist=self.dist, channels=self.config.channels)

    def save(self, folder, which, state, with_optimizer) -> None:
        """Main process: checkpoints/{which}.pt (with optimizer and scaler for "last"), written in the background."""
        if self.is_main:
            self.writer.save(Path(folder) / f"{which}.pt", self.model, self.optimizer if with_optimizer else None,
                             self.scaler if with_optimizer else None, state)

    def wait_saved(self) -> None:
        """Wait until the checkpoint being written is on disk."""
        self.writer.wait()

    def load(self, path, with_optimizer) -> dict:
        """Restore model, optimizer and scaler from a checkpoint file; return its trainer state."""
        payload = load_checkpoint(path, self.device)
        self.model.load_state_dict(payload["model"])
        if with_optimizer and "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
        if with_optimizer and self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        return payload["state"]

    def tensorboard(self, logdir):
        """A SummaryWriter-backed writer."""
        return TorchBoard(logdir)

    def sample_images(self, train_batches, count: int = 8) -> np.ndarray:
        """uint8 (N <= count, S, S): the first training images, on the host."""
        for images, _ in train_batches:
            images = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
            return images[:count].cpu().numpy()
        return np.zeros((0, 1, 1), np.uint8)

    @torch.no_grad()
    def augmented_preview(self, images) -> np.ndarray:
        """uint8 (N, S, S): images after one random warp (as in training)."""
        x = to_model_input(images, self.device)
        if self.config.augment:
            x = random_warp(x, np.random.default_rng([self.config.seed, 99]))
        return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    def on_main(self, action) -> None:
        """Rank 0 runs `action`; its GntkitError is raised everywhere."""
        self.dist.run_on_main(action)

    def barrier(self) -> None:
        """Wait for every process."""
        self.dist.barrier()

    def close(self) -> None:
        """Finish the checkpoint being written, then destroy the process group this backend started."""
        try:
            self.writer.wait()
        finally:
            self.dist.close()
