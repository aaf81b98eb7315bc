"""Text-line images (DGRL) at one height and variable width, for CTC models."""

from __future__ import annotations

import numpy as np
from PIL import Image

from gntkit.errors import GntkitError
from gntkit.formats.dgrl import DEFAULT_LINE_HEIGHT, DEFAULT_MAX_LINE_WIDTH
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import check_settings


def preprocess_line_records(record_file, records, settings: Preprocess) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chosen lines of a record file at the settings' line height (see preprocess_lines), read
    where the file locates them (`record_file.locate`: views of the page's bytes at 8 bits per pixel).

    Returns:
        (pixels uint8 flat, pixel_offsets int64 (N+1,), heights int32, widths int32).
    """
    located = record_file.locate(records)
    return preprocess_lines([located.bitmap(i) for i in range(len(located))], settings)


def line_size(height: int, width: int, settings: Preprocess) -> tuple[int, int]:
    """(height, width) of a text line of this size after preprocess_lines: the settings' line
    height, the width scaled by the same factor (rounded half up, at least 1) and capped at
    max_line_width (the formats' defaults, gntkit.formats.dgrl, when None)."""
    target = settings.line_height or DEFAULT_LINE_HEIGHT
    cap = settings.max_line_width or max(DEFAULT_MAX_LINE_WIDTH, target)
    return target, int(min(cap, max(1, (2 * width * target + height) // (2 * height))))


def preprocess_lines(bitmaps, settings: Preprocess) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Text-line bitmaps (255 background) at one height and variable width, for CTC models.

    Each line is scaled to `settings.line_height` and its width by the same factor (line_size);
    a line that would be wider than `max_line_width` is squeezed horizontally to it, so every
    character stays in the image (cutting it would leave labels without ink). Resampling is
    PIL's box filter (area averaging) where an axis shrinks and bilinear where it grows, the
    rule of step 6 for characters; then ink is made bright when `invert` is on. Crop, margin
    and size do not apply to lines.

    Args:
        bitmaps: 2-D uint8 arrays.
        settings: a Preprocess (not raw) without contrast, binarize, denoise or pad.

    Returns:
        (pixels uint8 flat, pixel_offsets int64 (N+1,), heights int32 (N,), widths int32 (N,)).

    Raises:
        GntkitError: raw settings, a step that text lines do not have, or a bitmap that is not
            a non-empty 2-D uint8 array.
    """
    check_settings(settings)
    if settings.edits or settings.pad:
        raise GntkitError("Text lines are only scaled to the line height (and inverted): contrast, binarize, denoise and pad must be off.")
    images = []
    for i, bitmap in enumerate(bitmaps):
        if not isinstance(bitmap, np.ndarray) or bitmap.dtype != np.uint8 or bitmap.ndim != 2 or 0 in bitmap.shape:
            found = f"{getattr(bitmap, 'dtype', type(bitmap).__name__)} {getattr(bitmap, 'shape', '')}"
            raise GntkitError(f"Line {i} must be a non-empty 2-D uint8 array, found {found}.")
        height, width = line_size(bitmap.shape[0], bitmap.shape[1], settings)
        image = Image.fromarray(np.ascontiguousarray(bitmap))
        if image.size != (width, height):
            # Separable per axis, as step 6: area averaging where the axis shrinks, bilinear where it grows.
            x_rule = Image.BOX if width < bitmap.shape[1] else Image.BILINEAR
            y_rule = Image.BOX if height < bitmap.shape[0] else Image.BILINEAR
            image = image.resize((width, bitmap.shape[0]), x_rule).resize((width, height), y_rule)
        line = np.asarray(image, np.uint8)
        images.append((255 - line) if settings.invert else line)
    heights = np.array([im.shape[0] for im in images], np.int32)
    widths = np.array([im.shape[1] for im in images], np.int32)
    offsets = np.zeros(len(images) + 1, np.int64)
    np.cumsum(heights.astype(np.int64) * widths, out=offsets[1:])
    pixels = np.concatenate([im.reshape(-1) for im in images]) if images else np.zeros(0, np.uint8)
    return pixels, offsets, heights, widths
