"""The training commands through the real CLI: convert -> train -> resume -> evaluate -> predict -> export."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.synth import render_glyph

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_train_resume_evaluate_predict_export(tmp_path, corpus_c):
    data = tmp_path / "data"
    assert invoke("convert", corpus_c, "--out", data, "--to", "hdf5", "--size", "32", "--split", "train=1001-1002,test=1003", "--quiet").exit_code == 0
    run_dir = tmp_path / "run"
    first = invoke("train", data, "--out", run_dir, "--framework", "tf", "--model", "cnn3", "--epochs", "1", "--batch-size", "16",
                   "--optimizer", "adam", "--quiet")
    assert first.exit_code == 0, first.output
    assert "1 epoch(s)" in first.output
    # Resume takes framework and model from the run; only the epoch count changes.
    resumed = invoke("train", data, "--out", run_dir, "--epochs", "2", "--resume", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert "2 epoch(s)" in resumed.output
    again = invoke("train", data, "--out", run_dir, "--model", "cnn3", "--quiet")
    assert again.exit_code == 2 and "Traceback" not in again.output

    report = invoke("evaluate", run_dir, data, "--split", "test", "--json")
    assert report.exit_code == 0, report.output
    parsed = json.loads(report.stdout)
    assert parsed["samples"] == 24 and 0.0 <= parsed["top1_accuracy"] <= parsed["topk_accuracy"] <= 1.0

    image = render_glyph(0xB0A1, np.random.default_rng(1), width=80, height=90)
    png = tmp_path / "mine.png"
    Image.fromarray(np.stack([image] * 3, axis=-1)).save(png)
    predicted = invoke("predict", run_dir, png, "--json", "--top-k", "3")
    assert predicted.exit_code == 0, predicted.output
    (result,) = json.loads(predicted.stdout)
    probabilities = [p["probability"] for p in result["predictions"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1 + 1e-6
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    empty = invoke("predict", run_dir, blank)
    assert empty.exit_code == 2 and "blank.png" in empty.output and "Traceback" not in empty.output

    exported = invoke("export", run_dir)
    assert exported.exit_code == 0, exported.output
    assert invoke("export", run_dir).exit_code == 2
    assert invoke("export", run_dir, "--overwrite").exit_code == 0


def test_train_rejects_bad_input(tmp_path, corpus_c):
    missing = invoke("train", tmp_path / "nope", "--out", tmp_path / "run")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    bad_model = invoke("train", corpus_c, "--out", tmp_path / "run2", "--model", "resnet9000")
    assert bad_model.exit_code == 2 and "Traceback" not in bad_model.output
