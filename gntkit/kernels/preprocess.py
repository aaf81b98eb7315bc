"""Numba kernels for batch preprocessing of handwriting bitmaps.

Conventions shared by every kernel here:
- images are 2-D uint8, background 255, ink darker (0-254), until the final inversion;
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


@njit
def ink_box(image):
    """Half-open box (y0, y1, x0, x1) around pixels that are not 255; the whole image when there are none."""
    # Scans inwards from the four sides and stops at the first ink, so it reads only
    # the blank margins plus one row or column per side (bitmaps are mostly cropped
    # already). Columns are scanned within the ink rows only.
    height, width = image.shape
    y0 = 0
    while y0 < height and not row_has_ink(image, y0):
        y0 += 1
    if y0 == height:
        return 0, height, 0, width
    y1 = height
    while not row_has_ink(image, y1 - 1):
        y1 -= 1
    x0 = 0
    while not column_has_ink(image, x0, y0, y1):
        x0 += 1
    x1 = width
    while not column_has_ink(image, x1 - 1, y0, y1):
        x1 -= 1
    return y0, y1, x0, x1


@njit
def fit_size(height, width, inner):
    """(h, w) of a height x width image scaled so its longer side is inner, aspect kept, rounded half up, >= 1."""
    longer = np.int64(max(height, width))
    scaled_h = (2 * np.int64(height) * inner + longer) // (2 * longer)
    scaled_w = (2 * np.int64(width) * inner + longer) // (2 * longer)
    return max(scaled_h, 1), max(scaled_w, 1)


@njit
def shrink_boundaries(n_in, n_out, index, frac):
    """Area-shrink boundaries b_j = j * n_in / n_out, j = 0..n_out, as index[j] + frac[j] (the last as n_in - 1 + 1.0)."""
    scale = n_in / n_out
    for j in range(n_out):
        position = j * scale
        index[j] = int(position)
        frac[j] = position - index[j]
    index[n_out] = n_in - 1
    frac[n_out] = 1.0


@njit
def shrink_taps(n_in, n_out, index, weight_a, weight_b):
    """Area-average taps, per input pixel k: weight_a[k] to output index[k], weight_b[k] to index[k] + 1."""
    # Input pixel k covers [k, k+1); output j covers [j*scale, (j+1)*scale), scale > 1,
    # so a pixel straddles at most one output boundary. Weights include the 1/scale.
    scale = n_in / n_out
    for k in range(n_in):
        j = min(int(k / scale), n_out - 1)
        while j + 1 < n_out and (j + 1) * scale <= k:
            j += 1
        while j > 0 and j * scale > k:
            j -= 1
        share = 1.0 if j == n_out - 1 else min(max((j + 1) * scale - k, 0.0), 1.0)
        index[k] = j
        weight_a[k] = share / scale
        weight_b[k] = (1.0 - share) / scale


@njit
def enlarge_taps(n_in, n_out, index, weight_a, weight_b):
    """Bilinear taps (half-pixel centres, clamped), per output j: weight_a[j] on input index[j], weight_b[j] on the next."""
    scale = n_in / n_out
    for j in range(n_out):
        position = min(max((j + 0.5) * scale - 0.5, 0.0), n_in - 1.0)
        left = int(position)
        index[j] = left
        weight_b[j] = position - left
        weight_a[j] = 1.0 - weight_b[j]


@njit
def shrink_rows(source, y0, y1, x0, x1, index, frac, prefix, rows):
    """Area-average each row of source[y0:y1, x0:x1] into rows (h, n_out) float64, with shrink_boundaries tables."""
    # Output j is the integral of the row over [b_j, b_j+1) divided by its length:
    # with prefix sums that is two lookups per output and no branches per pixel.
    width = x1 - x0
    n_out = rows.shape[1]
    inv_scale = n_out / width
    for y in range(y0, y1):
        total = np.int64(0)
        for k in range(width):
            prefix[k] = total
            total += np.int64(source[y, x0 + k])
        previous = prefix[index[0]] + frac[0] * source[y, x0 + index[0]]
        for j in range(n_out):
            last = index[j + 1]
            current = prefix[last] + frac[j + 1] * source[y, x0 + last]
            rows[y - y0, j] = (current - previous) * inv_scale
            previous = current


@njit
def enlarge_rows(source, y0, y1, x0, x1, index, weight_a, weight_b, rows):
    """Bilinear-resample each row of source[y0:y1, x0:x1] into rows (y1 - y0, n_out) float64 with enlarge_taps."""
    last = x1 - x0 - 1
    for y in range(y0, y1):
        for j in range(rows.shape[1]):
            left = index[j]
            right = min(left + 1, last)
            rows[y - y0, j] = weight_a[j] * source[y, x0 + left] + weight_b[j] * source[y, x0 + right]


@njit
def shrink_columns(rows, index, weight_a, weight_b, acc, canvas, top, left, flip):
    """Area-average rows (h, w) float64 down to acc's height, round, XOR flip (255 inverts) into canvas[top:, left:]."""
    new_height, width = acc.shape
    acc[:, :] = 0.0
    for k in range(rows.shape[0]):
        i = index[k]
        for x in range(width):
            acc[i, x] += weight_a[k] * rows[k, x]
        if i + 1 < new_height:
            for x in range(width):
                acc[i + 1, x] += weight_b[k] * rows[k, x]
    for i in range(new_height):
        for x in range(width):
            canvas[top + i, left + x] = min(max(int(acc[i, x] + 0.5), 0), 255) ^ flip


@njit
def enlarge_columns(rows, index, weight_a, weight_b, new_height, canvas, top, left, flip):
    """Bilinear-resample rows (h, w) float64 to new_height rows, round, XOR flip (255 inverts) into canvas[top:, left:]."""
    last = rows.shape[0] - 1
    for i in range(new_height):
        upper = index[i]
        lower = min(upper + 1, last)
        for x in range(rows.shape[1]):
            value = weight_a[i] * rows[upper, x] + weight_b[i] * rows[lower, x]
            canvas[top + i, left + x] = min(max(int(value + 0.5), 0), 255) ^ flip


@njit
def resample_into(image, y0, y1, x0, x1, canvas, top, left, new_height, new_width, flip,
                  rows_buffer, acc_buffer, tap_index, tap_weight, prefix):
    """Resize image[y0:y1, x0:x1] into canvas[top:, left:] (new_height x new_width), XOR flip: area per shrinking axis, else bilinear."""
    height, width = y1 - y0, x1 - x0
    rows = rows_buffer[: height * new_width].reshape((height, new_width))
    if width > new_width:
        shrink_boundaries(width, new_width, tap_index[0], tap_weight[0])
        shrink_rows(image, y0, y1, x0, x1, tap_index[0], tap_weight[0], prefix, rows)
    else:
        enlarge_taps(width, new_width, tap_index[0], tap_weight[0], tap_weight[1])
        enlarge_rows(image, y0, y1, x0, x1, tap_index[0], tap_weight[0], tap_weight[1], rows)
    if height > new_height:
        shrink_taps(height, new_height, tap_index[1], tap_weight[2], tap_weight[3])
        acc = acc_buffer[: new_height * new_width].reshape((new_height, new_width))
        shrink_columns(rows, tap_index[1], tap_weight[2], tap_weight[3], acc, canvas, top, left, flip)
    else:
        enlarge_taps(height, new_height, tap_index[1], tap_weight[2], tap_weight[3])
        enlarge_columns(rows, tap_index[1], tap_weight[2], tap_weight[3], new_height, canvas, top, left, flip)


@njit
def fill_border(canvas, top, left, height, width, value):
    """Set every pixel of canvas outside the box [top, top+height) x [left, left+width) to value."""
    size_y, size_x = canvas.shape
    for y in range(size_y):
        if top <= y < top + height:
            for x in range(left):
                canvas[y, x] = value
            for x in range(left + width, size_x):
                canvas[y, x] = value
        else:
            for x in range(size_x):
                canvas[y, x] = value


@njit
def resize_into(image, y0, y1, x0, x1, canvas, margin, flip, rows_buffer, acc_buffer, tap_index, tap_weight, prefix):
    """Paste image[y0:y1, x0:x1] scaled to fit S - 2*margin, aspect kept, centred on a 255 canvas (S, S), all XOR flip."""
    inner = canvas.shape[0] - 2 * margin
    new_height, new_width = fit_size(y1 - y0, x1 - x0, inner)
    top = margin + (inner - new_height) // 2
    left = margin + (inner - new_width) // 2
    fill_border(canvas, top, left, new_height, new_width, 255 ^ flip)
    resample_into(image, y0, y1, x0, x1, canvas, top, left, new_height, new_width, flip,
                  rows_buffer, acc_buffer, tap_index, tap_weight, prefix)


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
def place_image(image, canvas, margin, crop, invert, rows_buffer, acc_buffer, tap_index, tap_weight, prefix):
    """Crop image to its ink (whole image if none), resize it into canvas, inverted (v -> 255 - v) if asked."""
    if crop:
        y0, y1, x0, x1 = ink_box(image)
    else:
        y0, y1, x0, x1 = 0, image.shape[0], 0, image.shape[1]
    flip = 255 if invert else 0  # v ^ 255 == 255 - v for a byte
    resize_into(image, y0, y1, x0, x1, canvas, margin, flip, rows_buffer, acc_buffer, tap_index, tap_weight, prefix)


@njit
def preprocess_chunk(first, end, pixels, offsets, heights, widths, out, margin, crop, invert,
                     contrast, binarize, threshold, denoise):
    """Preprocess samples first..end-1 into out, with scratch buffers shared by the chunk."""
    inner = out.shape[1] - 2 * margin
    edit = contrast or binarize != BINARIZE_NONE or denoise
    max_height = np.int64(1)
    max_pixels = np.int64(1)
    max_side = np.int64(1)
    for i in range(first, end):
        max_height = max(max_height, np.int64(heights[i]))
        max_side = max(max_side, np.int64(heights[i]), np.int64(widths[i]))
        max_pixels = max(max_pixels, np.int64(heights[i]) * np.int64(widths[i]))
    rows_buffer = np.empty(max_height * inner, np.float64)
    acc_buffer = np.empty(inner * inner, np.float64)
    tap_index = np.empty((2, max(max_side, inner) + 1), np.int64)
    tap_weight = np.empty((4, max(max_side, inner) + 1), np.float64)
    prefix = np.empty(max_side, np.int64)
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
            place_image(image, out[i], margin, crop, invert, rows_buffer, acc_buffer, tap_index, tap_weight, prefix)
        else:
            place_image(source, out[i], margin, crop, invert, rows_buffer, acc_buffer, tap_index, tap_weight, prefix)


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
