"""Multi-buffer SHA-256 (FIPS 180-4): one compression step on many independent messages at once.

SHA-256 of one message is a serial chain of 64-byte blocks, so one core hashes one file at
about 400 MB/s without SHA instructions. Hashing L messages side by side turns every round
into the same integer operations on L lanes. The driver (`gntkit.shards.digest`) stages the next
blocks of each message and pads their ends.

Two kernels compute the same thing (the tests hold both to a plain-Python FIPS 180-4
reference and to hashlib):
- `compress_lanes_vectors` (used whenever the JIT is on) writes the block function in LLVM IR
  on <16 x i32> vectors: the 16 message words are loaded per lane, transposed by shuffles
  and byte-swapped, and all 64 rounds are unrolled with a..h and the schedule kept in
  registers (one AVX-512 register per value here; LLVM splits them on AVX2 or NEON). About
  twice the speed of the loop kernel on this machine.
- `compress_lanes_loops` spells the rounds as numba loops over the lanes (which LLVM
  vectorises, but with a..h going through memory every round). It also runs as plain
  Python with NUMBA_DISABLE_JIT, where the IR kernel cannot.

Layouts: `state` is (8, LANES) uint32, the chaining value of each lane; `stage` is
(LANES, B * 16) uint32, the next B blocks of each lane as they lie in memory (native
little-endian words, byte-swapped here); `counts[l] <= B` says how many of them lane l
really has (a lane with fewer keeps its state after its last one). The kernels do no
bounds checks: `compress` checks shapes and counts before calling one.

Arithmetic in the loop kernel is spelled out in uint32 (`add32`, casts after shifts)
because numba widens integer arithmetic to 64 bits, which halves the lanes per vector
register; with NUMBA_DISABLE_JIT the same code runs on numpy scalars without overflow warnings.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from gntkit.errors import GntkitError
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
def compress_lanes_loops(state, stage, counts):
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
            kt = ROUND_CONSTANTS[t]
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


# --------------------------------------------------------------------------- IR kernel
def _ir_block(context, builder, state, stage, counts, block):
    """Emit one compression of block `block` of every lane (see compress_lanes_vectors)."""
    from llvmlite import ir
    from numba.core import cgutils

    i32, i64 = ir.IntType(32), ir.IntType(64)
    vec = ir.VectorType(i32, LANES)

    def splat(value):
        return ir.Constant(vec, [ir.Constant(i32, int(value))] * LANES)

    fshr = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fshr.v{LANES}i32")
    swap = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec]), f"llvm.bswap.v{LANES}i32")

    def rotr(x, n):
        return builder.call(fshr, [x, x, splat(n)])

    # Lane l's 16 words of the block: one vector load from its staging row.
    row_bytes = builder.extract_value(stage.strides, 0)
    first = builder.add(builder.ptrtoint(stage.data, i64), builder.mul(block, ir.Constant(i64, 64)))
    rows = []
    for lane in range(LANES):
        address = builder.add(first, builder.mul(row_bytes, ir.Constant(i64, lane)))
        rows.append(builder.load(builder.inttoptr(address, vec.as_pointer()), align=4))
    # Transpose (rows[l][t] -> w[t][l]) in log2(LANES) butterfly stages: at distance s,
    # rows i and i+s swap their off-diagonal s x s sub-blocks.
    distance = 1
    while distance < LANES:
        swapped = list(rows)
        for i in range(LANES):
            if i & distance:
                continue
            low = [j if not j & distance else LANES + j - distance for j in range(LANES)]
            high = [j + distance if not j & distance else LANES + j for j in range(LANES)]
            swapped[i] = builder.shuffle_vector(rows[i], rows[i | distance], ir.Constant(vec, low))
            swapped[i | distance] = builder.shuffle_vector(rows[i], rows[i | distance], ir.Constant(vec, high))
        rows = swapped
        distance <<= 1
    w = [builder.call(swap, [row]) for row in rows]

    state_vectors = builder.bitcast(state.data, vec.as_pointer())
    old = [builder.load(builder.gep(state_vectors, [ir.Constant(i32, i)]), align=4) for i in range(8)]
    a, b, c, d, e, f, g, h = old
    xor, add, and_ = builder.xor, builder.add, builder.and_
    for t in range(64):
        if t >= 16:
            x, y = w[t - 15], w[t - 2]
            s0 = xor(xor(rotr(x, 7), rotr(x, 18)), builder.lshr(x, splat(3)))
            s1 = xor(xor(rotr(y, 17), rotr(y, 19)), builder.lshr(y, splat(10)))
            w.append(add(add(w[t - 16], s0), add(w[t - 7], s1)))
        big_s1 = xor(xor(rotr(e, 6), rotr(e, 11)), rotr(e, 25))
        choose = xor(and_(e, f), and_(builder.not_(e), g))
        t1 = add(add(add(h, big_s1), add(choose, splat(ROUND_CONSTANTS[t]))), w[t])
        big_s0 = xor(xor(rotr(a, 2), rotr(a, 13)), rotr(a, 22))
        majority = xor(xor(and_(a, b), and_(a, c)), and_(b, c))
        h, g, f, e, d, c, b, a = g, f, e, add(d, t1), c, b, a, add(t1, add(big_s0, majority))

    # Lanes with counts[l] <= block keep their state.
    wide = ir.VectorType(i64, LANES)
    lane_counts = builder.load(builder.bitcast(counts.data, wide.as_pointer()), align=8)
    blocks = builder.insert_element(ir.Constant(wide, ir.Undefined), block, ir.Constant(i32, 0))
    blocks = builder.shuffle_vector(blocks, ir.Constant(wide, ir.Undefined), ir.Constant(vec, [0] * LANES))
    active = builder.icmp_signed(">", lane_counts, blocks)
    for i, value in enumerate((a, b, c, d, e, f, g, h)):
        builder.store(builder.select(active, add(old[i], value), old[i]), builder.gep(state_vectors, [ir.Constant(i32, i)]), align=4)


@intrinsic
def block_vectors(typingctx, state, stage, counts, block):
    """Compress block `block` of every lane's staged words into state, lanes with counts <= block unchanged."""
    uint32_c = (state.dtype == types.uint32 and state.ndim == 2 and state.layout == "C"
                and stage.dtype == types.uint32 and stage.ndim == 2 and stage.layout == "C")
    if not (uint32_c and counts.dtype == types.int64 and counts.ndim == 1 and counts.layout == "C"
            and isinstance(block, types.Integer)):
        return None
    signature = types.void(state, stage, counts, types.int64)

    def codegen(context, builder, signature, args):
        arrays = [context.make_array(ty)(context, builder, value) for ty, value in zip(signature.args[:3], args[:3])]
        _ir_block(context, builder, *arrays, args[3])
        return context.get_dummy_value()

    return signature, codegen


@njit
def _compress_lanes_vectors(state, stage, counts):
    """Compress counts[l] staged blocks into lane l's state, for all LANES lanes at once (IR kernel)."""
    most = 0
    for lane in range(LANES):
        most = max(most, counts[lane])
    for block in range(most):
        block_vectors(state, stage, counts, np.int64(block))


#: The IR kernel; None with NUMBA_DISABLE_JIT (an intrinsic only runs compiled).
compress_lanes_vectors = None if numba.config.DISABLE_JIT else _compress_lanes_vectors


def compress(state, stage, counts, kernel=None) -> None:
    """Check the layouts the kernels assume, then compress with `kernel` (default: the IR kernel when the JIT is on).

    Raises:
        GntkitError: a shape, dtype or layout the kernels cannot read safely, or a count
            outside [0, blocks staged].
    """
    kernel = kernel or compress_lanes_vectors or compress_lanes_loops
    for name, array, dtype, ndim in (("state", state, np.uint32, 2), ("stage", stage, np.uint32, 2), ("counts", counts, np.int64, 1)):
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != ndim or not array.flags.c_contiguous:
            found = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise GntkitError(f"SHA-256 lanes: {name} must be a C-contiguous {ndim}-D {np.dtype(dtype)} array, found {found}.")
    if state.shape != (8, LANES) or stage.shape[0] != LANES or stage.shape[1] % 16 or counts.shape != (LANES,):
        raise GntkitError(f"SHA-256 lanes: expected state (8, {LANES}), stage ({LANES}, 16*B) and counts ({LANES},), "
                          f"found {state.shape}, {stage.shape} and {counts.shape}.")
    if counts.min() < 0 or counts.max() > stage.shape[1] // 16:
        raise GntkitError(f"SHA-256 lanes: counts must lie in [0, {stage.shape[1] // 16}] (blocks staged), "
                          f"found [{counts.min()}, {counts.max()}].")
    kernel(state, stage, counts)
