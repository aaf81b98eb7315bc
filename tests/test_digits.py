"""MNIST-family IDX end to end: convert with the format's defaults -> the three writers -> verify and
read back; a short training run on generated digits; predict on a digit drawn dark on white."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.shards.convert import convert
from gntkit.shards.verify import verify
from gntkit.tools.fixtures.idx import draw_digit, write_emnist, write_mnist
from gntkit.tools.reference.idx import read_pair


# Conversion runs the writers' kernels: those tests also run with NUMBA_DISABLE_JIT=1 (the training
# test does not: its time is the framework's).
@pytest.mark.numba
@pytest.mark.parametrize("to", ["tfrecord", "hdf5", "webdataset"])
def test_convert_every_writer_and_verify(tmp_path, to):
    import gntkit.datasets

    write_mnist(tmp_path / "mnist", gz=True, train_count=30, test_count=12)
    manifest = convert(tmp_path / "mnist", tmp_path / "out", to=to, progress=False)
    assert manifest["source_formats"] == ["idx"] and manifest["charset"]["name"] == "mnist"
    assert manifest["preprocess"]["size"] == 28 and manifest["preprocess"]["crop"] is False
    assert {name: info["num_records"] for name, info in manifest["splits"].items()} == {"train": 30, "test": 12}
    assert verify(tmp_path / "out")["records"] == 42
    expected, labels = read_pair(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz")
    images, read_labels = gntkit.datasets.open(tmp_path / "out", split="test").read_arrays()
    np.testing.assert_array_equal(images, expected)  # stored pixels, unchanged
    np.testing.assert_array_equal(read_labels, labels.astype(read_labels.dtype))
    assert (tmp_path / "out" / "charset.txt").read_text(encoding="utf-8") == "".join(f"{d}\n" for d in range(10))


@pytest.mark.numba
def test_emnist_and_pad_through_convert(tmp_path):
    import gntkit.datasets

    info = write_emnist(tmp_path / "emnist", count=20, classes=5)
    manifest = convert(tmp_path / "emnist", tmp_path / "out", to="hdf5", progress=False)
    assert manifest["charset"]["name"] == "emnist-letters" and list(manifest["splits"]) == ["train"]
    images, _ = gntkit.datasets.open(tmp_path / "out", split="train").read_arrays()
    np.testing.assert_array_equal(images, info["upright"])
    from gntkit.samples.preprocess import Preprocess

    convert(tmp_path / "emnist", tmp_path / "pad", to="hdf5", preprocess=Preprocess(size=56, margin=0, crop=False, pad=True),
            progress=False)
    padded, _ = gntkit.datasets.open(tmp_path / "pad", split="train").read_arrays()
    assert padded.shape == (20, 56, 56) and (padded[:, :, :12] == 0).all()  # the blank band (7 of 28 columns) still on the left


@pytest.mark.slow
def test_train_on_idx_digits_and_predict_a_drawing(tmp_path):
    """cnn3 (the Keras tutorial's net) on 1,000 generated digits, 3 epochs: above 90% on 100 test digits, 8 of 10 drawings read right."""
    pytest.importorskip("torch")
    from PIL import Image

    import gntkit.training as training

    write_mnist(tmp_path / "mnist", gz=True, train_count=1000, test_count=100, seed=3)
    convert(tmp_path / "mnist", tmp_path / "data", to="hdf5", progress=False)
    summary = training.train(tmp_path / "data", tmp_path / "run", framework="torch", model="cnn3", epochs=3, batch_size=32,
                             optimizer="adam", lr=1e-3, weight_decay=0.0, label_smoothing=0.0, augment=False, precision="fp32",
                             val_split="test", quiet=True)
    assert summary["parameters"] == 93322
    report = training.evaluate(tmp_path / "run", tmp_path / "data", split="test")
    assert report["top1_accuracy"] > 0.9, report["top1_accuracy"]
    # Users' drawings: one digit of each class on a large page, dark ink on white, off-centre.
    rng = np.random.default_rng(11)
    paths = []
    for digit in range(10):
        page = np.full((300, 400), 255, np.uint8)
        page[40:240, 150:350] = draw_digit(digit, rng, canvas=200)
        paths.append(tmp_path / f"my_{digit}.png")
        Image.fromarray(page).save(paths[-1])
    results = training.predict(tmp_path / "run", paths, top_k=3)
    top1 = [r["predictions"][0]["character"] for r in results]
    assert sum(t == str(d) for d, t in enumerate(top1)) >= 8, top1
    assert all(str(d) in [p["character"] for p in r["predictions"]] for d, r in enumerate(results)), results


def test_torch_to_float_repeats_grey_into_channels():
    torch = pytest.importorskip("torch")
    from gntkit.datasets.torch import to_float
    from gntkit.errors import GntkitError

    images = torch.from_numpy(np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256).to(torch.uint8)
    rgb = to_float(images, mean=0.5, std=0.25, channels=3)
    assert tuple(rgb.shape) == (2, 3, 28, 28)
    for channel in range(3):
        assert torch.equal(rgb[:, channel], to_float(images, mean=0.5, std=0.25)[:, 0])
    with pytest.raises(GntkitError, match="channels must be"):
        to_float(images, channels=0)


def _example_layout(tmp_path, script_name, with_venv):
    """A copy of an example script and its helper in a repository-like folder; with_venv links
    .venv/bin/gntkit there to the gntkit installed beside this Python, as the README's set-up makes it."""
    import os
    import shutil
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    for name in (script_name, "gntkit_command.sh"):
        shutil.copy(examples / name, repo / "examples" / name)
    if with_venv:
        (repo / ".venv" / "bin").mkdir(parents=True)
        os.symlink(Path(sys.executable).parent / "gntkit", repo / ".venv" / "bin" / "gntkit")
    # PATH without any gntkit: the user has not activated the environment.
    env = {k: v for k, v in os.environ.items() if k != "GNTKIT"}
    env["PATH"] = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if not (Path(p) / "gntkit").exists())
    return repo / "examples" / script_name, env


@pytest.mark.slow
def test_example_script_runs_without_an_activated_environment(tmp_path):
    """examples/mnist_torch_cnn2.sh as documented right after the README's set-up (one epoch, a tiny
    stand-in), with no environment activated: every command and option exists."""
    pytest.importorskip("torch")
    import subprocess

    write_mnist(tmp_path / "mnist", gz=True, train_count=60, test_count=20)
    script, env = _example_layout(tmp_path, "mnist_torch_cnn2.sh", with_venv=True)
    env["EPOCHS"] = "1"
    done = subprocess.run(["bash", str(script), str(tmp_path / "mnist"), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, check=False, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "run" / "metrics.csv").is_file() and "samples of 'test'" in done.stdout


def test_example_script_without_gntkit_says_how_to_set_up(tmp_path):
    import subprocess

    script, env = _example_layout(tmp_path, "mnist_keras_cnn3.sh", with_venv=False)
    done = subprocess.run(["bash", str(script), str(tmp_path / "mnist")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 127
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "gntkit is not on PATH" in lines[0] and "source .venv/bin/activate" in lines[0]


def test_preview_and_open_idx_sources_with_their_own_classes(tmp_path):
    # "data" (the default of gntkit.open and preview) means the format's own classes for IDX: its
    # tag codes are labels, not GB codes.
    from typer.testing import CliRunner

    import gntkit
    from gntkit.cli.main import app

    write_mnist(tmp_path / "mnist", train_count=20, test_count=10)
    source = gntkit.open(tmp_path / "mnist")
    assert source.charset.name == "mnist" and len(source) == 30
    assert sorted({s.character for s in source}) <= [str(d) for d in range(10)]
    result = CliRunner().invoke(app, ["preview", str(tmp_path / "mnist"), "--out", str(tmp_path / "grid.png"), "--count", "12"])
    assert result.exit_code == 0, result.output
    assert "12 samples" in result.output and (tmp_path / "grid.png").stat().st_size > 0
