"""User images for prediction: photos and scans of handwriting read from files, made grey, and
prepared as the training images were (one character, a digit the MNIST or EMNIST way, or a text line)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from gntkit.errors import GntkitError
from gntkit.kernels import edits
from gntkit.samples.line_images import preprocess_lines
from gntkit.samples.preprocess import MAX_IMAGE_PIXELS, Preprocess, keeps_images
from gntkit.samples.transform import preprocess_batch

DIGIT_STYLES = ("mnist", "emnist")


def prepare_digit(image, settings: Preprocess | None = None, threshold: str | int = "otsu", style: str = "mnist") -> np.ndarray:
    """A user's drawing of one digit (dark on light, any size) prepared as MNIST (or EMNIST) was built.

    MNIST's recipe (LeCun et al.): the binary digit is fitted into a 20 x 20 box with its aspect
    ratio kept (anti-aliased: grey edges), then placed in a 28 x 28 field so that its centre of
    mass lies at the field's centre. Here: grey, contrast stretch, threshold (Otsu or a fixed
    level: levels <= it are ink), speck removal, crop to the ink, area-resize into 20 x 20,
    invert (ink bright on 0), then the integer shift that brings the centre of mass nearest to
    (14, 14), kept within the field so no ink is cut. Then the run's own settings, as its IDX
    training images got them (nothing at all for the IDX default 28 x 28).

    EMNIST (Cohen et al. 2017) was built otherwise: the character's box centred in a square
    frame with a 2-pixel border, scaled to 28 x 28. style="emnist" does that: the ink fitted
    into 24 x 24, its box centred (not its mass).

    Args:
        image: uint8 (H, W) grey or (H, W, 3|4) RGB(A) array (see `load_image`).
        settings: the run's Preprocess; None for the IDX default (28 x 28 as is).
        threshold: "otsu" or a level 0..255 (the Keras tutorial uses 105: 150 after inversion).
        style: "mnist" or "emnist", the data set whose recipe to follow.

    Returns:
        uint8 (S, S): (28, 28) ink bright on 0 with the default settings.

    Raises:
        GntkitError: a bad array, a bad threshold, or an image without ink.
    """
    if style not in DIGIT_STYLES:
        raise GntkitError(f"style must be one of {', '.join(DIGIT_STYLES)}, found {style!r}.")
    if style == "emnist":
        field = preprocess_image(image, Preprocess(size=28, margin=2, crop=True, invert=True, contrast=True, binarize=threshold,
                                                   denoise=True))
        if not field.any():
            raise GntkitError("The image holds no ink after thresholding: expected a dark character on light paper.")
        return _digit_as_run(field, settings)
    fitted = preprocess_image(image, Preprocess(size=20, margin=0, crop=True, invert=True, contrast=True,
                                                binarize=threshold, denoise=True))
    mass = fitted.astype(np.float64)
    total = mass.sum()
    if total == 0:
        raise GntkitError("The image holds no ink after thresholding: expected a dark digit on light paper.")
    rows, cols = np.nonzero(fitted)
    centre_y = (mass.sum(axis=1) @ np.arange(20)) / total
    centre_x = (mass.sum(axis=0) @ np.arange(20)) / total
    # Pixel i's centre is at i + 0.5; the field's centre is 14.0. Keep the ink inside the field.
    top = int(np.clip(np.floor(13.5 - centre_y + 0.5), -rows.min(), 27 - rows.max()))
    left = int(np.clip(np.floor(13.5 - centre_x + 0.5), -cols.min(), 27 - cols.max()))
    field = np.zeros((28, 28), np.uint8)
    field[rows + top, cols + left] = fitted[rows, cols]
    return _digit_as_run(field, settings)


def _digit_as_run(field: np.ndarray, settings: Preprocess | None) -> np.ndarray:
    """A prepared 28 x 28 field (ink bright) through the run's settings, as its IDX images went."""
    if settings is None or keeps_images(settings, 28, 28):
        return field if settings is None or settings.invert else 255 - field
    return preprocess_image(255 - field, settings)


def to_grey(image) -> np.ndarray:
    """A user image as a 2-D uint8 grey array.

    Args:
        image: uint8 array, (H, W) grey, (H, W, 1), or (H, W, 3|4) RGB(A).

    Returns:
        uint8 (H, W) C-contiguous array: grey input as is (copied if not contiguous),
        colour through ITU-R 601 luma with alpha composited over white.

    Raises:
        GntkitError: for another dtype or shape, an empty image, or more than MAX_IMAGE_PIXELS pixels.
    """
    if not isinstance(image, np.ndarray):
        raise GntkitError(f"image must be a numpy array, found {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise GntkitError(f"image must be uint8 (0-255), found {image.dtype}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise GntkitError(f"image must be (H, W) grey or (H, W, 3|4) RGB(A), found shape {image.shape}.")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise GntkitError(f"image has size {height}x{width}; both sides must be at least 1.")
    if height * width > MAX_IMAGE_PIXELS:
        raise GntkitError(f"image has {height * width} pixels, more than the {MAX_IMAGE_PIXELS} allowed.")
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        return image
    grey = np.empty((height, width), np.uint8)
    edits.grey_from_rgb(image, grey)
    return grey


def preprocess_image(image, settings: Preprocess) -> np.ndarray:
    """Preprocess one user image (photo or scan of handwriting, dark ink on light paper).

    Args:
        image: uint8 (H, W) grey or (H, W, 3|4) RGB(A) array, e.g. from `load_image`.
        settings: the Preprocess the model was trained with; for photos,
            `Preprocess.for_photos(size)` adds contrast, Otsu and speck removal.

    Returns:
        uint8 (S, S) array, the same steps as `preprocess_batch` after grayscale.
        An image without ink gives a blank canvas. Only level 255 counts as
        background for the crop, so a photo's grey paper is cropped away only when
        contrast or binarize is on (as in `Preprocess.for_photos`).

    Raises:
        GntkitError: for a bad array (see `to_grey`) or raw settings.
    """
    grey = to_grey(image)
    height, width = grey.shape
    out = preprocess_batch(
        grey.reshape(-1),
        np.array([0, height * width], np.int64),
        np.array([height], np.int32),
        np.array([width], np.int32),
        settings,
    )
    return out[0]


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4) uint8 from any PIL image mode."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey (PNG, TIFF): keep the top 8 bits
        return (np.clip(np.asarray(image, np.int64), 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        raise ValueError("32-bit floating-point images are not supported")
    if "A" in image.getbands() or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"), np.uint8)
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), np.uint8)
    return np.asarray(image.convert("RGB"), np.uint8)


def load_image(path) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) for `preprocess_image`.

    EXIF orientation is applied, so phone photos come out upright.

    Args:
        path: file path (str or os.PathLike).

    Returns:
        C-contiguous uint8 array: (H, W) for grey files, (H, W, 3) RGB, or
        (H, W, 4) RGBA for files with transparency.

    Raises:
        GntkitError: naming the file, when it is missing or not a readable image,
            or when it has no ink (every pixel the same grey level after grayscale).
    """
    name = os.fspath(path)
    try:
        with Image.open(name) as opened:
            opened.load()
            array = _pil_to_array(ImageOps.exif_transpose(opened))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise GntkitError(f"{name} cannot be read as an image ({reason.rstrip('.')}).") from None
    array = np.ascontiguousarray(array)
    if array.size == 0:
        raise GntkitError(f"{name} is an empty image (size {array.shape[0]}x{array.shape[1]}).")
    try:
        grey = to_grey(array)
    except GntkitError as exc:
        raise GntkitError(f"{name}: {exc}") from None
    if int(grey.min()) == int(grey.max()):
        raise GntkitError(f"{name} has no ink: every pixel has grey level {int(grey.min())}.")
    return array


LINE_MARGIN = 3  # pixels of paper kept around the ink of a line photo (the DGRL lines' own margin is 3-5)


def prepare_line(image, settings: Preprocess, photo: bool = True) -> np.ndarray:
    """A photo or scan of one written line (dark ink on light paper, any size) as the conversion's lines.

    With `photo`, the grey levels are stretched (darkest ink to 0, the paper level to 255, as
    `Preprocess.contrast`) and everything lighter than Otsu's threshold becomes paper (255), so
    the line looks like a DGRL line: grey ink on white. The image is then cropped to its ink
    (levels at or below Otsu's threshold) with a margin of LINE_MARGIN pixels, and scaled as
    gntkit.samples.line_images.preprocess_lines scales the conversion's lines (height, width
    cap, invert).

    Args:
        image: uint8 (H, W) grey or (H, W, 3|4) RGB(A), e.g. from `load_image`.
        settings: the run's Preprocess (its line_height and max_line_width).
        photo: stretch the contrast and clean the paper first.

    Returns:
        uint8 (line_height, W') line image, ink bright when the settings invert.

    Raises:
        GntkitError: a bad array (see `to_grey`), settings that are not a line conversion's, or no ink.
    """
    grey = to_grey(image)
    hist = np.bincount(grey.reshape(-1), minlength=256).astype(np.int64)
    if photo:
        table = np.empty(256, np.uint8)
        edits.contrast_table(*edits.contrast_levels(hist), table)
        grey = table[grey]
        hist = np.bincount(grey.reshape(-1), minlength=256).astype(np.int64)
    threshold = int(edits.otsu_threshold(hist))
    ink = grey <= threshold
    if photo:
        grey = np.where(ink, grey, np.uint8(255))
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0 or len(np.unique(grey)) < 2:
        raise GntkitError("The line image has no ink (a blank or uniform image).")
    top, bottom = max(0, rows[0] - LINE_MARGIN), min(grey.shape[0], rows[-1] + 1 + LINE_MARGIN)
    left, right = max(0, cols[0] - LINE_MARGIN), min(grey.shape[1], cols[-1] + 1 + LINE_MARGIN)
    pixels, _, heights, widths = preprocess_lines([np.ascontiguousarray(grey[top:bottom, left:right])], settings)
    return pixels.reshape(int(heights[0]), int(widths[0]))
