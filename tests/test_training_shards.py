"""End to end through the real pipeline: synthetic GNT files -> gntkit convert -> train from
shards (gntkit.datasets adapters) -> evaluate (checked against a direct computation) ->
predict -> export, in both frameworks, on the CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gntkit.datasets as datasets
import gntkit.training as training
from gntkit.errors import GntkitError
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.tools.synth import write_corpus

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

SIZE = 32


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """20 classes, 6 writers x 5 samples per class: writers 1001-1004 train, 1005-1006 val."""
    root = tmp_path_factory.mktemp("hwdb")
    write_corpus(root / "gnt", writers=6, num_classes=20, samples_per_class=5, seed=4)
    convert([root / "gnt"], root / "shards", to="tfrecord", split="train=1001-1004,val=1005-1006",
            charset="data", preprocess=Preprocess(size=SIZE), workers=1)
    return root / "shards"


def _direct_report(run_dir, shard_dir, split, framework):
    module = training.trainer_module(framework)
    model, _ = module.load_run_model(run_dir, "best", "cpu")
    images, labels = datasets.open(shard_dir, split).read_arrays()
    probs = module.predict_probabilities(model, images)
    order = np.argsort(-probs, axis=1, kind="stable")
    return labels, order


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_train_evaluate_predict_export_from_shards(shards, tmp_path, framework):
    run = tmp_path / "run"
    summary = training.train(shards, run, framework=framework, model="cnn3", epochs=8, batch_size=32,
                             optimizer="adam", lr=2e-3, weight_decay=0.0, augment=False, seed=0, quiet=True)
    assert summary["best_val_accuracy"] >= 0.9, summary
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["train_split"] == "train" and info["data"]["val_split"] == "val"
    assert info["data"]["train_samples"] == 400 and info["data"]["val_samples"] == 200
    for name in ("charset.txt", "charset.json", "gntkit.json", "preprocess.json"):
        assert (run / name).is_file(), name

    report = training.evaluate(run, shards, split="val", top_k=5)
    labels, order = _direct_report(run, shards, "val", framework)
    assert report["samples"] == len(labels) == 200
    assert report["top1_accuracy"] == pytest.approx(np.mean(order[:, 0] == labels), abs=1e-6)
    assert report["topk_accuracy"] == pytest.approx(np.mean([label in o[:5] for label, o in zip(labels, order)]), abs=1e-6)
    for row in report["per_class"]:
        mask = labels == row["class_id"]
        assert row["samples"] == mask.sum() and row["correct"] == (order[mask, 0] == row["class_id"]).sum()
    # the run's best validation accuracy is this same number (same checkpoint, same split)
    assert report["top1_accuracy"] == pytest.approx(summary["best_val_accuracy"], abs=1e-6)
    assert json.loads((run / "report.json").read_text())["top1_accuracy"] == report["top1_accuracy"]
    assert "# Evaluation: cnn3 on val" in (run / "report.md").read_text()
    assert (run / "report.png").stat().st_size > 1000  # the matplotlib figure of the report

    # a shard image, written to a PNG as a user would scan it (dark ink on white), is recognised
    from PIL import Image

    images, _ = datasets.open(shards, "val").read_batch(np.arange(3))
    files = []
    for i, image in enumerate(images):
        big = Image.fromarray(255 - image).resize((128, 128), Image.BICUBIC)
        big.save(tmp_path / f"user{i}.png")
        files.append(tmp_path / f"user{i}.png")
    predicted = [r["predictions"][0]["class_id"] for r in training.predict(run, files)]
    _, order_val = labels, order
    assert predicted == list(order_val[:3, 0])

    artifact = training.export(run)
    assert artifact.exists()


def test_evaluate_refuses_shards_with_another_charset(shards, tmp_path):
    other_root = tmp_path / "other"
    write_corpus(other_root / "gnt", writers=1, num_classes=12, samples_per_class=1, seed=5)
    convert([other_root / "gnt"], other_root / "shards", to="tfrecord", split="all", charset="data",
            preprocess=Preprocess(size=SIZE), workers=1)
    run = tmp_path / "run"
    training.train(shards, run, framework="torch", model="cnn2", epochs=1, batch_size=64, quiet=True)
    with pytest.raises(GntkitError, match="charset differs from the run's"):
        training.evaluate(run, other_root / "shards", split="all")
    with pytest.raises(GntkitError):
        training.evaluate(run, shards, split="nosuchsplit")
