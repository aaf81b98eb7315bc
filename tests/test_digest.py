"""SHA-256 of many buffers and files on threads (gntkit.shards.digest) against hashlib one by one."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import gntkit.shards.digest
from gntkit.errors import GntkitError
from gntkit.shards.digest import sha256_file, sha256_files, sha256_many


def expected(messages):
    return [hashlib.sha256(bytes(m)).hexdigest() for m in messages]


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_buffers_of_every_kind_keep_their_order(threads):
    # Sizes in random order, so the longest-first dealing reorders the jobs; results must not be.
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 256, int(n), dtype=np.uint8) for n in rng.integers(0, 5000, 13)]
    messages = arrays[:4] + [a.tobytes() for a in arrays[4:8]] + [memoryview(a.tobytes()) for a in arrays[8:11]] + arrays[11:]
    assert sha256_many(messages, threads=threads) == expected(messages)
    assert sha256_many([], threads=threads) == []


def test_known_vectors():
    assert sha256_many([b"abc"]) == ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
    two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert sha256_many([two_blocks]) == ["248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"]


@pytest.mark.parametrize("read_bytes", [7, 64, 4 << 20])
def test_files(tmp_path, monkeypatch, read_bytes):
    # Files are read in blocks; small blocks cross every boundary of the files below.
    monkeypatch.setattr(gntkit.shards.digest, "READ_BYTES", read_bytes)
    rng = np.random.default_rng(6)
    paths = []
    for i, n in enumerate([0, 10, 4096, 700, 5, 64, 1, 300]):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        paths.append(path)
    want = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths) == want
    assert sha256_files(paths, threads=3) == want
    assert [sha256_file(p) for p in paths] == want


def test_bad_input(tmp_path):
    with pytest.raises(GntkitError, match="threads must be at least 1, found 0"):
        sha256_many([b"x"], threads=0)
    with pytest.raises(GntkitError, match="buffer 1: expected a bytes-like object, found int"):
        sha256_many([b"x", 5])
    with pytest.raises(GntkitError, match="buffer 0: expected a contiguous 1-D uint8 array"):
        sha256_many([np.zeros((2, 2), np.uint8)])
    with pytest.raises(GntkitError, match="missing.bin: cannot read the file to hash it .expected a file, found nothing"):
        sha256_files([tmp_path / "missing.bin"])
    with pytest.raises(GntkitError, match="cannot read the file to hash it .expected a file, found a folder"):
        sha256_files([tmp_path])


def test_a_file_that_fails_on_a_thread_is_named(tmp_path, monkeypatch):
    paths = [tmp_path / f"f{i}.bin" for i in range(4)]
    for path in paths:
        path.write_bytes(b"x" * 100)

    def unreadable(path):
        raise GntkitError(f"{path}: cannot read the file to hash it (Permission denied).")

    monkeypatch.setattr(gntkit.shards.digest, "sha256_file", unreadable)
    with pytest.raises(GntkitError, match=r"f\d.bin: cannot read the file to hash it \(Permission denied\)"):
        sha256_files(paths, threads=2)
