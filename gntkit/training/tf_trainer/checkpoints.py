"""TensorFlow checkpoints of a run: written atomically, restored with a check that they fit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gntkit.errors import GntkitError, require

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")

__all__ = ["save_checkpoint", "restore_checkpoint"]


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
