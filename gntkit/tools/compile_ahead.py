"""Kernels ready sooner on a cold numba cache: compile the preprocessing kernels in a helper process.

With an empty numba cache, a first `gntkit convert` compiles about twenty kernel signatures one
after another: numba compiles under a process-wide lock, so threads cannot share the work. The
preprocessing kernel and its callees are the longest chain (about 4 of 6 compile CPU-s, and a
caller compiles only after its callees); reading and writing need the rest. So a helper process
compiles the preprocessing chain into numba's on-disk cache from the moment the command starts,
while the command compiles its share of the chain's callees (`compile_callee_share`: gather_pass,
resize_taps and the ink tests), then its reader and, ahead of the first batch, its shard writer (`warm_writer`).
The helper compiles the other callees, waits for the command's share to be in the cache (the
command says so on the helper's stdin), then compiles the preprocessing kernel itself, which finds
every callee in the cache. The command waits for the helper (`await_kernels`) just before it
preprocesses and loads the kernels from the cache in milliseconds. On two cores this takes a cold
convert from about 7.5 s to under 5 s (benchmarks/bench_coldstart.py, docs/benchmarks.md).

The library never starts a helper on its own: the command line does (and `gntkit warmup`), by
starting one early and passing `before_convert` to gntkit.shards.convert.convert, which installs
the wait in the preprocessing wrapper (gntkit.samples.transform.set_before_kernels).

A helper starts only where it can pay off: the JIT and its cache are on, the kernel is not in the
cache yet, and the process may use more than one core. Nothing depends on it: if it fails or is
slow, the command compiles what is missing itself, and the output is the same bytes.
GNTKIT_COMPILE_AHEAD=0 turns it off. This module imports no numpy or numba at import time, so
the CLI can start the helper before it loads anything heavy.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading

__all__ = ["Ahead", "start_preprocess_helper", "compile_callee_share", "await_kernels", "await_preprocess", "before_convert",
           "cancel_helpers", "warm_writer", "kernels_cached", "pending"]

# The kernel whose cache index shows that a group of kernels was compiled before (module,
# function): the group's outermost kernel, cached only after everything it calls.
GROUP_KERNELS = {
    "preprocess": ("gntkit.kernels.preprocess", "preprocess_chunk_plain"),
    "preprocess-edited": ("gntkit.kernels.preprocess", "preprocess_chunk_edited"),
    "writer-tfrecord": ("gntkit.kernels.tfrecord", "write_frames"),
    "writer-webdataset": ("gntkit.shards.webdataset", "_write_samples"),
}
# The longest a command waits for a helper before compiling what is missing itself (a helper
# takes 4-5 s on the 2-core machine; one starved of CPU may take longer).
WAIT_SECONDS = 60.0

_pending: dict = {}  # kernel group -> Ahead of the helper compiling it
_lock = threading.Lock()


def _forget_helpers() -> None:
    # A forked worker did not start the parent's helpers and cannot wait for them.
    _pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


class Ahead:
    """A helper process compiling a group of kernels into numba's cache.

    Attributes:
        process: its subprocess.Popen (None once waited for or cancelled).
    """

    def __init__(self, process):
        self.process = process
        self._lock = threading.Lock()

    def wait(self) -> bool:
        """Wait for the helper (at most WAIT_SECONDS); True if it ended well.

        A failed or late helper is not an error: numba compiles in this process whatever
        is not in the cache. Safe to call from several threads and more than once.
        """
        self.signal()  # a helper still waiting for the command's share must not wait for ever
        with self._lock:
            process, self.process = self.process, None
            if process is None:
                return False
            try:
                return process.wait(timeout=WAIT_SECONDS) == 0
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return False

    def signal(self) -> None:
        """Tell the helper that the command's share of the callees is in the cache (it then compiles the rest)."""
        process = self.process
        if process is None or process.stdin is None or process.stdin.closed:
            return
        try:
            process.stdin.write(b"1")
            process.stdin.close()
        except (OSError, ValueError):
            pass  # the helper ended already

    def cancel(self) -> None:
        """Stop the helper if it still runs."""
        with self._lock:
            process, self.process = self.process, None
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _work():
    """gntkit.tools.compile_work, the part that runs kernels. Imported on first use, not at the top:
    the CLI imports this module to start a helper before numpy and numba load."""
    from gntkit.tools import compile_work

    return compile_work


def _usable_cores() -> int:
    # gntkit.shards.digest.default_threads counts the same, but importing it loads numpy, which this
    # module must not do before the helper has started.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def kernels_cached(group: str) -> bool | None:
    """Whether numba's cache holds the kernels of `group` (see GROUP_KERNELS); None when unknown.

    None also with the JIT off or where the kernels cannot be cached.
    """
    import importlib

    from numba.core import config

    if config.DISABLE_JIT or group not in GROUP_KERNELS:
        return None
    module_name, kernel = GROUP_KERNELS[group]
    try:
        dispatcher = getattr(importlib.import_module(module_name), kernel)
        # numba's cache object of the kernel (not a public API: anything unexpected means "unknown")
        index_path = dispatcher._cache._cache_file._index_path
    except (AttributeError, ImportError):
        return None
    return os.path.exists(index_path)


def preprocess_group(edits: bool) -> str:
    """The kernel group of the preprocessing kernel with edit steps (contrast, binarisation, denoising) or without."""
    return "preprocess-edited" if edits else "preprocess"


def start_preprocess_helper(edited: bool = False) -> bool:
    """Start a helper compiling the preprocessing kernels (with edit steps or without), unless pointless.

    Args:
        edited: the kernel with contrast, binarisation or denoising steps.

    Returns:
        True if a helper for them is running (started now or before).
    """
    group = preprocess_group(edited)
    with _lock:
        if group in _pending:
            return True
        if os.environ.get("GNTKIT_COMPILE_AHEAD", "1") == "0" or os.environ.get("NUMBA_DISABLE_JIT", "0") == "1":
            return False
        if _usable_cores() < 2:
            return False
        # The helper itself looks in the cache and ends at once when the kernels are there:
        # looking here would mean importing numba first, and start it 0.3 s later.
        env = dict(os.environ)
        numba_config = sys.modules.get("numba.core.config")
        if numba_config is not None and numba_config.CACHE_DIR:  # gntkit.jit's fallback: the helper uses the same folder
            env["NUMBA_CACHE_DIR"] = str(numba_config.CACHE_DIR)
        try:
            process = subprocess.Popen([sys.executable, "-c", helper_command(), json.dumps({"group": group})], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return False
        _pending[group] = Ahead(process)
        return True


# The folder that holds the running gntkit package: the helper imports gntkit from there and
# nowhere else. `python -m` would put the current folder first on sys.path, so a `gntkit/`
# folder there (another checkout, say) would run instead, and its kernels would miss the cache.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def helper_command() -> str:
    """The `python -c` program of a helper: sys.path[0] (the current folder for -c) becomes the
    running package's root folder, then the helper runs from this very module."""
    return (f"import sys; sys.path[0] = {_PACKAGE_ROOT!r}; "
            "import json; from gntkit.tools.compile_ahead import _helper; _helper(json.loads(sys.argv[1]))")


def await_kernels(group: str) -> None:
    """Wait for the helper compiling `group`, if one runs (called just before the kernels' first use)."""
    ahead = _pending.get(group)
    if ahead is not None:
        ahead.wait()
        with _lock:
            if _pending.get(group) is ahead:
                del _pending[group]


def await_preprocess(edits: bool) -> None:
    """Wait for the helper compiling the preprocessing kernel with edit steps or without, if one runs
    (the hook gntkit.samples.transform calls just before the kernel runs)."""
    await_kernels(preprocess_group(edits))


def before_convert(plan) -> None:
    """For gntkit.shards.convert.convert(before_write=...): on a cold numba cache, the preprocessing
    kernels in a helper process and the writer's here meanwhile.

    Only GNT bitmaps go through the resampling kernels the helper compiles; for other sources
    (and raw or pad settings) a helper started earlier is stopped.

    Args:
        plan: the gntkit.shards.convert.ConversionPlan about to be written.
    """
    settings = plan.preprocess
    resamples = (not settings.raw and not settings.pad and not plan.options.get("lines")
                 and all(m.format == "gnt" for m in plan.members))
    if not resamples:
        cancel_helpers()
        return
    _work().set_before_kernels(await_preprocess)
    # The command's share of the callees first (the helper waits for it); then, while the helper
    # compiles for seconds, the writer here, not after the first batch.
    if start_preprocess_helper(settings.edits) and compile_callee_share(preprocess_group(settings.edits)):
        warm_writer(plan.fmt.name, image_size=settings.size, compression=plan.options["compression"])


def compile_callee_share(group: str) -> bool:
    """Compile the command's share of the preprocessing callees, then signal the helper of `group`.

    The share is gather_pass for both argument types the preprocessing kernel passes it
    (the uint8 image and float32 rows), resize_taps and the ink tests: called here on a few
    values each, so numba compiles exactly the signatures the kernel uses and caches them.
    The helper waits for the signal before it compiles the kernel that calls them. Without a
    helper for `group` it does nothing.

    Returns:
        True if it compiled the share: the kernels were not cached and the helper is at work.
    """
    ahead = _pending.get(group)
    if ahead is None:
        return False
    try:
        if kernels_cached(group) is not False:
            return False
        _work().call_command_share()
        return True
    finally:
        ahead.signal()


def pending(group: str) -> bool:
    """Whether a helper is compiling `group` now."""
    return group in _pending


def cancel_helpers() -> None:
    """Stop every helper that still runs (a command that will not use their kernels, or failed)."""
    with _lock:
        helpers = list(_pending.values())
        _pending.clear()
    for ahead in helpers:
        ahead.cancel()


@contextlib.contextmanager
def helpers_cancelled_on_error():
    """Within the block, an exception stops every helper before it propagates (a failed command
    will not use their kernels)."""
    try:
        yield
    except BaseException:
        cancel_helpers()
        raise


# A command that ends without preprocessing (nothing kept, an error) leaves no helper running.
atexit.register(cancel_helpers)


def warm_writer(fmt: str, *, image_size: int, compression: str | None) -> bool:
    """Compile the shard writer's kernels in this process now, on a two-sample shard in a temporary folder.

    For a command whose preprocessing kernels a helper is compiling: its writer then compiles
    while it would otherwise wait, not after the first batch. Such a command writes
    fixed-size images (raw bitmaps are never resampled, so no helper runs for them).

    Returns:
        True if it wrote the warm-up shard (False: the kernels were cached, or the format has none).
    """
    if kernels_cached(f"writer-{fmt}") is not False:
        return False
    _work().write_warm_shard(fmt, image_size, compression)
    return True


def _helper(spec: dict) -> None:
    """The helper process: compile the group's kernels unless the cache has them.

    Its share of the callees first; then it waits until the command has compiled its own
    share (one byte, or the end of stdin if the command ended), and compiles the kernel.
    """
    group = spec["group"]
    if kernels_cached(group) is not False:
        return
    work = _work()
    work.call_helper_share()
    sys.stdin.buffer.read(1)
    work.compile_preprocessing(group == "preprocess-edited")


if __name__ == "__main__":
    _helper(json.loads(sys.argv[1]))
