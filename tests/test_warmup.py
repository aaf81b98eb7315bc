"""Kernels loaded from numba's cache write the same bytes as freshly compiled ones (and as plain
Python); `gntkit warmup` fills the cache so that a later process compiles nothing."""

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"
NOTICE = "gntkit: compiling numba kernels"

# Converts one small synthetic corpus three ways (default preprocessing, edit steps, raw) and
# prints the SHA-256 of every shard file: the bytes the kernels wrote.
CONVERT_SCRIPT = """
import hashlib, sys
from pathlib import Path
from gntkit.shards.convert import convert
from gntkit.samples.preprocess import Preprocess
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
settings = {"plain": None, "edited": Preprocess(contrast=True, binarize="otsu", denoise=True), "raw": Preprocess(raw=True)}
for name, preprocess in settings.items():
    convert(corpus, out / name, to="tfrecord", charset="data", preprocess=preprocess)
    for shard in sorted((out / name).glob("*.tfrecord*")):
        print(name, shard.name, hashlib.sha256(shard.read_bytes()).hexdigest())
"""


def _convert(corpus, out, cache, **env):
    done = subprocess.run([sys.executable, "-c", CONVERT_SCRIPT, str(corpus), str(out)],
                          env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines(), done.stderr


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from gntkit.tools.synth import write_corpus

    folder = tmp_path_factory.mktemp("warm") / "gnt"
    write_corpus(folder, writers=2, num_classes=6, samples_per_class=2, style="f", num_symbols=2, seed=3)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(JIT_DISABLED, reason="compares compiled, cached and plain-Python kernels itself")
def test_cached_kernels_write_the_same_bytes(tmp_path, small_corpus):
    cache = tmp_path / "numba-cache"
    compiled, cold_err = _convert(small_corpus, tmp_path / "compiled", cache)
    cached, warm_err = _convert(small_corpus, tmp_path / "cached", cache)
    plain, _ = _convert(small_corpus, tmp_path / "plain", tmp_path / "unused", NUMBA_DISABLE_JIT="1")
    assert NOTICE in cold_err and NOTICE not in warm_err, "the second process must load every kernel from the cache"
    assert {line.split()[0] for line in compiled} == {"plain", "edited", "raw"}
    assert compiled == cached
    # Plain Python writes the same raw shards; its resized images may differ by rounding, as
    # the JIT's resampling kernels fuse multiply-adds (fastmath "contract"), so only raw is compared.
    assert [line for line in compiled if line.startswith("raw")] == [line for line in plain if line.startswith("raw")]


@pytest.mark.slow
@pytest.mark.skipif(JIT_DISABLED, reason="nothing compiles with NUMBA_DISABLE_JIT=1")
def test_warmup_fills_the_cache_for_a_later_convert(tmp_path, small_corpus):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    warm = subprocess.run([sys.executable, "-m", "gntkit.cli.main", "warmup", "--format", "tfrecord"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert warm.returncode == 0, warm.stderr[-3000:]
    lines = warm.stdout.splitlines()
    assert [line.split("  ")[0].strip() for line in lines[:3]] == ["inspect", "convert tfrecord", "read tfrecord"]
    assert lines[-1].startswith("ok: ") and str(tmp_path / "numba-cache") in lines[-1]
    assert int(lines[-1].split()[1]) > 10, "a cold warmup compiles the kernels"
    assert NOTICE not in warm.stderr, "warmup reports compiling itself"
    again = subprocess.run([sys.executable, "-m", "gntkit.cli.main", "warmup", "--format", "tfrecord", "--quiet"],
                           env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stdout.startswith("ok: 0 kernel signature(s) compiled"), again.stdout
    convert = subprocess.run([sys.executable, "-m", "gntkit.cli.main", "convert", str(small_corpus), "--to", "tfrecord",
                              "--out", str(tmp_path / "out"), "--charset", "data", "--quiet"],
                             env=env, capture_output=True, text=True, timeout=900)
    assert convert.returncode == 0, convert.stderr[-3000:]
    assert NOTICE not in convert.stderr


def test_warmup_rejects_unknown_format():
    result = CliRunner().invoke(app, ["warmup", "--format", "parquet"])
    assert result.exit_code == 2
    assert "expected formats among tfrecord, hdf5, webdataset, found 'parquet'" in result.output
