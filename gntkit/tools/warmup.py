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

from gntkit.errors import GntkitError
from gntkit.shards.registry import DEFAULT_FORMAT, FORMATS


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
    from numba.core.registry import CPUDispatcher

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
    from gntkit.kernels import gnt

    stats = getattr(gnt.scan_records, "stats", None)
    return None if stats is None else stats.cache_path


def available_formats() -> list[str]:
    """The shard formats whose writer and reader can run here (their optional package is installed)."""
    return [name for name, fmt in FORMATS.items() if fmt.requires is None or importlib.util.find_spec(fmt.requires) is not None]


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
    from gntkit.jit import no_compile_notice

    formats = available_formats() if formats is None else list(formats)
    for fmt in formats:
        if fmt not in FORMATS:
            raise GntkitError(f"warmup: expected formats among {', '.join(FORMATS)}, found {fmt!r}.")
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
    """(name, callable) for every warm-up step, on a corpus written into tmp."""
    from gntkit.samples.inspection import inspect_sources
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    corpus = tmp / "gnt"
    write_corpus(corpus, writers=2, num_classes=4, samples_per_class=2, style="f", num_symbols=2, seed=0)
    yield "inspect", lambda: inspect_sources(corpus)
    for fmt in formats:
        out = tmp / fmt
        yield f"convert {fmt}", lambda fmt=fmt, out=out: convert(corpus, out, to=fmt, charset="data", hash_sources=True)
        yield f"read {fmt}", lambda out=out: _read(out)
    first = formats[0] if formats else DEFAULT_FORMAT
    edits = Preprocess(contrast=True, binarize="otsu", denoise=True)
    yield "convert with edit steps", lambda: convert(corpus, tmp / "edited", to=first, charset="data", preprocess=edits)
    yield "convert --raw", lambda: convert(corpus, tmp / "raw", to=first, charset="data", preprocess=Preprocess(raw=True))
    yield "convert, 2 workers", lambda: convert(corpus, tmp / "workers", to=first, charset="data", workers=2)
    yield "training warp (host)", _training_warp


def _training_warp() -> None:
    """The host-side augmentation warp the TF trainer uses on CPUs (gntkit.kernels.warp)."""
    import numpy as np

    from gntkit.training.augment import random_warp_batch

    random_warp_batch(np.zeros((2, 8, 8), np.uint8), np.random.default_rng(0))


def _read(folder: Path) -> None:
    """Read a converted folder back through gntkit.datasets, as training does."""
    import numpy as np

    from gntkit import datasets

    shards = datasets.open(folder)
    shards.read_batch(np.arange(len(shards)))
    next(iter(shards.iter_batches(4, shuffle=True, seed=0)))
