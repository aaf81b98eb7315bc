"""SHA-256 of many files or buffers at once, for manifests and `verify`.

A conversion hashes every source file and every shard it writes: several GB in all. One
core hashes about 400 MB/s with OpenSSL on a CPU without SHA instructions; the multi-buffer
kernel in `gntkit.kernels.sha256` hashes 16 messages side by side at about three times that.
`sha256_many` keeps its 16 lanes busy: jobs go longest first, and a lane that finishes takes
the next job. The digests are plain SHA-256, identical to hashlib's (the tests compare).
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from typing import Sequence

import numba
import numpy as np

from gntkit.errors import GntkitError
from gntkit.kernels.sha256 import INITIAL_STATE, LANES, ROUND_CONSTANTS, compress_lanes

#: Blocks staged per lane per kernel call: 32 KB a lane, 512 KB in all, which stays in L2.
STEP_BLOCKS = 512
#: Below this many jobs the lanes would mostly idle; hashlib is faster there.
MIN_JOBS_FOR_LANES = 6
METHODS = ("auto", "lanes", "hashlib")


def _as_bytes_view(buffer, index: int) -> np.ndarray:
    try:
        view = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    except TypeError:
        raise GntkitError(f"buffer {index}: expected a bytes-like object, found {type(buffer).__name__}.") from None
    if view.dtype != np.uint8 or view.ndim != 1 or not view.flags.c_contiguous:
        raise GntkitError(f"buffer {index}: expected a contiguous 1-D uint8 array, found {view.dtype} with shape {view.shape}.")
    return view


def _padding(message: np.ndarray) -> np.ndarray:
    """The message's last partial block plus SHA-256 padding: 64 or 128 bytes."""
    size = message.size
    rest = message[size - size % 64:]
    total = 64 if size % 64 < 56 else 128
    tail = np.zeros(total, np.uint8)
    tail[: rest.size] = rest
    tail[rest.size] = 0x80
    tail[-8:] = np.frombuffer(struct.pack(">Q", 8 * size), np.uint8)
    return tail


class _Lane:
    """One message in flight: its full blocks are read in place, its padded tail from a copy."""

    def __init__(self, job: int, message: np.ndarray):
        self.job = job
        self.message = message
        self.full_blocks = message.size // 64
        self.tail = _padding(message)
        self.total_blocks = self.full_blocks + self.tail.size // 64
        self.done_blocks = 0

    def stage(self, row: np.ndarray) -> int:
        """Copy up to STEP_BLOCKS next blocks into row (uint8); return how many."""
        count = min(STEP_BLOCKS, self.total_blocks - self.done_blocks)
        first, end = self.done_blocks, self.done_blocks + count
        from_message = max(0, min(end, self.full_blocks) - first)
        if from_message:
            row[: 64 * from_message] = self.message[64 * first: 64 * (first + from_message)]
        if from_message < count:
            tail_first = first + from_message - self.full_blocks
            row[64 * from_message: 64 * count] = self.tail[64 * tail_first: 64 * (tail_first + count - from_message)]
        self.done_blocks = end
        return count


def _hash_lanes(messages: list[np.ndarray]) -> list[str]:
    """SHA-256 hex digests of messages through the multi-buffer kernel."""
    order = sorted(range(len(messages)), key=lambda i: -messages[i].size)
    queue = iter(order)
    digests: list[str | None] = [None] * len(messages)
    lanes: list[_Lane | None] = [None] * LANES
    state = np.zeros((8, LANES), np.uint32)
    stage = np.zeros((LANES, STEP_BLOCKS * 64), np.uint8)
    words = stage.view(np.uint32)  # the kernel reads native words and swaps bytes itself
    counts = np.zeros(LANES, np.int64)
    while True:
        for slot in range(LANES):
            if lanes[slot] is None:
                job = next(queue, None)
                if job is not None:
                    lanes[slot] = _Lane(job, messages[job])
                    state[:, slot] = INITIAL_STATE
        if all(lane is None for lane in lanes):
            return digests
        for slot, lane in enumerate(lanes):
            counts[slot] = 0 if lane is None else lane.stage(stage[slot])
        compress_lanes(state, words, counts, ROUND_CONSTANTS)
        for slot, lane in enumerate(lanes):
            if lane is not None and lane.done_blocks == lane.total_blocks:
                digests[lane.job] = state[:, slot].astype(">u4").tobytes().hex()
                lanes[slot] = None


def sha256_many(buffers: Sequence, *, method: str = "auto", threads: int = 1) -> list[str]:
    """SHA-256 hex digests of bytes-like buffers (bytes, memoryview, 1-D uint8 arrays, mmaps).

    Args:
        buffers: the messages.
        method: "lanes" (multi-buffer numba kernel), "hashlib", or "auto": lanes when there
            are enough messages to fill them and the JIT is on, hashlib otherwise.
        threads: kernels run side by side on this many threads (each with its own lanes).

    Returns:
        Hex digests in the order of buffers.

    Raises:
        GntkitError: an argument that is not a buffer, or a bad method or thread count.
    """
    if method not in METHODS:
        raise GntkitError(f"method must be one of {', '.join(METHODS)}, found {method!r}.")
    if int(threads) < 1:
        raise GntkitError(f"threads must be at least 1, found {threads}.")
    messages = [_as_bytes_view(buffer, i) for i, buffer in enumerate(buffers)]
    if method == "auto":
        method = "lanes" if len(messages) >= MIN_JOBS_FOR_LANES and not numba.config.DISABLE_JIT else "hashlib"
    if method == "hashlib":
        return [hashlib.sha256(message).hexdigest() for message in messages]
    threads = min(int(threads), max(1, len(messages) // MIN_JOBS_FOR_LANES))
    if threads == 1:
        return _hash_lanes(messages)
    # Deal the jobs out by size so each thread gets a similar share of bytes.
    order = sorted(range(len(messages)), key=lambda i: -messages[i].size)
    groups = [order[t::threads] for t in range(threads)]
    results: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(t):
        try:
            results[t] = _hash_lanes([messages[i] for i in groups[t]])
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,), name=f"gntkit-sha256-{t}") for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    digests: list[str] = [""] * len(messages)
    for group, result in zip(groups, results):
        for i, digest in zip(group, result):
            digests[i] = digest
    return digests


def sha256_files(paths: Sequence, *, method: str = "auto", threads: int = 1) -> list[str]:
    """SHA-256 hex digests of whole files, read through mmap (see sha256_many).

    Raises:
        GntkitError: a path that cannot be read, named with the reason.
    """
    from gntkit.sources import mapped_bytes

    messages = []
    for path in paths:
        try:
            messages.append(mapped_bytes(path))
        except OSError as exc:
            raise GntkitError(f"{path}: cannot read the file to hash it ({exc.strerror or exc}).") from None
    return sha256_many(messages, method=method, threads=threads)


def default_threads() -> int:
    """Threads for hashing when nothing else runs: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["sha256_many", "sha256_files", "default_threads", "METHODS"]
