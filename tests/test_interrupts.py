"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM at several
moments of a conversion, with threads and with worker processes: the command ends within seconds
with 130 (143 for SIGTERM), prints no traceback from any process, leaves no process behind, and
--resume then finishes with shards byte-identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gntkit.tools.synth import write_corpus

CLI = os.path.join(os.path.dirname(sys.executable), "gntkit")
OPTIONS = ["--to", "hdf5", "--charset", "data", "--workers", "2", "--shard-records", "1000", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interrupts") / "gnt"
    write_corpus(folder, writers=8, num_classes=200, samples_per_class=3, num_symbols=0, seed=9)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "out"
    subprocess.run([CLI, "convert", str(corpus), "--out", str(out), *OPTIONS], check=True, capture_output=True, timeout=600)
    return _digests(out)


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.name.endswith(".h5")}


def _group_alive(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["threads", "processes"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_at_any_moment_ends_cleanly_and_resumes(corpus, uninterrupted, tmp_path, parallel, sig, code):
    for moment in (0.5, 1.5, 2.5):
        out = tmp_path / f"out-{moment}"
        command = [CLI, "convert", str(corpus), "--out", str(out), "--parallel", parallel, *OPTIONS]
        process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(moment)
        os.killpg(process.pid, sig)
        started = time.monotonic()
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{parallel}: still running 20 s after the signal at {moment} s")
        assert time.monotonic() - started < 10
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        if process.returncode == -sig:
            # The signal's default action ended it (a shell reports 128 + the signal, as for the
            # others): it landed while Python was starting, before gntkit's handler was in place,
            # or after the conversion had finished, once Python had put the default handlers back
            # on its way out. What is there is complete and right, or --resume (below) finishes
            # it byte-identical.
            assert err == "", err
            if (out / "gntkit.json").exists():
                assert _digests(out) == uninterrupted
        elif process.returncode != 0:  # a fast machine may have finished first
            assert process.returncode == code and err.count("\n") == 1 and err.startswith("error: "), err
        deadline = time.monotonic() + 5
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(process.pid)
        if not out.exists() or not (out / ".gntkit-journal.json").exists():
            continue  # stopped before the output folder was prepared, or already complete
        done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert _digests(out) == uninterrupted


def test_an_interrupt_inside_a_callback_is_not_lost():
    """A signal whose Interrupted is raised where Python code runs inside a C callback (numba's
    compiler calls back into Python; a __del__ is such a place too) reaches the unraisable hook:
    the hook marks the signal again and the command still unwinds with Interrupted, silently."""
    code = (
        "import signal, sys, time\n"
        "from gntkit import cli\n"
        "cli.commands_loaded()\n"
        "signal.signal(signal.SIGINT, cli._interrupted)\n"
        "sys.unraisablehook = cli._raise_again\n"
        "class Callback:\n"
        "    def __del__(self):\n"
        "        raise cli.Interrupted(signal.SIGINT)\n"
        "try:\n"
        "    Callback()\n"
        "    time.sleep(10)\n"
        "    print('lost')\n"
        "except cli.Interrupted as exc:\n"
        "    print('unwound', exc.exit_code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "unwound 130\n" and done.stderr == "", (done.stdout, done.stderr)
