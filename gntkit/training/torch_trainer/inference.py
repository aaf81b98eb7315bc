"""A trained torch model out of a run folder, and its logits and probabilities."""

from __future__ import annotations

import numpy as np

from gntkit.errors import require
from gntkit.models import torch as models_torch
from gntkit.training.run_folder import RunFolder
from gntkit.training.torch_trainer.checkpoints import load_checkpoint, unwrap
from gntkit.training.torch_trainer.device import autocast, resolve_device
from gntkit.training.torch_trainer.inputs import to_model_input
from gntkit.training.trainers import model_for_run

torch = require("torch", "torch", "Training with PyTorch")

__all__ = ["predict_logits", "predict_probabilities", "build_model_for_run", "load_run_model"]


def _model_channels(model) -> int:
    """The number of input channels of a gntkit torch model."""
    return int(getattr(unwrap(model), "channels", 1))


@torch.no_grad()
def predict_logits(model, batches, device=None, autocast_dtype=None, channels_last: bool = False):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    device = device or next(model.parameters()).device
    model.eval()
    for images, labels in batches:
        x = to_model_input(images, device, channels_last, _model_channels(model))
        with autocast(device, autocast_dtype):
            logits = model(x)
        yield logits.float().cpu().numpy(), np.asarray(torch.as_tensor(labels).cpu().numpy(), np.int64)


@torch.no_grad()
def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float32 (N, C) for uint8 images (N, S, S)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(np.ascontiguousarray(images[start:start + batch_size]), device,
                           channels=_model_channels(model))
        out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_model_for_run(info: dict):
    """Create the (untrained) model a run.json describes."""
    return model_for_run(models_torch, info)


def load_run_model(run_dir, which: str = "best", device: str = "cpu"):
    """Load a trained torch model from a run folder, in eval mode on `device`.

    Args:
        run_dir: a folder written by gntkit.training.train(framework="torch").
        which: "best" (falls back to "last" when no best exists) or "last".
        device: torch device name.

    Returns:
        (model, run info dict from run.json).

    Raises:
        GntkitError: not a torch run, or no checkpoint.
    """
    run = RunFolder(run_dir, "torch")
    info = run.read_run_info_of_framework()
    path = run.checkpoint_to_load(which)
    device = resolve_device(device)
    model = build_model_for_run(info)
    model.load_state_dict(load_checkpoint(path, "cpu")["model"])
    return model.to(device).eval(), info
