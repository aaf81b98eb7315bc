"""Preprocessing run on bitmaps: the checked wrapper around the numba kernels (gntkit.kernels.preprocess),
tf.image.resize_with_pad's rule in numpy, and the images of records where their file located them.

The steps are those of gntkit.samples.preprocess; every array is checked before a kernel reads it.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError
from gntkit.formats.base import Bitmaps
from gntkit.kernels import edits
from gntkit.kernels import preprocess as _kernels
from gntkit.samples.preprocess import MAX_IMAGE_PIXELS, Preprocess, keeps_images

# hook(edits) called just before each run of the preprocessing kernel; see set_before_kernels.
_before_kernels = None


def set_before_kernels(hook) -> None:
    """Install hook(edits: bool), called just before each run of the preprocessing kernel (edits:
    the kernel with contrast, binarisation or denoising steps); None removes it.

    The library installs none. The command line's compile-ahead machinery (gntkit.tools.compile_ahead)
    installs one that waits for its helper process compiling that kernel into numba's cache.
    """
    global _before_kernels
    _before_kernels = hook


def preprocess_chosen(record_file, records, settings: Preprocess, *, serial: bool = False) -> np.ndarray:
    """Fixed-size images of a record file's chosen records, read where the file locates their bitmaps
    (`record_file.locate`: in the file's own bytes for GNT, no gathered copy).

    Args:
        record_file: from a format's open_file.
        records: int indices of valid records.
        settings: a Preprocess (not raw); its pen_width goes to stroke formats (POT).
        serial: run on the calling thread only (for pool threads).

    Returns:
        uint8 (N, S, S).
    """
    return preprocess_located(record_file.locate(records, serial=serial, pen_width=settings.pen_width), settings, serial=serial)


def preprocess_located(bitmaps: Bitmaps, settings: Preprocess, *, serial: bool = False) -> np.ndarray:
    """Fixed-size images of located bitmaps (gntkit.formats.base.Bitmaps).

    Bitmaps stored ink bright (MNIST; packed back to back) whose settings keep them as they are
    (keeps_images) come back as stored (inverted when invert is off), without resampling; the
    others go through the kernels in gntkit's convention (255 = background).

    Returns:
        uint8 (N, S, S).
    """
    heights, widths = bitmaps.heights, bitmaps.widths
    if not bitmaps.ink_bright:
        return preprocess_records(bitmaps.buffer, bitmaps.starts, heights, widths, settings, serial=serial)
    count = len(bitmaps)
    uniform = count > 0 and bool((heights == heights[0]).all() and (widths == widths[0]).all())
    if uniform and keeps_images(settings, int(heights[0]), int(widths[0])):
        height, width = int(heights[0]), int(widths[0])
        images = bitmaps.buffer[:count * height * width].reshape(count, height, width)
        return images if settings.invert else np.subtract(255, images, dtype=np.uint8)
    pixels = np.subtract(255, bitmaps.buffer, dtype=np.uint8)
    return preprocess_records(pixels, bitmaps.starts, heights, widths, settings, serial=serial)


def _check_vector(name: str, array, dtype, length: int | None = None) -> None:
    if not isinstance(array, np.ndarray):
        raise GntkitError(f"{name} must be a numpy array, found {type(array).__name__}.")
    if array.dtype != dtype or array.ndim != 1:
        raise GntkitError(f"{name} must be a 1-D {np.dtype(dtype).name} array, found {array.ndim}-D {array.dtype}.")
    if not array.flags.c_contiguous:
        raise GntkitError(f"{name} must be C-contiguous (use np.ascontiguousarray).")
    if length is not None and len(array) != length:
        raise GntkitError(f"{name} must have {length} entries, found {len(array)}.")


def _check_batch(pixels, pixel_offsets, heights, widths) -> int:
    """Validate a raw batch so that the kernels can never read out of bounds; return N."""
    _check_vector("heights", heights, np.int32)
    count = len(heights)
    _check_vector("widths", widths, np.int32, count)
    _check_vector("pixel_offsets", pixel_offsets, np.int64, count + 1)
    _check_vector("pixels", pixels, np.uint8)
    if count == 0:
        return 0
    areas = _check_sizes(heights, widths)
    if pixel_offsets[0] < 0:
        raise GntkitError(f"pixel_offsets[0] must be at least 0, found {pixel_offsets[0]}.")
    spans = np.diff(pixel_offsets)
    bad = np.flatnonzero(spans != areas)
    if bad.size:
        i = int(bad[0])
        raise GntkitError(
            f"Sample {i} spans pixel_offsets {pixel_offsets[i]}..{pixel_offsets[i + 1]} ({spans[i]} bytes), "
            f"expected height*width = {heights[i]}*{widths[i]} = {areas[i]}."
        )
    if pixel_offsets[-1] > len(pixels):
        raise GntkitError(f"pixel_offsets ends at {pixel_offsets[-1]}, past the {len(pixels)} bytes of pixels.")
    return count


def _check_sizes(heights, widths) -> np.ndarray:
    """Pixels per sample (int64) after checking every side is 1 or more and no image is too large."""
    bad = np.flatnonzero((heights < 1) | (widths < 1))
    if bad.size:
        i = int(bad[0])
        raise GntkitError(f"Sample {i} has size {heights[i]}x{widths[i]} (height x width); both must be at least 1.")
    areas = heights.astype(np.int64) * widths.astype(np.int64)
    bad = np.flatnonzero(areas > MAX_IMAGE_PIXELS)
    if bad.size:
        i = int(bad[0])
        raise GntkitError(f"Sample {i} has {areas[i]} pixels, more than the {MAX_IMAGE_PIXELS} a single image may have.")
    return areas


def preprocess_batch(pixels, pixel_offsets, heights, widths, settings: Preprocess, *, out=None, serial: bool = False) -> np.ndarray:
    """Preprocess a batch of raw bitmaps into fixed-size images, in parallel.

    Args:
        pixels: uint8 1-D C-contiguous array, the row-major bitmaps back to back
            (background 255, ink darker), as in `SampleBatch.pixels`.
        pixel_offsets: int64 (N+1,): bitmap i is pixels[pixel_offsets[i]:pixel_offsets[i+1]].
        heights: int32 (N,), each >= 1.
        widths: int32 (N,), each >= 1, with pixel_offsets[i+1] - pixel_offsets[i] == heights[i]*widths[i].
        settings: a Preprocess with raw=False.
        out: optional preallocated C-contiguous writeable uint8 (N, S, S) array to fill
            (must not overlap pixels).
        serial: run on the calling thread only, not numba's threads (for callers that are
            threads of a pool themselves).

    Returns:
        uint8 (N, S, S) array (`out` when given), steps applied as in the module docstring.

    Raises:
        GntkitError: for raw settings or any inconsistent array (dtype, layout, lengths,
            offsets, sizes); nothing is read or written before the checks pass.
    """
    check_settings(settings)
    count = _check_batch(pixels, pixel_offsets, heights, widths)
    return _run(pixels, pixel_offsets, heights, widths, settings, _checked_out(out, count, settings.size, pixels), serial)


def preprocess_records(buffer, starts, heights, widths, settings: Preprocess, *, out=None, serial: bool = False) -> np.ndarray:
    """Preprocess bitmaps that lie anywhere in one buffer (e.g. a mapped GNT file), without gathering them first.

    Args:
        buffer: uint8 1-D C-contiguous array holding the bitmaps.
        starts: int64 (N,): bitmap i is buffer[starts[i]:starts[i] + heights[i] * widths[i]].
        heights, widths, settings, out, serial: as for preprocess_batch.

    Returns:
        uint8 (N, S, S) array, equal to preprocess_batch of the same bitmaps gathered.

    Raises:
        GntkitError: for raw settings or any inconsistent array, or a bitmap outside the buffer;
            nothing is read or written before the checks pass.
    """
    check_settings(settings)
    _check_vector("heights", heights, np.int32)
    count = len(heights)
    _check_vector("widths", widths, np.int32, count)
    _check_vector("starts", starts, np.int64, count)
    _check_vector("buffer", buffer, np.uint8)
    areas = _check_sizes(heights, widths)
    if count and starts.min() < 0:
        i = int(np.argmin(starts))
        raise GntkitError(f"Sample {i} starts at {starts[i]}; starts must be at least 0.")
    ends = starts + areas
    if count and ends.max() > len(buffer):
        i = int(np.argmax(ends))
        raise GntkitError(f"Sample {i} spans {starts[i]}..{ends[i]}, past the {len(buffer)} bytes of the buffer.")
    offsets = np.empty(count + 1, np.int64)  # the kernel reads offsets[i] as sample i's start only
    offsets[:count] = starts
    offsets[count] = ends[-1] if count else 0
    return _run(buffer, offsets, heights, widths, settings, _checked_out(out, count, settings.size, buffer), serial)


def check_settings(settings) -> None:
    """Raise GntkitError unless settings is a Preprocess that is not raw."""
    if not isinstance(settings, Preprocess):
        raise GntkitError(f"settings must be a gntkit.samples.preprocess.Preprocess, found {type(settings).__name__}.")
    if settings.raw:
        raise GntkitError("Preprocess settings with raw=True keep the original bitmaps, so there is nothing to preprocess.")


def _checked_out(out, count: int, size: int, pixels) -> np.ndarray:
    if out is None:
        return np.empty((count, size, size), np.uint8)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (count, size, size):
        found = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise GntkitError(f"out must be a uint8 array of shape {(count, size, size)}, found {found}.")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise GntkitError("out must be C-contiguous and writeable.")
    if np.may_share_memory(out, pixels):
        raise GntkitError("out must not overlap pixels.")
    return out


def _run(pixels, offsets, heights, widths, settings: Preprocess, out: np.ndarray, serial: bool) -> np.ndarray:
    """Call the kernel on checked arrays: sample i starts at pixels[offsets[i]]."""
    count = len(heights)
    if count == 0:
        return out
    if settings.pad:
        return _run_pad(pixels, offsets, heights, widths, settings, out)
    if settings.binarize is None:
        binarize, threshold = edits.BINARIZE_NONE, 0
    elif settings.binarize == "otsu":
        binarize, threshold = edits.BINARIZE_OTSU, 0
    else:
        binarize, threshold = edits.BINARIZE_FIXED, settings.binarize
    arguments = (pixels, offsets, heights, widths, out, settings.margin, settings.crop, settings.invert,
                 settings.contrast, binarize, threshold, settings.denoise)
    if _before_kernels is not None:  # the edge may wait here for a helper compiling the kernel (set_before_kernels)
        _before_kernels(settings.edits)
    if serial:
        _kernels.preprocess_chunk(0, count, *arguments)
    else:
        _kernels.preprocess_batch_kernel(*arguments)
    return out


def _pad_axis(in_size: int, out_size: int):
    """tf.image.resize's bilinear taps with half-pixel centres: (lower, upper, float32 lerp) per output."""
    scale = np.float32(in_size) / np.float32(out_size)
    centre = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(centre)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centre), in_size - 1).astype(np.int64)
    return lower, upper, (centre - floor).astype(np.float32)


def _resize_with_pad(ink: np.ndarray, target: int) -> tuple[np.ndarray, int, int]:
    """tf.image.resize_with_pad's resize of ink-bright images (N, h, w) to fit a target square.

    Returns:
        (resized float32 (N, rh, rw), top, left) as TF computes them (float32 sizes, floors).
    """
    height, width = ink.shape[1:]
    f_height, f_width, f_target = np.float32(height), np.float32(width), np.float32(target)
    ratio = max(f_width / f_target, f_height / f_target)
    resized_h, resized_w = f_height / ratio, f_width / ratio
    out_h, out_w = max(int(np.floor(resized_h)), 1), max(int(np.floor(resized_w)), 1)
    top = max(int(np.floor((f_target - resized_h) / np.float32(2))), 0)
    left = max(int(np.floor((f_target - resized_w) / np.float32(2))), 0)
    y0, y1, ly = _pad_axis(height, out_h)
    x0, x1, lx = _pad_axis(width, out_w)
    rows_top, rows_bottom = ink[:, y0, :], ink[:, y1, :]
    top_row = rows_top[:, :, x0] + (rows_top[:, :, x1] - rows_top[:, :, x0]) * lx
    bottom_row = rows_bottom[:, :, x0] + (rows_bottom[:, :, x1] - rows_bottom[:, :, x0]) * lx
    return top_row + (bottom_row - top_row) * ly[:, None], top, left


def _crop_box(bitmap: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of the pixels below 255; the whole bitmap when there are none."""
    rows = np.flatnonzero((bitmap < 255).any(axis=1))
    if rows.size == 0:
        return 0, bitmap.shape[0], 0, bitmap.shape[1]
    cols = np.flatnonzero((bitmap < 255).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _run_pad(pixels, offsets, heights, widths, settings: Preprocess, out: np.ndarray) -> np.ndarray:
    """Step 6 as tf.image.resize_with_pad (after an optional crop), on checked arrays, in numpy.

    Images of one size go through together (an IDX batch is one size), in chunks of 256 to
    bound the float32 working set (256 x 224 x 224 x 4 bytes = 51 MB).
    """
    target, margin = settings.size - 2 * settings.margin, settings.margin
    bitmaps = []
    for i in range(len(heights)):
        start, h, w = int(offsets[i]), int(heights[i]), int(widths[i])
        bitmap = pixels[start:start + h * w].reshape(h, w)
        if settings.crop:
            y0, y1, x0, x1 = _crop_box(bitmap)
            bitmap = bitmap[y0:y1, x0:x1]
        bitmaps.append(bitmap)
    groups: dict[tuple, list[int]] = {}
    for i, bitmap in enumerate(bitmaps):
        groups.setdefault(bitmap.shape, []).append(i)
    out[:] = 0
    for members in groups.values():
        for start in range(0, len(members), 256):
            chosen = members[start:start + 256]
            ink = np.float32(255) - np.stack([bitmaps[i] for i in chosen]).astype(np.float32)
            resized, top, left = _resize_with_pad(ink, target)
            rounded = np.clip(np.floor(resized + np.float32(0.5)), 0, 255).astype(np.uint8)
            rh, rw = rounded.shape[1:]
            out[chosen, margin + top:margin + top + rh, margin + left:margin + left + rw] = rounded
    if not settings.invert:
        np.subtract(255, out, out=out)
    return out
