"""Framework-free parts of training: options, schedules, augmentation matrices, early
stopping, run folders, metrics, curves, evaluation reports. No torch or tensorflow here."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.training import augment, figures, metrics, schedule
from gntkit.training import config as config_module
from gntkit.training.augment import affine_matrices
from gntkit.training.batches import ArrayBatches
from gntkit.training.config import TrainConfig
from gntkit.training.evaluation import EvaluationAccumulator, compute_report, render_markdown
from gntkit.training.metrics import EarlyStopping
from gntkit.training.run_folder import RunFolder
from gntkit.training.schedule import learning_rate_at


def normalized_to_pixel_transform(matrices: np.ndarray, size: int) -> np.ndarray:
    """Reference: (N, 2, 3) normalised output->input affines as TensorFlow's 8-number pixel transforms.

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


def test_import_loads_no_framework():
    code = ("import sys, gntkit.training, gntkit.training.loop, gntkit.training.figures, gntkit.training.evaluation, "
            "gntkit.training.prediction, gntkit.training.exporter, gntkit.models.configs\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'h5py') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("options, message", [
    (dict(framework="jax"), "framework must be one of torch, tf"),
    (dict(model="resnet50"), "Unknown model 'resnet50'"),
    (dict(epochs=0), "epochs must be an integer of at least 1"),
    (dict(batch_size=-1), "batch_size"),
    (dict(lr=0), "lr must be above 0"),
    (dict(schedule="linear"), "schedule must be one of cosine, step, constant"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(label_smoothing=1.0), "label_smoothing must be below 1"),
    (dict(precision="fp8"), "precision must be one of"),
    (dict(augment="yes"), "augment must be True or False"),
    (dict(early_stopping=-2), "early_stopping"),
    (dict(early_stopping=3, val_split="none"), "early_stopping needs a validation split"),
])
def test_config_rejects_bad_options(options, message):
    with pytest.raises(GntkitError, match=message):
        TrainConfig(**options)


def test_config_roundtrip_and_normalisation():
    config = TrainConfig(model="cnn3", val_split="none", early_stopping=0)
    assert config.val_split is None and config.early_stopping is None
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert TrainConfig(optimizer="sgd").peak_lr == 0.01 and TrainConfig(optimizer="adamw").peak_lr == 0.001
    with pytest.raises(GntkitError, match="unknown option 'colour'"):
        TrainConfig.from_json({"colour": 1})


def test_resume_config_allows_only_safe_changes(tmp_path):
    stored = TrainConfig(model="cnn3", epochs=3)
    assert config_module.check_resume_config(stored, {"epochs": 5, "model": "cnn3"}, tmp_path).epochs == 5
    with pytest.raises(GntkitError, match="trained with model='cnn3', found model='vgg19'"):
        config_module.check_resume_config(stored, {"model": "vgg19"}, tmp_path)


def test_cosine_schedule_with_warmup():
    config = TrainConfig(lr=0.1, epochs=10, warmup_epochs=1, schedule="cosine")
    steps = 4
    lrs = [learning_rate_at(config, s, steps) for s in range(40)]
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] < 0.001
    mid = 4 + (40 - 4) // 2
    assert lrs[mid] == pytest.approx(0.05, rel=1e-6)


def test_step_and_constant_schedules():
    step = TrainConfig(lr=1.0, epochs=9, schedule="step", step_epochs=3, step_gamma=0.5)
    assert [learning_rate_at(step, e * 10, 10) for e in range(9)] == pytest.approx(
        [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25])
    const = TrainConfig(lr=0.3, schedule="constant")
    assert {learning_rate_at(const, s, 7) for s in range(100)} == {0.3}


def test_array_batches_cover_every_sample_once_and_shard_by_rank():
    images = np.zeros((10, 8, 8), np.uint8)
    labels = np.arange(10)
    batches = ArrayBatches(images, labels, batch_size=3, seed=1)
    assert len(batches) == 4
    batches.set_epoch(0)
    first = np.concatenate([y for _, y in batches])
    batches.set_epoch(1)
    second = np.concatenate([y for _, y in batches])
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert not np.array_equal(first, second)
    batches.set_epoch(0)
    assert np.array_equal(first, np.concatenate([y for _, y in batches]))  # deterministic
    ranks = [ArrayBatches(images, labels, 2, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = np.concatenate([np.concatenate([y for _, y in b]) for b in ranks])
    assert len(seen) == 12 and set(seen) == set(range(10))  # padded by wrapping, as DistributedSampler
    with pytest.raises(GntkitError, match="uint8 of shape"):
        ArrayBatches(images.astype(np.float32), labels, 2)


def test_affine_matrices_ranges_and_pixel_form():
    rng = np.random.default_rng(0)
    m = affine_matrices(rng, 1000)
    assert m.shape == (1000, 2, 3) and m.dtype == np.float32
    det = np.linalg.det(m[:, :, :2].astype(np.float64))
    r = augment.AUGMENT
    assert det.min() > 1 / (1 + r.scale) ** 2 * 0.95 and det.max() < 1 / (1 - r.scale) ** 2 * 1.05
    assert np.abs(m[:, :, 2]).max() <= 2 * r.translate + 1e-6
    # identity in normalised coordinates is identity in pixel coordinates
    identity = np.array([[[1, 0, 0], [0, 1, 0]]], np.float32)
    assert normalized_to_pixel_transform(identity, 32)[0] == pytest.approx([1, 0, 0, 0, 1, 0, 0, 0])
    # a shift of one pixel (2/S in normalised units) is one pixel
    shift = np.array([[[1, 0, 2 / 32], [0, 1, 0]]], np.float32)
    assert normalized_to_pixel_transform(shift, 32)[0][2] == pytest.approx(1.0)


def test_early_stopping_counts_and_restores():
    stop = EarlyStopping(patience=2)
    assert not stop.step(0.5, 1) and not stop.step(0.6, 2)
    assert not stop.step(0.6, 3)  # equal is not better
    assert stop.step(0.55, 4)
    again = EarlyStopping(patience=2)
    again.load_state(json.loads(json.dumps(stop.state())))
    assert again.best == 0.6 and again.best_epoch == 2 and again.bad_epochs == 2
    assert not EarlyStopping(None).step(0.1, 1)


def test_run_folder_refuses_existing_without_flags(tmp_path):
    run = RunFolder(tmp_path / "run", "torch")
    assert run.prepare(resume=False, overwrite=False) is False
    run.write_run_info({"config": {}, "num_classes": 2, "image_size": 8, "channels": 1})
    with pytest.raises(OutputExistsError, match="already exists; pass --resume"):
        RunFolder(tmp_path / "run", "torch").prepare(resume=False, overwrite=False)
    with pytest.raises(GntkitError, match="no last checkpoint"):
        RunFolder(tmp_path / "run", "torch").prepare(resume=True, overwrite=False)
    assert RunFolder(tmp_path / "run", "torch").prepare(resume=False, overwrite=True) is False
    assert not (tmp_path / "run" / "run.json").exists()
    # never wipe a folder that is not a run
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(OutputExistsError, match="not a gntkit run"):
        RunFolder(other, "torch").prepare(resume=False, overwrite=True)
    assert (other / "thesis.tex").exists()


def test_metrics_roundtrip_and_truncate(tmp_path):
    run = RunFolder(tmp_path, "tf")
    rows = [metrics.metrics_row(e, {"loss": 1 / e, "accuracy": 0.1 * e, "lr": 0.01, "seconds": 1.0, "images": 10},
                               {"loss": 2 / e, "accuracy": 0.05 * e, "top5": 0.2 * e}) for e in (1, 2, 3)]
    for row in rows:
        run.append_metrics(row)
    back = metrics.read_metrics(run.metrics_file)
    assert back == rows
    assert run.truncate_metrics(2) == rows[:2]
    assert metrics.read_metrics(run.metrics_file) == rows[:2]
    assert run.checkpoint_path("best").name == "best"
    assert RunFolder(tmp_path, "torch").checkpoint_path("last").name == "last.pt"


def test_curves_png(tmp_path):
    rows = [{"epoch": e, "train_loss": 2 / e, "train_accuracy": 1 - 1 / (e + 1), "val_loss": 2.2 / e,
             "val_accuracy": 1 - 1.2 / (e + 1)} for e in range(1, 8)]
    path = figures.draw_curves(rows, tmp_path / "curves.png", title="test run")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (420, 1000, 3)
    # both series drawn in both panels: blue (train) and red (validation) pixels left and right
    blue = (image[..., 2] > 150) & (image[..., 0] < 80)
    red = (image[..., 0] > 180) & (image[..., 1] < 80)
    for half in (slice(0, 500), slice(500, 1000)):
        assert blue[:, half].sum() > 100 and red[:, half].sum() > 100
    # one epoch and missing validation values still draw
    figures.draw_curves([{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": None,
                         "val_accuracy": None}], tmp_path / "one.png")


def _naive_report(logits, labels, k):
    order = np.argsort(-logits, axis=1, kind="stable")
    top1 = float(np.mean(order[:, 0] == labels))
    topk = float(np.mean([labels[i] in order[i, :k] for i in range(len(labels))]))
    z = logits - logits.max(1, keepdims=True)
    ce = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]))
    per_class = {}
    confusions = {}
    for t, p in zip(labels, order[:, 0]):
        n, c = per_class.get(t, (0, 0))
        per_class[t] = (n + 1, c + int(t == p))
        if t != p:
            confusions[(t, p)] = confusions.get((t, p), 0) + 1
    return top1, topk, ce, per_class, confusions


def test_report_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    n, c = 500, 12
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), labels] += 1.5  # mostly right
    classes = [chr(0x4E00 + i) for i in range(c)]
    acc = EvaluationAccumulator(c, top_k=5)
    for start in range(0, n, 64):  # batch by batch gives the same as all at once
        acc.update(logits[start:start + 64], labels[start:start + 64])
    report = acc.report(classes)
    assert report == compute_report(logits, labels, classes, top_k=5)
    top1, topk, ce, per_class, confusions = _naive_report(logits, labels, 5)
    assert report["samples"] == n
    assert report["top1_accuracy"] == pytest.approx(top1, abs=1e-6)
    assert report["topk_accuracy"] == pytest.approx(topk, abs=1e-6)
    assert report["loss"] == pytest.approx(ce, abs=1e-5)
    for row in report["per_class"]:
        total, right = per_class[row["class_id"]]
        assert (row["samples"], row["correct"]) == (total, right)
        assert row["character"] == classes[row["class_id"]]
    best_pair = max(confusions.items(), key=lambda kv: (kv[1], -kv[0][0] * c - kv[0][1]))
    first = report["confused_pairs"][0]
    assert (first["true_id"], first["predicted_id"], first["count"]) == (*best_pair[0], best_pair[1])
    assert [p["count"] for p in report["confused_pairs"]] == sorted(
        (p["count"] for p in report["confused_pairs"]), reverse=True)
    text = render_markdown(report)
    assert f"{100 * top1:.2f}%" in text and first["true"] in text


def test_report_rejects_bad_input():
    acc = EvaluationAccumulator(4)
    with pytest.raises(GntkitError, match="Logits must be"):
        acc.update(np.zeros((2, 5)), np.zeros(2, int))
    with pytest.raises(GntkitError, match="class ids 0..3"):
        acc.update(np.zeros((2, 4)), np.array([0, 7]))
    with pytest.raises(GntkitError, match="Nothing to evaluate"):
        acc.report()
    assert EvaluationAccumulator(3, top_k=10).top_k == 3


def test_resolve_precision():
    assert schedule.resolve_precision("auto", False, False) == "fp32"
    assert schedule.resolve_precision("auto", True, True) == "bf16"
    assert schedule.resolve_precision("auto", True, False) == "fp16"
    with pytest.raises(GntkitError, match="fp16 needs a GPU"):
        schedule.resolve_precision("fp16", False, False)


def test_entry_points_stay_functions_after_submodule_imports():
    import gntkit.training as training
    import gntkit.training.evaluation  # noqa: F401
    import gntkit.training.exporter  # noqa: F401
    import gntkit.training.prediction  # noqa: F401

    for name in ("train", "train_arrays", "evaluate", "predict", "export"):
        assert callable(getattr(training, name)), name


def test_evaluation_figure_and_character_labels(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, 200)
    logits = rng.normal(size=(200, 6))
    logits[np.arange(200), labels] += 1.0
    classes = ["啊", "阿", "埃", "挨", "哎", "A"]
    report = compute_report(logits, labels, classes, top_k=3)
    path = figures.draw_evaluation(report, tmp_path / "report.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] == 1200 and image.shape[0] >= 300
    # bars in both panels: blue (per-class accuracy) on the left, red (confused pairs) on the right
    assert ((image[..., 2] > 150) & (image[..., 0] < 80))[:, :600].sum() > 500
    assert ((image[..., 0] > 180) & (image[..., 1] < 80))[:, 600:].sum() > 500
    expected = "啊" if figures.cjk_font() else "0xB0A1"  # GB2312 tag code without a CJK font
    assert figures.character_label("啊") == expected and figures.character_label("A") == "A"
