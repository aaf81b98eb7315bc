"""How a benchmark runs a measurement in a child process of its own and reads the result back.

The child prints one line `RESULT {json}` on stdout (`print_result`); the parent runs it and
reads that line (`run_child`, or `read_result` where a failed child is only reported). Each
measurement in its own process keeps frameworks (torch, TensorFlow) and their thread pools apart.
"""

from __future__ import annotations

import json
import os
import subprocess

PREFIX = "RESULT "


def print_result(result: dict) -> None:
    """The child's side: print `result` as the one RESULT line."""
    print(PREFIX + json.dumps(result), flush=True)


def read_result(stdout: str) -> dict | None:
    """The last RESULT line of a child's stdout, parsed; None when there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(PREFIX)]
    return json.loads(lines[-1][len(PREFIX):]) if lines else None


def child_env(**extra: str) -> dict:
    """The environment of a child: this one, TensorFlow's C++ logging quiet, plus `extra`."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_child(command: list[str], what: str, env: dict | None = None) -> dict:
    """Run a child and return its result; stop the benchmark, with the child's output, when it fails.

    Args:
        command: the child's command line.
        what: the measurement, for the failure message ("cnn3 (tf)").
        env: its environment (default `child_env()`).
    """
    done = subprocess.run(command, capture_output=True, text=True, env=child_env() if env is None else env)
    result = read_result(done.stdout)
    if result is None:
        raise SystemExit(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return result
