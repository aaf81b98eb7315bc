"""SHA-256 of many files or buffers at once, for manifests and `verify`.

A conversion hashes every source file and every shard it writes: several GB in all. One
core hashes about 400 MB/s with OpenSSL on a CPU without SHA instructions; the multi-buffer
kernel in `gntkit.kernels.sha256` hashes 16 messages side by side at about four times that,
reading included (see benchmarks/bench_digest.py).
`sha256_many` keeps its 16 lanes busy: jobs go longest first, and a lane that finishes takes
the next job. The digests are plain SHA-256, identical to hashlib's (the tests compare).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import struct
import sys
import threading
from collections.abc import Sequence

import numba
import numpy as np

from gntkit.errors import GntkitError
from gntkit.kernels.sha256 import INITIAL_STATE, LANES, compress

#: Blocks staged per lane per kernel call: 128 KB a lane, 2 MB in all. Fewer, larger reads:
#: 12-15% faster over the HWDB-sized corpus than 512 blocks (which stayed in L2).
STEP_BLOCKS = 2048
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


def _padding(rest: np.ndarray, size: int) -> np.ndarray:
    """The message's last partial block (rest) plus SHA-256 padding for a size-byte message: 64 or 128 bytes."""
    total = 64 if size % 64 < 56 else 128
    tail = np.zeros(total, np.uint8)
    tail[: rest.size] = rest
    tail[rest.size] = 0x80
    tail[-8:] = np.frombuffer(struct.pack(">Q", 8 * size), np.uint8)
    return tail


class _Lane:
    """One message in flight: full blocks come from the buffer or the file, the padded tail from a copy.

    Files are read with os.preadv straight into the staging rows, not mapped: mapping
    several GB of sources would count in the process's resident memory.
    """

    def __init__(self, job: int, message):
        self.job = job
        self.file = None
        if isinstance(message, np.ndarray):
            self.message, size = message, message.size
            rest = message[size - size % 64:]
        else:
            self.message = None
            try:
                self.file = open(message, "rb", buffering=0)
                size = os.fstat(self.file.fileno()).st_size
                rest = np.frombuffer(os.pread(self.file.fileno(), size % 64, size - size % 64), np.uint8)
            except OSError as exc:
                self.close()
                raise GntkitError(f"{message}: cannot read the file to hash it ({exc.strerror or exc}).") from None
        self.path = None if self.file is None else message
        self.full_blocks = size // 64
        self.tail = _padding(rest, size)
        self.total_blocks = self.full_blocks + self.tail.size // 64
        self.done_blocks = 0

    def stage(self, row: np.ndarray) -> int:
        """Copy up to STEP_BLOCKS next blocks into row (uint8); return how many."""
        count = min(STEP_BLOCKS, self.total_blocks - self.done_blocks)
        first, end = self.done_blocks, self.done_blocks + count
        from_message = max(0, min(end, self.full_blocks) - first)
        if from_message:
            if self.file is None:
                row[: 64 * from_message] = self.message[64 * first: 64 * (first + from_message)]
            else:
                self._read_into(row[: 64 * from_message], 64 * first)
        if from_message < count:
            tail_first = first + from_message - self.full_blocks
            row[64 * from_message: 64 * count] = self.tail[64 * tail_first: 64 * (tail_first + count - from_message)]
        self.done_blocks = end
        return count

    def _read_into(self, target: np.ndarray, offset: int) -> None:
        view = memoryview(target)
        done = 0
        while done < len(view):
            try:
                got = os.preadv(self.file.fileno(), [view[done:]], offset + done)
            except OSError as exc:
                raise GntkitError(f"{self.path}: cannot read the file to hash it ({exc.strerror or exc}).") from None
            if got == 0:
                raise GntkitError(f"{self.path}: the file shrank while it was being hashed (expected {64 * self.full_blocks} bytes or "
                                  f"more, found {offset + done}).")
            done += got

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _hash_lanes(messages: list) -> list[str]:
    """SHA-256 hex digests of messages (uint8 arrays or file paths) through the multi-buffer kernel."""
    order = sorted(range(len(messages)), key=lambda i: -_size(messages[i]))
    queue = iter(order)
    digests: list[str | None] = [None] * len(messages)
    lanes: list[_Lane | None] = [None] * LANES
    state = np.zeros((8, LANES), np.uint32)
    stage = np.zeros((LANES, STEP_BLOCKS * 64), np.uint8)
    words = stage.view(np.uint32)  # the kernel reads native words and swaps bytes itself
    counts = np.zeros(LANES, np.int64)
    try:
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
            compress(state, words, counts)
            for slot, lane in enumerate(lanes):
                if lane is not None and lane.done_blocks == lane.total_blocks:
                    digests[lane.job] = state[:, slot].astype(">u4").tobytes().hex()
                    lane.close()
                    lanes[slot] = None
    finally:
        for lane in lanes:
            if lane is not None:
                lane.close()


def _size(message) -> int:
    return message.size if isinstance(message, np.ndarray) else os.stat(message).st_size


def sha256_file(path) -> str:
    """SHA-256 hex digest of one file with hashlib, read in 4 MiB blocks.

    Raises:
        GntkitError: the file cannot be read, named with the reason.
    """
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(4 << 20):
                sha.update(block)
    except OSError as exc:
        raise GntkitError(f"{path}: cannot read the file to hash it ({exc.strerror or exc}).") from None
    return sha.hexdigest()


def _hash(messages: list, method: str, threads: int) -> list[str]:
    """Digests of arrays or paths by method ("lanes" or "hashlib") on up to `threads` threads."""
    if method == "hashlib":
        def digest_all(group):
            return [hashlib.sha256(m).hexdigest() if isinstance(m, np.ndarray) else sha256_file(m) for m in group]

        threads = min(int(threads), max(1, len(messages)))
    else:
        digest_all = _hash_lanes
        threads = min(int(threads), max(1, len(messages) // MIN_JOBS_FOR_LANES))
    if threads == 1:
        return digest_all(messages)
    # Deal the jobs out by size so each thread gets a similar share of bytes (hashlib and
    # the kernel both release the GIL).
    order = sorted(range(len(messages)), key=lambda i: -_size(messages[i]))
    groups = [order[t::threads] for t in range(threads)]
    results: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(t):
        try:
            results[t] = digest_all([messages[i] for i in groups[t]])
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


def _check(method: str, threads: int, count: int) -> str:
    """The method to use after checking the arguments."""
    if method not in METHODS:
        raise GntkitError(f"method must be one of {', '.join(METHODS)}, found {method!r}.")
    if int(threads) < 1:
        raise GntkitError(f"threads must be at least 1, found {threads}.")
    if method == "auto":
        if count < MIN_JOBS_FOR_LANES or numba.config.DISABLE_JIT or cpu_has_sha_instructions() or sys.byteorder != "little":
            return "hashlib"
        return "lanes"
    if method == "lanes" and sys.byteorder != "little":
        raise GntkitError("method='lanes' reads message words in little-endian order; this machine is big-endian: use 'hashlib' or 'auto'.")
    return method


@functools.lru_cache(maxsize=1)
def cpu_has_sha_instructions() -> bool:
    """True where OpenSSL has hardware SHA-256 (x86 SHA-NI, ARMv8 SHA2): about 2 GB/s a core, faster than the lanes."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return True  # every 64-bit ARM server and Apple core ships the SHA2 extension
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "sha_ni" in line.split()
    except OSError:
        pass
    return False


def sha256_many(buffers: Sequence, *, method: str = "auto", threads: int = 1) -> list[str]:
    """SHA-256 hex digests of bytes-like buffers (bytes, memoryview, 1-D uint8 arrays, mmaps).

    Args:
        buffers: the messages.
        method: "lanes" (multi-buffer numba kernel), "hashlib", or "auto": lanes when there
            are enough messages to fill them, the JIT is on and the CPU has no SHA
            instructions; hashlib otherwise.
        threads: kernels run side by side on this many threads (each with its own lanes).

    Returns:
        Hex digests in the order of buffers.

    Raises:
        GntkitError: an argument that is not a buffer, or a bad method or thread count.
    """
    messages = [_as_bytes_view(buffer, i) for i, buffer in enumerate(buffers)]
    return _hash(messages, _check(method, threads, len(messages)), threads)


def sha256_files(paths: Sequence, *, method: str = "auto", threads: int = 1) -> list[str]:
    """SHA-256 hex digests of whole files (see sha256_many); files are read, not mapped.

    Raises:
        GntkitError: a path that cannot be read, named with the reason.
    """
    paths = [os.fspath(path) for path in paths]
    for path in paths:
        if not os.path.isfile(path):
            raise GntkitError(f"{path}: cannot read the file to hash it (expected a file, "
                              f"found {'a folder' if os.path.isdir(path) else 'nothing'}).")
    return _hash(paths, _check(method, threads, len(paths)), threads)


def default_threads() -> int:
    """Threads for hashing when nothing else runs: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["sha256_many", "sha256_files", "sha256_file", "default_threads", "METHODS"]
