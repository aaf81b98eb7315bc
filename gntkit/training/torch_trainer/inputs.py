"""What a torch model sees: uint8 images as float [0, 1] on the device, and the random warp."""

from __future__ import annotations

import numpy as np

from gntkit.datasets.torch_prefetch import host_to_device
from gntkit.errors import GntkitError, require
from gntkit.training.augment import AUGMENT, affine_matrices, elastic_offsets, sampling_grid, upsample_matrix

torch = require("torch", "torch", "Training with PyTorch")
F = torch.nn.functional

__all__ = ["to_model_input", "augment_batch", "random_warp", "HOST_GRID_DEVICES"]

# Device types whose sampling grid random_warp builds on the host (numpy); elsewhere only the
# drawn parameters travel (a few hundred bytes a sample) and the grid is made on the device.
HOST_GRID_DEVICES = ("cpu",)


def to_model_input(images, device, channels_last: bool = False, channels: int = 1):
    """uint8 images (B, S, S) (numpy or tensor) -> float (B, channels, S, S) in [0, 1] on `device`.

    The uint8 batch travels to the device and is converted there (4x less to copy);
    a model of several channels gets the gray image in each.

    Raises:
        GntkitError: the batch is not uint8 (B, S, S).
    """
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.dtype != torch.uint8 or x.dim() != 3:
        raise GntkitError(f"Image batches must be uint8 (B, S, S), found {x.dtype} {tuple(x.shape)}.")
    x = host_to_device(x, device).unsqueeze(1).float().div_(255.0)
    if channels > 1:
        x = x.expand(-1, channels, -1, -1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _pixel_centres(size: int, dtype, device):
    """(S*S, 3) rows (x, y, 1) of the normalised pixel centres, row-major as affine_grid makes them."""
    centres = (torch.arange(size, dtype=dtype, device=device) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(size * size, 3)


def augment_batch(x, matrices, offsets=None):
    """Warp float images (B, C, S, S) on their device (bilinear, zero fill).

    The sampling grid is what `F.affine_grid(align_corners=False)` gives plus the
    elastic field, made with plain matrix products: torch's affine_grid and an
    einsum for the field took 10 and 65 ms of a 64-image 64x64 batch on the 2-core
    CPU, these products well under 1 ms.

    Args:
        x: the images.
        matrices: (B, 2, 3) normalised output->input affines (gntkit.training.augment.affine_matrices).
        offsets: None or (B, G, G, 2) elastic control displacements (augment.elastic_offsets).

    Returns:
        The warped images, same shape and dtype.
    """
    b, size = x.shape[0], x.shape[-1]
    # Host arrays reach the device from pinned memory without a wait (host_to_device).
    theta = host_to_device(matrices, x.device, x.dtype)
    grid = (_pixel_centres(size, x.dtype, x.device) @ theta.transpose(1, 2)).reshape(b, size, size, 2)
    if offsets is not None:
        offsets = host_to_device(offsets, x.device, x.dtype).permute(0, 3, 1, 2)  # (B, 2, G, G)
        up = host_to_device(upsample_matrix(size, offsets.shape[-1]), x.device, x.dtype)
        grid = grid + (up @ offsets @ up.T).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_warp(x, rng: np.random.Generator, rank: int = 0, world_size: int = 1):
    """Augment float images (B, C, S, S) with warps drawn from `rng` for the whole global batch.

    Every process draws the warps of all B x world_size samples and keeps its
    share (rank::world_size, the samples it holds), so a distributed run warps
    each sample as one process would.
    """
    total = x.shape[0] * world_size
    matrices = affine_matrices(rng, total)[rank::world_size]
    offsets = (elastic_offsets(rng, total, x.shape[-1])[rank::world_size]
               if AUGMENT.elastic_pixels > 0 else None)
    if x.device.type not in HOST_GRID_DEVICES:
        return augment_batch(x, matrices, offsets)
    # On a CPU the grid is made with numpy (augment.sampling_grid): 1 ms where torch's small
    # multi-threaded ops took 20-50 ms for 64 images of 64x64 on the busy 2-core machine.
    grid = host_to_device(sampling_grid(matrices, offsets, x.shape[-1]), x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
