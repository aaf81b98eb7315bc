"""Per-epoch numbers: early stopping, the metrics.csv rows and the printed epoch line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from gntkit.training.config import positive_int

__all__ = ["EarlyStopping", "METRIC_FIELDS", "read_metrics", "metrics_row", "format_epoch"]


class EarlyStopping:
    """Stop when validation accuracy has not improved for `patience` epochs.

    State is a small dict (`state()` / `load_state()`) saved with checkpoints so a
    resumed run counts on from where it stopped.
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        if patience is not None:
            positive_int("early_stopping patience", patience)
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        """Whether `value` beats the best so far (does not record it)."""
        return value > self.best + self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record an epoch's metric; return True when training should stop."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict:
        """JSON-able state for checkpoints."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict) -> None:
        """Restore what `state()` returned."""
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])


METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5",
                 "lr", "seconds", "images_per_second")


def read_metrics(path) -> list[dict]:
    """Read metrics.csv into a list of dicts (numbers as float, epoch as int, empty as None)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k == "epoch" else (float(v) if v not in ("", None) else None))
                         for k, v in row.items()})
    return rows


def format_epoch(row: dict, epochs: int) -> str:
    """One printed line per epoch."""
    parts = [f"epoch {row['epoch']}/{epochs}",
             f"train loss {row['train_loss']:.4f} acc {100 * row['train_accuracy']:.2f}%"]
    if row.get("val_loss") is not None:
        parts.append(f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}%"
                     + (f" top5 {100 * row['val_top5']:.2f}%" if row.get("val_top5") is not None else ""))
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['images_per_second']:.0f} img/s")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


def metrics_row(epoch: int, train: dict, val: dict | None) -> dict:
    """One metrics.csv row from train_one_epoch's and validate's dicts."""
    return {
        "epoch": int(epoch),
        "train_loss": round(float(train["loss"]), 6),
        "train_accuracy": round(float(train["accuracy"]), 6),
        "val_loss": round(float(val["loss"]), 6) if val else None,
        "val_accuracy": round(float(val["accuracy"]), 6) if val else None,
        "val_top5": round(float(val["top5"]), 6) if val and val.get("top5") is not None else None,  # lines: none
        "lr": float(f"{train['lr']:.6g}"),
        "seconds": round(float(train["seconds"]), 3),
        "images_per_second": round(train["images"] / max(train["seconds"], 1e-9), 1),
    }
