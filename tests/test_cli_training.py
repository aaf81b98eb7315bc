"""The training commands through the real CLI: convert -> train -> resume -> evaluate -> predict -> export."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.tools.synth import render_glyph

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_train_resume_evaluate_predict_export(tmp_path, corpus_c):
    data = tmp_path / "data"
    assert invoke("convert", corpus_c, "--out", data, "--to", "hdf5", "--size", "32",
                  "--split", "train=1001-1002,test=1003", "--quiet").exit_code == 0
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


def test_train_help_lists_every_option_from_the_config():
    from gntkit.training.config import option_fields

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for field in option_fields():
        assert "--" + field.name.replace("_", "-") in result.output, field.name
    assert "Default: adamw." in result.output and "--no-augment" in result.output


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_train_from_pretrained_frozen_features(tmp_path, corpus_c, framework):
    """--pretrained/--freeze/--channels reach gntkit.models.*.apply_pretrained: the frozen
    convolutions of the trained run are exactly the file's (RGB kept with --channels 3)."""
    pytest.importorskip("h5py")
    import gntkit.training as training
    from test_models_pretrained import NARROW, random_convs, vgg_layout, write_keras_h5, write_torch_pth

    data = tmp_path / "data"
    assert invoke("convert", corpus_c, "--out", data, "--to", "hdf5", "--size", "32", "--split",
                  "train=1001-1002,test=1003", "--quiet").exit_code == 0
    layout = vgg_layout("vgg16", NARROW)
    arrays = random_convs(layout, seed=5)
    weights = tmp_path / ("vgg16-397923af.pth" if framework == "torch" else
                          "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    (write_torch_pth if framework == "torch" else write_keras_h5)(weights, layout, arrays)
    run_dir = tmp_path / "run"
    result = invoke("train", data, "--out", run_dir, "--framework", framework, "--model", "vgg16",
                    "--width", NARROW, "--pretrained", weights, "--freeze", "features", "--channels", "3",
                    "--epochs", "1", "--batch-size", "8", "--quiet")
    assert result.exit_code == 0, result.output
    module = training.trainer_module(framework)
    model, info = module.load_run_model(run_dir, "last", "cpu")
    assert info["channels"] == 3 and info["config"]["freeze"] == "features"
    if framework == "torch":
        first = model.features[0].weight.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
    else:
        first = next(layer for layer in model.layers if layer.name.startswith("conv")).kernel.numpy()
    np.testing.assert_array_equal(first, arrays[0][0])
    missing = invoke("train", data, "--out", tmp_path / "run2", "--framework", framework, "--model", "vgg16",
                     "--width", NARROW, "--pretrained", tmp_path / "nope.pth", "--epochs", "1")
    assert missing.exit_code == 2 and "does not exist" in missing.output and "Traceback" not in missing.output
