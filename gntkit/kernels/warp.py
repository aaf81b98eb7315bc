"""numba kernel of the training warp on the host: affine plus elastic grid, bilinear sample, / 255.

The warp is gntkit.training.augment's: output pixel (r, c) samples the input at

    (x, y) = A @ (cx, cy, 1) + (U @ offsets @ U.T)[r, c]

in normalised coordinates (pixel i's centre at (2i+1)/S - 1), with A a (2, 3) affine,
`offsets` the (G, G, 2) elastic control displacements and U the (S, G) matrix of
augment.upsample_matrix; the sample is bilinear with zero outside the image, as torch's
grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False). The kernel builds
each grid point as it goes (no (B, S, S, 2) grid in memory) with float32 arithmetic in the
order of augment.sampling_grid, so its points equal that grid's to float32 rounding.

The kernel takes arrays and scalars only and checks nothing: gntkit.training.augment.warp_batch
validates every shape and dtype first, because numba does no bounds checks.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit, parallel_ranges

# Images per indivisible run of warp_images: a few hundred microseconds of work, so two to many
# cores share a 64-image batch evenly and a thread start is small beside a run.
WARP_GRAIN = 4

HALF = np.float32(0.5)
ONE = np.float32(1.0)
ZERO = np.float32(0.0)


def warp_images(images, matrices, offsets, up, table, out):
    """Warp uint8 images (B, S, S) into float32 out (B, S, S) in [0, 1], in parallel over runs of images.

    Python threads over the nogil warp_range (gntkit.jit.parallel_ranges), not a
    parallel=True kernel (whose parallel lowering costs seconds of compile). Each image is
    computed alone, so the output does not depend on the split.
    """
    def body(first, end):
        warp_range(images, matrices, offsets, up, table, out, first, end)

    parallel_ranges(images.shape[0], WARP_GRAIN, body)


@njit
def warp_range(images, matrices, offsets, up, table, out, first, end):
    """Warp images first..end-1 on the calling thread (see the module docstring for the formula).

    Args (unchecked): images uint8 (B, S, S); matrices float32 (B, 2, 3); offsets float32
    (B, G, G, 2) and up float32 (S, G), G = 0 for no elastic field; table float32 (256,) of
    level / 255; out float32 (B, S, S). One loop nest over the pixels of an image, longer than
    gntkit's usual function: splitting it would mean separately compiled callees (compile time,
    see INLINE_NOTE in gntkit/kernels/preprocess.py) or a grid in memory.
    """
    size = images.shape[1]
    grid = offsets.shape[1]
    side = np.float32(size)
    rows = np.empty((size, max(grid, 1), 2), np.float32)  # U @ offsets of one image, per row
    centres = np.empty(size, np.float32)
    for i in range(size):
        # in float64 then rounded, as augment.sampling_grid makes its centres
        centres[i] = np.float32((2 * i + 1) / size - 1)
    for b in range(first, end):
        m00, m01, m02 = matrices[b, 0, 0], matrices[b, 0, 1], matrices[b, 0, 2]
        m10, m11, m12 = matrices[b, 1, 0], matrices[b, 1, 1], matrices[b, 1, 2]
        for r in range(size):
            for k in range(grid):
                for ch in range(2):
                    acc = ZERO
                    for j in range(grid):
                        acc += up[r, j] * offsets[b, j, k, ch]
                    rows[r, k, ch] = acc
        for r in range(size):
            cy = centres[r]
            for c in range(size):
                cx = centres[c]
                field_x = ZERO
                field_y = ZERO
                for k in range(grid):
                    field_x += rows[r, k, 0] * up[c, k]
                    field_y += rows[r, k, 1] * up[c, k]
                gx = (cx * m00 + cy * m01 + m02) + field_x
                gy = (cx * m10 + cy * m11 + m12) + field_y
                # grid_sample's unnormalisation for align_corners=False, then the four neighbours
                ix = ((gx + ONE) * side - ONE) * HALF
                iy = ((gy + ONE) * side - ONE) * HALF
                fx = np.floor(ix)
                fy = np.floor(iy)
                wx = ix - fx
                wy = iy - fy
                value = ZERO
                if fx > -2.0 and fx < size and fy > -2.0 and fy < size:
                    x0 = np.int64(fx)
                    y0 = np.int64(fy)
                    in_x0 = x0 >= 0
                    in_x1 = x0 + 1 < size
                    if y0 >= 0:
                        if in_x0:
                            value += table[images[b, y0, x0]] * ((ONE - wx) * (ONE - wy))
                        if in_x1:
                            value += table[images[b, y0, x0 + 1]] * (wx * (ONE - wy))
                    if y0 + 1 < size:
                        if in_x0:
                            value += table[images[b, y0 + 1, x0]] * ((ONE - wx) * wy)
                        if in_x1:
                            value += table[images[b, y0 + 1, x0 + 1]] * (wx * wy)
                out[b, r, c] = value
