"""Kernels ready sooner on a cold numba cache: compile the preprocessing kernels in a helper process.

With an empty numba cache, a first `gntkit convert` compiles about twenty kernel signatures one
after another: numba compiles under a process-wide lock, so threads cannot share the work. The
preprocessing kernel and its callees are the longest chain (about 4 of 6 compile CPU-s, and a
caller compiles only after its callees); reading and writing need the rest. So a helper process
compiles the preprocessing chain into numba's on-disk cache from the moment the command starts,
while the command compiles its reader and, ahead of the first batch, its shard writer
(`warm_writer`); the command waits for the helper (`await_kernels`) just before it preprocesses,
then loads those kernels from the cache in milliseconds. On two cores this takes the critical
path from about 7.5 s to about 5 s (benchmarks/bench_coldstart.py, docs/benchmarks.md).

A helper starts only where it can pay off: the JIT and its cache are on, the kernel is not in the
cache yet, and the process may use more than one core. Nothing depends on it: if it fails or is
slow, the command compiles what is missing itself, and the output is the same bytes.
GNTKIT_COMPILE_AHEAD=0 turns it off. This module imports no numpy or numba at import time, so
the CLI can start the helper before it loads anything heavy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading

__all__ = ["Ahead", "start_preprocess_helper", "await_kernels", "cancel_helpers", "warm_writer", "kernels_cached"]

# The kernel whose cache index shows that a group of kernels was compiled before (module,
# function): the group's outermost kernel, cached only after everything it calls.
GROUP_KERNELS = {
    "preprocess": ("gntkit.kernels.preprocess", "preprocess_chunk_plain"),
    "preprocess-edited": ("gntkit.kernels.preprocess", "preprocess_chunk_edited"),
    "writer-tfrecord": ("gntkit.writers.tfrecord", "_write_frames"),
    "writer-webdataset": ("gntkit.writers.webdataset", "_write_samples"),
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

    def cancel(self) -> None:
        """Stop the helper if it still runs."""
        with self._lock:
            process, self.process = self.process, None
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _usable_cores() -> int:
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


def start_preprocess_helper(edited: bool = False) -> bool:
    """Start a helper compiling the preprocessing kernels (with edit steps or without), unless pointless.

    Args:
        edited: the kernel with contrast, binarisation or denoising steps.

    Returns:
        True if a helper for them is running (started now or before).
    """
    group = "preprocess-edited" if edited else "preprocess"
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
            process = subprocess.Popen([sys.executable, "-m", "gntkit.compile_ahead", json.dumps({"group": group})], env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return False
        _pending[group] = Ahead(process)
        return True


def await_kernels(group: str) -> None:
    """Wait for the helper compiling `group`, if one runs (called just before the kernels' first use)."""
    ahead = _pending.get(group)
    if ahead is not None:
        ahead.wait()
        with _lock:
            if _pending.get(group) is ahead:
                del _pending[group]


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


def warm_writer(fmt: str, *, raw: bool, image_size: int | None, compression: str | None) -> bool:
    """Compile the shard writer's kernels in this process now, on a two-sample shard in a temporary folder.

    For a command whose preprocessing kernels a helper is compiling: its writer then compiles
    while it would otherwise wait, not after the first batch.

    Returns:
        True if it wrote the warm-up shard (False: the kernels were cached, or the format has none).
    """
    if kernels_cached(f"writer-{fmt}") is not False:
        return False
    from gntkit.jit import compile_notice, notice_enabled
    from gntkit.writers import get_writer_class

    writer_class = get_writer_class(fmt)
    was = notice_enabled()
    compile_notice(False)
    try:
        with tempfile.TemporaryDirectory(prefix="gntkit-warm-writer-") as tmp:
            attrs = {"gntkit_version": "warm-up", "charset": "{}", "preprocess": "{}"}
            with writer_class(os.path.join(tmp, "warm"), split="train", attrs=attrs, compression=compression) as writer:
                writer.write(_tiny_batch(raw, image_size or 1))
                writer.close()
    finally:
        compile_notice(was)
    return True


def _tiny_batch(raw: bool, image_size: int):
    """Two samples with the types of gntkit.stream's batches (fixed-size images or raw bitmaps)."""
    import numpy as np

    from gntkit.batch import SampleBatch

    common = dict(keys=["1001/0", "1001/1"], writer_ids=["1001", "1001"], tag_codes=np.array([0xB0A1, 0xB0A2], np.uint16),
                  labels=np.array([0, 1], np.int64), characters=["啊", "阿"])
    if raw:
        return SampleBatch(**common, heights=np.array([3, 2], np.int32), widths=np.array([2, 4], np.int32),
                           pixels=np.full(14, 255, np.uint8), pixel_offsets=np.array([0, 6, 14], np.int64))
    images = np.zeros((2, image_size, image_size), np.uint8)
    return SampleBatch(**common, heights=np.full(2, image_size, np.int32), widths=np.full(2, image_size, np.int32), images=images)


def _compile_preprocessing(edited: bool) -> None:
    """The helper's work: preprocess a few bitmaps with the argument types of a real run."""
    import numpy as np

    from gntkit.preprocess import Preprocess, preprocess_records

    # Bitmaps as a reader passes them: read-only bytes of the file, int64 starts, int32 sides.
    # Both resampling paths (shrinking and enlarging) run, as real handwriting needs both.
    heights = np.array([90, 20], np.int32)
    widths = np.array([70, 30], np.int32)
    starts = np.array([0, 90 * 70], np.int64)
    buffer = np.full(90 * 70 + 20 * 30, 255, np.uint8)
    buffer[100:200] = 0
    buffer = np.frombuffer(buffer.tobytes(), np.uint8)
    settings = Preprocess(contrast=True, binarize="otsu", denoise=True) if edited else Preprocess()
    preprocess_records(buffer, starts, heights, widths, settings, serial=True)


def _helper(spec: dict) -> None:
    """The helper process: compile the group's kernels unless the cache has them."""
    group = spec["group"]
    if kernels_cached(group) is False:
        _compile_preprocessing(group == "preprocess-edited")


if __name__ == "__main__":
    _helper(json.loads(sys.argv[1]))
