"""`gntkit warmup`: compile (or load from numba's cache) the kernels gntkit's commands use, ahead of time.

For container images and cluster nodes: run it once while building the image (or once per
node) and the first real command starts at warm speed. It runs the real code paths on a
tiny synthetic corpus in a temporary folder (inspect; convert to each shard format, with
and without the edit steps, and raw; read the shards back through gntkit.datasets; the
training warp), so the
kernels compile for exactly the argument types real runs pass them; a list of signatures
kept by hand would drift from the code.

numba's ahead-of-time compiler (numba.pycc) is not used: it is deprecated; it needs a C
compiler and one build per platform at packaging time; and it generates code for a generic
CPU of the family, without the host's vector and fused multiply-add instructions that the
JIT uses, so AOT kernels would be slower and could round differently from JIT ones (the
outputs are meant to be the same bytes whichever way a kernel was built). numba's on-disk
cache, filled by this command, gives the warm start-up with the host's own code.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba.core.registry import CPUDispatcher

from gntkit import datasets
from gntkit.errors import GntkitError
from gntkit.jit import no_compile_notice
from gntkit.kernels import gnt
from gntkit.samples.inspection import inspect_sources
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.shards.registry import DEFAULT_FORMAT, FORMATS
from gntkit.tools.compile_ahead import before_convert
from gntkit.tools.synth import write_corpus
from gntkit.training.augment import random_warp_batch


@dataclass
class Stage:
    """One warm-up step: what ran, how long, and how many kernel signatures it compiled or loaded.

    Attributes:
        name: what ran ("convert tfrecord", "read hdf5", ...).
        seconds: wall time of the step.
        compiled: kernel signatures numba compiled (its cache missed).
        loaded: kernel signatures numba loaded from its cache.
    """

    name: str
    seconds: float
    compiled: int
    loaded: int


def _kernel_dispatchers() -> list:
    """Every numba dispatcher defined in an imported gntkit module."""
    found = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.startswith("gntkit"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module_name:
                found[id(value)] = value
    return list(found.values())


def _cache_counts() -> tuple[int, int]:
    """(signatures compiled, signatures loaded from the cache) over gntkit's kernels so far."""
    compiled = loaded = 0
    for dispatcher in _kernel_dispatchers():
        stats = dispatcher.stats
        compiled += sum(stats.cache_misses.values())
        loaded += sum(stats.cache_hits.values())
    return compiled, loaded


def cache_folder() -> str | None:
    """Where numba keeps the compiled kernels of gntkit.kernels (None with NUMBA_DISABLE_JIT=1)."""
    stats = getattr(gnt.scan_records, "stats", None)
    return None if stats is None else stats.cache_path


def available_formats() -> list[str]:
    """The shard formats whose writer and gntkit.datasets reader can run here (their optional package is
    installed); layouts for other toolkits (LMDB, PaddleOCR) share the PNG kernel the WebDataset writer warms."""
    return [name for name, fmt in FORMATS.items()
            if fmt.loadable and (fmt.requires is None or importlib.util.find_spec(fmt.requires) is not None)]


def warmup(formats=None, *, on_stage=None) -> list[Stage]:
    """Compile, or load from numba's cache, every kernel that gntkit's commands use.

    Args:
        formats: shard formats to warm (default: those whose optional package is installed).
        on_stage: optional callable(Stage), called as each step ends (for a live report).

    Returns:
        One Stage per step, in order.

    Raises:
        GntkitError: an unknown format, or one whose optional package is missing.
    """
    formats = available_formats() if formats is None else list(formats)
    readable = [name for name, fmt in FORMATS.items() if fmt.loadable]  # the others' writers use kernels these warm
    for fmt in formats:
        if fmt not in readable:
            raise GntkitError(f"warmup: expected formats among {', '.join(readable)}, found {fmt!r}.")
        if fmt not in available_formats():
            package = FORMATS[fmt].requires
            raise GntkitError(f"warmup: format {fmt!r} needs the {package} package, found it not installed "
                              f"(pip install 'gntkit[{package}]').")
    stages: list[Stage] = []
    # The stages report compiling themselves; the one-line notice would only repeat it.
    with no_compile_notice(), tempfile.TemporaryDirectory(prefix="gntkit-warmup-") as tmp:
        for name, step in _steps(Path(tmp), formats):
            before = _cache_counts()
            started = time.perf_counter()
            step()
            after = _cache_counts()
            stage = Stage(name, time.perf_counter() - started, after[0] - before[0], after[1] - before[1])
            stages.append(stage)
            if on_stage is not None:
                on_stage(stage)
    return stages


def _steps(tmp: Path, formats: list[str]):
    """(name, callable) for every warm-up step, on a corpus written into tmp; each convert compiles
    its preprocessing kernels ahead in a helper process where that pays off, as the command line does."""
    corpus = tmp / "gnt"
    write_corpus(corpus, writers=2, num_classes=4, samples_per_class=2, style="f", num_symbols=2, seed=0)

    def run_convert(out: Path, **options):
        return convert(corpus, out, charset="data", before_write=before_convert, **options)

    yield "inspect", lambda: inspect_sources(corpus)
    for fmt in formats:
        out = tmp / fmt
        yield f"convert {fmt}", lambda fmt=fmt, out=out: run_convert(out, to=fmt, hash_sources=True)
        yield f"read {fmt}", lambda out=out: _read(out)
    first = formats[0] if formats else DEFAULT_FORMAT
    edits = Preprocess(contrast=True, binarize="otsu", denoise=True)
    yield "convert with edit steps", lambda: run_convert(tmp / "edited", to=first, preprocess=edits)
    yield "convert --raw", lambda: run_convert(tmp / "raw", to=first, preprocess=Preprocess(raw=True))
    yield "convert, 2 workers", lambda: run_convert(tmp / "workers", to=first, workers=2)
    yield "training warp (host)", _training_warp


def _training_warp() -> None:
    """The host-side augmentation warp the TF trainer uses on CPUs (gntkit.kernels.warp)."""
    random_warp_batch(np.zeros((2, 8, 8), np.uint8), np.random.default_rng(0))


def _read(folder: Path) -> None:
    """Read a converted folder back through gntkit.datasets, as training does."""
    shards = datasets.open(folder)
    shards.read_batch(np.arange(len(shards)))
    next(iter(shards.iter_batches(4, shuffle=True, seed=0)))
