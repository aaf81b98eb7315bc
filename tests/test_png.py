"""The numba PNG encoder (gntkit.kernels.png) against a plain-Python reference of its scheme,
PIL, zlib and the PNG/zlib checksums.

`reference_png` below spells the scheme out one bit at a time (clarity over speed); the
kernel must give the same bytes. Images stay small so the suite is quick with
NUMBA_DISABLE_JIT=1 as well.
"""

from __future__ import annotations

import io
import struct
import zlib

import numba
import numpy as np
import pytest
from PIL import Image

from gntkit.errors import GntkitError
from gntkit.kernels import png as kernel

# --------------------------------------------------------------------------- reference (RFC 1950, 1951, PNG)
# RFC 1951 3.2.5: length symbols 257..285 and distance symbols 0..29 (base, extra bits).
LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
DISTANCE_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
DISTANCE_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]


class BitWriter:
    """Deflate's bit order: data elements LSB first, Huffman codes MSB first (RFC 1951 3.1.1)."""

    def __init__(self):
        self.bits: list[int] = []

    def number(self, value: int, count: int) -> None:
        self.bits.extend((value >> k) & 1 for k in range(count))

    def huffman(self, code: int, count: int) -> None:
        self.bits.extend((code >> k) & 1 for k in reversed(range(count)))

    def symbol(self, symbol: int) -> None:
        """A literal/length symbol in the fixed Huffman code (RFC 1951 3.2.6)."""
        if symbol <= 143:
            self.huffman(0b00110000 + symbol, 8)
        elif symbol <= 255:
            self.huffman(0b110010000 + symbol - 144, 9)
        elif symbol <= 279:
            self.huffman(symbol - 256, 7)
        else:
            self.huffman(0b11000000 + symbol - 280, 8)

    def to_bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(bit << k for k, bit in enumerate(padded[i:i + 8])) for i in range(0, len(padded), 8))


def common_length(data: bytes, p: int, q: int, limit: int) -> int:
    length = 0
    while length < limit and data[p + length] == data[q + length]:
        length += 1
    return length


def reference_deflate(data: bytes, stride: int) -> bytes:
    """One final fixed-Huffman block; greedy parse: the longer of a run (distance 1) and a copy
    of the row above (distance stride, if <= 32768), each of 3..258 bytes, the run on a tie."""
    out = BitWriter()
    out.number(1, 1)  # BFINAL
    out.number(1, 2)  # BTYPE 01: fixed Huffman codes
    p = 0
    while p < len(data):
        limit = min(258, len(data) - p)
        run = common_length(data, p, p - 1, limit) if p >= 1 else 0
        above = common_length(data, p, p - stride, limit) if p >= stride and stride <= 32768 else 0
        if above >= 3 and above > run:
            length, distance = above, stride
        elif run >= 3:
            length, distance = run, 1
        else:
            out.symbol(data[p])
            p += 1
            continue
        k = max(j for j in range(29) if LENGTH_BASE[j] <= length)
        out.symbol(257 + k)
        out.number(length - LENGTH_BASE[k], LENGTH_EXTRA[k])
        d = max(j for j in range(30) if DISTANCE_BASE[j] <= distance)
        out.huffman(d, 5)
        out.number(distance - DISTANCE_BASE[d], DISTANCE_EXTRA[d])
        p += length
    out.symbol(256)
    return out.to_bytes()


def reference_adler32(data: bytes) -> int:
    a, b = 1, 0
    for byte in data:
        a = (a + byte) % 65521
        b = (b + a) % 65521
    return (b << 16) | a


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def scanlines_of(image: np.ndarray) -> bytes:
    """Filter type 0 before every row."""
    return b"".join(b"\0" + bytes(row) for row in image.tolist())


def reference_png(image: np.ndarray) -> bytes:
    height, width = image.shape
    raw = scanlines_of(image)
    stream = b"\x78\x01" + reference_deflate(raw, width + 1) + struct.pack(">I", reference_adler32(raw))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- helpers
def encode_one(image: np.ndarray) -> bytes:
    data, offsets = kernel.encode_pngs(image[None])
    assert offsets.tolist() == [0, len(data)]
    return data.tobytes()


def chunks_of(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked with zlib.crc32."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, found = 8, []
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        kind, payload = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        assert struct.unpack_from(">I", png, pos + 8 + length)[0] == zlib.crc32(kind + payload)
        found.append((kind, payload))
        pos += 12 + length
    assert pos == len(png)
    return found


def check_png(png: bytes, image: np.ndarray) -> None:
    """png decodes to image with PIL and with zlib, and its CRCs and Adler-32 are right."""
    decoded = Image.open(io.BytesIO(png))
    decoded.load()
    assert decoded.mode == "L" and decoded.size == (image.shape[1], image.shape[0])
    np.testing.assert_array_equal(np.asarray(decoded), image)
    found = chunks_of(png)
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert found[0][1] == struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 0, 0, 0, 0)
    stream = found[1][1]
    assert stream[:2] == b"\x78\x01" and (stream[0] << 8 | stream[1]) % 31 == 0
    raw = scanlines_of(image)
    assert zlib.decompress(stream) == raw
    assert struct.unpack(">I", stream[-4:])[0] == zlib.adler32(raw)
    assert len(png) <= kernel.png_bound(*image.shape)


def glyph(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """0 background with a few anti-aliased grey strokes, like a preprocessed character."""
    image = np.zeros((height, width), np.uint8)
    for _ in range(3):
        row, col = rng.integers(0, height), rng.integers(0, width)
        image[row:row + 2, col:] = rng.integers(60, 256)
        image[:, col:col + 1] = np.maximum(image[:, col:col + 1], rng.integers(1, 256))
    return image


def test_reference_writes_what_zlib_and_pil_read():
    rng = np.random.default_rng(40)
    for image in (glyph(9, 13, rng), rng.integers(0, 256, (4, 7), dtype=np.uint8), np.zeros((2, 300), np.uint8)):
        check_png(reference_png(image), image)


# --------------------------------------------------------------------------- kernel == reference
SHAPES = [(1, 1), (1, 2), (1, 3), (2, 1), (1, 40), (40, 1), (3, 3), (7, 12), (16, 16), (12, 31)]


@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_equals_reference(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8),
        np.zeros(shape, np.uint8),
        np.full(shape, 255, np.uint8),
        glyph(*shape, rng),
        rng.integers(0, 3, shape, dtype=np.uint8),  # many short runs and copies
        np.tile(rng.integers(0, 256, (1, shape[1]), dtype=np.uint8), (shape[0], 1)),  # every row the same
    ]
    for image in images:
        png = encode_one(image)
        assert png == reference_png(image)
        check_png(png, image)


def test_kernel_equals_reference_on_long_runs_and_copies():
    rng = np.random.default_rng(41)
    long_rows = np.zeros((3, 700), np.uint8)  # runs beyond 258 bytes, across rows
    long_rows[1, 300:310] = 9
    stripes = np.tile(rng.integers(0, 256, (1, 290), dtype=np.uint8), (3, 1))  # copies above of 258 + more
    ties = np.zeros((5, 6), np.uint8)  # runs and copies of the same length
    ties[2, 1:4] = 7
    for image in (long_rows, stripes, ties, glyph(30, 70, rng)):
        png = encode_one(image)
        assert png == reference_png(image)
        check_png(png, image)


@pytest.mark.parametrize("width", [32767, 32768])
def test_copy_above_at_and_beyond_the_deflate_window(width):
    # A row of `width` bytes + filter byte: the row above lies at deflate's largest
    # distance (32768) or just out of its reach (copies are then off).
    image = np.zeros((2, width), np.uint8)
    image[:, ::3] = 5
    png = encode_one(image)
    check_png(png, image)
    if numba.config.DISABLE_JIT:
        return  # the reference takes seconds as plain Python; the JIT run compares
    assert png == reference_png(image)
    assert (len(png) < 1.2 * width) == (width == 32767)  # the second row is copies, or literals like the first


# --------------------------------------------------------------------------- decoding, batches
@pytest.mark.parametrize("shape", [(1, 1), (1, 57), (57, 1), (64, 64), (300, 200)])
def test_pil_and_zlib_decode_every_kind_of_image(shape):
    if numba.config.DISABLE_JIT and shape == (300, 200):
        shape = (30, 20)  # plain Python kernels: keep it quick
    rng = np.random.default_rng(42)
    for image in (rng.integers(0, 256, shape, dtype=np.uint8), np.zeros(shape, np.uint8),
                  np.full(shape, 255, np.uint8), glyph(*shape, rng)):
        check_png(encode_one(image), image)


def test_fixed_and_ragged_batches_equal_single_images():
    rng = np.random.default_rng(43)
    images = np.stack([glyph(20, 24, rng) for _ in range(5)] + [rng.integers(0, 256, (20, 24), dtype=np.uint8)])
    data, offsets = kernel.encode_pngs(images)
    assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(data) and np.all(np.diff(offsets) > 0)
    for i, image in enumerate(images):
        png = data[offsets[i]:offsets[i + 1]].tobytes()
        assert png == encode_one(image)
        check_png(png, image)

    shapes = [(3, 5), (1, 1), (17, 2), (9, 30), (4, 4)]
    bitmaps = [rng.integers(0, 256, s, dtype=np.uint8) if k % 2 else glyph(*s, rng) for k, s in enumerate(shapes)]
    pixels = np.concatenate([b.reshape(-1) for b in bitmaps])
    pixel_offsets = np.concatenate([[0], np.cumsum([b.size for b in bitmaps])])
    heights = np.array([s[0] for s in shapes], np.int32)
    widths = np.array([s[1] for s in shapes], np.int32)
    data, offsets = kernel.encode_pngs_ragged(pixels, pixel_offsets, heights, widths)
    assert len(offsets) == len(shapes) + 1 and offsets[-1] == len(data)
    for i, bitmap in enumerate(bitmaps):
        png = data[offsets[i]:offsets[i + 1]].tobytes()
        assert png == reference_png(bitmap)
        check_png(png, bitmap)

    # a sub-range of pixels (offsets not starting at 0) and an empty batch
    data, offsets = kernel.encode_pngs_ragged(pixels, pixel_offsets[2:], heights[2:], widths[2:])
    assert data[offsets[0]:offsets[1]].tobytes() == reference_png(bitmaps[2])
    data, offsets = kernel.encode_pngs(np.zeros((0, 4, 4), np.uint8))
    assert len(data) == 0 and offsets.tolist() == [0]


# --------------------------------------------------------------------------- checksums and the bound
def test_crc32_and_adler32_kernels_equal_zlib():
    rng = np.random.default_rng(44)
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 100, 1000):
        data = rng.integers(0, 256, n + 8, dtype=np.uint8)
        assert kernel.crc32_update(0, data, 0, n) == zlib.crc32(data[:n].tobytes())
        if n >= 2:  # continued from an earlier CRC, from an offset
            assert kernel.crc32_update(zlib.crc32(b"IDAT"), data, 2, n) == zlib.crc32(data[2:n].tobytes(), zlib.crc32(b"IDAT"))
        assert kernel.adler32(data, n) == zlib.adler32(data[:n].tobytes()) == reference_adler32(data[:n].tobytes())
    # Adler-32 sums are reduced per 65536-byte block: cross a block boundary with the largest bytes
    n = 65536 + 300 if not numba.config.DISABLE_JIT else 65536 + 3
    data = np.full(n + 8, 255, np.uint8)
    assert kernel.adler32(data, n) == zlib.adler32(data[:n].tobytes())


def test_bound_covers_every_symbol_and_the_worst_image():
    # Every match costs at most 9 bits per byte it covers (the bound's premise).
    for length in range(3, 259):
        worst_distance_bits = 5 + 13
        assert int(kernel.LENGTH_COUNTS[length]) + worst_distance_bits <= 9 * length
    assert max(int(code) >> 32 for code in kernel.LITERAL_CODES) == 9
    # No run or copy anywhere, every pixel a 9-bit literal: within a byte per 8 rows of the bound.
    height, width = 13, 37
    rows, cols = np.mgrid[0:height, 0:width]
    worst = (144 + (5 * rows + cols) % 112).astype(np.uint8)
    png = encode_one(worst)
    check_png(png, worst)
    assert png == reference_png(worst)
    assert kernel.png_bound(height, width) - height // 8 - 1 <= len(png) <= kernel.png_bound(height, width)
    noise = np.random.default_rng(45).integers(0, 256, (40, 50), dtype=np.uint8)
    assert len(encode_one(noise)) <= kernel.png_bound(40, 50)


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_before_encoding():
    image = np.zeros((2, 3, 4), np.uint8)
    for bad in (image.astype(np.int16), image[0], np.zeros((2, 0, 4), np.uint8), np.zeros((2, 3, 0), np.uint8)):
        with pytest.raises(GntkitError, match="uint8 \\(N, H, W\\)"):
            kernel.encode_pngs(bad)
    pixels = np.zeros(20, np.uint8)
    good = (pixels, np.array([0, 6, 20]), np.array([2, 2]), np.array([3, 7]))
    kernel.encode_pngs_ragged(*good)
    cases = [
        ((pixels.astype(np.int32),) + good[1:], "1-D uint8"),
        ((pixels.reshape(4, 5),) + good[1:], "1-D uint8"),
        ((pixels, np.array([0.0, 6.0, 20.0]), good[2], good[3]), "integer"),
        ((pixels, np.array([0, 6]), good[2], good[3]), "N\\+1"),
        ((pixels, good[1], np.array([2, 2, 2]), good[3]), "N\\+1"),
        ((pixels, good[1], np.array([2, 0]), np.array([3, 7])), "both sides"),
        ((pixels, good[1], np.array([2, -2]), np.array([3, -7])), "both sides"),
        ((pixels, np.array([0, 6, 21]), good[2], np.array([3, 7])), "within \\[0, 20\\]"),
        ((pixels, np.array([-1, 6, 20]), good[2], good[3]), "within"),
        ((pixels, np.array([0, 6, 20]), good[2], np.array([3, 6])), "image 1 has 14 pixel bytes, expected"),
        ((pixels, np.array([0, 5, 20]), good[2], good[3]), "image 0 has 5 pixel bytes"),
    ]
    for args, message in cases:
        with pytest.raises(GntkitError, match=message):
            kernel.encode_pngs_ragged(*args)
