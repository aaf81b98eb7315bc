"""gntkit.tools.host_heap: the malloc settings `gntkit train` makes, that freed memory then stays mapped,
and that gntkit.training called as a library leaves malloc alone."""

import json
import os
import platform
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.errors import GntkitError
from gntkit.tools.host_heap import tune_host_malloc

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")
TUNED = "glibc malloc: mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB"

# Child: tune, train (through the library or the CLI) or do nothing, then allocate 32 buffers of
# 1 MiB (over glibc's default mmap threshold of 128 KiB, under the tuned 32 MiB), count how many
# malloc mapped on their own, free them all and report what the heap kept free at its top. Then the
# same with 4 buffers of 16 MiB: glibc raises its default threshold to the size of a mapped buffer
# freed (a training run frees a few MiB ones), so only buffers larger than those tell a run that
# left malloc alone from a tuned one (32 MiB threshold).
_CHILD = """
import ctypes, json, sys
mode = sys.argv[1]
if mode == "tune":
    from gntkit.tools.host_heap import tune_host_malloc
    done = tune_host_malloc()
elif mode == "library":
    import numpy as np
    import gntkit.training as training
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (32, 20, 20), dtype=np.uint8), np.arange(32) % 2
    training.train_arrays((images, labels), None, ["a", "b"], sys.argv[2], framework="torch", model="cnn3",
                          epochs=1, batch_size=16, quiet=True)
    done = json.load(open(sys.argv[2] + "/run.json"))["host_malloc"]
    assert "gntkit.tools.host_heap" not in sys.modules
elif mode == "cli":
    from typer.testing import CliRunner
    from gntkit.cli.main import app
    result = CliRunner().invoke(app, ["train", sys.argv[2], "--out", sys.argv[3], "--framework", "torch",
                                      "--model", "cnn3", "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    done = json.load(open(sys.argv[3] + "/run.json"))["host_malloc"]
else:
    done = "not asked"

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
buffers = [libc.malloc(1 << 20) for _ in range(32)]
mapped_alone = libc.mallinfo2().hblks - before
for b in reversed(buffers):
    libc.free(b)
kept_free_at_top = libc.mallinfo2().keepcost
before = libc.mallinfo2().hblks
large = [libc.malloc(16 << 20) for _ in range(4)]
large_mapped_alone = libc.mallinfo2().hblks - before
for b in reversed(large):
    libc.free(b)
print(json.dumps({"done": done, "mapped_alone": mapped_alone, "kept_free_at_top": kept_free_at_top,
                  "large_mapped_alone": large_mapped_alone}))
"""


def _child(*args, **env):
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "GNTKIT_HOST_MALLOC")}
    out = subprocess.run([sys.executable, "-c", _CHILD, *map(str, args)], capture_output=True, text=True,
                         env={**environment, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def _shards(tmp_path, corpus_c):
    data = tmp_path / "data"
    converted = CliRunner().invoke(app, ["convert", str(corpus_c), "--out", str(data), "--to", "hdf5", "--size", "20",
                                         "--split", "train=1001-1002,test=1003", "--quiet"])
    assert converted.exit_code == 0, converted.output
    return data


@glibc_only
def test_tuned_malloc_keeps_step_sized_buffers_on_a_heap_it_does_not_trim():
    tuned, plain = _child("tune"), _child("plain")
    assert tuned["done"] == TUNED
    assert tuned["mapped_alone"] == 0 and tuned["kept_free_at_top"] >= 32 << 20
    assert tuned["large_mapped_alone"] == 0 and plain["large_mapped_alone"] == 4
    # glibc's defaults: each 1 MiB buffer is mapped alone and unmapped when freed
    assert plain["mapped_alone"] == 32 and plain["kept_free_at_top"] < 1 << 20


@glibc_only
@pytest.mark.parametrize("env", [{"MALLOC_TOP_PAD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
                                 {"GNTKIT_HOST_MALLOC": "keep"}])
def test_the_environment_decides_where_it_sets_malloc(env):
    left = _child("tune", **env)
    assert left["done"] == "malloc set by the environment" and left["mapped_alone"] == 32


@glibc_only
def test_training_through_the_library_leaves_malloc_alone(tmp_path):
    pytest.importorskip("torch")
    trained = _child("library", tmp_path / "run")
    # run.json records that nobody said what malloc was set to, and glibc's own thresholds still hold
    assert trained["done"] is None and trained["large_mapped_alone"] == 4


@glibc_only
def test_gntkit_train_tunes_malloc_and_records_it(tmp_path, corpus_c):
    pytest.importorskip("torch")
    data = _shards(tmp_path, corpus_c)
    trained = _child("cli", data, tmp_path / "run")
    assert trained["done"] == TUNED
    assert trained["mapped_alone"] == 0 and trained["kept_free_at_top"] >= 32 << 20
    assert trained["large_mapped_alone"] == 0


def test_gntkit_train_keeps_malloc_as_the_environment_asks(tmp_path, corpus_c, monkeypatch):
    pytest.importorskip("torch")
    data = _shards(tmp_path, corpus_c)
    monkeypatch.setenv("GNTKIT_HOST_MALLOC", "keep")  # so this test process's malloc stays as it is
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "run"), "--framework", "torch",
                                      "--model", "cnn3", "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["host_malloc"] == "malloc set by the environment"


@pytest.mark.parametrize("bad", [[(-3, -1, "x")], [(-3, 2.5, "x")], [(-3, True, "x")], [(-3, (1 << 30) + 1, "x")],
                                 [("-3", 1, "x")], [(-3, 1)], ["mmap"]])
def test_bad_settings_are_refused(bad):
    with pytest.raises(GntkitError, match="must be .mallopt parameter, bytes from 0 to 1 GiB, name."):
        tune_host_malloc(bad)
