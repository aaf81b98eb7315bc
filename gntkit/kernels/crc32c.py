"""CRC32C (Castagnoli) and the TFRecord CRC mask, as numba kernels.

TFRecord frames every record with the *masked* CRC32C of its length field and
of its data. The kernels here are table driven (slicing-by-8: eight bytes per
step, eight 256-entry tables) and take arrays and scalars only, so the TFRecord
writer can call them from its own kernels while the bytes are still in cache.

They stay beside google-crc32c because a whole conversion to TFRecord is 1.45x faster with the
CRCs computed inside the frame kernel than with google-crc32c called per record (which takes
bytes only, so each frame is copied first): benchmarks/bench_handwritten.py, docs/benchmarks.md
"Hand-written code beside libraries".

Python entry points: `crc32c`, `masked_crc32c`, `mask_crc`, `unmask_crc`,
`crc32c_batch`. The bitwise reference used by the tests lives in
`gntkit/tools/reference/crc32c.py`.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

#: Reflected Castagnoli polynomial (0x1EDC6F41 bit-reversed).
POLY = 0x82F63B78
#: TFRecord's mask constant: masked = rotr(crc, 15) + MASK_DELTA (mod 2**32).
MASK_DELTA = 0xA282EAD8


def make_crc_tables(poly: int) -> np.ndarray:
    """(8, 256) uint32 slicing-by-8 tables of the reflected CRC-32 with polynomial poly; row 0 is the classic byte table."""
    tables = np.zeros((8, 256), dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        tables[0, byte] = crc
    for byte in range(256):
        crc = int(tables[0, byte])
        for k in range(1, 8):
            crc = (crc >> 8) ^ int(tables[0, crc & 0xFF])
            tables[k, byte] = crc
    return tables


#: Module constant; numba freezes global arrays into the compiled kernels.
CRC32C_TABLES = make_crc_tables(POLY)


@njit
def crc_update_slice8(tables, crc, data, start, end):
    """Reflected CRC-32 (tables from make_crc_tables) of uint8 data[start:end] continued from `crc`; an int in [0, 2**32)."""
    t = tables
    c = (crc ^ 0xFFFFFFFF) & 0xFFFFFFFF
    i = start
    # Eight bytes per step; all arithmetic in int64 so numba never mixes signedness.
    while i + 8 <= end:
        lo = c ^ (np.int64(data[i]) | (np.int64(data[i + 1]) << 8)
                  | (np.int64(data[i + 2]) << 16) | (np.int64(data[i + 3]) << 24))
        c = (np.int64(t[7, lo & 0xFF]) ^ np.int64(t[6, (lo >> 8) & 0xFF])
             ^ np.int64(t[5, (lo >> 16) & 0xFF]) ^ np.int64(t[4, lo >> 24])
             ^ np.int64(t[3, data[i + 4]]) ^ np.int64(t[2, data[i + 5]])
             ^ np.int64(t[1, data[i + 6]]) ^ np.int64(t[0, data[i + 7]]))
        i += 8
    while i < end:
        c = np.int64(t[0, (c ^ np.int64(data[i])) & 0xFF]) ^ (c >> 8)
        i += 1
    return c ^ 0xFFFFFFFF


@njit
def crc32c_update_table(crc, data, start, end):
    """CRC32C of uint8 data[start:end] continued from `crc` (0 to start), portable table version.

    Returns an int in [0, 2**32). The caller checks 0 <= start <= end <= len(data).
    """
    return crc_update_slice8(CRC32C_TABLES, crc, data, start, end)


def _sse42_usable() -> bool:
    """True when numba compiles for this host's CPU and that CPU has the SSE4.2 crc32 instruction."""
    import platform

    import numba

    if numba.config.DISABLE_JIT or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    # A fixed target CPU (NUMBA_CPU_NAME=generic, for portable caches) may lack SSE4.2.
    if numba.config.CPU_NAME not in (None, "host") or numba.config.CPU_FEATURES:
        return False
    try:
        from llvmlite import binding as llvm

        return bool(llvm.get_host_cpu_features().get("sse4.2", False))
    except (RuntimeError, ImportError):  # llvmlite cannot query the host CPU here
        return False


#: True when `crc32c_update` uses the CPU's crc32 instruction (about 5x the table speed).
HARDWARE_CRC32C = _sse42_usable()

if HARDWARE_CRC32C:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _sse42_crc32_u64(typingctx, crc, value):
        """LLVM's x86 crc32q: the raw CRC32C step (no pre/post inversion) over 8 bytes."""
        sig = types.uint64(types.uint64, types.uint64)

        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64), ir.IntType(64)])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse42.crc32.64.64")
            return builder.call(fn, args)

        return sig, codegen

    @intrinsic
    def _load_u64_le(typingctx, data, index):
        """Unaligned little-endian 8-byte load from a uint8 array at `index` (no bounds check)."""
        sig = types.uint64(data, types.intp)

        def codegen(context, builder, signature, args):
            array = context.make_array(signature.args[0])(context, builder, args[0])
            pointer = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(64).as_pointer())
            return builder.load(pointer, align=1)

        return sig, codegen

    @njit
    def crc32c_update(crc, data, start, end):
        """CRC32C of uint8 data[start:end] continued from `crc`, with the SSE4.2 crc32 instruction.

        Returns an int in [0, 2**32). The caller checks 0 <= start <= end <= len(data).
        """
        c = np.uint64((crc ^ 0xFFFFFFFF) & 0xFFFFFFFF)
        i = start
        while i + 8 <= end:
            c = _sse42_crc32_u64(c, _load_u64_le(data, i))
            i += 8
        t = CRC32C_TABLES
        tail = np.int64(c)
        while i < end:
            tail = np.int64(t[0, (tail ^ np.int64(data[i])) & 0xFF]) ^ (tail >> 8)
            i += 1
        return tail ^ 0xFFFFFFFF

else:
    crc32c_update = crc32c_update_table


@njit
def mask_crc(crc):
    """TFRecord mask of a CRC32C value: rotate right by 15, add 0xA282EAD8 (mod 2**32)."""
    crc = crc & 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


@njit
def unmask_crc(masked):
    """Inverse of `mask_crc`."""
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


@njit
def _crc32c_ranges(data, offsets, out):
    for i in range(offsets.shape[0] - 1):
        out[i] = crc32c_update(0, data, offsets[i], offsets[i + 1])


def _as_uint8(data) -> np.ndarray:
    """A contiguous uint8 view of bytes-like or array input (no copy when possible)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            data = data.view(np.uint8) if data.flags.c_contiguous else np.ascontiguousarray(data).view(np.uint8)
        return np.ascontiguousarray(data).reshape(-1)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def crc32c(data, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of a buffer.

    Args:
        data: bytes, bytearray, memoryview or numpy array (its raw bytes are used).
        crc: CRC of preceding data, to continue a running checksum (0 to start).

    Returns:
        The CRC as an int in [0, 2**32).

    Raises:
        ValueError: when `crc` is outside [0, 2**32).
    """
    if not 0 <= int(crc) <= 0xFFFFFFFF:
        raise ValueError(f"crc must be in [0, 2**32), found {crc}.")
    buf = _as_uint8(data)
    return int(crc32c_update(int(crc), buf, 0, buf.shape[0]))


def masked_crc32c(data) -> int:
    """TFRecord's masked CRC32C of a buffer (what the record framing stores).

    Args:
        data: bytes-like or numpy array.

    Returns:
        The masked CRC as an int in [0, 2**32).
    """
    return int(mask_crc(crc32c(data)))


def crc32c_batch(data, offsets) -> np.ndarray:
    """CRC32C of many records of one buffer in one kernel call.

    Args:
        data: bytes-like or numpy array holding the records back to back.
        offsets: int64 array of N+1 byte offsets: record i is data[offsets[i]:offsets[i+1]].

    Returns:
        uint32 array of N CRCs (unmasked; apply `mask_crc` for TFRecord).

    Raises:
        ValueError: when offsets are not 1-D, decreasing, or outside the buffer.
    """
    buf = _as_uint8(data)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError(f"offsets must be a 1-D array of N+1 byte offsets, found shape {offsets.shape}.")
    if offsets.shape[0] > 1:
        if offsets[0] < 0 or offsets[-1] > buf.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"offsets must be non-decreasing within [0, {buf.shape[0]}], "
                f"found range [{offsets.min()}, {offsets.max()}] or a decrease."
            )
    out = np.empty(offsets.shape[0] - 1, dtype=np.uint32)
    _crc32c_ranges(buf, offsets, out)
    return out
