"""torch checkpoints of a run: written atomically, read with a check of their format."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from gntkit.errors import GntkitError, require

torch = require("torch", "torch", "Training with PyTorch")

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "unwrap", "checkpoint_payload", "write_payload",
           "CheckpointWriter"]

CHECKPOINT_FORMAT = 1


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if hasattr(model, "module") else model


def checkpoint_payload(model, optimizer=None, scaler=None, state: dict | None = None, on_host: bool = False) -> dict:
    """What a checkpoint file holds (model weights; optimizer and scaler when given; trainer state).

    With `on_host` every tensor is a copy in host memory, so training may change the
    weights while the payload is written.
    """
    payload = {"format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(), "state": state or {}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    return _host_copy(payload) if on_host else payload


def _host_copy(value):
    """`value` with every tensor in it copied to host memory (dicts, lists and tuples walked)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _host_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(item) for item in value)
    return value


def write_payload(path: Path, payload: dict) -> None:
    """Write a checkpoint payload atomically (a partial file, then a rename)."""
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, model, optimizer=None, scaler=None, state: dict | None = None) -> None:
    """Write a checkpoint atomically (model weights; optimizer and scaler when given; trainer state)."""
    write_payload(path, checkpoint_payload(model, optimizer, scaler, state))


class CheckpointWriter:
    """Writes checkpoints on a background thread, so that training goes on while a file is written.

    `save` copies the tensors to host memory (the next step changes the weights), then
    hands the file to the thread; a later `save` or `wait` waits for the write before.
    VGG19's last.pt with Adam state is about 727 MB: seconds of disk time that the ranks
    of a distributed run would otherwise spend waiting for rank 0.
    """

    def __init__(self):
        self._thread = None
        self._failure = None

    def save(self, path: Path, model, optimizer=None, scaler=None, state: dict | None = None) -> None:
        """Start writing a checkpoint of the current weights (and optimizer, scaler) to `path`."""
        payload = checkpoint_payload(model, optimizer, scaler, state, on_host=True)
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(Path(path), payload), name="gntkit-checkpoint")
        self._thread.start()

    def _write(self, path: Path, payload: dict) -> None:
        try:
            write_payload(path, payload)
        except (OSError, RuntimeError) as exc:  # kept for `wait`, which raises it in the training thread
            self._failure = (path, exc)

    def wait(self) -> None:
        """Wait for the write in progress.

        Raises:
            GntkitError: the last write failed (disk full, folder removed, ...).
        """
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            path, exc = self._failure
            self._failure = None
            raise GntkitError(f"{path}: the checkpoint could not be written ({exc}).")


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
