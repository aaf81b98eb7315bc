"""Multi-buffer SHA-256 (gntkit.shards.digest, gntkit.kernels.sha256) against hashlib."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import gntkit.shards.digest
from gntkit.errors import GntkitError
from gntkit.kernels import sha256 as kernels
from gntkit.kernels.sha256 import INITIAL_STATE, LANES, ROUND_CONSTANTS, compress
from gntkit.shards.digest import MIN_JOBS_FOR_LANES, sha256_files, sha256_many

# Every padding case: empty, one byte, 55/56 (one or two padding blocks), block edges.
EDGE_SIZES = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 1000]


def expected(messages):
    return [hashlib.sha256(bytes(m)).hexdigest() for m in messages]


def test_padding_edge_cases_match_hashlib():
    rng = np.random.default_rng(1)
    messages = [rng.integers(0, 256, n, dtype=np.uint8) for n in EDGE_SIZES]
    assert sha256_many(messages, method="lanes") == expected(messages)


def test_more_jobs_than_lanes_with_refills():
    # 40 jobs of very different sizes: lanes finish at different steps and take new jobs.
    rng = np.random.default_rng(2)
    sizes = rng.integers(0, 700, 2 * LANES + 8)
    messages = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in sizes]
    assert sha256_many(messages, method="lanes") == expected(messages)


@pytest.mark.parametrize("step_blocks", [1, 2, 3])
def test_message_longer_than_one_step(monkeypatch, step_blocks):
    # Small steps cross the staging boundary inside messages and inside padded tails
    # (the real step is STEP_BLOCKS; small ones keep the test fast with the JIT off).
    monkeypatch.setattr(gntkit.shards.digest, "STEP_BLOCKS", step_blocks)
    rng = np.random.default_rng(3)
    messages = [rng.integers(0, 256, n, dtype=np.uint8) for n in (0, 63, 64, 120, 128, 200, 300, 383, 384, 385)]
    assert sha256_many(messages, method="lanes") == expected(messages)


def test_threads_and_auto_agree():
    rng = np.random.default_rng(4)
    messages = [rng.integers(0, 256, int(n), dtype=np.uint8) for n in rng.integers(0, 500, 2 * MIN_JOBS_FOR_LANES + 1)]
    want = expected(messages)
    assert sha256_many(messages, method="lanes", threads=2) == want
    assert sha256_many(messages) == want
    assert sha256_many(messages, method="hashlib") == want
    assert sha256_many([]) == []


def test_known_vectors():
    # FIPS 180-4 examples.
    assert sha256_many([b"abc"], method="lanes") == ["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"]
    two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert sha256_many([two_blocks], method="lanes") == ["248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"]


KERNELS = ["loops", pytest.param("vectors", marks=pytest.mark.skipif(
    kernels.compress_lanes_vectors is None, reason="the IR kernel only runs compiled (NUMBA_DISABLE_JIT is set)"))]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_keeps_state_of_lanes_without_blocks(kernel):
    # Staging rows wider than the blocks used (3 staged, at most 2 hashed) and every count from 0 to 3.
    rng = np.random.default_rng(5)
    stage = rng.integers(0, 256, (LANES, 3 * 64), dtype=np.uint8)
    state = np.repeat(INITIAL_STATE[:, None], LANES, axis=1).copy()
    state[:, 1] = rng.integers(0, 2**32, 8, dtype=np.uint32)  # a lane part-way through its message
    counts = np.array([2, 1, 0, 3] * (LANES // 4) + [3] * (LANES % 4), np.int64)
    start = state.copy()
    compress(state, stage.view(np.uint32), counts, kernel=getattr(kernels, "compress_lanes_" + kernel))
    # A plain-Python reference of one compression, to check the lanes one by one.
    for lane in range(LANES):
        want = start[:, lane].astype(np.uint64)
        for block in range(counts[lane]):
            want = reference_compress(want, stage[lane, 64 * block: 64 * block + 64].tobytes())
        assert state[:, lane].tolist() == [int(v) for v in want]


def test_compress_checks_layouts():
    state = np.repeat(INITIAL_STATE[:, None], LANES, axis=1).copy()
    stage = np.zeros((LANES, 32), np.uint32)
    counts = np.zeros(LANES, np.int64)
    with pytest.raises(GntkitError, match=r"counts must lie in \[0, 2\] \(blocks staged\), found \[0, 3\]"):
        compress(state, stage, np.array([0] * (LANES - 1) + [3], np.int64))
    with pytest.raises(GntkitError, match="stage must be a C-contiguous 2-D uint32 array, found int64"):
        compress(state, stage.astype(np.int64), counts)
    with pytest.raises(GntkitError, match="stage must be a C-contiguous"):
        compress(state, np.zeros((LANES, 64), np.uint32)[:, ::2], counts)
    with pytest.raises(GntkitError, match=rf"expected state \(8, {LANES}\), stage \({LANES}, 16\*B\)"):
        compress(state, np.zeros((LANES, 40), np.uint32), counts)
    with pytest.raises(GntkitError, match="counts must be a C-contiguous 1-D int64 array, found list"):
        compress(state, stage, [0] * LANES)


def reference_compress(state, block: bytes):
    """FIPS 180-4 section 6.2.2 on Python ints."""
    def rotr(x, n):
        return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF

    w = [int.from_bytes(block[4 * t: 4 * t + 4], "big") for t in range(16)]
    for t in range(16, 64):
        s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, h = (int(v) for v in state)
    for t in range(64):
        t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + int(ROUND_CONSTANTS[t]) + w[t]) & 0xFFFFFFFF
        t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xFFFFFFFF
        a, b, c, d, e, f, g, h = (t1 + t2) & 0xFFFFFFFF, a, b, c, (d + t1) & 0xFFFFFFFF, e, f, g
    return [(x + y) & 0xFFFFFFFF for x, y in zip((int(v) for v in state), (a, b, c, d, e, f, g, h))]


@pytest.mark.parametrize("step_blocks", [1, 512])
def test_files(tmp_path, monkeypatch, step_blocks):
    # Files are read into the staging rows in steps; one-block steps cross every boundary.
    monkeypatch.setattr(gntkit.shards.digest, "STEP_BLOCKS", step_blocks)
    rng = np.random.default_rng(6)
    paths = []
    for i, n in enumerate([0, 10, 4096, 700, 5, 64, 1, 300]):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        paths.append(path)
    assert sha256_files(paths) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths, method="hashlib") == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert sha256_files(paths, method="lanes", threads=2) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_bad_input(tmp_path):
    with pytest.raises(GntkitError, match="method must be one of"):
        sha256_many([b"x"], method="md5")
    with pytest.raises(GntkitError, match="threads must be at least 1"):
        sha256_many([b"x"], threads=0)
    with pytest.raises(GntkitError, match="buffer 1: expected a bytes-like object, found int"):
        sha256_many([b"x", 5])
    with pytest.raises(GntkitError, match="buffer 0: expected a contiguous 1-D uint8 array"):
        sha256_many([np.zeros((2, 2), np.uint8)])
    with pytest.raises(GntkitError, match="missing.bin: cannot read the file to hash it .expected a file, found nothing"):
        sha256_files([tmp_path / "missing.bin"])


def test_auto_prefers_hashlib_with_sha_instructions(monkeypatch):
    calls = []
    monkeypatch.setattr(gntkit.shards.digest, "cpu_has_sha_instructions", lambda: True)
    monkeypatch.setattr(gntkit.shards.digest, "_hash_lanes", lambda messages: calls.append(len(messages)) or [])
    messages = [bytes([i]) * 100 for i in range(2 * MIN_JOBS_FOR_LANES)]
    assert sha256_many(messages) == expected(messages)
    assert calls == []
