"""Framework-free parts of training: options, run folders, metrics, curves, schedules.

Both trainers (`torch_trainer`, `tf_trainer`) use this module, so an option
means the same thing in both frameworks: the learning-rate schedule, the
random affine augmentation (its matrices are drawn here with numpy and only
applied on the device), early stopping, the metrics file and the curves.

Run folder layout (a run is self-contained: predict/evaluate/export need
nothing else)::

    RUN/run.json          what was trained: TrainConfig, model, classes, image size, data
    RUN/charset.txt       line number = class id (and charset.json when the data had one)
    RUN/preprocess.json   the preprocessing the training images went through
    RUN/dataset_info.json copy of the data's manifest (when trained from shards)
    RUN/metrics.csv       one row per epoch
    RUN/curves.png        loss and accuracy, train and validation
    RUN/train.log         what was printed
    RUN/checkpoints/      best.* and last.* (framework formats; see checkpoint_path)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, OutputExistsError

__all__ = [
    "TrainConfig",
    "FRAMEWORKS",
    "SCHEDULES",
    "OPTIMIZERS",
    "PRECISIONS",
    "ArrayBatches",
    "learning_rate_at",
    "affine_matrices",
    "normalized_to_pixel_transform",
    "EarlyStopping",
    "RunFolder",
    "METRIC_FIELDS",
    "read_metrics",
    "draw_curves",
    "format_epoch",
    "resolve_precision",
]

FRAMEWORKS = ("torch", "tf")
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
VAL_SPLIT_CANDIDATES = ("val", "validation", "valid", "test")

# Small random affine used by `augment=True`; both frameworks draw from exactly these ranges.
AUGMENT_RANGES = {
    "rotation_degrees": 10.0,   # uniform in [-10, 10]
    "scale": 0.10,              # uniform in [0.9, 1.1]
    "shear_degrees": 8.0,       # uniform in [-8, 8]
    "translate": 0.08,          # fraction of the image side, uniform in [-0.08, 0.08]
}


def _positive_int(name, value, minimum=1):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise GntkitError(f"{name} must be an integer of at least {minimum}, found {value!r}.")


def _number(name, value, low=None, high=None, low_open=False):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise GntkitError(f"{name} must be a finite number, found {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise GntkitError(f"{name} must be {'above' if low_open else 'at least'} {low}, found {value!r}.")
    if high is not None and value > high:
        raise GntkitError(f"{name} must be at most {high}, found {value!r}.")


def _choice(name, value, choices):
    if value not in choices:
        raise GntkitError(f"{name} must be one of {', '.join(map(str, choices))}, found {value!r}.")


@dataclasses.dataclass
class TrainConfig:
    """Every option of a training run; stored in RUN/run.json.

    Attributes:
        framework: "torch" or "tf".
        model: a name from gntkit.models.configs ("vgg19", "vgg16_bn", "cnn3", ...).
        width: multiplier for layer widths (1 = the published model).
        batch_norm: force batch norm on/off; None keeps the model's default.
        epochs: number of epochs to train (a resumed run continues up to this).
        batch_size: global batch size (split over processes/replicas when distributed).
        lr: peak learning rate; None picks 0.01 for SGD, 0.001 for Adam/AdamW.
        schedule: "cosine" (to 0 over the run), "step" (x step_gamma every step_epochs) or "constant".
        warmup_epochs: linear warm-up from 0 over this many epochs (may be fractional).
        step_epochs: for "step": epochs between decays; None = a third of the epochs.
        step_gamma: for "step": decay factor.
        optimizer: "sgd" (momentum, Nesterov off), "adam" or "adamw".
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights (not biases or batch-norm); decoupled for AdamW.
        label_smoothing: 0..1, as torch's CrossEntropyLoss(label_smoothing=).
        augment: small random affine (rotation, scale, shear, shift) applied on the device.
        seed: seeds initialisation, shuffling, augmentation and dropout.
        precision: "auto" (bf16 or fp16 on a GPU, fp32 on CPU), "fp32", "bf16" or "fp16".
        channels_last: torch memory format: None = on for CUDA, off otherwise.
        early_stopping: stop after this many epochs without a better validation accuracy.
        device: "auto", "cpu", "cuda", "cuda:1", ... (torch); "auto", "cpu" or "gpu" (tf).
        train_split, val_split: split names; val_split "auto" picks val, validation, valid or test.
        num_workers: torch DataLoader workers.
        eval_batch_size: batch size for validation; None = 2 x batch_size.
    """

    framework: str = "torch"
    model: str = "vgg19"
    width: float = 1.0
    batch_norm: bool | None = None
    epochs: int = 30
    batch_size: int = 128
    lr: float | None = None
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int | None = None
    step_gamma: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    augment: bool = False
    seed: int = 0
    precision: str = "auto"
    channels_last: bool | None = None
    early_stopping: int | None = None
    device: str = "auto"
    train_split: str = "train"
    val_split: str | None = "auto"
    num_workers: int = 0
    eval_batch_size: int | None = None

    # Options that may differ when a run is resumed (the rest must match the stored run).
    RESUMABLE_CHANGES = ("epochs", "early_stopping", "device", "num_workers", "eval_batch_size")

    def __post_init__(self):
        self.check()

    def check(self) -> "TrainConfig":
        """Validate every option; raise GntkitError with one sentence on the first bad one.

        Spelled-out "off" values are normalised: val_split "none" -> None,
        early_stopping 0 -> None.
        """
        from gntkit.models.configs import get_config

        if isinstance(self.val_split, str) and self.val_split.lower() == "none":
            self.val_split = None
        if self.early_stopping == 0 and not isinstance(self.early_stopping, bool):
            self.early_stopping = None

        _choice("framework", self.framework, FRAMEWORKS)
        get_config(self.model, self.width)
        if self.batch_norm is not None and not isinstance(self.batch_norm, bool):
            raise GntkitError(f"batch_norm must be True, False or None, found {self.batch_norm!r}.")
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        if self.lr is not None:
            _number("lr", self.lr, 0, low_open=True)
        _choice("schedule", self.schedule, SCHEDULES)
        _number("warmup_epochs", self.warmup_epochs, 0)
        if self.step_epochs is not None:
            _positive_int("step_epochs", self.step_epochs)
        _number("step_gamma", self.step_gamma, 0, 1, low_open=True)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _number("momentum", self.momentum, 0, 1)
        _number("weight_decay", self.weight_decay, 0)
        _number("label_smoothing", self.label_smoothing, 0)
        if self.label_smoothing >= 1:
            raise GntkitError(f"label_smoothing must be below 1, found {self.label_smoothing!r}.")
        if not isinstance(self.augment, bool):
            raise GntkitError(f"augment must be True or False, found {self.augment!r}.")
        _positive_int("seed", self.seed, 0)
        _choice("precision", self.precision, PRECISIONS)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise GntkitError(f"channels_last must be True, False or None, found {self.channels_last!r}.")
        if self.early_stopping is not None:
            _positive_int("early_stopping", self.early_stopping)
        if not isinstance(self.device, str) or not self.device:
            raise GntkitError(f"device must be a name such as 'auto', 'cpu' or 'cuda', found {self.device!r}.")
        if not isinstance(self.train_split, str) or not self.train_split:
            raise GntkitError(f"train_split must be a split name, found {self.train_split!r}.")
        if self.val_split is not None and (not isinstance(self.val_split, str) or not self.val_split):
            raise GntkitError(f"val_split must be a split name, 'auto' or None, found {self.val_split!r}.")
        _positive_int("num_workers", self.num_workers, 0)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        if self.early_stopping is not None and self.val_split is None:
            raise GntkitError("early_stopping needs a validation split, found val_split=None.")
        return self

    @property
    def peak_lr(self) -> float:
        """The learning rate at the top of the schedule."""
        if self.lr is not None:
            return float(self.lr)
        return 0.01 if self.optimizer == "sgd" else 0.001

    def to_json(self) -> dict:
        """JSON-able dict of all options."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str = "run.json") -> "TrainConfig":
        """Rebuild a TrainConfig from `to_json()` output.

        Raises:
            GntkitError: unknown or invalid fields.
        """
        if not isinstance(data, dict):
            raise GntkitError(f"{source}: expected a JSON object of training options, found {type(data).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GntkitError(f"{source}: expected training options only, found unknown option {unknown[0]!r}.")
        return cls(**data)


class ArrayBatches:
    """In-memory batches of (uint8 images (B, S, S), int64 labels (B,)) as numpy arrays.

    The same interface as gntkit's torch loaders (`set_epoch`, `len`, iteration),
    so trainers accept either. The order of epoch e is a permutation seeded by
    (seed, e); with `world_size` > 1 each rank takes every world_size-th sample
    of that order (as DistributedSampler does, padding by wrapping around).

    Raises:
        GntkitError: arrays of the wrong dtype or shape, or a bad batch size or rank.
    """

    def __init__(self, images, labels, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise GntkitError(
                f"Training images must be uint8 of shape (N, S, S), found {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise GntkitError(
                f"Labels must be integers of shape ({images.shape[0]},), found {labels.dtype} {labels.shape}."
            )
        if images.shape[0] == 0:
            raise GntkitError("Training needs at least one image, found an empty array.")
        _positive_int("batch_size", batch_size)
        _positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise GntkitError(f"rank must be in 0..{world_size - 1}, found {rank}.")
        self.images = np.ascontiguousarray(images)
        self.labels = labels.astype(np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def image_size(self) -> int:
        """Side S of the (S, S) images."""
        return int(self.images.shape[1])

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffling order of `epoch` (deterministic in seed and epoch)."""
        self.epoch = int(epoch)

    def _indices(self) -> np.ndarray:
        n = len(self.labels)
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                 if self.shuffle else np.arange(n))
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            order = np.resize(order, per_rank * self.world_size)[self.rank::self.world_size]
        return order

    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.labels)
        return -(-n // self.world_size) if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self._indices()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.images[idx], self.labels[idx]


def learning_rate_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step `step` (0-based, counted over the whole run).

    Warm-up is linear from 0 over `warmup_epochs`; then "cosine" decays to 0 at
    the end of `epochs`, "step" multiplies by `step_gamma` every `step_epochs`
    epochs, "constant" stays at the peak.
    """
    _positive_int("steps_per_epoch", steps_per_epoch)
    peak = config.peak_lr
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.schedule == "constant":
        return peak
    if config.schedule == "step":
        every = config.step_epochs or max(1, config.epochs // 3)
        return peak * config.step_gamma ** ((step // steps_per_epoch) // every)
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def affine_matrices(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random small affines for augmentation: float32 (count, 2, 3).

    Each maps an output point to the input point it samples, in normalised
    coordinates ([-1, 1] across the image, pixel centres at (2i+1)/S-1), which is
    what torch's `affine_grid(align_corners=False)` takes; convert with
    `normalized_to_pixel_transform` for TensorFlow.
    """
    r = AUGMENT_RANGES
    angle = np.deg2rad(rng.uniform(-r["rotation_degrees"], r["rotation_degrees"], count))
    shear = np.deg2rad(rng.uniform(-r["shear_degrees"], r["shear_degrees"], count))
    scale = rng.uniform(1 - r["scale"], 1 + r["scale"], count)
    shift = rng.uniform(-2 * r["translate"], 2 * r["translate"], (count, 2))  # normalised units
    cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
    m = np.zeros((count, 2, 3), np.float64)
    # rotation @ shear(x by y), divided by scale (the matrix maps output -> input)
    m[:, 0, 0] = cos / scale
    m[:, 0, 1] = (cos * tan - sin) / scale
    m[:, 1, 0] = sin / scale
    m[:, 1, 1] = (sin * tan + cos) / scale
    m[:, :, 2] = shift
    return m.astype(np.float32)


def normalized_to_pixel_transform(matrices: np.ndarray, size: int) -> np.ndarray:
    """Convert (N, 2, 3) normalised output->input affines to TensorFlow's 8-number pixel transforms.

    `tf.raw_ops.ImageProjectiveTransformV3` maps output pixel (x, y) to input
    (a0 x + a1 y + a2, b0 x + b1 y + b2) with pixel centres at integers; torch's
    grid_sample with align_corners=False has pixel i's centre at (2i+1)/S - 1.
    """
    matrices = np.asarray(matrices, np.float64)
    n = matrices.shape[0]
    to_norm = np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1], [0, 0, 1]])
    to_pixel = np.linalg.inv(to_norm)
    full = np.zeros((n, 3, 3))
    full[:, :2, :] = matrices
    full[:, 2, 2] = 1
    pixel = to_pixel @ full @ to_norm
    return pixel.reshape(n, 9)[:, :8].astype(np.float32)


class EarlyStopping:
    """Stop when validation accuracy has not improved for `patience` epochs.

    State is a small dict (`state()` / `load_state()`) saved with checkpoints so a
    resumed run counts on from where it stopped.
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        if patience is not None:
            _positive_int("early_stopping patience", patience)
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
        parts.append(f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:.2f}% "
                     f"top5 {100 * row['val_top5']:.2f}%")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['images_per_second']:.0f} img/s")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


def resolve_precision(requested: str, accelerator: bool, bf16_supported: bool) -> str:
    """Pick fp32/bf16/fp16 from `precision` and the device.

    "auto" is bf16 on an accelerator that supports it, fp16 on other
    accelerators, fp32 on CPU.

    Raises:
        GntkitError: fp16 asked for on a CPU, or bf16 on a GPU without it.
    """
    _choice("precision", requested, PRECISIONS)
    if requested == "auto":
        if not accelerator:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and not accelerator:
        raise GntkitError("precision fp16 needs a GPU; on a CPU use fp32 or bf16.")
    if requested == "bf16" and accelerator and not bf16_supported:
        raise GntkitError("precision bf16 is not supported by this GPU; use fp16 or fp32.")
    return requested


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunFolder:
    """The files of one training run (see the module docstring for the layout).

    Args:
        path: the run folder.
        framework: "torch" or "tf" (decides checkpoint file names).
    """

    RUN_FILE = "run.json"

    def __init__(self, path, framework: str | None = None):
        self.path = Path(path)
        self.framework = framework
        self._log_file = None

    # paths -----------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        """RUN/run.json."""
        return self.path / self.RUN_FILE

    @property
    def metrics_file(self) -> Path:
        """RUN/metrics.csv."""
        return self.path / "metrics.csv"

    @property
    def curves_file(self) -> Path:
        """RUN/curves.png."""
        return self.path / "curves.png"

    @property
    def log_file(self) -> Path:
        """RUN/train.log."""
        return self.path / "train.log"

    @property
    def checkpoint_dir(self) -> Path:
        """RUN/checkpoints."""
        return self.path / "checkpoints"

    def checkpoint_path(self, which: str) -> Path:
        """Path of checkpoint `which` ("best" or "last").

        torch: `checkpoints/{which}.pt` (one file, torch.save dict). tf:
        `checkpoints/{which}` is a tf.train.Checkpoint prefix (`.index` and
        `.data-*` files next to it).
        """
        _choice("checkpoint", which, ("best", "last"))
        if self.framework == "torch":
            return self.checkpoint_dir / f"{which}.pt"
        if self.framework == "tf":
            return self.checkpoint_dir / which
        raise GntkitError(f"Unknown framework {self.framework!r}: expected torch or tf.")

    def checkpoint_to_load(self, which: str) -> Path:
        """Path of checkpoint `which`; "best" falls back to "last" when no complete best exists."""
        if which == "best" and not self.has_checkpoint("best"):
            which = "last"
        return self.checkpoint_path(which)

    def read_run_info_of_framework(self) -> dict:
        """Read run.json and check that the run was trained with this folder's framework.

        Raises:
            GntkitError: not a run folder, or a run of the other framework.
        """
        info = self.read_run_info()
        found = info["config"].get("framework")
        if found != self.framework:
            raise GntkitError(f"{self.path}: expected a {self.framework} run, found a {found} run.")
        return info

    def has_checkpoint(self, which: str) -> bool:
        """Whether checkpoint `which` was written completely."""
        p = self.checkpoint_path(which)
        if self.framework == "tf":
            return p.with_name(p.name + ".index").is_file() and p.with_name(p.name + ".json").is_file()
        return p.is_file()

    # creation ----------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool) -> bool:
        """Make the folder ready; return True when an earlier run is being resumed.

        Raises:
            OutputExistsError: the folder exists (and is not empty) without resume or overwrite.
            GntkitError: resume asked for but no run or no last checkpoint is there, or both flags.
        """
        if resume and overwrite:
            raise GntkitError("Choose resume or overwrite, not both.")
        exists = self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir()))
        if resume:
            if not self.run_file.is_file():
                raise GntkitError(f"{self.path}: cannot resume, found no {self.RUN_FILE} (no earlier run here).")
            if not self.has_checkpoint("last"):
                raise GntkitError(f"{self.path}: cannot resume, found no last checkpoint in {self.checkpoint_dir}.")
            return True
        if exists:
            if not overwrite:
                raise OutputExistsError(
                    f"{self.path}: the run folder already exists; pass resume to continue it "
                    f"or overwrite to replace it."
                )
            if self.path.is_dir() and not self.run_file.is_file() and any(self.path.iterdir()):
                # Never wipe a folder that is not a gntkit run (a typo could name $HOME).
                raise OutputExistsError(
                    f"{self.path}: the folder is not empty and holds no {self.RUN_FILE}; "
                    f"refusing to overwrite something that is not a gntkit run."
                )
            if self.path.is_dir():
                shutil.rmtree(self.path)
            else:
                self.path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        return False

    def write_run_info(self, info: dict) -> None:
        """Write run.json (TrainConfig and what the model was built for)."""
        _write_json(self.run_file, info)

    def read_run_info(self) -> dict:
        """Read run.json.

        Raises:
            GntkitError: the folder is not a gntkit run or run.json is broken.
        """
        if not self.run_file.is_file():
            raise GntkitError(f"{self.path}: expected a gntkit run folder, found no {self.RUN_FILE}.")
        try:
            info = json.loads(self.run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise GntkitError(f"{self.run_file}: expected JSON, found a syntax error at line {exc.lineno}.") from None
        for key in ("config", "num_classes", "image_size", "channels"):
            if key not in info:
                raise GntkitError(f"{self.run_file}: expected the field {key!r}, found none.")
        return info

    def copy_data_files(self, data_dir) -> None:
        """Copy charset.txt, charset.json and dataset_info.json of a shard folder into the run."""
        data_dir = Path(data_dir)
        for name in ("charset.txt", "charset.json", "dataset_info.json"):
            if (data_dir / name).is_file():
                shutil.copyfile(data_dir / name, self.path / name)

    def write_charset(self, classes) -> None:
        """Write charset.txt (and charset.json) from a Charset or a list of class names."""
        if hasattr(classes, "save") and hasattr(classes, "characters"):
            classes.save(self.path)
            return
        names = [str(c) for c in classes]
        for i, name in enumerate(names):
            if not name or "\n" in name or "\r" in name:
                raise GntkitError(f"Class {i} needs a name without line breaks, found {name!r}.")
        (self.path / "charset.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")

    def write_preprocess(self, preprocess: dict) -> None:
        """Write preprocess.json."""
        _write_json(self.path / "preprocess.json", preprocess)

    def read_preprocess(self) -> dict:
        """Read preprocess.json.

        Raises:
            GntkitError: the run has no preprocess.json.
        """
        p = self.path / "preprocess.json"
        if not p.is_file():
            raise GntkitError(f"{self.path}: expected preprocess.json in the run folder, found none.")
        return json.loads(p.read_text(encoding="utf-8"))

    def read_classes(self) -> list[str]:
        """Class names from charset.txt (line number = class id).

        Raises:
            GntkitError: the run has no charset.txt.
        """
        p = self.path / "charset.txt"
        if not p.is_file():
            raise GntkitError(f"{self.path}: expected charset.txt in the run folder, found none.")
        lines = p.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    # metrics -------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """Append one epoch to metrics.csv (header written with the first row)."""
        new = not self.metrics_file.is_file()
        with self.metrics_file.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_FIELDS})

    def truncate_metrics(self, last_epoch: int) -> list[dict]:
        """Keep only epochs <= last_epoch (a crash may have left rows past the checkpoint)."""
        rows = [r for r in read_metrics(self.metrics_file) if r["epoch"] <= last_epoch]
        if self.metrics_file.exists():
            self.metrics_file.unlink()
        for r in rows:
            self.append_metrics(r)
        return rows

    def log(self, message: str, quiet: bool = False) -> None:
        """Print a line (unless quiet) and append it to train.log."""
        if not quiet:
            print(message, file=sys.stdout, flush=True)
        with self.log_file.open("a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")


def check_resume_config(stored: TrainConfig, requested: dict, run_path) -> TrainConfig:
    """Merge the options given for a resumed run into the stored ones.

    Options in `requested` (only the ones the caller set) may change only if
    listed in TrainConfig.RESUMABLE_CHANGES.

    Raises:
        GntkitError: another option differs from the stored run.
    """
    merged = stored.to_json()
    for key, value in requested.items():
        if key not in merged:
            raise GntkitError(f"Unknown training option {key!r}.")
        if value == merged[key]:
            continue
        if key not in TrainConfig.RESUMABLE_CHANGES:
            raise GntkitError(
                f"{run_path}: the run was trained with {key}={merged[key]!r}, found {key}={value!r}; "
                f"resume with the same {key} or start a new run."
            )
        merged[key] = value
    return TrainConfig.from_json(merged)


def pick_val_split(available: list[str], requested: str | None, train_split: str) -> str | None:
    """Choose the validation split: the requested one, or for "auto" the first of val/validation/valid/test.

    Raises:
        GntkitError: a named split is missing.
    """
    if requested is None:
        return None
    if requested != "auto":
        if requested not in available:
            raise GntkitError(
                f"Validation split {requested!r} is not in the data: expected one of {', '.join(available)}."
            )
        return requested
    for name in VAL_SPLIT_CANDIDATES:
        if name in available and name != train_split:
            return name
    return None


# curves ----------------------------------------------------------------------------------------

_COLORS = {"train": (31, 119, 180), "val": (214, 39, 40)}


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(low / step) * step
    ticks = []
    t = first
    while t <= high + 1e-12:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _draw_panel(draw, box, title, series, ylabel_fmt, font, y_range=None, legend_bottom=False):
    left, top, right, bottom = box
    plot = (left + 58, top + 26, right - 12, bottom - 34)
    draw.text((left + (right - left) // 2 - 6 * len(title) // 2 * 1, top + 4), title, fill=(0, 0, 0), font=font)
    xs_all = [x for _, pts in series for x, _ in pts]
    ys_all = [y for _, pts in series for _, y in pts if y is not None and math.isfinite(y)]
    if not xs_all or not ys_all:
        draw.text((plot[0] + 10, plot[1] + 10), "no data", fill=(0, 0, 0), font=font)
        return
    x0, x1 = min(xs_all), max(xs_all)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y_range is not None:
        y0, y1 = y_range
    else:
        y0, y1 = min(ys_all), max(ys_all)
        pad = (y1 - y0) * 0.05 or max(abs(y1) * 0.05, 0.05)
        y0, y1 = max(0.0, y0 - pad), y1 + pad

    def px(x, y):
        return (plot[0] + (x - x0) / (x1 - x0) * (plot[2] - plot[0]),
                plot[3] - (y - y0) / (y1 - y0) * (plot[3] - plot[1]))

    for t in _nice_ticks(y0, y1):
        _, yy = px(x0, t)
        draw.line([(plot[0], yy), (plot[2], yy)], fill=(230, 230, 230))
        label = ylabel_fmt(t)
        draw.text((plot[0] - 8 - 6 * len(label), yy - 6), label, fill=(60, 60, 60), font=font)
    for t in _nice_ticks(x0, x1, 6):
        if abs(t - round(t)) > 1e-9:
            continue
        xx, _ = px(t, y0)
        draw.line([(xx, plot[3]), (xx, plot[3] + 4)], fill=(0, 0, 0))
        draw.text((xx - 3 * len(str(int(t))), plot[3] + 6), str(int(t)), fill=(60, 60, 60), font=font)
    draw.rectangle(plot, outline=(0, 0, 0))
    draw.text((plot[0] + (plot[2] - plot[0]) // 2 - 15, plot[3] + 20), "epoch", fill=(60, 60, 60), font=font)
    legend_y = plot[3] - 6 - 14 * len(series) if legend_bottom else plot[1] + 6
    for name, pts in series:
        color = _COLORS[name]
        pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
        coords = [px(x, y) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=color, width=2)
        for cx, cy in coords:
            draw.ellipse((cx - 2.5, cy - 2.5, cx + 2.5, cy + 2.5), fill=color)
        if pts:
            draw.line([(plot[2] - 80, legend_y + 6), (plot[2] - 62, legend_y + 6)], fill=color, width=2)
            draw.text((plot[2] - 56, legend_y), "train" if name == "train" else "validation",
                      fill=(0, 0, 0), font=font)
            legend_y += 14


def draw_curves(rows: list[dict], path, title: str = "") -> Path:
    """Draw loss and accuracy per epoch (train and validation) as a PNG with Pillow only.

    Args:
        rows: metrics rows as written to metrics.csv.
        path: PNG file to write.
        title: drawn above the panels (model and run name).

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    width, height = 1000, 420
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    if title:
        draw.text((12, 6), title, fill=(0, 0, 0), font=font)
    epochs = [r["epoch"] for r in rows]
    loss = [("train", list(zip(epochs, [r.get("train_loss") for r in rows]))),
            ("val", list(zip(epochs, [r.get("val_loss") for r in rows])))]
    acc = [("train", list(zip(epochs, [r.get("train_accuracy") for r in rows]))),
           ("val", list(zip(epochs, [r.get("val_accuracy") for r in rows])))]
    _draw_panel(draw, (0, 20, width // 2, height), "loss", loss, lambda t: f"{t:.3g}", font)
    _draw_panel(draw, (width // 2, 20, width, height), "accuracy", acc,
                lambda t: f"{100 * t:.0f}%", font, y_range=(0.0, 1.0), legend_bottom=True)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.png")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


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
        "best_checkpoint": str(run.checkpoint_path("best")),
        "last_checkpoint": str(run.checkpoint_path("last")),
    }


# data facts and run.json ------------------------------------------------------------------------

def splits_in(data_dir) -> list[str]:
    """Split names recorded in a shard folder's dataset_info.json.

    Raises:
        GntkitError: the folder has no readable dataset_info.json.
    """
    path = Path(data_dir) / "dataset_info.json"
    if not path.is_file():
        raise GntkitError(f"{data_dir}: expected a gntkit shard folder with dataset_info.json, found none.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GntkitError(f"{path}: expected JSON, found a syntax error at line {exc.lineno}.") from None
    splits = info.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise GntkitError(f"{path}: expected a non-empty 'splits' object, found {splits!r}.")
    return list(splits)


def data_facts(train_set, data_dir, train_split: str, val_split: str | None, val_samples: int) -> dict:
    """What the trainer needs to know about shards, from a gntkit.datasets ShardSet."""
    size = int(train_set.image_size) if train_set.image_size else None
    if not size:
        raise GntkitError(
            f"{data_dir}: training needs fixed-size images, found raw (native-size) shards; "
            f"convert with a size (e.g. --size 64)."
        )
    return {
        "data_dir": str(Path(data_dir).resolve()),
        "num_classes": int(train_set.num_classes),
        "image_size": size,
        "preprocess": dict(train_set.preprocess),
        "train_split": train_split,
        "val_split": val_split,
        "train_samples": int(len(train_set)),
        "val_samples": int(val_samples),
    }


def preprocess_json(preprocess, image_size: int) -> dict:
    """The preprocessing description stored in a run: a dict, a Preprocess, or None (gntkit's default at this size)."""
    if preprocess is None:
        from gntkit.preprocess import Preprocess

        return Preprocess(size=image_size).to_json()
    if hasattr(preprocess, "to_json"):
        return preprocess.to_json()
    if isinstance(preprocess, dict):
        return dict(preprocess)
    raise GntkitError(f"preprocess must be a Preprocess, a dict or None, found {type(preprocess).__name__}.")


def check_arrays(images, labels, num_classes: int, what: str):
    """Validate one (images, labels) pair for in-memory training.

    Raises:
        GntkitError: wrong dtype, shape, or labels outside 0..num_classes-1.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) == 0:
        raise GntkitError(f"{what} images must be uint8 of shape (N, S, S) with N > 0, found {images.dtype} {images.shape}.")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise GntkitError(f"{what} labels must be {len(images)} integers, found {labels.dtype} {labels.shape}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise GntkitError(
            f"{what} labels must be class ids 0..{num_classes - 1}, found {labels.min()}..{labels.max()}."
        )
    return images, labels.astype(np.int64)


def array_sources(arrays, classes, preprocess, config: TrainConfig, rank: int = 0, world_size: int = 1):
    """ArrayBatches for in-memory training, and the data facts; see gntkit.training.train_arrays."""
    if arrays is None or len(arrays) != 4:
        raise GntkitError("In-memory training needs (train_images, train_labels, val_images, val_labels).")
    if classes is None or len(classes) < 2:
        raise GntkitError("In-memory training needs the class names (at least 2), found none.")
    num_classes = len(classes)
    train_images, train_labels = check_arrays(arrays[0], arrays[1], num_classes, "Training")
    size = int(train_images.shape[1])
    val = None
    val_count = 0
    if arrays[2] is not None:
        val_images, val_labels = check_arrays(arrays[2], arrays[3], num_classes, "Validation")
        if val_images.shape[1] != size:
            raise GntkitError(f"Validation images must be {size}x{size} like the training images, "
                              f"found {val_images.shape[1]}x{val_images.shape[2]}.")
        val = ArrayBatches(val_images, val_labels, max(1, (config.eval_batch_size or 2 * config.batch_size) // world_size),
                           shuffle=False, seed=config.seed, rank=rank, world_size=world_size)
        val_count = len(val_labels)
    elif config.early_stopping is not None:
        raise GntkitError("early_stopping needs validation arrays, found none.")
    train = ArrayBatches(train_images, train_labels, max(1, config.batch_size // world_size), shuffle=True,
                         seed=config.seed, rank=rank, world_size=world_size)
    facts = {
        "data_dir": None,
        "num_classes": num_classes,
        "image_size": size,
        "preprocess": preprocess_json(preprocess, size),
        "train_split": "arrays",
        "val_split": "arrays" if val is not None else None,
        "train_samples": int(len(train_labels)),
        "val_samples": int(val_count),
    }
    return train, val, facts


def run_info(config: TrainConfig, facts: dict, parameters: int, precision: str, world_size: int,
             device: str, channels_last: bool, framework_version: str) -> dict:
    """The content of run.json."""
    import gntkit

    return {
        "gntkit_version": gntkit.__version__,
        "framework": config.framework,
        "framework_version": framework_version,
        "model": config.model,
        "num_classes": facts["num_classes"],
        "image_size": facts["image_size"],
        "channels": 1,
        "input": "uint8 (N, S, S), ink bright on 0 as in the shards; the model sees x / 255",
        "parameters": int(parameters),
        "precision": precision,
        "channels_last": bool(channels_last),
        "world_size": int(world_size),
        "device": device,
        "data": {k: facts[k] for k in ("data_dir", "train_split", "val_split", "train_samples", "val_samples")},
        "config": config.to_json(),
    }


def metrics_row(epoch: int, train: dict, val: dict | None) -> dict:
    """One metrics.csv row from train_one_epoch's and validate's dicts."""
    return {
        "epoch": int(epoch),
        "train_loss": round(float(train["loss"]), 6),
        "train_accuracy": round(float(train["accuracy"]), 6),
        "val_loss": round(float(val["loss"]), 6) if val else None,
        "val_accuracy": round(float(val["accuracy"]), 6) if val else None,
        "val_top5": round(float(val["top5"]), 6) if val else None,
        "lr": float(f"{train['lr']:.6g}"),
        "seconds": round(float(train["seconds"]), 3),
        "images_per_second": round(train["images"] / max(train["seconds"], 1e-9), 1),
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
    from gntkit.models.configs import describe, get_config

    lines = [
        describe(get_config(config.model, config.width), facts["num_classes"], facts["image_size"], 1, config.batch_norm)
        + f" [{framework_label}]",
        f"{device_text}; train {facts['train_samples']:,} images"
        + (f", validation {facts['val_samples']:,} images ({facts['val_split']})" if has_val else ", no validation split"),
    ]
    if facts.get("val_split") == "test":
        lines.append("note: validating on the test split (the data has no val split); the test accuracy is then "
                     "not an independent estimate.")
    if resumed:
        lines.append(f"resuming after epoch {start_epoch} of {config.epochs}")
    return lines
