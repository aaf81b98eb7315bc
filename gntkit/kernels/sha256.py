"""Multi-buffer SHA-256 (FIPS 180-4): one compression step on many independent messages at once.

SHA-256 of one message is a serial chain of 64-byte blocks, so one core hashes one file at
about 400 MB/s without SHA instructions. Hashing L messages side by side turns every round
into the same integer operations on L lanes, which the compiler vectorises (AVX2/AVX-512).
The driver (`gntkit.digest`) stages the next blocks of each message and pads their ends.

Layouts: `state` is (8, LANES) uint32, the chaining value of each lane; `stage` is
(LANES, B * 16) uint32, the next B blocks of each lane as they lie in memory (native
little-endian words, byte-swapped here); `counts[l] <= B` says how many of them lane l
really has (a lane with fewer keeps its state after its last one). No bounds checks: the
driver guarantees the shapes and counts.

Arithmetic is spelled out in uint32 (`add32`, casts after shifts) because numba widens
integer arithmetic to 64 bits, which halves the lanes per vector register; with NUMBA_DISABLE_JIT
the same code runs on numpy scalars without overflow warnings.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

U = np.uint32
MASK = np.uint64(0xFFFFFFFF)

ROUND_CONSTANTS = np.array([
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
], dtype=np.uint32)

INITIAL_STATE = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19], dtype=np.uint32
)


@njit(inline="always")
def add32(x, y):
    """x + y modulo 2**32."""
    return U((np.uint64(x) + np.uint64(y)) & MASK)
@njit(inline="always")
def rotr(x, n):
    """Rotate a uint32 right by n bits."""
    return U((x >> U(n)) | U(x << U(32 - n)))
@njit(inline="always")
def bswap(x):
    """Reverse the byte order of a uint32."""
    return U((x >> U(24)) | ((x >> U(8)) & U(0xFF00)) | U((x << U(8)) & U(0xFF0000)) | U(x << U(24)))
# Lanes per call: a compile-time constant, so that every lane loop below has a fixed
# trip count over disjoint slices of one array and vectorises without alias checks
# (16 measured best here: 8 and 64 were slower).
LANES = 16


@njit
def compress_lanes(state, stage, counts, k):
    """Compress counts[l] staged blocks into lane l's state, for all LANES lanes at once."""
    most = 0
    for lane in range(LANES):
        most = max(most, counts[lane])
    w = np.empty(64 * LANES, np.uint32)
    # a..d of round t are words t+3..t of hist's "a" rows and e..h of its "e" rows (rows
    # interleaved, LANES wide): each round writes two new rows instead of shifting eight values.
    hist = np.empty(68 * 2 * LANES, np.uint32)
    for block in range(most):
        # Each lane's 16 words are read contiguously (14% faster than gathering one word from every lane).
        for lane in range(LANES):
            for t in range(16):
                w[t * LANES + lane] = bswap(stage[lane, block * 16 + t])
        for t in range(16, 64):
            for lane in range(LANES):
                x = w[(t - 15) * LANES + lane]
                y = w[(t - 2) * LANES + lane]
                s0 = U(rotr(x, 7) ^ rotr(x, 18) ^ (x >> U(3)))
                s1 = U(rotr(y, 17) ^ rotr(y, 19) ^ (y >> U(10)))
                w[t * LANES + lane] = add32(add32(w[(t - 16) * LANES + lane], s0), add32(w[(t - 7) * LANES + lane], s1))
        for i in range(4):
            for lane in range(LANES):
                hist[(3 - i) * 2 * LANES + lane] = state[i, lane]
                hist[(3 - i) * 2 * LANES + LANES + lane] = state[4 + i, lane]
        for t in range(64):
            kt = k[t]
            now = (t + 3) * 2 * LANES
            for lane in range(LANES):
                a = hist[now + lane]
                b = hist[now - 2 * LANES + lane]
                c = hist[now - 4 * LANES + lane]
                d = hist[now - 6 * LANES + lane]
                e = hist[now + LANES + lane]
                f = hist[now - LANES + lane]
                g = hist[now - 3 * LANES + lane]
                h = hist[now - 5 * LANES + lane]
                s1 = U(rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25))
                ch = U((e & f) ^ (~e & g))
                t1 = add32(add32(h, s1), add32(add32(ch, kt), w[t * LANES + lane]))
                s0 = U(rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22))
                mj = U((a & b) ^ (a & c) ^ (b & c))
                hist[now + 2 * LANES + lane] = add32(t1, add32(s0, mj))
                hist[now + 3 * LANES + lane] = add32(d, t1)
        for i in range(4):
            for lane in range(LANES):
                if block < counts[lane]:
                    state[i, lane] = add32(state[i, lane], hist[(67 - i) * 2 * LANES + lane])
                    state[4 + i, lane] = add32(state[4 + i, lane], hist[(67 - i) * 2 * LANES + LANES + lane])
