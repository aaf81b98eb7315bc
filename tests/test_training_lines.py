"""The line model trains through the one loop in both frameworks: CTC loss falls, CER validates, resume works."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus
from gntkit.training import train, train_arrays
from gntkit.training.line_data import collapse_path, edit_totals

pytest.importorskip("h5py")

OPTIONS = dict(model="crnn", width=0.25, batch_size=8, lr=0.003, precision="fp32", warmup_epochs=0.0)


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory):
    from gntkit.shards.convert import convert

    root = tmp_path_factory.mktemp("h25-lines")
    write_dgrl_corpus(root / "pages", writers=4, pages=2, lines=4)
    convert(root / "pages", root / "lines", to="hdf5", on_unknown="other", workers=1, split="train=1-3,test=4-4",
            preprocess={"line_height": 32}, hash_sources=False)
    return root / "lines"


@pytest.fixture(scope="module")
def chars_dir(tmp_path_factory):
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    root = tmp_path_factory.mktemp("h25-chars")
    write_corpus(root / "gnt", writers=2, num_classes=4)
    convert(root / "gnt", root / "out", to="hdf5", workers=1, preprocess={"size": 32}, hash_sources=False)
    return root / "out"


def _rows(run):
    return [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_crnn_trains_loss_falls_and_resumes(lines_dir, tmp_path, framework):
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    run = tmp_path / "run"
    summary = train(lines_dir, run, framework=framework, epochs=4, quiet=True, **OPTIONS)
    losses = [float(row[1]) for row in _rows(run)]
    assert summary["epochs_completed"] == 4 and losses[-1] < 0.8 * losses[0], losses
    info = json.loads((run / "run.json").read_text())
    assert info["model"] == "crnn" and info["image_size"] == 32 and info["data"]["val_split"] == "test"
    val_accuracy = [float(row[4]) for row in _rows(run)]  # accurate rate = 1 - CER
    assert all(v <= 1 for v in val_accuracy) and (run / "tensorboard").is_dir() and (run / "curves.png").is_file()
    # resume: a 5th epoch from the last checkpoint, the first four rows kept
    train(lines_dir, run, resume=True, epochs=5, quiet=True)
    rows = _rows(run)
    assert len(rows) == 5 and [float(r[1]) for r in rows[:4]] == losses


def test_image_models_and_line_data_kept_apart(lines_dir, chars_dir, tmp_path):
    with pytest.raises(GntkitError, match="--model crnn"):
        train(lines_dir, tmp_path / "a", model="cnn3", epochs=1, quiet=True)
    with pytest.raises(GntkitError, match="convert .dgrl pages"):
        train(chars_dir, tmp_path / "b", model="crnn", epochs=1, quiet=True)
    images = np.zeros((4, 32, 32), np.uint8)
    with pytest.raises(GntkitError, match="reads text lines"):
        train_arrays((images, np.arange(4) % 2), None, ["a", "b"], tmp_path / "c", model="crnn", epochs=1, quiet=True)


def test_greedy_edit_counts_against_a_plain_reference():
    blank = 5
    assert collapse_path([5, 1, 1, 5, 1, 2, 2, 5, 5], blank) == [1, 1, 2]
    paths = np.array([[1, 1, 5, 2, 3, 3], [4, 5, 4, 4, 0, 0]])
    labels = np.array([[1, 2, 3], [4, 4, 0]])
    # line 1 reads 1 2 3 (no edit); line 2 reads 4 4 over 3 frames of 4 (one deletion of 0 at the end)
    assert edit_totals(paths, [6, 4], labels, [3, 3], blank) == (1, 6)


def test_crnn_trains_and_evaluates_from_a_url(lines_dir, tmp_path):
    # A line conversion served over HTTP (a real server on 127.0.0.1) trains and evaluates
    # like the local folder: the same losses, the same report.
    pytest.importorskip("torch")
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    import shutil

    from gntkit.training import evaluate
    from test_datasets_remote import HttpServer

    shutil.copytree(lines_dir, tmp_path / "www" / "lines")
    server = HttpServer(tmp_path / "www")
    try:
        url = f"{server.url}/lines"
        train(url, tmp_path / "remote", framework="torch", epochs=1, quiet=True, **OPTIONS)
        train(lines_dir, tmp_path / "local", framework="torch", epochs=1, quiet=True, **OPTIONS)
        assert [r[1] for r in _rows(tmp_path / "remote")] == [r[1] for r in _rows(tmp_path / "local")]
        from_url = evaluate(tmp_path / "remote", url, split="test")
        local = evaluate(tmp_path / "remote", lines_dir, split="test", write=False)
        assert from_url["cer"] == local["cer"] and from_url["per_writer"] == local["per_writer"]
    finally:
        server.close()
