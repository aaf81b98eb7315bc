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


def shard_files(path, scratch=()) -> list[str]:
    """The files of a folder shard that its size and digest cover: relative POSIX paths, sorted,
    every file below it except the `scratch` names a stock reader may add (LMDB's lock.mdb).

    Raises:
        GntkitError: the folder holds a link or something other than files and folders.
    """
    root, found = os.fspath(path), []
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in names + [d for d in subfolders if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            if relative in scratch:
                continue
            if os.path.islink(full) or not os.path.isfile(full):
                raise GntkitError(f"{full}: expected plain files in the shard folder {root}, found a link or special file.")
            found.append(relative)
    return sorted(found)


def shard_size(path, fmt) -> int | None:
    """Bytes of a shard as the manifest lists them: a file's size, or the sum of a folder shard's
    files (`fmt.folder`, without `fmt.scratch_files`); None when the shard is not there as that kind."""
    path = os.fspath(path)
    if not getattr(fmt, "folder", False):
        return os.stat(path).st_size if os.path.isfile(path) else None
    if not os.path.isdir(path):
        return None
    return sum(os.stat(os.path.join(path, name)).st_size for name in shard_files(path, fmt.scratch_files))


def sha256_shards(paths: Sequence, fmt, *, threads: int = 1) -> list[str]:
    """SHA-256 hex digests of shards of a format: of each file, or for folder shards (`fmt.folder`)
    of the lines `relative path NUL size NUL sha256-of-the-file LF` of its files in sorted order, so a
    changed, added, removed or renamed file changes the digest (scratch files left out).

    Raises:
        GntkitError: a shard that cannot be read, or a thread count below 1.
    """
    if not getattr(fmt, "folder", False):
        return sha256_files(paths, threads=threads)
    listed = []
    for path in map(os.fspath, paths):
        if not os.path.isdir(path):
            found = "a file" if os.path.exists(path) else "nothing"
            raise GntkitError(f"{path}: cannot read the shard to hash it (expected a folder, found {found}).")
        listed.append((path, shard_files(path, fmt.scratch_files)))
    files = [os.path.join(path, name) for path, names in listed for name in names]
    digests = iter(sha256_files(files, threads=threads))
    out = []
    for path, names in listed:
        lines = "".join(f"{name}\0{os.stat(os.path.join(path, name)).st_size}\0{next(digests)}\n" for name in names)
        out.append(hashlib.sha256(lines.encode("utf-8")).hexdigest())
    return out


def default_threads() -> int:
    """Threads for hashing when nothing else runs: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["sha256_many", "sha256_files", "sha256_file", "sha256_shards", "shard_files", "shard_size", "default_threads"]
