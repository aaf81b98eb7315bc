"""What a run says about itself: run.json's content, the start-up lines and the returned summary."""

from __future__ import annotations

import gntkit
from gntkit.models.configs import describe, get_config
from gntkit.training.config import TrainConfig
from gntkit.training.run_folder import RunFolder

__all__ = ["run_info", "startup_messages", "summarize"]


def run_info(config: TrainConfig, facts: dict, parameters: int, precision: str, world_size: int,
             device: str, channels_last: bool, framework_version: str) -> dict:
    """The content of run.json."""
    return {
        "gntkit_version": gntkit.__version__,
        "framework": config.framework,
        "framework_version": framework_version,
        "model": config.model,
        "num_classes": facts["num_classes"],
        "image_size": facts["image_size"],
        "channels": int(config.channels),
        "input": "uint8 (N, S, S), ink bright on 0 as in the shards; the model sees x / 255 "
                 "(repeated over its channels)",
        "parameters": int(parameters),
        "precision": precision,
        "channels_last": bool(channels_last),
        "world_size": int(world_size),
        "device": device,
        "host_malloc": facts.get("host_malloc"),
        "data": {k: facts[k] for k in ("data_dir", "train_split", "val_split", "train_samples", "val_samples")},
        "config": config.to_json(),
    }


def startup_messages(config, facts: dict, framework_label: str, device_text: str, has_val: bool,
                     resumed: bool, start_epoch: int) -> list[str]:
    """The lines a trainer logs before its first epoch (model, device, data, caveats).

    Args:
        config: the TrainConfig.
        facts: data facts (num_classes, image_size, train/val samples, val_split).
        framework_label: e.g. "torch 2.13.0".
        device_text: the framework's device/precision description.
        has_val: whether a validation split is used.
        resumed / start_epoch: whether this run continues an earlier one, after which epoch.
    """
    unit = "lines" if facts.get("lines") else "images"
    lines = [
        describe(get_config(config.model, config.width), facts["num_classes"], facts["image_size"], config.channels,
                 config.batch_norm)
        + f" [{framework_label}]",
        f"{device_text}; train {facts['train_samples']:,} {unit}"
        + (f", validation {facts['val_samples']:,} {unit} ({facts['val_split']})" if has_val else ", no validation split"),
    ]
    if facts.get("lines"):
        lines.append("text lines: CTC loss per line; accuracy is the accurate rate AR = 1 - CER of greedy decoding")
    if facts.get("val_split") == "test":
        lines.append("note: validating on the test split (the data has no val split); the test accuracy is then "
                     "not an independent estimate.")
    if resumed:
        lines.append(f"resuming after epoch {start_epoch} of {config.epochs}")
    return lines


def summarize(run: RunFolder, config: TrainConfig, rows: list[dict], parameters: int,
              stopped_early: bool, seconds: float) -> dict:
    """The dict `gntkit.training.train` returns: where the run is and how it went."""
    best = max((r for r in rows if r.get("val_accuracy") is not None),
               key=lambda r: (r["val_accuracy"], -r["epoch"]), default=None)
    last = rows[-1] if rows else None
    return {
        "run_dir": str(run.path),
        "framework": config.framework,
        "model": config.model,
        "parameters": int(parameters),
        "epochs_completed": last["epoch"] if last else 0,
        "epochs": config.epochs,
        "stopped_early": bool(stopped_early),
        "best_epoch": best["epoch"] if best else None,
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "last": last,
        "seconds": round(seconds, 3),
        "metrics_file": str(run.metrics_file),
        "curves_file": str(run.curves_file),
        "tensorboard_dir": str(run.tensorboard_dir),
        "best_checkpoint": str(run.checkpoint_path("best")),
        "last_checkpoint": str(run.checkpoint_path("last")),
    }
