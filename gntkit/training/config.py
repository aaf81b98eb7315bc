"""Every training option, defined once: `TrainConfig`.

Each dataclass field carries its help text (and, where the default needs words,
`default_text`) in its metadata. `gntkit.training.train()` checks its keywords
against these fields, `gntkit train` builds one CLI option per field from them
(`gntkit.training.cli_options`), and the help of both comes from here, so a default
is written exactly once.

Also here: the resume rule (which options may change when a run continues), the
choice of the validation split, and which trainer package runs a framework.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing

import numpy as np

from gntkit.errors import GntkitError
from gntkit.models.configs import get_config, model_names

__all__ = [
    "TrainConfig",
    "FRAMEWORKS",
    "SCHEDULES",
    "OPTIMIZERS",
    "PRECISIONS",
    "FREEZE_CHOICES",
    "LOADERS",
    "option_fields",
    "options_help",
    "check_option_names",
    "check_resume_config",
    "pick_val_split",
    "trainer_module",
]

FRAMEWORKS = ("torch", "tf")
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FREEZE_CHOICES = ("features",)
LOADERS = ("host", "gpu")
VAL_SPLIT_CANDIDATES = ("val", "validation", "valid", "test")


def positive_int(name, value, minimum=1):
    """Raise GntkitError unless `value` is an int (not bool) of at least `minimum`."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise GntkitError(f"{name} must be an integer of at least {minimum}, found {value!r}.")


def finite_number(name, value, low=None, high=None, low_open=False):
    """Raise GntkitError unless `value` is a finite number within [low, high] ((low, high] with low_open)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise GntkitError(f"{name} must be a finite number, found {value!r}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise GntkitError(f"{name} must be {'above' if low_open else 'at least'} {low}, found {value!r}.")
    if high is not None and value > high:
        raise GntkitError(f"{name} must be at most {high}, found {value!r}.")


def one_of(name, value, choices):
    """Raise GntkitError unless `value` is one of `choices`."""
    if value not in choices:
        raise GntkitError(f"{name} must be one of {', '.join(map(str, choices))}, found {value!r}.")


def _tristate(name, value):
    if value is not None and not isinstance(value, bool):
        raise GntkitError(f"{name} must be True, False or None, found {value!r}.")


def _model_names() -> tuple:
    return tuple(model_names())


def _option(default, help: str, *, choices=None, default_text=None, flag=None):
    """A dataclass field with its CLI help (and choices, default text, flag spelling) in the metadata."""
    metadata = {"help": help, "choices": choices, "default_text": default_text, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Every option of a training run; stored in RUN/run.json.

    The fields, their defaults and their help are listed by `options_help()`
    (and `gntkit train --help`); docs/training.md says why each default was chosen.
    """

    framework: str = _option("torch", "Deep-learning framework.", choices=FRAMEWORKS)
    model: str = _option("vgg19", "Architecture (gntkit.models.configs).", choices=lambda: _model_names())
    width: float = _option(1.0, "Multiplier for every layer width (1 = the published model).")
    batch_norm: bool | None = _option(None, "Batch norm after each convolution.",
                                      default_text="the model's own choice", flag="--batch-norm/--no-batch-norm")
    epochs: int = _option(30, "Epochs to train (a resumed run continues up to this).")
    batch_size: int = _option(128, "Global batch size: split over all processes or replicas (each device gets "
                                   "batch size / devices; the log prints it).")
    lr: float | None = _option(None, "Peak learning rate.", default_text="0.01 for sgd, 0.001 for adam/adamw")
    schedule: str = _option("cosine", "Learning-rate schedule after warm-up.", choices=SCHEDULES)
    warmup_epochs: float = _option(0.0, "Linear warm-up from 0 over this many epochs (may be fractional).")
    step_epochs: int | None = _option(None, "Step schedule: epochs between decays.", default_text="a third of the epochs")
    step_gamma: float = _option(0.1, "Step schedule: decay factor.")
    optimizer: str = _option("adamw", "Optimizer (sgd uses momentum, no Nesterov).", choices=OPTIMIZERS)
    momentum: float = _option(0.9, "SGD momentum.")
    weight_decay: float = _option(0.05, "Decoupled weight decay: every step multiplies weights (not biases or "
                                        "batch norm) by 1 - lr x weight_decay, in every optimizer and both frameworks.")
    label_smoothing: float = _option(0.1, "Label smoothing of the training loss (as torch's CrossEntropyLoss).")
    augment: bool = _option(True, "Random affine (rotation, shear, scale, shift) and elastic distortion of each "
                                  "training image (gntkit.training.augment.AUGMENT).", flag="--augment/--no-augment")
    seed: int = _option(0, "Seeds initialisation, shuffling, augmentation and dropout.")
    precision: str = _option("auto", "Arithmetic: auto = bf16 on GPUs with it (else fp16) and on CPUs with "
                                     "AVX-512 BF16 or AMX (both frameworks; measured there to train as well as "
                                     "fp32, docs/training.md), else fp32.", choices=PRECISIONS)
    channels_last: bool | None = _option(None, "torch: channels-last memory format.",
                                         default_text="on for CUDA and for bf16 on a CPU",
                                         flag="--channels-last/--no-channels-last")
    compile: bool = _option(False, "Compile the training step (torch.compile / TensorFlow XLA jit_compile).",
                            flag="--compile/--no-compile")
    early_stopping: int | None = _option(None, "Stop after this many epochs without a better validation "
                                               "accuracy (0 = off).", default_text="off")
    device: str = _option("auto", "auto, cpu, cuda, cuda:N (torch) or gpu, gpu:N (tf).")
    train_split: str = _option("train", "Training split.")
    val_split: str | None = _option("auto", "Validation split: a name, none, or auto (val, validation, valid, "
                                             "else test).")
    num_workers: int = _option(0, "torch DataLoader worker processes.")
    loader: str = _option("host", "torch: where batches come from: host (DataLoader, pinned memory, prefetched to "
                                  "the device) or gpu (each rank's share of the split kept in GPU memory).",
                          choices=LOADERS)
    save_every: int = _option(1, "Write the last checkpoint every N epochs (and after the final one); the best "
                                 "one is written whenever it improves.")
    eval_batch_size: int | None = _option(None, "Batch size for validation.", default_text="2 x batch size")
    pretrained: str | None = _option(None, "Weights file to start from (see gntkit.models apply_pretrained).",
                                     default_text="none")
    freeze: str | None = _option(None, "With --pretrained: parts kept fixed while training.",
                                 choices=FREEZE_CHOICES, default_text="none")
    channels: int = _option(1, "Input channels the model takes (gray images are repeated to fill them; 3 "
                                "for ImageNet-style pretrained weights).")

    # Options that may differ when a run is resumed (the rest must match the stored run).
    RESUMABLE_CHANGES: typing.ClassVar[tuple] = ("epochs", "early_stopping", "device", "num_workers",
                                                 "eval_batch_size", "compile", "loader", "save_every")

    def __post_init__(self):
        self.check()

    def check(self) -> TrainConfig:
        """Validate every option; raise GntkitError with one sentence on the first bad one.

        Spelled-out "off" values are normalised: val_split "none" -> None,
        early_stopping 0 -> None.
        """
        if isinstance(self.val_split, str) and self.val_split.lower() == "none":
            self.val_split = None
        if self.early_stopping == 0 and not isinstance(self.early_stopping, bool):
            self.early_stopping = None
        one_of("framework", self.framework, FRAMEWORKS)
        get_config(self.model, self.width)
        _tristate("batch_norm", self.batch_norm)
        self._check_numbers()
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("augment", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GntkitError(f"{name} must be True or False, found {getattr(self, name)!r}.")
        one_of("precision", self.precision, PRECISIONS)
        one_of("loader", self.loader, LOADERS)
        _tristate("channels_last", self.channels_last)
        self._check_names()
        if self.early_stopping is not None and self.val_split is None:
            raise GntkitError("early_stopping needs a validation split, found val_split=None.")
        return self

    def _check_numbers(self) -> None:
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        if self.lr is not None:
            finite_number("lr", self.lr, 0, low_open=True)
        finite_number("warmup_epochs", self.warmup_epochs, 0)
        if self.step_epochs is not None:
            positive_int("step_epochs", self.step_epochs)
        finite_number("step_gamma", self.step_gamma, 0, 1, low_open=True)
        finite_number("momentum", self.momentum, 0, 1)
        finite_number("weight_decay", self.weight_decay, 0)
        finite_number("label_smoothing", self.label_smoothing, 0)
        if self.label_smoothing >= 1:
            raise GntkitError(f"label_smoothing must be below 1, found {self.label_smoothing!r}.")
        positive_int("seed", self.seed, 0)
        if self.early_stopping is not None:
            positive_int("early_stopping", self.early_stopping)
        positive_int("num_workers", self.num_workers, 0)
        if self.eval_batch_size is not None:
            positive_int("eval_batch_size", self.eval_batch_size)
        positive_int("channels", self.channels)
        positive_int("save_every", self.save_every)

    def _check_names(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise GntkitError(f"device must be a name such as 'auto', 'cpu' or 'cuda', found {self.device!r}.")
        if not isinstance(self.train_split, str) or not self.train_split:
            raise GntkitError(f"train_split must be a split name, found {self.train_split!r}.")
        if self.val_split is not None and (not isinstance(self.val_split, str) or not self.val_split):
            raise GntkitError(f"val_split must be a split name, 'auto' or None, found {self.val_split!r}.")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained):
            raise GntkitError(f"pretrained must be a file path, found {self.pretrained!r}.")
        if self.freeze is not None:
            one_of("freeze", self.freeze, FREEZE_CHOICES)
            if self.pretrained is None:
                raise GntkitError(f"freeze={self.freeze!r} needs pretrained weights, found pretrained=None.")

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
    def from_json(cls, data: dict, source: str = "run.json") -> TrainConfig:
        """Rebuild a TrainConfig from `to_json()` output.

        Options added to gntkit after the run was written take the value that
        reproduces the old behaviour (see `_LEGACY_VALUES`).

        Raises:
            GntkitError: unknown or invalid fields.
        """
        if not isinstance(data, dict):
            raise GntkitError(f"{source}: expected a JSON object of training options, found {type(data).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise GntkitError(f"{source}: expected training options only, found unknown option {unknown[0]!r}.")
        return cls(**{**_LEGACY_VALUES, **data})


# Runs written before these options existed behaved as these values.
_LEGACY_VALUES = {"compile": False, "pretrained": None, "freeze": None, "channels": 1}


def option_fields() -> list[dataclasses.Field]:
    """The TrainConfig fields, in order (each with metadata help, choices, default_text, flag)."""
    return list(dataclasses.fields(TrainConfig))


def option_type(field: dataclasses.Field) -> type:
    """The plain Python type of an option (int, float, str or bool), None removed from `X | None`."""
    hint = typing.get_type_hints(TrainConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def default_text(field: dataclasses.Field) -> str:
    """How an option's default reads in help text."""
    if field.metadata.get("default_text"):
        return field.metadata["default_text"]
    value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def option_help(field: dataclasses.Field) -> str:
    """One option's help: its text, its choices and its default."""
    text = field.metadata["help"]
    choices = field.metadata.get("choices")
    if callable(choices):  # the model names: read when asked, the registry grows
        choices = choices()
    if choices:
        text += f" One of: {', '.join(choices)}."
    return f"{text} Default: {default_text(field)}."


def options_help() -> str:
    """Every option with its help, one per line (for docstrings and docs)."""
    return "\n".join(f"    {f.name}: {option_help(f)}" for f in option_fields())


def check_option_names(options: dict) -> None:
    """Raise GntkitError naming the first key of `options` that is not a TrainConfig field."""
    names = {f.name for f in option_fields()}
    unknown = sorted(set(options) - names)
    if unknown:
        raise GntkitError(f"Unknown training option {unknown[0]!r}.")


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


def trainer_module(framework: str):
    """The trainer package of a framework (gntkit.training.torch_trainer or tf_trainer), imported on demand.

    Raises:
        GntkitError: unknown framework; MissingDependencyError when it is not installed.
    """
    one_of("framework", framework, FRAMEWORKS)
    return importlib.import_module(f"gntkit.training.{framework}_trainer")
