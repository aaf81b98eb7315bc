"""The one switch for numba: every kernel is decorated with `njit` from here.

Set NUMBA_DISABLE_JIT=1 to run every kernel as plain Python (numba honours the
variable itself; the tests run once that way).

Kernels compile on first use, each for the argument types it is called with, and
cache=True stores the machine code so later processes load it in milliseconds. numba
keeps that cache in NUMBA_CACHE_DIR when set, else in the package's __pycache__ folders, or,
where the package folder is not writable (a read-only site-packages), in the user's cache
folder (~/.cache/numba): numba's own fallback. Where none of these can be written (a
read-only container with an unwritable home), numba would fail the import; `njit` here then
caches in <tmp>/gntkit-numba-<uid> instead.
The first compile in a process prints one line on stderr (see `no_compile_notice`), so a
first run that takes seconds says why; `gntkit warmup` compiles everything ahead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

# numba's OpenMP threading layer starts NUMBA_NUM_THREADS threads (default: every core) and sets
# OpenMP's thread count for the whole process to that number, which torch shares: after the first
# parallel kernel, a user's OMP_NUM_THREADS=1 (torch at one thread) became torch at every core.
# The same variable bounds numba's threads here unless NUMBA_NUM_THREADS says otherwise (read by
# numba when it is first imported).
if "NUMBA_NUM_THREADS" not in os.environ and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() \
        and int(os.environ["OMP_NUM_THREADS"]) >= 1:
    os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"].strip()

import numba  # noqa: E402 - after the thread count above
from numba.core import event, types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload

# cache=True writes compiled kernels next to the module so later processes
# (conversion workers, CLI runs) skip compilation.
_DEFAULTS = {"cache": True, "nogil": True}


def njit(*args, **kwargs):
    """numba.njit with gntkit's defaults (cache, nogil); usable bare or with options.

    Where numba finds no writable cache folder at all (a read-only package and an unwritable
    home, as in a read-only container), caching moves to a private folder in the temporary
    directory rather than failing the import (see `_fallback_cache_dir`).
    """
    options = {**_DEFAULTS, **kwargs}
    if args and callable(args[0]) and len(args) == 1:
        return _decorate(args[0], (), options)
    return lambda func: _decorate(func, args, options)


def _decorate(func, args: tuple, options: dict):
    # numba raises "cannot cache function ...: no locator available" at decoration when
    # neither the package's __pycache__, nor the user cache folder, nor NUMBA_CACHE_DIR can be
    # written: without this fallback `import gntkit.kernels` would fail there.
    try:
        return numba.njit(*args, **options)(func)
    except RuntimeError as exc:
        if not options.get("cache") or "no locator available" not in str(exc):
            raise
    if _fallback_cache_dir() is not None:
        try:
            return numba.njit(*args, **options)(func)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
    return numba.njit(*args, **{**options, "cache": False})(func)


def _fallback_cache_dir() -> str | None:
    """Point numba's cache at <tmp>/gntkit-numba-<uid> (private to the user); None if that fails too."""
    import tempfile

    from numba.core import config

    folder = os.path.join(tempfile.gettempdir(), f"gntkit-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        # numba loads machine code from this folder: one that another user could have made
        # or can write to is not used.
        unsafe = os.path.islink(folder) or not os.path.isdir(folder) or info.st_mode & 0o022
        if unsafe or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            return None
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return None
    # numba reads config.CACHE_DIR each time it looks for a cache folder, so this reaches every
    # kernel decorated from now on, as NUMBA_CACHE_DIR would have.
    config.CACHE_DIR = folder
    return folder


prange = numba.prange  # kept for callers; gntkit's kernels use parallel_ranges instead


def as_readonly(array):
    """The same array, typed read-only inside a kernel (in Python: the array itself).

    numba compiles a callee once per argument type, and a read-only array (a view of
    bytes or of a read-only mapping) is another type than a writeable one: a kernel that
    passes both to the same callee compiles it, and everything it calls, twice. Passing
    both through as_readonly compiles them once; nothing is copied.
    """
    return array


@intrinsic
def _readonly_view(typingctx, array):
    # A read-only array has the same data model as a writeable one: only the type changes.
    def codegen(context, builder, signature, args):
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return array.copy(readonly=True)(array), codegen


@overload(as_readonly)
def _as_readonly(array):
    if isinstance(array, types.Array):
        return lambda array: _readonly_view(array)
    return None


# ---- parallel loops on Python threads over nogil kernels -----------------------------------

_pool = {"executor": None, "size": 0}
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: a pool inherited from the parent would
    # take work and never run it.
    _pool["executor"], _pool["size"] = None, 0


os.register_at_fork(after_in_child=_forget_pool)


def _executor(size: int):
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool["executor"] is None or _pool["size"] < size:
            _pool["executor"] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gntkit-kernel")
            _pool["size"] = size
        return _pool["executor"]


def parallel_ranges(count: int, grain: int, body) -> None:
    """Call body(first, end) over 0..count-1, split into contiguous runs of whole grains, in parallel.

    Stands in for numba's parallel=True (prange): the body calls a nogil kernel, so Python
    threads run it on all cores, and numba compiles no parallel variant of the kernel (the
    parallel lowering cost about 12 CPU-s of compile for the preprocessing kernel, measured
    by benchmarks/bench_coldstart.py). Uses numba.get_num_threads() threads, the calling one
    included, so NUMBA_NUM_THREADS and numba.set_num_threads() keep their meaning. Outputs are
    those of one body(0, count) whenever body's runs write disjoint outputs.

    Args:
        count: items to process.
        grain: items per indivisible unit (a run starts at a multiple of it).
        body: callable(first, end) for a half-open run of items.

    Raises:
        The first exception a body raised, after every run has ended.
    """
    if count <= 0:
        return
    grains = -(-count // grain)
    threads = min(numba.get_num_threads(), grains)
    if threads <= 1:
        body(0, count)
        return
    bounds = [min(count, (grains * k // threads) * grain) for k in range(threads + 1)]
    futures = [_executor(threads - 1).submit(body, bounds[k], bounds[k + 1]) for k in range(1, threads)]
    error = None
    try:
        body(bounds[0], bounds[1])
    except BaseException as exc:  # noqa: BLE001 - re-raised below, once the other runs ended
        error = exc
    for future in futures:
        exc = future.exception()
        error = error or exc
    if error is not None:
        raise error


# ---- the stderr notice on the first compile of a process ---------------------------------

_notice = {"printed": False, "enabled": True}
_notice_lock = threading.Lock()


class _CompileListener(event.Listener):
    """Says once per process, on stderr, that gntkit kernels are being compiled."""

    def on_start(self, ev):
        # numba fires "numba:compile" only after the on-disk cache missed, so a kernel
        # loaded from the cache never prints this line.
        if _notice["printed"] or not _notice["enabled"]:
            return
        dispatcher = ev.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("gntkit"):
            return
        with _notice_lock:
            if _notice["printed"]:
                return
            _notice["printed"] = True
        sys.stderr.write("gntkit: compiling numba kernels on first use (later runs load them from the cache; "
                         "`gntkit warmup` compiles them all ahead)\n")
        sys.stderr.flush()

    def on_end(self, ev):
        pass


@contextlib.contextmanager
def no_compile_notice():
    """Within the block, compiling prints no notice (for work that reports its compiling itself); then as before."""
    was = _notice["enabled"]
    _notice["enabled"] = False
    try:
        yield
    finally:
        _notice["enabled"] = was


if os.environ.get("NUMBA_DISABLE_JIT", "0") != "1":
    event.register("numba:compile", _CompileListener())
