"""Batch PNG encoder for 8-bit grayscale images, as numba kernels.

Every image becomes the standard minimal PNG that any reader decodes: signature,
IHDR (8-bit grayscale, non-interlaced), one IDAT chunk, IEND. The scanlines all
use filter type 0 (none). The IDAT holds a zlib stream (header 78 01, Adler-32
trailer) with ONE deflate block of fixed Huffman codes (RFC 1951 3.2.6) whose
LZ77 parse is restricted to two cheap match kinds, chosen greedily from the
start of the filtered scanlines:

- at each position, a run: the bytes equal the byte before (distance 1, like
  zlib's Z_RLE), as long as possible up to 258;
- otherwise (or when longer), a copy of the row above (distance = row length
  width + 1, used only while that is at most 32768), up to 258;
- a match needs at least 3 bytes and a longer copy-above wins over a run; else
  the byte is a literal.

The parse costs a few operations per byte: candidate match starts are marked in
one vectorised pass, literals between them go out two per step through a
branch-free 64-bit bit writer, and matches are measured 8 bytes per compare. On
64x64 handwriting glyphs (0 background, grey strokes) that is about 10x zlib
level 1 for PNGs about 4% larger (zlib fits its Huffman codes to each image).
Filters other than 0 make these glyphs' PNGs larger under fixed codes (Up and
Paeth by about 7%, measured), and filter 0 is the cheapest to decode. Output is
a pure function of the pixels: deterministic byte for byte.

Size bound: a literal costs at most 9 bits. A match of L bytes costs its length
code and extra bits plus 5 + at most 13 distance bits: for L <= 10 that is
7 + 18 = 25 <= 9 L bits, for longer matches at most 13 + 18 = 31 < 9 L. So the
block of n scanline bytes fits in 3 + 9 n + 7 bits (header, symbols, end of
block) and the PNG in `png_bound(height, width)` bytes. The wrappers allocate
that much per image and the kernel writes the PNGs back to back. Its bit writer
stores whole 64-bit words, which may reach 7 bytes past the deflate data, into
the Adler-32 and CRC that are written there next, so no write leaves the image's
bound.

It stays beside zlib and Pillow because a whole conversion to WebDataset is 2.73x faster with it
than with zlib level 1 per image (3.95x than Pillow): benchmarks/bench_handwritten.py,
docs/benchmarks.md "Hand-written code beside libraries".

Python entry points: `encode_pngs` (N, H, W images), `encode_pngs_ragged`
(variable-size bitmaps back to back), `png_bound`. The plain-Python reference of
the same scheme lives in `tests/test_png.py`.
"""

from __future__ import annotations

import sys

import numba
import numpy as np

from gntkit.errors import GntkitError
from gntkit.jit import njit
from gntkit.kernels.crc32c import crc_update_slice8, make_crc_tables

#: The longest match deflate allows, and its largest distance.
MAX_MATCH = 258
MAX_DISTANCE = 32768
#: zlib stream header: deflate, 32 KiB window, "fastest" level; (0x78 << 8 | 0x01) % 31 == 0.
ZLIB_HEADER = (0x78, 0x01)
#: PNG bytes around the deflate data: signature 8, IHDR 25, IDAT framing 12, IEND 12, zlib header 2, Adler-32 4.
PNG_OVERHEAD = 8 + 25 + 12 + 12 + 2 + 4
#: PNG's limit on a width, a height and a chunk length.
PNG_MAX_INT = 2**31 - 1

_LENGTH_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258)
_LENGTH_EXTRA = (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0)
_DISTANCE_BASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                  2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)
_DISTANCE_EXTRA = (0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13)


def _reverse(code: int, bits: int) -> int:
    """Huffman codes are sent most significant bit first into an LSB-first bit stream."""
    return int(format(code, f"0{bits}b")[::-1], 2)


def _fixed_code(symbol: int) -> tuple[int, int]:
    """(code, bit count) of a literal/length symbol 0..287 in the fixed Huffman code."""
    if symbol < 144:
        return 0x30 + symbol, 8
    if symbol < 256:
        return 0x190 + symbol - 144, 9
    if symbol < 280:
        return symbol - 256, 7
    return 0xC0 + symbol - 280, 8


def _make_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bit patterns, ready to OR into the stream, and their bit counts.

    Literals 0..255: the reversed fixed code, its bit count in the upper 32 bits (one
    load per literal). Lengths 0..258 (3..258 used): the reversed length code followed
    by its extra bits.
    """
    literal_codes = np.zeros(256, np.uint64)
    for byte in range(256):
        code, bits = _fixed_code(byte)
        literal_codes[byte] = _reverse(code, bits) | (bits << 32)
    length_bits = np.zeros(MAX_MATCH + 1, np.uint64)
    length_counts = np.zeros(MAX_MATCH + 1, np.uint64)
    for length in range(3, MAX_MATCH + 1):
        k = max(j for j, base in enumerate(_LENGTH_BASE) if base <= length)
        code, bits = _fixed_code(257 + k)
        length_bits[length] = _reverse(code, bits) | ((length - _LENGTH_BASE[k]) << bits)
        length_counts[length] = bits + _LENGTH_EXTRA[k]
    return literal_codes, length_bits, length_counts


#: Module constants; numba freezes global arrays into the compiled kernels.
LITERAL_CODES, LENGTH_BITS, LENGTH_COUNTS = _make_tables()
DISTANCE_BASE = np.array(_DISTANCE_BASE, np.int64)
DISTANCE_EXTRA = np.array(_DISTANCE_EXTRA, np.int64)
#: Reversed 5-bit fixed codes of the distance symbols 0..29.
DISTANCE_CODES = np.array([_reverse(k, 5) for k in range(30)], np.int64)


#: slicing-by-8 tables of the PNG/zlib CRC-32 (reflected 0xEDB88320)
CRC32_TABLES = make_crc_tables(0xEDB88320)
_SIGNATURE = np.array([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], np.uint8)
_IEND = np.array([0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82], np.uint8)


def png_bound(height: int, width: int) -> int:
    """Most bytes `encode_pngs` can write for one height x width image (see the module docstring)."""
    scanline_bytes = height * (width + 1)
    return PNG_OVERHEAD + (3 + 9 * scanline_bytes + 7 + 7) // 8


# --------------------------------------------------------------------------- word access
# Matching compares 8 bytes per step and the bit writer stores 8 bytes per symbol (then
# advances by the whole bytes it holds), which keeps the literal loop free of branches.
# numba has no unaligned word access, so two LLVM intrinsics provide it; as plain Python
# (NUMBA_DISABLE_JIT) or on a big-endian host the portable byte versions below stand in.
if numba.config.DISABLE_JIT or sys.byteorder != "little":

    @njit
    def _load_le64(data, index):
        """The 8 bytes at data[index:] as a little-endian uint64."""
        value = np.uint64(0)
        for k in range(8):
            value |= np.uint64(data[index + k]) << np.uint64(8 * k)
        return value

    @njit
    def _store_le64(data, index, value):
        """data[index:index+8] = value, little-endian."""
        for k in range(8):
            data[index + k] = np.uint8((value >> np.uint64(8 * k)) & np.uint64(0xFF))

    @njit
    def _trailing_zero_bits(value):
        """Number of 0 bits below the lowest 1 bit of a non-zero uint64."""
        count = 0
        while not (value >> np.uint64(count)) & np.uint64(1):
            count += 1
        return count

else:
    from llvmlite import ir
    from numba.core import types
    from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zero_bits
    from numba.extending import intrinsic

    def _word_pointer(context, builder, array_type, array, index):
        data = context.make_array(array_type)(context, builder, array).data
        return builder.bitcast(builder.gep(data, [index]), ir.IntType(64).as_pointer())

    @intrinsic
    def _load_le64(typingctx, data, index):
        """The 8 bytes at data[index:] as a uint64 (unaligned load, no bounds check)."""
        def codegen(context, builder, signature, args):
            return builder.load(_word_pointer(context, builder, signature.args[0], args[0], args[1]), align=1)

        return types.uint64(data, types.intp), codegen

    @intrinsic
    def _store_le64(typingctx, data, index, value):
        """data[index:index+8] = value (unaligned store, no bounds check)."""
        def codegen(context, builder, signature, args):
            builder.store(args[2], _word_pointer(context, builder, signature.args[0], args[0], args[1]), align=1)
            return context.get_dummy_value()

        return types.void(data, types.intp, types.uint64), codegen


# --------------------------------------------------------------------------- kernels
@njit
def crc32_update(crc, data, start, end):
    """CRC-32 (PNG, zlib) of uint8 data[start:end] continued from `crc` (0 to start); an int in [0, 2**32)."""
    return crc_update_slice8(CRC32_TABLES, crc, data, start, end)


@njit
def adler32(data, n):
    """Adler-32 of uint8 data[:n]; an int in [0, 2**32)."""
    s1 = np.int64(1)
    s2 = np.int64(0)
    start = 0
    while start < n:
        # Per block of m bytes b_j: s2 += m * s1 + sum((m - j) b_j), s1 += sum(b_j). No serial
        # dependency inside the block (it vectorises), and no overflow for m <= 2**16.
        m = min(n - start, 65536)
        block_sum = np.uint64(0)
        weighted = np.uint64(0)  # sum(j b_j)
        base = np.uint64(start)
        for j in range(np.uint64(m)):  # unsigned indices: no negative-index test, so it vectorises
            b = np.uint64(data[base + j])
            block_sum += b
            weighted += np.uint64(np.uint32(j)) * b  # j < 2**16: a 32-bit multiply suffices (twice the speed)
        s2 = (s2 + m * s1 + m * np.int64(block_sum) - np.int64(weighted)) % 65521
        s1 = (s1 + np.int64(block_sum)) % 65521
        start += m
    return (s2 << 16) | s1


@njit
def _put_be32(out, pos, value):
    """out[pos:pos+4] = value, big-endian."""
    out[pos] = (value >> 24) & 0xFF
    out[pos + 1] = (value >> 16) & 0xFF
    out[pos + 2] = (value >> 8) & 0xFF
    out[pos + 3] = value & 0xFF


@njit
def _match_length(data, p, q, limit):
    """Length of the common prefix of data[p:] and data[q:], at most limit (reads up to 8 bytes beyond)."""
    length = 0
    while True:
        diff = _load_le64(data, p + length) ^ _load_le64(data, q + length)
        if diff != 0:
            return min(length + (np.int64(_trailing_zero_bits(diff)) >> 3), limit)
        length += 8
        if length >= limit:
            return limit


@njit
def _match_candidates(data, n, stride, up, candidates):
    """candidates[p]: bit 0 if data[p-1:p+3] is one value, bit 1 if data[p:p+3] == data[p-stride:p-stride+3].

    A match of 3 or more can start only where a bit is set (bytes past n may set one
    falsely; the match length check rejects those). candidates[n] = 1 stops literal loops.
    """
    one = np.uint64(1)
    two = np.uint64(2)
    end = np.uint64(n)
    candidates[0] = 0
    for p in range(one, end):  # unsigned indices: no negative-index test, so it vectorises
        candidates[p] = np.uint8((data[p - one] == data[p]) & (data[p] == data[p + one]) & (data[p + one] == data[p + two]))
    if up:
        s = np.uint64(stride)
        for p in range(s, end):
            same = (data[p - s] == data[p]) & (data[p + one - s] == data[p + one]) & (data[p + two - s] == data[p + two])
            candidates[p] |= np.uint8(same) << np.uint8(1)
    candidates[n] = 1


# Kept whole (over 60 lines): the bit writer's word, bit count and output position stay local
# through the one parse loop; split into functions, each step would pass and return them as tuples.
@njit
def deflate_fixed(data, n, stride, candidates, out, pos):
    """Deflate data[:n] as one final fixed-Huffman block (runs, copies from `stride` back) at out[pos:].

    Returns the position after the block's last byte. data and candidates need 8 bytes
    past n (any values); out needs (3 + 9 n + 7 + 7) // 8 + 7 bytes from pos (the last 7
    receive scratch that the caller overwrites or ignores).
    """
    up = stride <= MAX_DISTANCE
    _match_candidates(data, n, stride, up, candidates)
    k = 0
    while k < 29 and DISTANCE_BASE[k + 1] <= stride:
        k += 1
    up_bits = np.uint64(DISTANCE_CODES[k]) | (np.uint64(stride - DISTANCE_BASE[k]) << np.uint64(5))
    up_count = np.uint64(5 + DISTANCE_EXTRA[k])
    seven = np.uint64(7)
    three = np.uint64(3)
    thirty_two = np.uint64(32)
    low32 = np.uint64(0xFFFFFFFF)
    acc = np.uint64(3)  # pending bits, LSB first: BFINAL = 1, BTYPE = 01 (fixed Huffman)
    count = np.uint64(3)
    p = 0
    while True:
        while candidates[p] == 0:  # literals up to the next possible match, two at a time if possible
            code = LITERAL_CODES[data[p]]
            if candidates[p + 1] == 0:
                second = LITERAL_CODES[data[p + 1]]
                acc |= ((code & low32) | ((second & low32) << (code >> thirty_two))) << count
                count += (code >> thirty_two) + (second >> thirty_two)
                p += 2
            else:
                acc |= (code & low32) << count
                count += code >> thirty_two
                p += 1
            # At most 7 + 18 bits are pending here.
            _store_le64(out, pos, acc)
            pos += np.int64(count >> three)
            acc >>= count & ~seven
            count &= seven
        if p >= n:
            break
        limit = min(n - p, MAX_MATCH)
        best = 0
        dist_bits = np.uint64(0)  # distance 1: symbol 0, no extra bits
        dist_count = np.uint64(5)
        if candidates[p] & 1:
            best = _match_length(data, p, p - 1, limit)
            if best < 3:
                best = 0
        if candidates[p] & 2 and best < MAX_MATCH:
            length = _match_length(data, p, p - stride, limit)
            if length >= 3 and length > best:
                best = length
                dist_bits = up_bits
                dist_count = up_count
        if best > 0:
            acc |= (LENGTH_BITS[best] | (dist_bits << LENGTH_COUNTS[best])) << count
            count += LENGTH_COUNTS[best] + dist_count
            p += best
        else:
            code = LITERAL_CODES[data[p]]
            acc |= (code & low32) << count
            count += code >> thirty_two
            p += 1
        # At most 7 + 31 bits are pending here, so acc never overflows.
        _store_le64(out, pos, acc)
        pos += np.int64(count >> three)
        acc >>= count & ~seven
        count &= seven
    count += seven  # end of block: symbol 256 is seven 0 bits
    _store_le64(out, pos, acc)
    return pos + np.int64((count + seven) >> three)


@njit
def encode_png_batch(pixels, pixel_offsets, heights, widths, scanlines, candidates, out, png_offsets):
    """PNG of image i (pixels[pixel_offsets[i]:], heights[i] x widths[i]) at out[png_offsets[i]:png_offsets[i+1]].

    Writes png_offsets[1:] (png_offsets[0] is the start). The caller checks every shape and
    offset and sizes scanlines and candidates (max h * (w + 1) + 8) and out (the sum of
    `png_bound`, from png_offsets[0]).
    """
    pos = png_offsets[0]
    for i in range(heights.shape[0]):
        height = np.int64(heights[i])
        width = np.int64(widths[i])
        stride = width + 1
        source = np.uint64(pixel_offsets[i])
        w = np.uint64(width)
        for row in range(np.uint64(height)):  # filter type 0 before every row
            target = row * np.uint64(stride)
            scanlines[target] = 0
            target += np.uint64(1)
            first = source + row * w
            for col in range(w):
                scanlines[target + col] = pixels[first + col]
        n = height * stride
        for j in range(8):
            out[pos + j] = _SIGNATURE[j]
        _put_be32(out, pos + 8, 13)
        out[pos + 12] = 0x49  # IHDR
        out[pos + 13] = 0x48
        out[pos + 14] = 0x44
        out[pos + 15] = 0x52
        _put_be32(out, pos + 16, width)
        _put_be32(out, pos + 20, height)
        out[pos + 24] = 8  # bit depth; then colour type 0 (grey), compression, filter, interlace 0
        out[pos + 25] = 0
        out[pos + 26] = 0
        out[pos + 27] = 0
        out[pos + 28] = 0
        _put_be32(out, pos + 29, crc32_update(0, out, pos + 12, pos + 29))
        idat = pos + 33
        out[idat + 4] = 0x49  # IDAT
        out[idat + 5] = 0x44
        out[idat + 6] = 0x41
        out[idat + 7] = 0x54
        out[idat + 8] = ZLIB_HEADER[0]
        out[idat + 9] = ZLIB_HEADER[1]
        end = deflate_fixed(scanlines, n, stride, candidates, out, idat + 10)
        _put_be32(out, end, adler32(scanlines, n))
        end += 4
        _put_be32(out, idat, end - idat - 8)
        _put_be32(out, end, crc32_update(0, out, idat + 4, end))
        end += 4
        for j in range(12):
            out[end + j] = _IEND[j]
        pos = end + 12
        png_offsets[i + 1] = pos


# --------------------------------------------------------------------------- Python entry points
def encode_pngs_ragged(pixels, pixel_offsets, heights, widths) -> tuple[np.ndarray, np.ndarray]:
    """Encode variable-size grayscale bitmaps as PNG files, back to back in one buffer.

    Args:
        pixels: uint8 1-D array; bitmap i is pixels[pixel_offsets[i]:pixel_offsets[i+1]], row-major.
        pixel_offsets: (N+1,) integer offsets, non-decreasing, within pixels.
        heights, widths: (N,) integers, each in [1, 2**31 - 1], with
            pixel_offsets[i+1] - pixel_offsets[i] == heights[i] * widths[i].

    Returns:
        (data, offsets): uint8 data holding PNG i at data[offsets[i]:offsets[i+1]], and
        int64 offsets (N+1,) starting at 0.

    Raises:
        GntkitError: on a wrong dtype or shape, offsets that disagree with the sizes or leave
            pixels, or an image too large for one PNG chunk; nothing is encoded then.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 1:
        raise GntkitError(f"PNG pixels must be a 1-D uint8 array, found {pixels.dtype} {pixels.shape}.")
    heights = _integers(heights, "heights")
    widths = _integers(widths, "widths")
    offsets = _integers(pixel_offsets, "pixel_offsets")
    n = heights.shape[0]
    if widths.shape[0] != n or offsets.shape[0] != n + 1:
        raise GntkitError(f"PNG heights, widths and pixel_offsets must have N, N and N+1 entries, found {n}, "
                          f"{widths.shape[0]} and {offsets.shape[0]}.")
    if n and (min(heights.min(), widths.min()) < 1 or max(heights.max(), widths.max()) > PNG_MAX_INT):
        bad = int(np.flatnonzero((heights < 1) | (widths < 1) | (heights > PNG_MAX_INT) | (widths > PNG_MAX_INT))[0])
        raise GntkitError(f"PNG image {bad} is {heights[bad]}x{widths[bad]}; both sides must lie in [1, {PNG_MAX_INT}].")
    if offsets[0] < 0 or offsets[-1] > pixels.shape[0]:
        raise GntkitError(f"PNG pixel_offsets must lie within [0, {pixels.shape[0]}], found [{offsets[0]}, {offsets[-1]}].")
    expected = heights * widths  # both below 2**31: no overflow
    lengths = np.diff(offsets)
    if np.any(lengths != expected):
        bad = int(np.flatnonzero(lengths != expected)[0])
        raise GntkitError(f"PNG image {bad} has {lengths[bad]} pixel bytes, expected height*width = {expected[bad]}.")
    bounds = PNG_OVERHEAD + (3 + 9 * heights * (widths + 1) + 7 + 7) // 8
    if n and bounds.max() - (8 + 25 + 12 + 12) > PNG_MAX_INT:  # the IDAT data: zlib header, deflate, Adler-32
        bad = int(np.argmax(bounds))
        raise GntkitError(f"PNG image {bad} ({heights[bad]}x{widths[bad]}) may need an IDAT chunk over {PNG_MAX_INT} bytes, PNG's limit.")
    # 8 bytes of slack for the word loads past the scanlines. `out` needs none: the bit
    # writer's word stores pass the deflate data by at most 7 bytes, where the trailer goes.
    scanlines = np.zeros(int((heights * (widths + 1)).max(initial=0)) + 8, np.uint8)
    candidates = np.zeros_like(scanlines)
    out = np.empty(int(bounds.sum()), np.uint8)
    png_offsets = np.zeros(n + 1, np.int64)
    encode_png_batch(np.ascontiguousarray(pixels), offsets, heights, widths, scanlines, candidates, out, png_offsets)
    return out[:png_offsets[-1]], png_offsets


def encode_pngs(images) -> tuple[np.ndarray, np.ndarray]:
    """Encode (N, H, W) uint8 images as PNG files, back to back in one buffer.

    Args:
        images: uint8 array (N, H, W), H and W >= 1.

    Returns:
        (data, offsets) as from `encode_pngs_ragged`.

    Raises:
        GntkitError: on a wrong dtype, dimensionality or an empty side.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] < 1 or images.shape[2] < 1:
        raise GntkitError(f"PNG images must be a uint8 (N, H, W) array with H, W >= 1, found {images.dtype} {images.shape}.")
    n, height, width = images.shape
    return encode_pngs_ragged(np.ascontiguousarray(images).reshape(-1), np.arange(n + 1, dtype=np.int64) * (height * width),
                              np.full(n, height, np.int64), np.full(n, width, np.int64))


def _integers(values, name: str) -> np.ndarray:
    """values as a contiguous 1-D int64 array; GntkitError unless they are integers."""
    array = np.asarray(values)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise GntkitError(f"PNG {name} must be a 1-D integer array, found {array.dtype} {array.shape}.")
    if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
        raise GntkitError(f"PNG {name} must fit in int64, found {array.max()}.")
    return np.ascontiguousarray(array, dtype=np.int64)
