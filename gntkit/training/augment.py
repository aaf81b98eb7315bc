"""The augmentation of `augment=True`, defined once for numpy, torch and TensorFlow.

`AUGMENT` holds the ranges. A sample's warp maps each output point to the input
point it samples, in normalised coordinates ([-1, 1] across the image, pixel i's
centre at (2i+1)/S - 1, as torch's `grid_sample(align_corners=False)`):

    input = A @ (x, y, 1) + elastic(x, y)

A is a random small affine (rotation, shear, scale, shift: `affine_matrices`);
`elastic` is a smooth random displacement field: a coarse grid of
`elastic_grid` x `elastic_grid` control displacements, uniform in
+-`elastic_pixels` pixels, interpolated bilinearly to every pixel by the
matrix `upsample_matrix` (the elastic distortion of the HCCR literature, made
smooth by interpolation instead of a Gaussian filter so both frameworks
compute it with one matrix product). Here the numbers are drawn with numpy;
the TF trainer draws the same distributions with stateless TF ops (so that
they live inside the compiled step) on GPUs, and both warp with the same formula.
On CPUs the TF trainer warps on the host instead, with `random_warp_batch`:
the torch trainer's draws, and a numba kernel (gntkit.kernels.warp).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gntkit.errors import GntkitError
from gntkit.kernels import warp as _warp_kernels

__all__ = ["AugmentParams", "AUGMENT", "affine_matrices", "elastic_offsets", "upsample_matrix",
           "affine_from_uniform", "sampling_grid", "warp_batch", "random_warp_batch"]


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random warp (each drawn uniformly in +-value).

    Attributes:
        rotation_degrees: rotation angle.
        shear_degrees: horizontal shear angle.
        scale: relative scale change (0.1 = 0.9 to 1.1).
        translate: shift as a fraction of the image side.
        elastic_pixels: largest elastic displacement of a control point, in pixels (0 = no elastic).
        elastic_grid: control points per side of the elastic field.
    """

    rotation_degrees: float = 10.0
    shear_degrees: float = 8.0
    scale: float = 0.10
    translate: float = 0.08
    elastic_pixels: float = 1.5
    elastic_grid: int = 4


# The one definition used by every framework.
AUGMENT = AugmentParams()


def affine_from_uniform(u, params: AugmentParams = AUGMENT, xp=np):
    """Affine matrices (B, 2, 3) from uniform numbers u (B, 5) in [-1, 1]: angle, shear, scale, shift x, shift y.

    `xp` is the array module (numpy here; the TF trainer passes an adapter), so
    numpy and TensorFlow turn random numbers into matrices with one formula.
    """
    angle = u[:, 0] * (params.rotation_degrees * math.pi / 180)
    shear = u[:, 1] * (params.shear_degrees * math.pi / 180)
    scale = 1.0 + u[:, 2] * params.scale
    shift_x = u[:, 3] * (2 * params.translate)  # normalised units: the side is 2 long
    shift_y = u[:, 4] * (2 * params.translate)
    cos, sin, tan = xp.cos(angle), xp.sin(angle), xp.tan(shear)
    # rotation @ shear(x by y), divided by scale (the matrix maps output -> input)
    row0 = xp.stack([cos / scale, (cos * tan - sin) / scale, shift_x], axis=1)
    row1 = xp.stack([sin / scale, (sin * tan + cos) / scale, shift_y], axis=1)
    return xp.stack([row0, row1], axis=1)


def affine_matrices(rng: np.random.Generator, count: int, params: AugmentParams = AUGMENT) -> np.ndarray:
    """Random small affines for augmentation: float32 (count, 2, 3), output -> input, normalised coordinates."""
    u = rng.uniform(-1.0, 1.0, (count, 5))
    return affine_from_uniform(u, params).astype(np.float32)


def elastic_offsets(rng: np.random.Generator, count: int, size: int, params: AugmentParams = AUGMENT) -> np.ndarray:
    """Coarse elastic control displacements float32 (count, G, G, 2), in normalised units (x, y)."""
    u = rng.uniform(-1.0, 1.0, (count, params.elastic_grid, params.elastic_grid, 2))
    return (u * (2.0 * params.elastic_pixels / size)).astype(np.float32)


def upsample_matrix(size: int, grid: int) -> np.ndarray:
    """Bilinear interpolation float32 (size, grid): pixel centres from `grid` control points spanning the image.

    Control point j sits at normalised position -1 + 2j/(grid-1); rows sum to 1.

    Raises:
        GntkitError: size or grid below 2.
    """
    if size < 2 or grid < 2:
        raise GntkitError(f"Elastic distortion needs an image side and a grid of at least 2, found {size} and {grid}.")
    centres = (2 * np.arange(size) + 1) / size - 1  # normalised pixel centres
    position = (centres + 1) / 2 * (grid - 1)
    low = np.clip(np.floor(position).astype(int), 0, grid - 2)
    frac = position - low
    m = np.zeros((size, grid), np.float64)
    m[np.arange(size), low] = 1 - frac
    m[np.arange(size), low + 1] = frac
    return m.astype(np.float32)


def sampling_grid(matrices: np.ndarray, offsets: np.ndarray | None, size: int) -> np.ndarray:
    """Sampling grid float32 (B, S, S, 2) in normalised (x, y): affine plus elastic field, with numpy.

    The torch trainer uses it on CPUs (a few large numpy products beat a dozen small
    multi-threaded torch ops on a busy 2-core machine); on GPUs it computes the same
    grid on the device. The TF trainer computes it in its compiled step.
    """
    matrices = np.asarray(matrices, np.float32)
    centres = ((2 * np.arange(size) + 1) / size - 1).astype(np.float32)
    gx, gy = np.meshgrid(centres, centres)  # gx[row, col] = x of column
    base = np.stack([gx.ravel(), gy.ravel(), np.ones(size * size, np.float32)], axis=1)  # (S*S, 3)
    grid = (base @ matrices.transpose(0, 2, 1)).reshape(len(matrices), size, size, 2)
    if offsets is not None:
        up = upsample_matrix(size, offsets.shape[1])
        field = up @ np.asarray(offsets, np.float32).transpose(0, 3, 1, 2) @ up.T  # (B, 2, S, S)
        grid += field.transpose(0, 2, 3, 1)
    return grid


# level / 255 in float32, as torch's trainer scales uint8 images before it samples them.
_LEVELS = (np.arange(256, dtype=np.float32) / np.float32(255)).astype(np.float32)


def warp_batch(images: np.ndarray, matrices: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """Warp uint8 images by affines plus elastic offsets on the host; float32 (B, S, S) in [0, 1].

    The numba kernel gntkit.kernels.warp builds each point of `sampling_grid(matrices,
    offsets, S)` as it samples (equal to float32 rounding) and samples bilinearly with zero
    outside, as torch's grid_sample(align_corners=False) of images / 255.

    Args:
        images: uint8 (B, S, S), S >= 2 (any layout; a C-contiguous copy is made if needed).
        matrices: float32 (B, 2, 3) output->input affines (`affine_matrices`), finite.
        offsets: None, or float32 (B, G, G, 2) elastic control displacements (`elastic_offsets`),
            G >= 2, finite.

    Returns:
        float32 (B, S, S).

    Raises:
        GntkitError: a dtype, shape or non-finite value other than described.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3 \
            or images.shape[1] != images.shape[2] or images.shape[1] < 2:
        raise GntkitError(f"warp_batch: expected images as a uint8 numpy array (B, S, S) with S >= 2, found "
                          f"{_describe(images)}.")
    count, size = images.shape[0], images.shape[1]
    if not isinstance(matrices, np.ndarray) or matrices.dtype != np.float32 or matrices.shape != (count, 2, 3):
        raise GntkitError(f"warp_batch: expected matrices as float32 ({count}, 2, 3) for {count} images, found "
                          f"{_describe(matrices)}.")
    if offsets is None:
        offsets, up = np.zeros((count, 0, 0, 2), np.float32), np.zeros((size, 0), np.float32)
    elif (not isinstance(offsets, np.ndarray) or offsets.dtype != np.float32 or offsets.ndim != 4
          or offsets.shape[0] != count or offsets.shape[1] != offsets.shape[2] or offsets.shape[1] < 2
          or offsets.shape[3] != 2):
        raise GntkitError(f"warp_batch: expected elastic offsets as float32 ({count}, G, G, 2) with G >= 2, "
                          f"found {_describe(offsets)}.")
    else:
        up = upsample_matrix(size, offsets.shape[1])
    if not (np.isfinite(matrices).all() and np.isfinite(offsets).all()):
        raise GntkitError("warp_batch: expected finite matrices and elastic offsets, found NaN or infinity.")
    out = np.empty((count, size, size), np.float32)
    _warp_kernels.warp_images(np.ascontiguousarray(images), np.ascontiguousarray(matrices),
                              np.ascontiguousarray(offsets), up, _LEVELS, out)
    return out


def random_warp_batch(images: np.ndarray, rng: np.random.Generator, params: AugmentParams = AUGMENT) -> np.ndarray:
    """Draw one warp per image from `rng` and apply it: float32 (B, S, S) in [0, 1].

    Draws as the torch trainer's random_warp does on one process: `affine_matrices` for the
    batch, then `elastic_offsets` (when params.elastic_pixels > 0), so the same rng gives both
    trainers the same warps.

    Raises:
        GntkitError: images are not uint8 (B, S, S) (see `warp_batch`).
    """
    count = int(np.shape(images)[0]) if np.ndim(images) == 3 else 0
    matrices = affine_matrices(rng, count, params)
    offsets = (elastic_offsets(rng, count, int(np.shape(images)[-1]), params)
               if params.elastic_pixels > 0 else None)
    return warp_batch(images, matrices, offsets)


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__
