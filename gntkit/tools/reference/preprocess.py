"""Plain-numpy reference of every preprocessing step, for testing the numba kernels.

Written from the step definitions in `gntkit.samples.preprocess` (module docstring), not from
the kernels: clarity over speed, exact fractions where the definition is exact.
Images are 2-D uint8, background 255, ink darker.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def round_half_up(values) -> np.ndarray:
    """Round half up (floor(x + 0.5)) elementwise."""
    return np.floor(np.asarray(values, np.float64) + 0.5)


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of (H, W, 3|4) uint8, alpha composited over white."""
    rgb = rgb.astype(np.float64)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    if rgb.shape[2] == 4:
        alpha = rgb[..., 3] / 255.0
        luma = luma * alpha + 255.0 * (1.0 - alpha)
    return np.clip(round_half_up(luma), 0, 255).astype(np.uint8)


def paper_level(image: np.ndarray) -> int:
    """Smallest grey level with at least 90% of the pixels at or below it."""
    ordered = np.sort(image.ravel())
    k = -(-9 * ordered.size // 10)  # ceil(0.9 n) pixels must be <= the level
    return int(ordered[k - 1])


def contrast(image: np.ndarray) -> np.ndarray:
    """Darkest level -> 0, paper level and brighter -> 255, linear, rounded half up."""
    lo, hi = int(image.min()), paper_level(image)
    if hi <= lo:
        return image.copy()
    stretched = (image.astype(np.float64) - lo) * 255.0 / (hi - lo)
    return np.clip(round_half_up(stretched), 0, 255).astype(np.uint8)


def otsu_variances(image: np.ndarray) -> list:
    """Exact between-class variance (Fraction) for every threshold t in 0..254; None where a class is empty."""
    counts = [int(c) for c in np.bincount(image.ravel(), minlength=256)]
    n, total = sum(counts), sum(v * c for v, c in enumerate(counts))
    n_ink = sum_ink = 0
    result = []
    for t in range(255):
        n_ink += counts[t]
        sum_ink += t * counts[t]
        n_paper = n - n_ink
        if n_ink == 0 or n_paper == 0:
            result.append(None)
            continue
        mean_ink = Fraction(sum_ink, n_ink)
        mean_paper = Fraction(total - sum_ink, n_paper)
        result.append(Fraction(n_ink * n_paper, n * n) * (mean_ink - mean_paper) ** 2)
    return result


def otsu_threshold(image: np.ndarray) -> int:
    """First threshold of maximal between-class variance; 0 when no threshold splits the image."""
    variances = otsu_variances(image)
    present = [v for v in variances if v is not None]
    if not present:
        return 0
    return variances.index(max(present))


def binarize(image: np.ndarray, threshold: int) -> np.ndarray:
    """Levels <= threshold -> 0, the rest -> 255."""
    return np.where(image <= threshold, 0, 255).astype(np.uint8)


def denoise(image: np.ndarray) -> np.ndarray:
    """Ink pixels with no ink among their 8 neighbours (outside = background) -> 255."""
    ink = np.pad(image != 255, 1, constant_values=False)
    h, w = image.shape
    neighbours = np.zeros((h, w), np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbours += ink[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    result = image.copy()
    result[(image != 255) & (neighbours == 0)] = 255
    return result


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Half-open (y0, y1, x0, x1) around pixels != 255, or the whole image."""
    ys, xs = np.nonzero(image != 255)
    if ys.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def fit_size(height: int, width: int, inner: int) -> tuple[int, int]:
    """Longer side -> inner, the other scaled and rounded half up, at least 1."""
    scale = Fraction(inner, max(height, width))
    def scaled(n):
        return max(1, int(np.floor(n * scale + Fraction(1, 2))))
    return scaled(height), scaled(width)


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: output pixel i = sum_k W[i, k] * input pixel k."""
    scale = n_in / n_out
    i = np.arange(n_out)[:, None]
    k = np.arange(n_in)[None, :]
    if n_in > n_out:
        # box filter: overlap of output pixel i's footprint [i*scale, (i+1)*scale) with input pixel k
        lo, hi = i * scale, (i + 1) * scale
        return np.clip(np.minimum(k + 1, hi) - np.maximum(k, lo), 0, None) / scale
    # bilinear, half-pixel centres, edges clamped
    x = np.clip((i + 0.5) * scale - 0.5, 0, n_in - 1)
    left = np.floor(x)
    right = np.minimum(left + 1, n_in - 1)
    frac = x - left
    return (k == left) * (1 - frac) + (k == right) * frac


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Separable resize to height x width with the weights above, rounded half up."""
    result = resize_weights(image.shape[0], height) @ image.astype(np.float64) @ resize_weights(image.shape[1], width).T
    return np.clip(round_half_up(result), 0, 255).astype(np.uint8)


def place(image: np.ndarray, size: int, margin: int) -> np.ndarray:
    """Paste image, scaled to fit size - 2*margin, centred on a 255 canvas."""
    inner = size - 2 * margin
    height, width = fit_size(image.shape[0], image.shape[1], inner)
    canvas = np.full((size, size), 255, np.uint8)
    top = margin + (inner - height) // 2
    left = margin + (inner - width) // 2
    canvas[top : top + height, left : left + width] = resize(image, height, width)
    return canvas


def preprocess(image: np.ndarray, settings) -> np.ndarray:
    """The whole chain for one grey or colour image, reading settings' attributes."""
    if image.ndim == 3:
        image = grey(image)
    if settings.contrast:
        image = contrast(image)
    if settings.binarize is not None:
        threshold = otsu_threshold(image) if settings.binarize == "otsu" else settings.binarize
        image = binarize(image, threshold)
    if settings.denoise:
        image = denoise(image)
    if settings.crop:
        y0, y1, x0, x1 = ink_box(image)
        image = image[y0:y1, x0:x1]
    canvas = place(image, settings.size, settings.margin)
    return 255 - canvas if settings.invert else canvas
