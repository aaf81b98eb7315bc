"""SHA-256 of many files or buffers at once, for manifests and `verify`: hashlib on threads.

A conversion hashes every source file and every shard it writes. hashlib releases the GIL
while it hashes a buffer larger than 2 KiB, so files read in 4 MiB blocks and hashed on
several threads keep several cores busy; OpenSSL uses the CPU's SHA instructions where
there are some. Jobs go to the threads longest first, so the threads finish together.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gntkit.errors import GntkitError

#: Bytes read from a file per hashlib update.
READ_BYTES = 4 << 20


def _as_bytes_view(buffer, index: int) -> np.ndarray:
    try:
        view = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    except TypeError:
        raise GntkitError(f"buffer {index}: expected a bytes-like object, found {type(buffer).__name__}.") from None
    if view.dtype != np.uint8 or view.ndim != 1 or not view.flags.c_contiguous:
        raise GntkitError(f"buffer {index}: expected a contiguous 1-D uint8 array, found {view.dtype} with shape {view.shape}.")
    return view


def sha256_file(path) -> str:
    """SHA-256 hex digest of one file with hashlib, read in 4 MiB blocks.

    Raises:
        GntkitError: the file cannot be read, named with the reason.
    """
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(READ_BYTES):
                sha.update(block)
    except OSError as exc:
        raise GntkitError(f"{path}: cannot read the file to hash it ({exc.strerror or exc}).") from None
    return sha.hexdigest()


def _on_threads(jobs: list, sizes: list[int], digest_one, threads: int) -> list[str]:
    """digest_one(job) for every job on up to `threads` threads, longest first; digests in the order of jobs."""
    if int(threads) < 1:
        raise GntkitError(f"threads must be at least 1, found {threads}.")
    threads = min(int(threads), max(1, len(jobs)))
    if threads == 1:
        return [digest_one(job) for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    with ThreadPoolExecutor(threads, thread_name_prefix="gntkit-sha256") as pool:
        found = list(pool.map(digest_one, [jobs[i] for i in order]))
    digests = [""] * len(jobs)
    for i, digest in zip(order, found):
        digests[i] = digest
    return digests


def sha256_many(buffers: Sequence, *, threads: int = 1) -> list[str]:
    """SHA-256 hex digests of bytes-like buffers (bytes, memoryview, 1-D uint8 arrays, mmaps).

    Args:
        buffers: the messages.
        threads: hash this many buffers side by side.

    Returns:
        Hex digests in the order of buffers.

    Raises:
        GntkitError: an argument that is not a buffer, or a thread count below 1.
    """
    messages = [_as_bytes_view(buffer, i) for i, buffer in enumerate(buffers)]
    return _on_threads(messages, [m.size for m in messages], lambda m: hashlib.sha256(m).hexdigest(), threads)


def sha256_files(paths: Sequence, *, threads: int = 1) -> list[str]:
    """SHA-256 hex digests of whole files, this many side by side (see sha256_file).

    Raises:
        GntkitError: a path that cannot be read, named with the reason, or a thread count below 1.
    """
    paths = [os.fspath(path) for path in paths]
    for path in paths:
        if not os.path.isfile(path):
            raise GntkitError(f"{path}: cannot read the file to hash it (expected a file, "
                              f"found {'a folder' if os.path.isdir(path) else 'nothing'}).")
    return _on_threads(paths, [os.stat(path).st_size for path in paths], sha256_file, threads)


def default_threads() -> int:
    """Threads for hashing when nothing else runs: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["sha256_many", "sha256_files", "sha256_file", "default_threads"]
