"""Numba kernels for batch preprocessing of handwriting bitmaps.

Conventions shared by every kernel here:
- images are 2-D uint8, background 255, ink darker (0-254), until the final inversion;
- "ink" means any pixel that is not exactly 255;
- kernels take arrays and scalars only and do no checking: the wrapper in
  `gntkit.samples.transform` validates shapes, dtypes and offsets before calling them,
  because numba does no bounds checks.

The grey-level edit steps (contrast, binarize, denoise) are in gntkit.kernels.edits; this module
crops, resamples and places.

Step order of `preprocess_batch_kernel` (each switchable):
contrast -> binarize -> denoise -> crop -> resize -> invert.
"""

from __future__ import annotations

import math

import numpy as np

from gntkit.jit import as_readonly, njit, parallel_ranges
from gntkit.kernels.edits import BINARIZE_NONE, edit_image

# Samples per parallel work item: scratch buffers are allocated once per chunk,
# not once per sample, and a chunk is small enough to balance two to many cores.
CHUNK = 32

# Resampling runs in float32, which numba's loops vectorise twice as wide as float64;
# a sum of at most 3 weighted 8-bit values is exact there to about 1e-4 grey levels.
# Longer sums (shrinking an axis by more than 2) accumulate in float64.
CONTRACT = {"contract"}  # fastmath flag: lets a*b + c compile to one fused multiply-add
VECTOR = 32  # float32 values per iteration of numba's main vector loops; a tail runs in narrower steps
U1 = np.uint64(1)  # unsigned indices skip numba's negative-index wraparound, which blocks vectorising
U2 = np.uint64(2)
ROW_BLOCK = 1 << 16  # float32 values of input rows combined per block by the area path

# INLINE_NOTE: place_image and resample_into, and the helpers called from one place only
# (ink_box, fit_size, fill, vector_window, store_pass, chunk_sizes, resample_scratch), are
# inlined into their caller as numba IR (inline="always"). A separately compiled kernel is
# optimised by LLVM and turned into machine code once for itself and again inside every
# caller that links it: inlining the first two saved about 2.5 of 8 compile CPU-s of
# preprocessing, the single-use helpers about 0.4 of 5.4 more (benchmarks/bench_coldstart.py
# and its probe). Helpers called from several places stay separate: inlining every helper
# made numba's own typing slower than what LLVM saved (25 CPU-s), and combine_pass and
# gather_pass must stay separate, as their fastmath flag must not spread to the code around
# them (it would change rounding).


@njit
def row_has_ink(image, y):
    """Whether row y of image has a pixel that is not 255."""
    # a min-reduction without early exit: numba vectorises it, unlike a search loop
    darkest = np.uint8(255)
    for x in range(image.shape[1]):
        darkest = min(darkest, image[y, x])
    return darkest != 255


@njit
def column_has_ink(image, x, y0, y1):
    """Whether column x of image has a pixel that is not 255 in rows y0..y1-1."""
    for y in range(y0, y1):
        if image[y, x] != 255:
            return True
    return False


@njit(inline="always")  # see INLINE_NOTE
def ink_box(image):
    """Half-open box (y0, y1, x0, x1) around pixels that are not 255; the whole image when there are none."""
    # Scans inwards from the four sides and stops at the first ink, so it reads little
    # more than the blank margins (bitmaps are mostly cropped already; the whole box
    # at worst). Columns are scanned within the ink rows only.
    height, width = image.shape
    y0 = np.int64(0)  # not a literal 0: that would compile row_has_ink once more, for Literal[int](0)
    while y0 < height and not row_has_ink(image, y0):
        y0 += 1
    if y0 == height:
        return 0, height, 0, width
    y1 = height
    while not row_has_ink(image, y1 - 1):
        y1 -= 1
    x0 = np.int64(0)
    while not column_has_ink(image, x0, y0, y1):
        x0 += 1
    x1 = width
    while not column_has_ink(image, x1 - 1, y0, y1):
        x1 -= 1
    return y0, y1, x0, x1


@njit(inline="always")  # see INLINE_NOTE
def fit_size(height, width, inner):
    """(h, w) of a height x width image scaled so its longer side is inner, aspect kept, rounded half up, >= 1."""
    longer = np.int64(max(height, width))
    scaled_h = (2 * np.int64(height) * inner + longer) // (2 * longer)
    scaled_w = (2 * np.int64(width) * inner + longer) // (2 * longer)
    return max(scaled_h, 1), max(scaled_w, 1)


@njit
def resize_taps(n_in, n_out, offset, start, weight):
    """Taps of one axis n_in -> n_out: output j = sum over t < taps of weight[t*n_out + j] * input[start[j] - offset + t]; returns taps."""
    # Area average when shrinking: output j covers [j*scale, (j+1)*scale), which touches
    # at most ceil(scale) + 1 input pixels, so every output gets a window of that many
    # (n_in at most) with zero weights where it overhangs: gathers of fixed length, no
    # branches. Bilinear otherwise (half-pixel centres, clamped): 2 taps, 1 for n_in = 1.
    # Loops run over outputs innermost, without branches, so that they vectorise.
    scale = n_in / n_out
    if n_in > n_out:
        taps = min(int(math.ceil(scale)) + 1, n_in)
        last = n_in - taps
        inverse = n_out / n_in  # a multiply per tap instead of a division
        for j in range(n_out):
            start[j] = np.uint64(offset + min(int(j * scale), last))
        for t in range(taps):
            for j in range(n_out):
                lo = j * scale
                hi = (j + 1) * scale if j + 1 < n_out else float(n_in)
                pixel = float(min(int(lo), last) + t)
                cover = min(pixel + 1.0, hi) - max(pixel, lo)
                weight[t * n_out + j] = max(cover, 0.0) * inverse
        return taps
    taps = min(n_in, 2)
    for j in range(n_out):
        position = min(max((j + 0.5) * scale - 0.5, 0.0), n_in - 1.0)
        left = min(int(position), n_in - taps)
        start[j] = np.uint64(offset + left)
        share = position - left  # of the right tap; 1.0 at the last pixel, where left moved back one
        weight[j] = 1.0 - share
        if taps == 2:
            weight[n_out + j] = share
    return taps


@njit(fastmath=CONTRACT)
def combine_pass(source, stride, first, length, taps, start, weight, outputs, begin, end, target, sums):
    """target[(i-begin)*length + x] = sum over t < taps of weight[t*outputs + i] * source[(start[i] + t)*stride + first + x]

    for begin <= i < end, x < length (flat).
    """
    step = np.uint64(stride)
    for i in range(begin, end):
        b0 = start[i] * step + np.uint64(first)
        b1 = b0 + step
        b2 = b1 + step
        out = np.uint64((i - begin) * length)
        if taps == 1:
            w0 = weight[i]
            for x in range(length):
                u = np.uint64(x)
                target[out + u] = w0 * source[b0 + u]
        elif taps == 2:
            w0, w1 = weight[i], weight[outputs + i]
            for x in range(length):
                u = np.uint64(x)
                target[out + u] = w0 * source[b0 + u] + w1 * source[b1 + u]
        elif taps == 3:
            w0, w1, w2 = weight[i], weight[outputs + i], weight[2 * outputs + i]
            for x in range(length):
                u = np.uint64(x)
                target[out + u] = w0 * source[b0 + u] + w1 * source[b1 + u] + w2 * source[b2 + u]
        else:
            # a long sum (shrinking by more than 2) accumulates in float64, where the
            # rounding of each addition stays negligible even over thousands of rows
            for x in range(length):
                sums[x] = 0.0
            for t in range(taps):
                w = np.float64(weight[t * outputs + i])
                if w != 0.0:
                    bt = b0 + np.uint64(t) * step
                    for x in range(length):
                        sums[x] += w * source[bt + np.uint64(x)]
            for x in range(length):
                target[out + np.uint64(x)] = sums[x]


@njit(fastmath=CONTRACT)
def gather_pass(source, stride, base, rows, taps, start, weight, count, target):
    """target[y*count + j] = sum over t < taps of weight[t*count + j] * source[base + y*stride + start[j] + t]

    for y < rows, j < count (flat).
    """
    # Column by column: the taps of output j are loaded once for all rows, and a gather
    # is then 3 loads where it was 7 (scalar loads are what limits this loop).
    step = np.uint64(stride)
    jump = np.uint64(count)
    for j in range(count):
        p = np.uint64(base) + start[j]
        out = np.uint64(j)
        if taps == 2:
            w0, w1 = weight[j], weight[count + j]
            for y in range(rows):
                target[out] = w0 * source[p] + w1 * source[p + U1]
                p += step
                out += jump
        elif taps == 3:
            w0, w1, w2 = weight[j], weight[count + j], weight[2 * count + j]
            for y in range(rows):
                target[out] = w0 * source[p] + w1 * source[p + U1] + w2 * source[p + U2]
                p += step
                out += jump
        else:
            for y in range(rows):
                total = 0.0  # float64, as in combine_pass
                for t in range(taps):
                    total += np.float64(weight[t * count + j]) * source[p + np.uint64(t)]
                target[out] = total
                p += step
                out += jump


@njit(inline="always")  # see INLINE_NOTE
def store_pass(values, rows, count, canvas, top, left, flip):
    """canvas[top + i, left + j] = values[i*count + j] rounded half up, XOR flip, for i < rows, j < count."""
    # Weights are >= 0 and sum to 1 within float32 rounding, so 0 <= value + 0.5 < 256:
    # truncation is the rounding and the result fits a byte without clamping.
    half = np.float32(0.5)
    flip = np.uint8(flip)
    size = canvas.shape[1]
    target = canvas.reshape(canvas.size)
    for i in range(rows):
        b = np.uint64((top + i) * size + left)
        v = np.uint64(i * count)
        for j in range(count):
            u = np.uint64(j)
            target[b + u] = np.uint8(np.int32(values[v + u] + half)) ^ flip


@njit(inline="always")  # see INLINE_NOTE
def vector_window(x0, width, row_length):
    """(first, length): columns first..first+length-1 of a row contain x0..x0+width-1, length a multiple of VECTOR if the row allows."""
    # numba's main vector loops do VECTOR float32 values per iteration and a tail in
    # narrower steps: computing a few columns more is cheaper than that tail
    length = (width + VECTOR - 1) // VECTOR * VECTOR
    if length > row_length:
        return x0, width
    return min(x0, row_length - length), length


@njit(inline="always")  # see INLINE_NOTE
def resample_into(image, y0, y1, x0, x1, canvas, top, left, new_height, new_width, flip, lines, values, sums, starts, weights):
    """Resize image[y0:y1, x0:x1] into canvas[top:, left:] (new_height x new_width), XOR flip: area per shrinking axis, else bilinear."""
    # image and canvas C-contiguous. Scratch: lines float32, at least image.shape[1] and
    # min(y1 - y0, new_height) * new_width; values float32 (new_height * new_width,);
    # sums float64 (image.shape[1],); starts uint64 (2, max(new_height, new_width));
    # weights float32 (2, max(y1 - y0, x1 - x0) + 2 * max(new_height, new_width)).
    height, width = y1 - y0, x1 - x0
    row_length = image.shape[1]
    source = image.reshape(image.size)
    h_start, v_start = starts[0], starts[1]
    h_weight, v_weight = weights[0], weights[1]
    # A literal 0 argument would compile the callee once more, for the type Literal[int](0).
    zero = np.int64(0)
    if height > new_height:
        # Fewer output rows than input rows: combine the input rows of each output row
        # first (vector loops along x, over a window widened for them), so that the
        # horizontal taps, scalar gathers, run on the output rows only. In blocks of as
        # many rows as lines holds.
        first, length = vector_window(x0, width, row_length)
        h_taps = resize_taps(width, new_width, x0 - first, h_start, h_weight)
        v_taps = resize_taps(height, new_height, y0, v_start, v_weight)
        block = min(new_height, lines.shape[0] // length)
        for i in range(0, new_height, block):
            count = min(block, new_height - i)
            combine_pass(source, row_length, first, length, v_taps, v_start, v_weight, new_height, i, i + count, lines, sums)
            gather_pass(lines, length, zero, count, h_taps, h_start, h_weight, new_width, values[i * new_width :])
    else:
        # At least as many output rows: the horizontal gathers run on the input rows,
        # then each output row blends two of them (vector loops).
        h_taps = resize_taps(width, new_width, x0, h_start, h_weight)
        v_taps = resize_taps(height, new_height, zero, v_start, v_weight)
        gather_pass(source, row_length, y0 * row_length, height, h_taps, h_start, h_weight, new_width, lines)
        combine_pass(lines, new_width, zero, new_width, v_taps, v_start, v_weight, new_height, zero, new_height, values, sums)
    store_pass(values, new_height, new_width, canvas, top, left, flip)


@njit(inline="always")  # see INLINE_NOTE
def fill(canvas, value):
    """Set every pixel of a C-contiguous canvas to value."""
    flat = canvas.reshape(canvas.size)
    for k in range(flat.shape[0]):
        flat[k] = value


@njit(inline="always")  # see INLINE_NOTE
def place_image(image, canvas, margin, crop, invert, lines, values, sums, starts, weights):
    """Crop image to its ink (whole image if none), paste it scaled to fit S - 2*margin, aspect kept, centred on a 255 canvas (S, S).

    Inverts if asked.
    """
    if crop:
        y0, y1, x0, x1 = ink_box(image)
    else:
        y0, y1, x0, x1 = 0, image.shape[0], 0, image.shape[1]
    flip = 255 if invert else 0  # v ^ 255 == 255 - v for a byte
    inner = canvas.shape[0] - 2 * margin
    new_height, new_width = fit_size(y1 - y0, x1 - x0, inner)
    top = margin + (inner - new_height) // 2
    left = margin + (inner - new_width) // 2
    fill(canvas, 255 ^ flip)
    resample_into(image, y0, y1, x0, x1, canvas, top, left, new_height, new_width, flip,
                  lines, values, sums, starts, weights)


def preprocess_chunk(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                     contrast, binarize, threshold, denoise):
    """Preprocess samples first..end-1 into out, on the calling thread.

    Picks one of two kernels: without contrast, binarisation or denoising, the kernel that
    has no edit steps, so that a command that does not edit never compiles them (about a
    fifth of the compile time of preprocessing). Same pixels either way.
    """
    if contrast or binarize != BINARIZE_NONE or denoise:
        preprocess_chunk_edited(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                                contrast, binarize, threshold, denoise)
    else:
        preprocess_chunk_plain(first, end, pixels, offsets, heights, widths, out, margin, crop, invert)


@njit(inline="always")  # see INLINE_NOTE
def chunk_sizes(first, end, heights, widths):
    """(largest side, largest pixel count) of samples first..end-1, each at least 1."""
    max_pixels = np.int64(1)
    max_side = np.int64(1)
    for i in range(first, end):
        max_side = max(max_side, np.int64(heights[i]), np.int64(widths[i]))
        max_pixels = max(max_pixels, np.int64(heights[i]) * np.int64(widths[i]))
    return max_side, max_pixels


@njit(inline="always")  # see INLINE_NOTE
def resample_scratch(inner, max_side):
    """Scratch buffers of resample_into for canvases of inner x inner and images of sides up to max_side."""
    # lines: the bilinear path's rows (at most inner * inner values) and the area path's
    # row blocks (at most ROW_BLOCK values unless one row is longer)
    lines = np.empty(max(inner * inner, max_side, min(inner * max_side, ROW_BLOCK)), np.float32)
    values = np.empty(inner * inner, np.float32)
    sums = np.empty(max_side, np.float64)
    starts = np.empty((2, inner), np.uint64)
    weights = np.empty((2, max_side + 2 * inner), np.float32)
    return lines, values, sums, starts, weights


@njit
def preprocess_chunk_plain(first, end, pixels, offsets, heights, widths, out, margin, crop, invert):
    """preprocess_chunk without edit steps (no contrast, binarisation or denoising)."""
    max_side, _ = chunk_sizes(first, end, heights, widths)
    lines, values, sums, starts, weights = resample_scratch(out.shape[1] - 2 * margin, max_side)
    for i in range(first, end):
        height = np.int64(heights[i])
        width = np.int64(widths[i])
        start = np.int64(offsets[i])
        # Read-only typing, as in preprocess_chunk_edited: one compile of place_image serves both.
        source = as_readonly(pixels[start : start + height * width].reshape((height, width)))
        place_image(source, out[i], margin, crop, invert, lines, values, sums, starts, weights)


@njit
def preprocess_chunk_edited(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                            contrast, binarize, threshold, denoise):
    """preprocess_chunk with edit steps: each sample is edited into scratch, then placed."""
    max_side, max_pixels = chunk_sizes(first, end, heights, widths)
    lines, values, sums, starts, weights = resample_scratch(out.shape[1] - 2 * margin, max_side)
    hist = np.empty(256, np.int64)
    hist_mapped = np.empty(256, np.int64)
    table = np.empty(256, np.uint8)
    work = np.empty(max_pixels, np.uint8)
    for i in range(first, end):
        height = np.int64(heights[i])
        width = np.int64(widths[i])
        start = np.int64(offsets[i])
        source = as_readonly(pixels[start : start + height * width].reshape((height, width)))
        image = work[: height * width].reshape((height, width))
        edit_image(source, image, contrast, binarize, threshold, denoise, hist, hist_mapped, table)
        # Read-only typing for the edited copy as for the source of the plain kernel:
        # place_image and all it calls compile once for both kernels.
        place_image(as_readonly(image), out[i], margin, crop, invert, lines, values, sums, starts, weights)


def preprocess_batch_kernel(pixels, offsets, heights, widths, out, margin, crop, invert,
                            contrast, binarize, threshold, denoise):
    """Preprocess N concatenated bitmaps into out (N, S, S) uint8, in parallel over runs of CHUNK samples.

    Python over the nogil kernel preprocess_chunk (gntkit.jit.parallel_ranges), not a
    parallel=True kernel: numba's parallel lowering of this loop cost more compile time
    than all of preprocess_chunk. Same outputs: each sample is computed alone.
    """
    def body(first, end):
        preprocess_chunk(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                         contrast, binarize, threshold, denoise)

    parallel_ranges(heights.shape[0], CHUNK, body)
