"""Plain-Python reference for the training warp's bilinear sampling (torch grid_sample semantics)."""

import numpy as np


def naive_bilinear(images, grid):
    """Reference sampler: images (B, S, S) at normalised grid points (B, S, S, 2), zero outside.

    Pixel i's centre sits at (2i+1)/S - 1, as in torch's grid_sample(align_corners=False,
    padding_mode="zeros"); each of the four neighbours outside the image counts as zero.
    """
    b, s, _ = images.shape
    out = np.zeros((b, s, s))
    for n in range(b):
        for r in range(s):
            for c in range(s):
                x = ((grid[n, r, c, 0] + 1) * s - 1) / 2
                y = ((grid[n, r, c, 1] + 1) * s - 1) / 2
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                for yy, xx, w in ((y0, x0, (1 - (x - x0)) * (1 - (y - y0))), (y0, x0 + 1, (x - x0) * (1 - (y - y0))),
                                  (y0 + 1, x0, (1 - (x - x0)) * (y - y0)), (y0 + 1, x0 + 1, (x - x0) * (y - y0))):
                    if 0 <= yy < s and 0 <= xx < s:
                        out[n, r, c] += w * images[n, yy, xx]
    return out
