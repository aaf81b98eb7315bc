"""Numba kernels for the grey-level edit steps of preprocessing: contrast stretch, binarisation
(fixed or Otsu), speck removal, and the ITU-R 601 grey of colour images.

Conventions as in gntkit.kernels.preprocess: 2-D uint8 images, background 255, ink darker;
arrays and scalars in, no checking (the wrapper in gntkit.samples.transform checks first).
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

# binarize codes of preprocess_batch_kernel
BINARIZE_NONE = 0
BINARIZE_FIXED = 1
BINARIZE_OTSU = 2


@njit
def grey_from_rgb(rgb, grey):
    """ITU-R 601 luma of (H, W, 3|4) uint8 RGB(A), alpha composited over white, rounded, into (H, W) uint8."""
    # Serial: one image of a handwriting sample is microseconds of work, less than a
    # parallel launch, and parallel=True cost seconds of compile.
    height, width, channels = rgb.shape
    for y in range(height):
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
def copy_image(source, target):
    """target = source for 2-D uint8 images of one shape."""
    # A loop, not target[:, :] = source: numba's slice assignment brings the formatting of
    # its shape-mismatch message (unicode joins, int repr), seconds of compile for a copy.
    height, width = source.shape
    for y in range(height):
        for x in range(width):
            target[y, x] = source[y, x]


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
        copy_image(source, target)
    if denoise:
        remove_specks(target)
