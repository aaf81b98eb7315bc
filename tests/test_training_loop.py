"""The one epoch loop (gntkit.training.loop) driven by a third, numpy backend: softmax regression.

The loop's duties (zero steps per epoch, early stopping, its patience on resume, checkpoints,
metrics, curves, TensorBoard, summaries) are checked once here without torch or TensorFlow;
the framework tests check that both trainers go through this same loop.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import gntkit.training as training
from gntkit.errors import GntkitError
from gntkit.training import loop
from gntkit.training.batches import ArrayBatches
from gntkit.training.config import TrainConfig, option_fields, options_help
from gntkit.training.metrics import read_metrics

pytest.importorskip("matplotlib")


class _Board:
    """TensorBoard stand-in writing JSON lines (the framework writers are tested in test_training)."""

    def __init__(self, logdir):
        logdir.mkdir(parents=True, exist_ok=True)
        self.path = logdir / "scalars.jsonl"

    def scalars(self, values, step):
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def images(self, tag, images, step):
        assert images.dtype == np.uint8 and images.ndim == 3

    def close(self):
        pass


class NumpySteps:
    """Softmax regression on flattened pixels: the loop's step hooks in plain numpy."""

    def __init__(self, weights, config):
        self.w, self.config = weights, config

    def begin_epoch(self, epoch):
        self.sums = np.zeros(3)

    def distribute(self, batches):
        return batches

    def train_step(self, images, labels, lr, index):
        x = images.reshape(len(images), -1) / 255.0
        z = x @ self.w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(labels)), labels] + 1e-12)
        p[np.arange(len(labels)), labels] -= 1
        self.w -= lr * x.T @ p / len(labels)
        self.sums += [loss.sum(), (z.argmax(1) == labels).sum(), len(labels)]

    def totals(self, reduce):
        return list(self.sums)


class NumpyBackend(loop.Backend):
    framework = "torch"  # the run folder's checkpoint naming: checkpoints/{which}.pt
    label, version, device_name, device_text = "numpy 1", "1", "cpu", "numpy on the CPU"

    def __init__(self, config):
        self.config = config

    def build(self, config, facts):
        size = facts["image_size"] ** 2
        self.steps = NumpySteps(np.zeros((size, facts["num_classes"])), config)
        return self.steps.w.size

    def validate(self, batches):
        hits = total = 0
        for images, labels in batches:
            z = images.reshape(len(images), -1) / 255.0 @ self.steps.w
            hits += int((z.argmax(1) == labels).sum())
            total += len(labels)
        return {"loss": 1.0, "accuracy": hits / total, "top5": 1.0, "images": total}

    def save(self, folder, which, state, with_optimizer):
        np.save(folder / f"{which}.npy", self.steps.w)
        (folder / f"{which}.pt").write_text(json.dumps(state))  # has_checkpoint looks for this name

    def load(self, path, with_optimizer):
        self.steps.w = np.load(path.with_suffix(".npy"))
        return json.loads(path.read_text())

    def tensorboard(self, logdir):
        return _Board(logdir)


def _data(n=60, size=18, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    for c in range(3):  # a bright band per class: learnable
        images[labels == c, :, 2 * c:2 * c + 2] = 250
    return images, labels


def _run(tmp_path, name, *, resume=False, arrays=None, **options):
    config = TrainConfig(model="cnn3", epochs=options.pop("epochs", 3), batch_size=16, lr=0.5,
                         schedule="constant", **options)
    images, labels = _data()
    arrays = arrays or (images, labels, images[:30], labels[:30])
    return loop.run_training(NumpyBackend(config), config, tmp_path / name, arrays=arrays,
                             classes=["a", "b", "c"], preprocess={"size": 18}, resume=resume, quiet=True)


def test_the_loop_trains_and_writes_the_run_folder(tmp_path):
    summary = _run(tmp_path, "run")
    assert summary["epochs_completed"] == 3 and summary["best_val_accuracy"] == 1.0
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["lr"] == 0.5
    assert (run / "curves.png").stat().st_size > 1000 and (run / "checkpoints" / "best.npy").is_file()
    tags = [json.loads(line) for line in (run / "tensorboard" / "scalars.jsonl").read_text().splitlines()]
    assert [t["step"] for t in tags] == [1, 2, 3] and {"loss/train", "accuracy/validation"} <= set(tags[0])
    info = json.loads((run / "run.json").read_text())
    assert info["framework_version"] == "1" and info["device"] == "cpu"
    assert info["host_malloc"] is None  # the library leaves malloc alone: gntkit.tools.host_heap is the CLI's


def test_no_training_batches_raise_before_anything_is_written(tmp_path):
    images, labels = _data()
    config = TrainConfig(model="cnn3", epochs=1, batch_size=16)

    class Empty(NumpyBackend):
        def open_shards(self, config, data_dir):
            return [], None, {}

    with pytest.raises(GntkitError, match="gives no batches"):
        loop.run_training(Empty(config), config, tmp_path / "run", data_dir=tmp_path, quiet=True)
    assert not (tmp_path / "run").exists()
    steps = NumpySteps(np.zeros((18 * 18, 3)), config)
    with pytest.raises(GntkitError, match="saw no training batches"):
        loop.train_epoch(steps, [], config, epoch=0, steps_per_epoch=1)


def test_resume_restores_early_stopping_and_takes_the_new_patience(tmp_path):
    # a learning rate this small changes no prediction after epoch 1: patience 3 has not stopped after 3 epochs
    config = TrainConfig(model="cnn3", epochs=3, batch_size=16, lr=1e-12, schedule="constant", early_stopping=3)
    images, labels = _data()
    arrays = (images, labels, images[:30], labels[:30])
    first = loop.run_training(NumpyBackend(config), config, tmp_path / "run", arrays=arrays, classes=list("abc"),
                              preprocess={}, quiet=True)
    assert first["epochs_completed"] == 3 and not first["stopped_early"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "last.pt").read_text())
    assert state["early_stopping"]["bad_epochs"] == 2
    # resumed with patience 2 and more epochs: the two bad epochs already count, so it stops at once
    resumed_config = TrainConfig(**{**config.to_json(), "epochs": 6, "early_stopping": 2})
    again = loop.run_training(NumpyBackend(resumed_config), resumed_config, tmp_path / "run", arrays=arrays,
                              classes=list("abc"), preprocess={}, resume=True, quiet=True)
    assert again["stopped_early"] and again["epochs_completed"] == 3


def test_options_are_defined_once():
    names = [f.name for f in option_fields()]
    assert all(f.metadata["help"] for f in option_fields())
    text = options_help()
    for name in names:
        assert f"    {name}: " in text
    assert "Default: adamw." in text and "Default: 0.1." in text  # optimizer and label smoothing defaults
    assert "cnn3" in text and "vgg19" in text  # model names come from the registry
    assert "epochs: Epochs to train" in training.train.__doc__
    with pytest.raises(GntkitError, match="Unknown training option 'epoch'"):
        training.train("data", "out", epoch=3)
    assert TrainConfig.from_json({"framework": "torch"}).compile is False  # options added later: old runs load


def test_epoch_progress_shows_samples_rate_and_loss():
    import io

    from gntkit.progress import ProgressBar

    images, labels = _data()
    config = TrainConfig(model="cnn3", epochs=1, batch_size=16, lr=0.5, schedule="constant")
    steps = NumpySteps(np.zeros((18 * 18, 3)), config)
    stream = io.StringIO()
    batches = ArrayBatches(images, labels, 16)
    with ProgressBar(60, unit="samples", description="epoch 1/1", stream=stream) as bar:
        result = loop.train_epoch(steps, batches, config, epoch=0, steps_per_epoch=len(batches), progress=bar)
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("epoch 1/1: 60/60 samples") and "samples/s" in line
    assert f"loss={result['loss']:.4g}" in line and "acc=" in line


def test_the_epoch_bar_ends_at_100_percent_and_says_what_was_left_out():
    """A bar planned for more samples than the epoch trained (a last partial batch left out)
    ends at what was trained, 100%, with the count left out beside it."""
    import io

    from gntkit.progress import ProgressBar

    config = TrainConfig(model="cnn3", batch_size=8, lr=0.1, schedule="constant")
    steps = NumpySteps(np.zeros((16, 3)), config)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 255, (8, 4, 4), dtype=np.uint8), rng.integers(0, 3, 8)) for _ in range(3)]
    stream = io.StringIO()
    with ProgressBar(30, description="epoch 1/1", stream=stream) as bar:  # 30 planned, 24 trained
        loop.train_epoch(steps, batches, config, epoch=0, steps_per_epoch=3, progress=bar)
    last = stream.getvalue().splitlines()[-1]
    assert "24/24 samples  100.0%" in last and "left_out=6" in last
