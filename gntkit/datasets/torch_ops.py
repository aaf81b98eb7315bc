"""Image operations on the device for PyTorch batches: `to_float` (uint8 -> float, normalised)
and `random_affine` (light augmentation). Re-exported by gntkit.datasets.torch."""

from __future__ import annotations

import math

from gntkit.errors import GntkitError, require

# torch is this module's one heavy import, with the one-sentence install hint when it is missing.
torch = require("torch", "torch", "The PyTorch image operations (gntkit.datasets.torch_ops)")

__all__ = ["to_float", "random_affine"]


def to_float(images: torch.Tensor, mean: float | None = None, std: float | None = None, channels: int = 1) -> torch.Tensor:
    """uint8 images (B, S, S) or (B, 1, S, S) -> float32 (B, channels, S, S) in [0, 1], then (x - mean) / std if given.

    Runs on the images' device; call it after the batch reached the GPU. channels > 1 repeats
    the grey image in each channel (ImageNet-style RGB models), as a broadcast view: shards
    and the uint8 batches stay one channel.

    Raises:
        GntkitError: not a uint8 tensor of 3 or 4 dimensions, std <= 0, or channels < 1.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise GntkitError(f"channels must be a whole number of at least 1, found {channels!r}.")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() not in (3, 4):
        found = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise GntkitError(f"to_float needs a uint8 tensor (B, S, S) or (B, 1, S, S), found {found}.")
    x = images.unsqueeze(1) if images.dim() == 3 else images
    x = x.float().div_(255.0)
    if mean is not None or std is not None:
        mean = 0.0 if mean is None else float(mean)
        std = 1.0 if std is None else float(std)
        if std <= 0:
            raise GntkitError(f"std must be positive, found {std}.")
        x = x.sub_(mean).div_(std)
    return x.expand(-1, channels, -1, -1) if channels > 1 else x


def random_affine(images: torch.Tensor, *, rotate: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), shear: float = 5.0,
                  translate: float = 0.08, fill: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Light random affine augmentation on the device (affine_grid + bilinear grid_sample), one transform per image.

    Args:
        images: float (B, 1, S, S) (e.g. from `to_float`), on any device.
        rotate: maximum rotation in degrees (uniform in [-rotate, rotate]).
        scale: (min, max) zoom factor.
        shear: maximum horizontal shear in degrees.
        translate: maximum shift as a fraction of the image side.
        fill: value for pixels that come from outside the image (the background: 0 for
            inverted images, as gntkit's default preprocessing makes them).
        generator: a torch.Generator on the images' device for reproducible draws.

    Returns:
        float tensor of the same shape.

    Raises:
        GntkitError: images not float (B, C, H, W), or out-of-range parameters.
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4:
        found = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise GntkitError(f"random_affine needs float images (B, C, H, W) (use to_float first), found {found}.")
    if rotate < 0 or shear < 0 or translate < 0 or not 0 < scale[0] <= scale[1]:
        raise GntkitError("random_affine needs rotate, shear, translate >= 0 and 0 < scale[0] <= scale[1], "
                          f"found {rotate}, {shear}, {translate}, {scale}.")
    b, device = images.shape[0], images.device
    draws = torch.rand((b, 5), generator=generator, device=device, dtype=torch.float32) * 2 - 1  # uniform in [-1, 1]
    angle = draws[:, 0] * math.radians(rotate)
    shear_t = torch.tan(draws[:, 1] * math.radians(shear))
    zoom = scale[0] + (draws[:, 2] + 1) / 2 * (scale[1] - scale[0])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + cos * shear_t, draws[:, 3] * 2 * translate], dim=1),
        torch.stack([sin, cos + sin * shear_t, draws[:, 4] * 2 * translate], dim=1),
    ], dim=1).to(images.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    shifted = images - fill if fill else images
    out = torch.nn.functional.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill if fill else out
