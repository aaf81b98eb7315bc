"""gntkit.tools.compile_ahead: with an empty numba cache, a helper process compiles the preprocessing
kernels while the command compiles its reader and writer; the command then loads them from the
cache and writes the same bytes as without the helper."""

import os
import subprocess
import sys

import pytest

from gntkit.errors import GntkitError
from gntkit.tools import compile_ahead
from gntkit.tools.compile_ahead import Ahead

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"

# In a fresh process: convert a small corpus the way the CLI does (the helper started first, and
# compile_ahead.before_convert passed to convert), then print how many signatures of the preprocessing and writer kernels numba compiled in
# this process, and the SHA-256 of every shard.
SCRIPT = """
import hashlib, sys
from pathlib import Path
from gntkit.tools import compile_ahead
corpus, out, fmt, edit = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "edited"
compile_ahead.start_preprocess_helper(edited=edit)
from gntkit.shards.convert import convert
from gntkit.samples.preprocess import Preprocess
from gntkit.tools.warmup import _kernel_dispatchers
convert(corpus, out, to=fmt, charset="data", preprocess=Preprocess(contrast=True, denoise=True) if edit else None,
        before_write=compile_ahead.before_convert)
writer = ("gntkit.kernels.tfrecord", "gntkit.shards.webdataset", "gntkit.kernels.png", "gntkit.kernels.crc32c")
print("compiled writer", sum(sum(d.stats.cache_misses.values()) for d in _kernel_dispatchers() if d.py_func.__module__ in writer))
for d in _kernel_dispatchers():
    if d.py_func.__module__ in ("gntkit.kernels.preprocess", "gntkit.kernels.edits"):
        print("compiled", d.py_func.__name__, sum(d.stats.cache_misses.values()))
for shard in sorted(out.iterdir()):
    if shard.is_file() and not shard.name.endswith(".json") and not shard.name.startswith("charset"):
        print(shard.name, hashlib.sha256(shard.read_bytes()).hexdigest())
"""


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from gntkit.tools.synth import write_corpus

    folder = tmp_path_factory.mktemp("ahead") / "gnt"
    write_corpus(folder, writers=2, num_classes=5, samples_per_class=2, style="f", num_symbols=2, seed=4)
    return folder


def _convert(corpus, out, cache, fmt, edit, **env):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(corpus), str(out), fmt, edit],
                          env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    compiled = {line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("compiled")}
    return compiled, [line for line in lines if not line.startswith("compiled")]


@pytest.mark.slow
@pytest.mark.skipif(JIT_DISABLED, reason="the helper compiles nothing with the JIT off")
@pytest.mark.parametrize("fmt,edit", [("tfrecord", "plain"), ("webdataset", "plain"), ("hdf5", "edited")])
def test_the_helper_compiles_preprocessing_and_the_bytes_stay_the_same(tmp_path, small_corpus, fmt, edit):
    with_helper, shards = _convert(small_corpus, tmp_path / "with", tmp_path / "cache-with", fmt, edit)
    alone, alone_shards = _convert(small_corpus, tmp_path / "alone", tmp_path / "cache-alone", fmt, edit,
                                   GNTKIT_COMPILE_AHEAD="0")
    # Alone, the command compiles every preprocessing kernel itself. With the helper it compiles
    # its share of the callees only (see compile_callee_share) and loads the rest from the cache.
    chunk = "preprocess_chunk_edited" if edit == "edited" else "preprocess_chunk_plain"
    assert alone[chunk] == 1 and alone["combine_pass"] == 2 and alone["gather_pass"] == 2
    share = {"gather_pass": 2, "resize_taps": 1, "row_has_ink": 1, "column_has_ink": 1}
    assert {k: v for k, v in with_helper.items() if v and k != "writer"} == share
    # The writer compiles in the command either way (ahead of the first batch with a helper).
    assert with_helper["writer"] == alone["writer"]
    assert shards == alone_shards and len(shards) >= 1


@pytest.mark.skipif(JIT_DISABLED, reason="numba's cache is not used with the JIT off")
def test_a_second_command_finds_the_kernels_cached(tmp_path):
    # The first process's helper fills the cache; in the next process the helper finds the
    # kernels there and ends without compiling, and the command knows they are cached.
    script = ("from gntkit.tools import compile_ahead as c; started = c.start_preprocess_helper(); "
              "helper = c._pending.get('preprocess'); ok = helper.wait() if helper else None; "
              "print(started, ok, c.kernels_cached('preprocess'))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert first.stdout.split() == ["True", "True", "True"], first.stderr[-2000:]
    assert any((tmp_path / "cache").rglob("preprocess.preprocess_chunk_plain-*.nbi"))


def test_no_helper_where_it_cannot_pay_off(monkeypatch):
    monkeypatch.setenv("GNTKIT_COMPILE_AHEAD", "0")
    assert compile_ahead.start_preprocess_helper() is False and not compile_ahead.pending("preprocess")
    monkeypatch.setenv("GNTKIT_COMPILE_AHEAD", "1")
    monkeypatch.setattr(compile_ahead, "_usable_cores", lambda: 1)
    assert compile_ahead.start_preprocess_helper() is False
    assert compile_ahead.kernels_cached("writer-hdf5") is None  # HDF5's writer has no kernels


def test_a_failed_or_slow_helper_is_not_an_error():
    failed = Ahead(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    assert failed.wait() is False
    assert failed.wait() is False  # waiting twice
    slow = Ahead(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    compile_ahead._pending["preprocess"] = slow
    compile_ahead.cancel_helpers()
    assert slow.process is None and not compile_ahead.pending("preprocess")
    compile_ahead.await_kernels("preprocess")  # nothing pending: returns at once


LIBRARY_SCRIPT = """
import sys
from pathlib import Path
from gntkit.shards.convert import convert
convert(Path(sys.argv[1]), Path(sys.argv[2]), to="tfrecord", charset="data")
edge = sorted(name for name in sys.modules if name.startswith("gntkit.tools"))
from gntkit.kernels.preprocess import preprocess_chunk_plain
print("compiled", sum(preprocess_chunk_plain.stats.cache_misses.values()))
print("edge", edge)
"""


@pytest.mark.skipif(JIT_DISABLED, reason="compiles nothing with the JIT off")
def test_a_library_convert_starts_no_helper(tmp_path, small_corpus):
    # The library alone never imports the edge nor starts a process: it compiles the
    # preprocessing kernel itself on a cold cache.
    done = subprocess.run([sys.executable, "-c", LIBRARY_SCRIPT, str(small_corpus), str(tmp_path / "out")],
                          env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["compiled", "1", "edge", "[]"]


def test_convert_calls_before_write_with_its_plan_before_the_stream(tmp_path, small_corpus, monkeypatch):
    from gntkit.samples import transform
    from gntkit.shards import convert as convert_module

    seen = []
    monkeypatch.setattr(transform, "_before_kernels", None)
    monkeypatch.setattr(convert_module, "iter_batches", lambda *a, **k: seen.append("stream") or iter(()))
    with pytest.raises(GntkitError, match="no sample was kept"):  # the stand-in stream yields nothing
        convert_module.convert(small_corpus, tmp_path / "out", to="tfrecord", charset="data", workers=1,
                               before_write=lambda plan: seen.append(plan))
    assert isinstance(seen[0], convert_module.ConversionPlan) and seen[0].fmt.name == "tfrecord" and seen[1:] == ["stream"]


def test_the_kernel_hook_runs_before_each_preprocessing_call(monkeypatch):
    import numpy as np

    from gntkit.samples import transform
    from gntkit.samples.preprocess import Preprocess

    calls = []
    monkeypatch.setattr(transform, "_before_kernels", None)
    transform.set_before_kernels(calls.append)
    bitmap = np.full(64, 255, np.uint8)
    args = (np.array([0, 64], np.int64), np.array([8], np.int32), np.array([8], np.int32))
    transform.preprocess_batch(bitmap, *args, Preprocess(size=16))
    transform.preprocess_batch(bitmap, *args, Preprocess(size=16, denoise=True))
    transform.set_before_kernels(None)
    transform.preprocess_batch(bitmap, *args, Preprocess(size=16))
    assert calls == [False, True]


def test_before_convert_installs_the_wait_and_stops_helpers_it_cannot_use(monkeypatch, tmp_path, small_corpus):
    from gntkit.samples import transform
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import plan_conversion

    monkeypatch.setattr(transform, "_before_kernels", None)
    monkeypatch.setenv("GNTKIT_COMPILE_AHEAD", "0")  # no process: the decisions alone
    stopped = []
    monkeypatch.setattr(compile_ahead, "cancel_helpers", lambda: stopped.append(True))
    options = dict(on_error="raise", on_unknown="drop", shard_records=None, shard_bytes=None, compression=None, workers=1,
                   parallel="threads", overwrite=False, resume=False, batch_size=16, max_side=4096, progress=False, command=None,
                   hash_sources=False, strokes=False)
    raw = plan_conversion(small_corpus, tmp_path / "raw", charset="data", preprocess=Preprocess(raw=True), **options)
    compile_ahead.before_convert(raw)
    assert stopped == [True] and transform._before_kernels is None
    plain = plan_conversion(small_corpus, tmp_path / "plain", charset="data", **options)
    compile_ahead.before_convert(plain)
    assert stopped == [True] and transform._before_kernels is compile_ahead.await_preprocess


# A `gntkit/` folder in the current folder that must never be imported: it leaves a mark and fails.
DECOY = """
from pathlib import Path
Path(__file__).resolve().parent.parent.joinpath("decoy-imported").write_text("the decoy gntkit package was imported")
raise ImportError("decoy gntkit package imported")
"""


def _decoy_folder(tmp_path):
    folder = tmp_path / "elsewhere"
    (folder / "gntkit" / "tools").mkdir(parents=True)
    (folder / "gntkit" / "__init__.py").write_text(DECOY)
    (folder / "gntkit" / "tools" / "__init__.py").write_text(DECOY)
    (folder / "gntkit" / "tools" / "compile_ahead.py").write_text(DECOY)
    return folder


@pytest.mark.skipif(JIT_DISABLED, reason="no helper runs with the JIT off")
def test_the_helper_imports_the_running_package_not_one_in_the_current_folder(tmp_path):
    # The helper is started from a folder holding another `gntkit/`: it must still run this
    # checkout's code (it ends with 0 and the decoy leaves no mark).
    folder = _decoy_folder(tmp_path)
    script = ("import sys; sys.path.remove('') if '' in sys.path else None; from gntkit.tools import compile_ahead as c; "
              "c._usable_cores = lambda: 2; print(c.start_preprocess_helper(), c._pending['preprocess'].wait())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(compile_ahead.__file__)))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": os.path.dirname(root)}
    env.pop("GNTKIT_COMPILE_AHEAD", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.stdout.split() == ["True", "True"], done.stderr[-2000:]
    assert not (folder / "decoy-imported").exists()


@pytest.mark.skipif(JIT_DISABLED, reason="no helper runs with the JIT off")
@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_a_first_conversion_from_a_folder_with_a_decoy_package(tmp_path, small_corpus, parallel):
    # With processes, the decoding workers (fresh interpreters) must import the running package too.
    folder = _decoy_folder(tmp_path)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("GNTKIT_COMPILE_AHEAD", None)
    cli = os.path.join(os.path.dirname(sys.executable), "gntkit")
    done = subprocess.run([cli, "convert", str(small_corpus), "--out", str(tmp_path / "out"), "--charset", "data", "--quiet",
                           "--workers", "2", "--parallel", parallel], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (folder / "decoy-imported").exists()
    assert (tmp_path / "out" / "gntkit.json").is_file()
