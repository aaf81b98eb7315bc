"""What `gntkit train` says when a newcomer's first run goes wrong: a model too large for the
digit tutorials' 28 x 28 images, Ctrl-C in the first epoch, and a --resume with nothing to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.tools.fixtures.idx import write_mnist

GNTKIT = str(Path(sys.executable).parent / "gntkit")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    from gntkit.shards.convert import convert

    folder = tmp_path_factory.mktemp("digits")
    write_mnist(folder / "mnist", train_count=600, test_count=60)
    convert(folder / "mnist", folder / "shards", to="hdf5")
    return folder / "shards"


def test_the_default_model_on_digits_names_the_models_that_fit(digits, tmp_path):
    result = CliRunner().invoke(app, ["train", str(digits), "--out", str(tmp_path / "run"), "--framework", "torch"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "vgg19 needs images of at least 32x32 pixels, found 28x28" in message
    assert "--model cnn2, cnn2-tutorial, cnn3" in message and "--size 32" in message


@pytest.mark.slow
def test_ctrl_c_in_the_first_epoch_speaks_of_the_run_and_resume_suggests_overwrite(digits, tmp_path):
    run = tmp_path / "run"
    command = [GNTKIT, "train", str(digits), "--out", str(run), "--framework", "torch", "--model", "cnn3",
               "--epochs", "50", "--batch-size", "8"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (run / "train.log").is_file() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(child.pid, signal.SIGINT)  # as a terminal sends Ctrl-C: to the whole process group
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and ".partial" not in stderr
    assert "--resume continues from it" in stderr and "--overwrite starts again" in stderr

    if not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir()):
        again = CliRunner().invoke(app, ["train", str(digits), "--out", str(run), "--framework", "torch", "--model", "cnn3",
                                         "--resume"])
        assert again.exit_code == 2 and "--overwrite" in " ".join(again.output.split()), again.output


def test_an_existing_run_folder_names_the_flags(digits, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["train", str(digits), "--out", str(run), "--framework", "torch", "--model", "cnn3"])
    assert result.exit_code == 2
    assert "pass --resume (resume=True) to continue it or --overwrite (overwrite=True)" in " ".join(result.output.split())
