"""The one training loop: epochs, early stopping, checkpoints, metrics, curves, TensorBoard, resume.

Both trainers call `run_training(backend, ...)`; the framework lives behind a
few hooks of the backend object (see `Backend`), so what a run does between
optimizer steps exists once and means the same in torch and TensorFlow.

Step-level hooks (also used by `train_epoch`, which the trainers' public
`train_one_epoch` functions call):

    steps.begin_epoch(epoch)                  reseed dropout/augmentation, reset the running sums
    steps.distribute(batches) -> iterable     batches as the framework takes them
    steps.train_step(images, labels, lr, i)   one optimizer step (batch i of the epoch)
    steps.totals(reduce) -> (loss_sum, correct, count) so far (reduce: summed over processes)
"""

from __future__ import annotations

import math
import time

import numpy as np

from gntkit.errors import GntkitError
from gntkit.progress import ProgressBar
from gntkit.training import figures
from gntkit.training.batches import array_sources
from gntkit.training.config import TrainConfig
from gntkit.training.metrics import EarlyStopping, format_epoch, metrics_row, read_metrics
from gntkit.training.run_folder import RunFolder
from gntkit.training.schedule import learning_rate_at
from gntkit.training.summaries import run_info, startup_messages, summarize

__all__ = ["Backend", "train_epoch", "run_training", "progress_bar"]

PROGRESS_REFRESH_SECONDS = 0.5  # how often the running loss is read from the device for the bar
# metrics.csv column -> TensorBoard tag (train and validation curves share a chart per quantity)
TENSORBOARD_TAGS = {"train_loss": "loss/train", "val_loss": "loss/validation",
                    "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/validation",
                    "val_top5": "accuracy/validation_top5", "lr": "learning_rate",
                    "images_per_second": "images_per_second"}


class Backend:
    """The hooks a framework provides to `run_training` (torch_trainer.TorchBackend, tf_trainer.TFBackend).

    Attributes set by the backend: framework ("torch"/"tf"), label ("torch 2.13.0"), version ("2.13.0"),
    device_name (run.json's "device"), device_text (one line for the log), is_main (writes the run folder),
    world_size, precision (resolved), channels_last, steps (step-level hooks,
    valid after build), parameters (after build).
    """

    framework = ""
    label = ""
    version = ""
    device_name = ""
    device_text = ""
    is_main = True
    world_size = 1
    precision = "fp32"
    channels_last = False

    def open_shards(self, config: TrainConfig, data_dir):
        """Return (train batches, validation batches or None, data facts) over gntkit shards."""
        raise NotImplementedError

    def rank_share(self) -> tuple[int, int]:
        """(rank, number of shares) of in-memory arrays this process trains on."""
        return 0, 1

    def build(self, config: TrainConfig, facts: dict) -> int:
        """Create the model and optimizer (and `self.steps`); return the trainable parameter count."""
        raise NotImplementedError

    def validate(self, batches) -> dict:
        """{"loss", "accuracy", "top5", "images"} over `batches` (summed over processes)."""
        raise NotImplementedError

    def save(self, folder, which: str, state: dict, with_optimizer: bool) -> None:
        """Write checkpoint `which` ("best"/"last") with the trainer `state` into `folder`."""
        raise NotImplementedError

    def load(self, path, with_optimizer: bool) -> dict:
        """Restore the model (and optimizer) from a checkpoint; return its trainer state."""
        raise NotImplementedError

    def tensorboard(self, logdir):
        """A writer with scalars(dict, step), images(tag, uint8 (N, S, S), step), close()."""
        raise NotImplementedError

    def sample_images(self, train_batches, count: int = 8) -> np.ndarray:
        """uint8 (N <= count, S, S) on the host: the first training images, read by the main process alone."""
        for images, _ in train_batches:
            return np.asarray(images)[:count]
        return np.zeros((0, 1, 1), np.uint8)

    def augmented_preview(self, images) -> np.ndarray:
        """uint8 (N, S, S): `images` as the training step sees them after augmentation."""
        return np.asarray(images)

    def on_main(self, action) -> None:
        """Run `action()` on the main process only (backends with process groups also raise its error everywhere)."""
        if self.is_main:
            action()

    def barrier(self) -> None:
        """Wait for every process."""

    def wait_saved(self) -> None:
        """Wait until the checkpoints written in the background are on disk."""

    def device_batches(self, batches):
        """`batches` as the steps take them (a backend may copy them to its device ahead of the step)."""
        return batches

    def close(self) -> None:
        """Release what the backend started (process groups)."""


def progress_bar(total: int, description: str, enabled: bool):
    """The per-batch bar of an epoch: gntkit.progress.ProgressBar (rich on a terminal, plain lines otherwise)."""
    return ProgressBar(total, unit="samples", description=description, enabled=enabled)


def train_epoch(steps, batches, config: TrainConfig, *, epoch: int, steps_per_epoch: int,
                progress=None) -> dict:
    """Train one epoch through the step hooks; return {"loss", "accuracy", "images", "seconds", "lr", "steps"}.

    The learning rate of every step comes from `learning_rate_at` (global step =
    epoch * steps_per_epoch + i). Running sums stay on the device and are read
    only for the progress bar (every PROGRESS_REFRESH_SECONDS) and at the end.

    Raises:
        GntkitError: no batches, or the loss became NaN or infinite (the run diverged).
    """
    steps.begin_epoch(epoch)
    lr = learning_rate_at(config, epoch * steps_per_epoch, steps_per_epoch)
    start = shown = time.perf_counter()
    done = count = 0
    for i, (images, labels) in enumerate(steps.distribute(batches)):
        lr = learning_rate_at(config, epoch * steps_per_epoch + i, steps_per_epoch)
        steps.train_step(images, labels, lr, i)
        done = i + 1
        if progress is not None and time.perf_counter() - shown >= PROGRESS_REFRESH_SECONDS:
            loss_sum, correct, seen = steps.totals(reduce=False)
            progress.update(advance=int(seen) - count, loss=loss_sum / max(seen, 1), acc=correct / max(seen, 1))
            count, shown = int(seen), time.perf_counter()
    if progress is not None:
        loss_sum, correct, seen = steps.totals(reduce=False)
        fields = {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1)}
        if progress.total is not None and int(seen) < progress.total:  # a last partial batch left out
            fields["left_out"] = int(progress.total - int(seen))
        progress.update(advance=int(seen) - count, **fields)
        progress.settle()
    loss_sum, correct, total = steps.totals(reduce=True)
    seconds = time.perf_counter() - start
    if total == 0:
        raise GntkitError(f"Epoch {epoch + 1} saw no training batches: expected a non-empty training split.")
    loss = loss_sum / total
    if not math.isfinite(loss):
        raise GntkitError(
            f"Training diverged in epoch {epoch + 1}: expected a finite loss, found {loss}; "
            f"lower the learning rate (now {config.peak_lr:g}) or use a batch-norm model."
        )
    return {"loss": loss, "accuracy": correct / total, "images": int(total), "seconds": seconds,
            "lr": lr, "steps": done}


def batch_line(config: TrainConfig, devices: int) -> str:
    """The log line that says how the global batch (--batch-size) is split over the devices."""
    per_device = max(1, config.batch_size // max(1, devices))
    return (f"batch size {config.batch_size} (global): {per_device} per device on {devices} device(s)"
            + ("" if config.batch_size % max(1, devices) == 0 else f" ({per_device * devices} per step)"))


def _open_data(backend, config, data_dir, arrays, classes, preprocess):
    if data_dir is not None:
        train, val, facts = backend.open_shards(config, data_dir)
    else:
        rank, shares = backend.rank_share()
        train, val, facts = array_sources(arrays, classes, preprocess, config, rank, shares)
    return backend.device_batches(train), (backend.device_batches(val) if val is not None else None), facts


def _resume_state(backend, run: RunFolder, config: TrainConfig, early: EarlyStopping) -> int:
    """Restore the last checkpoint into the backend and `early`; return the epochs already done."""
    state = backend.load(run.checkpoint_path("last"), with_optimizer=True)
    early.load_state(state["early_stopping"])
    early.patience = config.early_stopping  # a resumed run may change the patience
    return int(state["epoch"])


def _write_run_files(backend, run, config, facts, resumed, start_epoch, data_dir, classes) -> list[dict]:
    """Main process: the run's charset, preprocess and run.json; return the metrics rows kept."""
    rows = []
    if resumed:
        rows = run.truncate_metrics(start_epoch)
    else:
        if data_dir is not None:
            run.copy_data_files(data_dir)
        else:
            run.write_charset(classes)
        run.write_preprocess(facts["preprocess"])
    run.write_run_info(run_info(config, facts, backend.parameters, backend.precision, backend.world_size,
                                backend.device_name, backend.channels_last, backend.version))
    return rows


def _log_samples(backend, writer, train_batches) -> None:
    """A few training images, as stored and as augmented, into TensorBoard (step 0)."""
    images = backend.sample_images(train_batches)
    if len(images):
        writer.images("samples/stored", images, 0)
        writer.images("samples/augmented", backend.augmented_preview(images), 0)


class _Epochs:
    """State of the epoch loop shared by its helpers: run, writer, early stopping, rows."""

    def __init__(self, backend, config, run, early, rows, quiet):
        self.backend, self.config, self.run, self.early, self.rows = backend, config, run, early, rows
        self.quiet = quiet
        self.writer = backend.tensorboard(run.tensorboard_dir) if backend.is_main else None
        self.stopped_early = early.patience is not None and early.bad_epochs >= early.patience

    def log(self, message: str) -> None:
        """Print and append to train.log (main process only)."""
        if self.backend.is_main:
            self.run.log(message, self.quiet)

    def one(self, epoch, train_batches, val_batches, steps_per_epoch) -> None:
        """Train and validate one epoch (with its progress bar), then `finish` it."""
        backend, config = self.backend, self.config
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        enabled = backend.is_main and not self.quiet
        samples = getattr(train_batches, "num_samples", lambda: None)() or steps_per_epoch * config.batch_size
        with progress_bar(samples, f"epoch {epoch + 1}/{config.epochs}", enabled) as bar:
            tr = train_epoch(backend.steps, train_batches, config, epoch=epoch, steps_per_epoch=steps_per_epoch,
                             progress=bar)
        va = backend.validate(val_batches) if val_batches is not None else None
        self.finish(epoch, tr, va)

    def finish(self, epoch, tr, va) -> None:
        """Early stopping, checkpoints, metrics, curves and TensorBoard after one epoch."""
        backend, config, run = self.backend, self.config, self.run
        row = metrics_row(epoch + 1, tr, va)
        monitored = va["accuracy"] if va else tr["accuracy"]
        improved = self.early.improved(monitored)
        self.stopped_early = self.early.step(monitored, epoch + 1) and va is not None
        state = {"epoch": epoch + 1, "early_stopping": self.early.state(), "config": config.to_json()}
        if (epoch + 1) % config.save_every == 0 or epoch + 1 == config.epochs or self.stopped_early:
            backend.save(run.checkpoint_dir, "last", state, with_optimizer=True)
        if improved:
            backend.save(run.checkpoint_dir, "best", state, with_optimizer=False)
        if backend.is_main:
            run.append_metrics(row)
            self.rows.append(row)
            self.writer.scalars({tag: row[key] for key, tag in TENSORBOARD_TAGS.items()
                                 if row.get(key) is not None}, epoch + 1)
            # figures.draw_curves is looked up at call time (tests replace it to simulate a crash).
            figures.draw_curves(self.rows, run.curves_file,
                                title=f"{run.path.name}: {config.model} ({backend.label.split()[0]})")
        self.log(format_epoch(row, config.epochs) + ("  *best" if improved else ""))
        if self.stopped_early:
            self.log(f"early stopping: no better validation accuracy for {config.early_stopping} epochs")


def run_training(backend: Backend, config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None,
                 preprocess=None, resume: bool = False, overwrite: bool = False, quiet: bool = False,
                 host_malloc: str | None = None) -> dict:
    """Train with `backend` and write a run folder; return the summary dict (see summaries.summarize).

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` and `preprocess` must be given.
    `host_malloc` is what the caller set glibc malloc to (run.json records it; None: not set).

    Raises:
        GntkitError: bad options or data, no training batches; OutputExistsError for an existing run folder.
    """
    train_batches, val_batches, facts = _open_data(backend, config, data_dir, arrays, classes, preprocess)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch < 1:
        raise GntkitError("The training split gives no batches: expected at least one sample per process.")
    facts["host_malloc"] = host_malloc
    backend.parameters = backend.build(config, facts)
    run = RunFolder(out_dir, config.framework)
    backend.on_main(lambda: run.prepare(resume=resume, overwrite=overwrite))
    early = EarlyStopping(config.early_stopping)
    start_epoch = _resume_state(backend, run, config, early) if resume else 0
    rows = []
    if backend.is_main:
        rows = _write_run_files(backend, run, config, facts, resume, start_epoch, data_dir, classes)
    backend.barrier()
    epochs = _Epochs(backend, config, run, early, rows, quiet)
    for line in startup_messages(config, facts, backend.label, backend.device_text, val_batches is not None,
                                 resume, start_epoch):
        epochs.log(line)
    epochs.log(batch_line(config, backend.world_size))
    t0 = time.perf_counter()
    try:
        if epochs.writer is not None and start_epoch == 0:
            _log_samples(backend, epochs.writer, train_batches)
        for epoch in range(start_epoch, config.epochs):
            if epochs.stopped_early:
                break
            epochs.one(epoch, train_batches, val_batches, steps_per_epoch)
    finally:
        if epochs.writer is not None:
            epochs.writer.close()
    backend.wait_saved()
    backend.barrier()
    rows = read_metrics(run.metrics_file) if backend.is_main else epochs.rows
    return summarize(run, config, rows, backend.parameters, epochs.stopped_early, time.perf_counter() - t0)
