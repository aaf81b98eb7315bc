"""torch checkpoints of a run: written atomically, read with a check of their format."""

from __future__ import annotations

import os
from pathlib import Path

from gntkit.errors import GntkitError, require

torch = require("torch", "torch", "Training with PyTorch")

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "unwrap"]

CHECKPOINT_FORMAT = 1


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Path, model, optimizer=None, scaler=None, state: dict | None = None) -> None:
    """Write a checkpoint atomically (model weights; optimizer and scaler when given; trainer state)."""
    payload = {"format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(), "state": state or {}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint.

    Raises:
        GntkitError: missing or not a gntkit torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise GntkitError(f"{path}: expected a torch checkpoint, found no file.")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise GntkitError(f"{path}: expected a torch checkpoint, found an unreadable file ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GntkitError(f"{path}: expected a gntkit torch checkpoint (format {CHECKPOINT_FORMAT}), found something else.")
    return payload
