"""Numba kernels for batch preprocessing of handwriting bitmaps.

Conventions shared by every kernel here:
- images are 2-D uint8, background 255, ink darker (0-254), until `invert_image`;
- "ink" means any pixel that is not exactly 255;
- kernels take arrays and scalars only and do no checking: the wrapper in
  `gntkit.preprocess` validates shapes, dtypes and offsets before calling them,
  because numba does no bounds checks.

Step order of `preprocess_batch_kernel` (each switchable):
contrast -> binarize -> denoise -> crop -> resize -> invert.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit, prange

# Samples per parallel work item: scratch buffers are allocated once per chunk,
# not once per sample, and a chunk is small enough to balance two to many cores.
CHUNK = 32

# binarize codes of preprocess_batch_kernel
BINARIZE_NONE = 0
BINARIZE_FIXED = 1
BINARIZE_OTSU = 2


@njit(parallel=True)
def grey_from_rgb(rgb, grey):
    """ITU-R 601 luma of (H, W, 3|4) uint8 RGB(A), alpha composited over white, rounded, into (H, W) uint8."""
    height, width, channels = rgb.shape
    for y in prange(height):
        for x in range(width):
            luma = (
                np.int64(299) * np.int64(rgb[y, x, 0])
                + np.int64(587) * np.int64(rgb[y, x, 1])
                + np.int64(114) * np.int64(rgb[y, x, 2])
            )
            if channels == 4:
                alpha = np.int64(rgb[y, x, 3])
                grey[y, x] = (luma * alpha + np.int64(255000) * (255 - alpha) + 127500) // 255000
            else:
                grey[y, x] = (luma + 500) // 1000


@njit
def grey_histogram(image, hist):
    """Count the pixels of each grey level of a 2-D uint8 image into hist (256,) int64."""
    hist[:] = 0
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            hist[image[y, x]] += 1


@njit
def contrast_levels(hist):
    """(lo, hi): darkest level present and paper level (smallest level with >= 90% of pixels at or below it)."""
    total = np.int64(0)
    for level in range(256):
        total += hist[level]
    lo = 0
    while lo < 255 and hist[lo] == 0:
        lo += 1
    need = (9 * total + 9) // 10
    cumulative = np.int64(0)
    hi = 255
    for level in range(256):
        cumulative += hist[level]
        if cumulative >= need:
            hi = level
            break
    return lo, hi


@njit
def identity_table(table):
    """Fill a (256,) uint8 lookup table with the identity."""
    for level in range(256):
        table[level] = level


@njit
def contrast_table(lo, hi, table):
    """Fill table with the linear stretch lo -> 0, hi and brighter -> 255 (rounded half up); identity if hi <= lo."""
    span = np.int64(hi) - np.int64(lo)
    for level in range(256):
        if span <= 0:
            table[level] = level
        elif level <= lo:
            table[level] = 0
        elif level >= hi:
            table[level] = 255
        else:
            table[level] = ((np.int64(level) - lo) * 510 + span) // (2 * span)


@njit
def threshold_table(table, threshold):
    """Compose table with binarisation, in place: entries <= threshold become 0 (ink), the rest 255."""
    for level in range(256):
        table[level] = 0 if table[level] <= threshold else 255


@njit
def remap_histogram(hist, table, out):
    """Histogram of an image after mapping it through table, from its histogram before."""
    out[:] = 0
    for level in range(256):
        out[table[level]] += hist[level]


@njit
def otsu_threshold(hist):
    """Otsu's threshold t (levels <= t are ink) maximising between-class variance; first maximum, 0 if one level only."""
    total = np.int64(0)
    level_sum = np.int64(0)
    for level in range(256):
        total += hist[level]
        level_sum += np.int64(level) * hist[level]
    best_t = 0
    best = -1.0
    count0 = np.int64(0)
    sum0 = np.int64(0)
    for t in range(255):
        count0 += hist[t]
        sum0 += np.int64(t) * hist[t]
        count1 = total - count0
        if count0 == 0 or count1 == 0:
            continue
        # n0*n1*(m0-m1)^2 / n^2 up to the constant n^2: (s0*n - n0*S)^2 / (n0*n1)
        diff = float(sum0 * total - count0 * level_sum)
        variance = diff * diff / (float(count0) * float(count1))
        if variance > best:
            best = variance
            best_t = t
    return best_t


@njit
def apply_table(source, table, target):
    """target = table[source] for 2-D uint8 images of one shape."""
    height, width = source.shape
    for y in range(height):
        for x in range(width):
            target[y, x] = table[source[y, x]]


@njit
def remove_specks(image):
    """In place: ink pixels whose 8 neighbours are all 255 become 255 (outside the image counts as 255)."""
    # One pass in place equals a simultaneous update: clearing a speck only
    # changes neighbours that are already background.
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            if image[y, x] == 255:
                continue
            alone = True
            for yy in range(max(y - 1, 0), min(y + 2, height)):
                for xx in range(max(x - 1, 0), min(x + 2, width)):
                    if (yy != y or xx != x) and image[yy, xx] != 255:
                        alone = False
                        break
                if not alone:
                    break
            if alone:
                image[y, x] = 255


@njit
def ink_box(image):
    """Half-open box (y0, y1, x0, x1) around pixels that are not 255; the whole image when there are none."""
    height, width = image.shape
    y0, y1, x0, x1 = height, 0, width, 0
    for y in range(height):
        first = -1
        last = -1
        for x in range(width):
            if image[y, x] != 255:
                if first < 0:
                    first = x
                last = x
        if first >= 0:
            if y < y0:
                y0 = y
            y1 = y + 1
            if first < x0:
                x0 = first
            if last + 1 > x1:
                x1 = last + 1
    if y1 == 0:
        return 0, height, 0, width
    return y0, y1, x0, x1


@njit
def fit_size(height, width, inner):
    """(h, w) of a height x width image scaled so its longer side is inner, aspect kept, rounded half up, >= 1."""
    longer = np.int64(max(height, width))
    scaled_h = (2 * np.int64(height) * inner + longer) // (2 * longer)
    scaled_w = (2 * np.int64(width) * inner + longer) // (2 * longer)
    return max(scaled_h, 1), max(scaled_w, 1)


@njit
def resample_rows(source, y0, y1, x0, x1, target):
    """Resize each row of source[y0:y1, x0:x1] to target's width (float64): area average if shrinking, else bilinear."""
    width = x1 - x0
    new_width = target.shape[1]
    scale = width / new_width
    for j in range(new_width):
        if width > new_width:
            lo = j * scale
            hi = min((j + 1) * scale, float(width))
            first = int(lo)
            end = min(int(np.ceil(hi)), width)
            for y in range(y0, y1):
                acc = 0.0
                for k in range(first, end):
                    acc += (min(k + 1.0, hi) - max(float(k), lo)) * source[y, x0 + k]
                target[y - y0, j] = acc / scale
        else:
            position = min(max((j + 0.5) * scale - 0.5, 0.0), width - 1.0)
            left = int(position)
            right = min(left + 1, width - 1)
            frac = position - left
            for y in range(y0, y1):
                target[y - y0, j] = source[y, x0 + left] * (1.0 - frac) + source[y, x0 + right] * frac


@njit
def resample_columns(source, target, top, left, new_height, acc):
    """Resize source (h, w) float64 to new_height rows into target[top:, left:left+w] uint8, rounded: area if shrinking, else bilinear."""
    height, width = source.shape
    scale = height / new_height
    for i in range(new_height):
        acc[:width] = 0.0
        if height > new_height:
            lo = i * scale
            hi = min((i + 1) * scale, float(height))
            for k in range(int(lo), min(int(np.ceil(hi)), height)):
                weight = (min(k + 1.0, hi) - max(float(k), lo)) / scale
                for x in range(width):
                    acc[x] += weight * source[k, x]
        else:
            position = min(max((i + 0.5) * scale - 0.5, 0.0), height - 1.0)
            upper = int(position)
            lower = min(upper + 1, height - 1)
            frac = position - upper
            for x in range(width):
                acc[x] = source[upper, x] * (1.0 - frac) + source[lower, x] * frac
        for x in range(width):
            target[top + i, left + x] = min(max(int(acc[x] + 0.5), 0), 255)


@njit
def resize_into(image, y0, y1, x0, x1, canvas, margin, rows_buffer, acc):
    """Fill canvas (S, S) with 255 and paste image[y0:y1, x0:x1] scaled to fit S - 2*margin, aspect kept, centred."""
    size = canvas.shape[0]
    inner = size - 2 * margin
    height = y1 - y0
    new_height, new_width = fit_size(height, x1 - x0, inner)
    canvas[:, :] = 255
    top = margin + (inner - new_height) // 2
    left = margin + (inner - new_width) // 2
    rows = rows_buffer[: height * new_width].reshape((height, new_width))
    resample_rows(image, y0, y1, x0, x1, rows)
    resample_columns(rows, canvas, top, left, new_height, acc)


@njit
def invert_image(image):
    """In place: v -> 255 - v, so ink is bright on a 0 background."""
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            image[y, x] = 255 - image[y, x]


@njit
def edit_image(source, target, contrast, binarize, threshold, denoise, hist, hist_mapped, table):
    """target = source after contrast stretch, binarisation and speck removal (each switchable)."""
    if contrast or binarize != BINARIZE_NONE:
        grey_histogram(source, hist)
        if contrast:
            lo, hi = contrast_levels(hist)
            contrast_table(lo, hi, table)
        else:
            identity_table(table)
        if binarize == BINARIZE_OTSU:
            remap_histogram(hist, table, hist_mapped)
            threshold_table(table, otsu_threshold(hist_mapped))
        elif binarize == BINARIZE_FIXED:
            threshold_table(table, threshold)
        apply_table(source, table, target)
    else:
        target[:, :] = source
    if denoise:
        remove_specks(target)


@njit
def place_image(image, canvas, margin, crop, invert, rows_buffer, acc):
    """Crop image to its ink (whole image if none), resize it into canvas, invert if asked."""
    if crop:
        y0, y1, x0, x1 = ink_box(image)
    else:
        y0, y1, x0, x1 = 0, image.shape[0], 0, image.shape[1]
    resize_into(image, y0, y1, x0, x1, canvas, margin, rows_buffer, acc)
    if invert:
        invert_image(canvas)


@njit
def preprocess_chunk(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                     contrast, binarize, threshold, denoise):
    """Preprocess samples first..end-1 into out, with scratch buffers shared by the chunk."""
    inner = out.shape[1] - 2 * margin
    edit = contrast or binarize != BINARIZE_NONE or denoise
    max_height = np.int64(1)
    max_pixels = np.int64(1)
    for i in range(first, end):
        max_height = max(max_height, np.int64(heights[i]))
        max_pixels = max(max_pixels, np.int64(heights[i]) * np.int64(widths[i]))
    rows_buffer = np.empty(max_height * inner, np.float64)
    acc = np.empty(inner, np.float64)
    hist = np.empty(256, np.int64)
    hist_mapped = np.empty(256, np.int64)
    table = np.empty(256, np.uint8)
    work = np.empty(max_pixels if edit else 1, np.uint8)
    for i in range(first, end):
        height = np.int64(heights[i])
        width = np.int64(widths[i])
        start = np.int64(offsets[i])
        source = pixels[start : start + height * width].reshape((height, width))
        if edit:
            image = work[: height * width].reshape((height, width))
            edit_image(source, image, contrast, binarize, threshold, denoise, hist, hist_mapped, table)
            place_image(image, out[i], margin, crop, invert, rows_buffer, acc)
        else:
            place_image(source, out[i], margin, crop, invert, rows_buffer, acc)


@njit(parallel=True)
def preprocess_batch_kernel(pixels, offsets, heights, widths, out, margin, crop, invert,
                            contrast, binarize, threshold, denoise):
    """Preprocess N concatenated bitmaps into out (N, S, S) uint8, parallel over chunks of samples."""
    count = heights.shape[0]
    chunks = (count + CHUNK - 1) // CHUNK
    for chunk in prange(chunks):
        first = chunk * CHUNK
        end = min(first + CHUNK, count)
        preprocess_chunk(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                         contrast, binarize, threshold, denoise)
