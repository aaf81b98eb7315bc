"""gntkit.jit: parallel_ranges, as_readonly, and the one-line notice when a kernel must compile."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from gntkit.jit import as_readonly, njit, parallel_ranges

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"
NOTICE = "gntkit: compiling numba kernels"


@pytest.mark.parametrize("count, grain", [(0, 4), (1, 4), (7, 4), (64, 4), (65, 32), (1000, 7)])
def test_parallel_ranges_cover_every_item_once_in_whole_grains(count, grain):
    seen = np.zeros(count, np.int64)
    runs = []
    lock = threading.Lock()

    def body(first, end):
        with lock:
            runs.append((first, end))
        seen[first:end] += 1

    parallel_ranges(count, grain, body)
    assert (seen == 1).all()
    assert all(first % grain == 0 and first < end for first, end in runs)
    assert sorted(runs) == runs or len({r for r in runs}) == len(runs)


def test_parallel_ranges_raise_the_body_error_after_all_runs():
    import numba

    done = []

    def body(first, end):
        done.append(first)
        if first == 0:
            raise ValueError("bad run")

    with pytest.raises(ValueError, match="bad run"):
        parallel_ranges(400, 10, body)
    assert len(done) == min(numba.get_num_threads(), 40)


# cache=False: compiled in this process, so the callee's signatures can be read.
@njit(cache=False)
def _first(a):
    return a[0]


@njit(cache=False)
def _first_of_both(writeable, readonly):
    return _first(as_readonly(writeable)) + _first(as_readonly(readonly))


def test_as_readonly_compiles_a_callee_once():
    writeable = np.arange(3, dtype=np.int64)
    readonly = np.frombuffer(np.arange(10, 13, dtype=np.int64).tobytes(), np.int64)
    assert not readonly.flags.writeable
    assert _first_of_both(writeable, readonly) == 10
    assert writeable.flags.writeable  # the array itself is untouched
    if not JIT_DISABLED:
        assert len(_first.signatures) == 1 and not _first.signatures[0][0].mutable


SCRIPT = """
import numpy as np
from gntkit.kernels import gnt
buf = np.zeros(20, np.uint8)
gnt.header_status(buf, 0, 100)
gnt.header_status(buf, 5, 100)
gnt.find_next_record(buf, 0, 100)
print("ran")
"""


def _run(cache, *extra_env):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), **dict(extra_env)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran"
    return done.stderr


@pytest.mark.skipif(JIT_DISABLED, reason="nothing compiles with NUMBA_DISABLE_JIT=1")
def test_notice_once_when_compiling_never_when_cached(tmp_path):
    cold = _run(tmp_path)
    assert cold.count(NOTICE) == 1, cold
    warm = _run(tmp_path)
    assert NOTICE not in warm, warm
    assert any(tmp_path.rglob("*.nbi")), "the cold run filled the cache it was given"


def test_no_notice_without_jit(tmp_path):
    assert NOTICE not in _run(tmp_path, ("NUMBA_DISABLE_JIT", "1"))


FALLBACK_SCRIPT = """
import numpy as np
from gntkit.kernels import gnt
print(gnt.header_status(np.zeros(20, np.uint8), 0, 100), gnt.header_status.stats.cache_path)
"""


@pytest.mark.skipif(JIT_DISABLED or not hasattr(os, "getuid"), reason="caching needs the JIT; the fallback folder is per POSIX user")
def test_kernels_cache_in_tmp_when_nothing_else_is_writable(tmp_path):
    import shutil

    import gntkit

    # A copy of the package whose __pycache__ folders cannot be made (each name is a file), and a
    # home under /proc, where no folder can be made: numba alone would fail the import.
    package = tmp_path / "site" / "gntkit"
    shutil.copytree(os.path.dirname(gntkit.__file__), package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        (folder / "__pycache__").write_text("")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tmp_path / "site"), TMPDIR=str(tmp_path / "tmp"), HOME="/proc/gntkit-no-home",
               XDG_CACHE_HOME="/proc/gntkit-no-cache", PYTHONDONTWRITEBYTECODE="1")
    runs = [subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    status, cache_path = runs[0].stdout.split()
    assert status == "2" and cache_path.startswith(str(tmp_path / "tmp" / f"gntkit-numba-{os.getuid()}"))
    assert NOTICE in runs[0].stderr and NOTICE not in runs[1].stderr, "the second run loads from the fallback cache"


@pytest.mark.skipif(JIT_DISABLED, reason="no numba thread pool runs with the JIT off")
def test_omp_num_threads_bounds_numba_and_leaves_torch_as_set():
    # numba's OpenMP layer sets OpenMP's thread count for the whole process when its pool starts;
    # with OMP_NUM_THREADS=1, torch (sharing OpenMP) must still run on one thread after a
    # parallel gntkit kernel, and numba's pool must hold one thread.
    pytest.importorskip("torch")
    code = ("import torch, numpy as np\n"
            "before = torch.get_num_threads()\n"
            "from gntkit.samples.photos import preprocess_image\n"
            "from gntkit.samples.preprocess import Preprocess\n"
            "import numba\n"
            "preprocess_image((np.arange(6400) % 251).astype(np.uint8).reshape(80, 80), Preprocess(size=32))\n"
            "print(before, numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.split() == ["1", "1", "1"], done.stderr[-2000:]
