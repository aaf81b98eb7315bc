"""Preprocessing settings and the checked wrapper around the numba kernels.

Every image goes through these steps, in this order; each one can be switched
off (grayscale applies only to colour user images, resize always runs):

1. grayscale  colour (H, W, 3|4) input only: ITU-R 601 luma
              (0.299 R + 0.587 G + 0.114 B, rounded), alpha composited over white.
2. contrast   linear stretch: the darkest grey level present -> 0, the paper
              level -> 255. The paper level is the smallest grey level with at
              least 90% of the pixels at or below it, so a grey (non-255) paper
              and a few bright dust or glare pixels do not spoil the stretch.
              A one-level image is left as it is.
3. binarize   "otsu" (Otsu's threshold on the histogram after step 2) or a fixed
              threshold t in 0..255: levels <= t become 0 (ink), the rest 255,
              as OpenCV's THRESH_BINARY. A one-level image gets t = 0.
4. denoise    an ink pixel (any level below 255) whose 8 neighbours are all 255
              becomes 255; pixels outside the image count as 255.
5. crop       to the bounding box of the pixels that are not 255. An
              all-background bitmap (no ink) is not cropped: it is resized whole,
              which gives a blank canvas (all 255, all 0 after inversion).
6. resize     to fit an (S - 2*margin) square, aspect ratio kept, the longer side
              exactly S - 2*margin, the shorter rounded half up (at least 1 pixel),
              centred (extra pixel of an odd gap to the bottom/right) on an S x S
              canvas of background 255. Per axis: exact area averaging (box-filter
              coverage, as OpenCV INTER_AREA or PIL BOX) when the axis shrinks, the
              anti-aliasing of choice for the usual 60-300 pixel HWDB bitmaps;
              bilinear with half-pixel centres (as OpenCV INTER_LINEAR) when it
              grows or keeps its length. Values are rounded half up.
              Default margin: S // 16 pixels on each side (4 at 64, 6 at 96, 14 at 224).
7. invert     v -> 255 - v: bright ink on a 0 background.

Defaults: crop, resize to 64 x 64 with a 4-pixel margin, invert; no contrast,
binarisation or denoising. `raw=True` keeps the original bitmaps and applies no step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageOps

from gntkit.errors import GntkitError
from gntkit.kernels import preprocess as _kernels
from gntkit.tools.compile_ahead import await_kernels, preprocess_group

PREPROCESS_VERSION = 1
"""Version of the step definitions above; stored in `Preprocess.to_json()`."""

RESIZE_METHOD = "area-shrink-bilinear-enlarge"
"""Name of the resampling rule of step 6, stored in `Preprocess.to_json()`."""

PAD_METHOD = "tf-resize-with-pad-bilinear"
"""Name of step 6 with `pad=True` (tf.image.resize_with_pad's rule)."""

MIN_SIZE = 8
MAX_SIZE = 1024
MAX_IMAGE_PIXELS = 1 << 26
"""Largest single image (pixels) the kernels accept; their int64 sums stay exact below it."""


def default_margin(size: int) -> int:
    """The default margin for an S x S canvas: S // 16 pixels on each side."""
    return size // 16


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Preprocess:
    """How bitmaps become fixed-size training images (see the module docstring for each step).

    Attributes:
        size: side S of the square output, 8..1024.
        margin: blank pixels on each side of the canvas; None means S // 16. Must be
            below S / 2. Resolved to an int at construction.
        raw: keep the original variable-size bitmaps and apply no step. crop and
            invert (on by default) are then set to False; asking for binarize,
            denoise or contrast as well is an error.
        crop: crop to the ink's bounding box before resizing.
        invert: make ink bright on a 0 background.
        binarize: None, "otsu", or a fixed threshold 0..255 (levels <= it become ink).
        denoise: remove isolated one-pixel specks.
        contrast: stretch the grey range (darkest ink -> 0, paper -> 255).
        pen_width: for sources of strokes (POT): the pen width in pixels of the rendered
            bitmap, 0.5..16; None for the format's default (gntkit.formats.pot.DEFAULT_PEN_WIDTH).
            Left out of `to_json()` when None, so settings without strokes read as before.
        pad: replace step 6 by tf.image.resize_with_pad's rule (the Keras VGG16-on-MNIST
            tutorial): bilinear with half-pixel centres and no anti-aliasing, the shorter side
            floored, placed at floor((S - 2*margin - side) / 2), zero padding in the output's
            ink-bright space; computed on ink-bright float32 values as TF does, rounded half
            up. Needs contrast, binarize and denoise off (it is meant for images that are
            already normalised, like MNIST). Left out of `to_json()` when False.
        line_height: for sources of text lines (DGRL): every line image is scaled to this
            height, 8..1024 pixels, and its width by the same factor (variable width); None for
            the format's default (gntkit.formats.dgrl.DEFAULT_LINE_HEIGHT). Left out of
            `to_json()` when None.
        max_line_width: for text lines: the widest line image kept, line_height..65535 pixels;
            a wider line is squeezed horizontally to it (every character stays, see
            preprocess_lines). None for the format's default. Left out of `to_json()` when None.

    Raises:
        GntkitError: on any out-of-range or contradictory setting.
    """

    size: int = 64
    margin: int | None = None
    raw: bool = False
    crop: bool = True
    invert: bool = True
    binarize: str | int | None = None
    denoise: bool = False
    contrast: bool = False
    pen_width: float | None = None
    pad: bool = False
    line_height: int | None = None
    max_line_width: int | None = None

    def __post_init__(self):
        if not _is_int(self.size) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise GntkitError(f"Preprocess size must be an integer from {MIN_SIZE} to {MAX_SIZE}, found {self.size!r}.")
        object.__setattr__(self, "size", int(self.size))
        margin = default_margin(self.size) if self.margin is None else self.margin
        if not _is_int(margin) or margin < 0 or 2 * margin >= self.size:
            raise GntkitError(
                f"Preprocess margin must be an integer from 0 to {(self.size - 1) // 2} "
                f"(below half of size {self.size}), found {self.margin!r}."
            )
        object.__setattr__(self, "margin", int(margin))
        for name in ("raw", "crop", "invert", "denoise", "contrast", "pad"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise GntkitError(f"Preprocess {name} must be True or False, found {value!r}.")
            object.__setattr__(self, name, bool(value))
        binarize = self.binarize
        if binarize is not None and binarize != "otsu":
            if not _is_int(binarize) or not 0 <= binarize <= 255:
                raise GntkitError(
                    f"Preprocess binarize must be None, 'otsu' or a threshold from 0 to 255, found {binarize!r}."
                )
            object.__setattr__(self, "binarize", int(binarize))
        if self.pen_width is not None:
            from gntkit.formats.pot import check_pen_width

            object.__setattr__(self, "pen_width", check_pen_width(self.pen_width))
        self._check_line_settings()
        if self.pad and (self.edits or self.raw):
            raise GntkitError("Preprocess pad (tf.image.resize_with_pad) is for images that are already normalised: "
                              "raw, binarize, denoise and contrast must be off.")
        if self.raw:
            if self.edits:
                raise GntkitError(
                    "Preprocess raw=True keeps the original bitmaps, so binarize, denoise and contrast must be off."
                )
            if self.pen_width is not None:
                # The stream gathers raw bitmaps as the record file indexed them (POT: the default pen).
                raise GntkitError("Preprocess raw=True keeps the bitmaps as indexed (POT strokes at the default pen width 3.0), "
                                  "so pen_width must be None.")
            object.__setattr__(self, "crop", False)
            object.__setattr__(self, "invert", False)

    def _check_line_settings(self) -> None:
        if self.line_height is not None and (not _is_int(self.line_height) or not MIN_SIZE <= self.line_height <= MAX_SIZE):
            raise GntkitError(f"Preprocess line_height must be an integer from {MIN_SIZE} to {MAX_SIZE}, found {self.line_height!r}.")
        low = self.line_height or MIN_SIZE
        if self.max_line_width is not None and (not _is_int(self.max_line_width) or not low <= self.max_line_width <= 65535):
            raise GntkitError(f"Preprocess max_line_width must be an integer from {low} (the line height) to 65535, "
                              f"found {self.max_line_width!r}.")
        for name in ("line_height", "max_line_width"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))

    @classmethod
    def for_photos(cls, size: int = 64, margin: int | None = None) -> Preprocess:
        """Settings for photos or scans of handwriting (dark ink on light, uneven paper).

        Contrast stretch, Otsu binarisation and speck removal, then the usual crop,
        resize and invert: grey paper becomes 0 after inversion and sensor noise
        does not enlarge the crop box. Crop the photo roughly to one character first.

        Args:
            size: output side S.
            margin: canvas margin, None for S // 16.

        Returns:
            A Preprocess.
        """
        return cls(size=size, margin=margin, contrast=True, binarize="otsu", denoise=True)

    @property
    def edits(self) -> bool:
        """Whether an edit step (contrast, binarisation or denoising) runs before the resize."""
        return self.contrast or self.binarize is not None or self.denoise

    @property
    def steps(self) -> list[str]:
        """The steps applied to a grey bitmap, in order, with their parameters (empty when raw)."""
        if self.raw:
            return []
        if self.line_height is not None:  # text lines: one height, variable width (preprocess_lines)
            width = self.max_line_width if self.max_line_width is not None else "default"
            return [f"line-resize:height={self.line_height},max-width={width},{RESIZE_METHOD}"] + (["invert"] if self.invert else [])
        steps = []
        if self.contrast:
            steps.append("contrast")
        if self.binarize is not None:
            steps.append(f"binarize:{self.binarize}")
        if self.denoise:
            steps.append("denoise")
        if self.crop:
            steps.append("crop")
        method = PAD_METHOD if self.pad else RESIZE_METHOD
        steps.append(f"resize:{self.size}x{self.size},margin={self.margin},{method}")
        if self.invert:
            steps.append("invert")
        return steps

    def to_json(self) -> dict:
        """JSON-able description: every setting, plus "version" and the ordered "steps" actually applied."""
        settings = {f.name: getattr(self, f.name) for f in fields(self)}
        if settings["pen_width"] is None:  # only stroke sources have a pen: GNT settings stay as they were
            del settings["pen_width"]
        if not settings["pad"]:  # only the resize_with_pad rule says so: other settings read as before
            del settings["pad"]
        for name in ("line_height", "max_line_width"):  # only text-line sources have them
            if settings[name] is None:
                del settings[name]
        return {"version": PREPROCESS_VERSION, **settings, "steps": self.steps}

    @classmethod
    def from_json(cls, data: dict) -> Preprocess:
        """Rebuild settings from `to_json()` output.

        Args:
            data: a dict as written by `to_json` ("steps" is optional; when present it must agree).

        Returns:
            A Preprocess.

        Raises:
            GntkitError: for another version, unknown keys, bad values or "steps" that disagree.
        """
        if not isinstance(data, dict):
            raise GntkitError(f"Preprocess JSON must be an object, found {type(data).__name__}.")
        if data.get("version") != PREPROCESS_VERSION:
            raise GntkitError(
                f"Preprocess JSON version must be {PREPROCESS_VERSION}, found {data.get('version')!r}."
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"version", "steps"})
        if unknown:
            raise GntkitError(f"Preprocess JSON has unknown keys {unknown}; known keys are {sorted(names)}.")
        settings = cls(**{name: data[name] for name in names if name in data})
        if "steps" in data and list(data["steps"]) != settings.steps:
            raise GntkitError(f"Preprocess JSON steps {data['steps']} disagree with its settings, which give {settings.steps}.")
        return settings


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
    _check_settings(settings)
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
    _check_settings(settings)
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


def _check_settings(settings) -> None:
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
        binarize, threshold = _kernels.BINARIZE_NONE, 0
    elif settings.binarize == "otsu":
        binarize, threshold = _kernels.BINARIZE_OTSU, 0
    else:
        binarize, threshold = _kernels.BINARIZE_FIXED, settings.binarize
    arguments = (pixels, offsets, heights, widths, out, settings.margin, settings.crop, settings.invert,
                 settings.contrast, binarize, threshold, settings.denoise)
    # A helper process may be compiling these kernels into numba's cache (gntkit.tools.compile_ahead).
    await_kernels(preprocess_group(settings.edits))
    if serial:
        _kernels.preprocess_chunk(0, count, *arguments)
    else:
        _kernels.preprocess_batch_kernel(*arguments)
    return out


def keeps_images(settings: Preprocess, height: int, width: int) -> bool:
    """True when the settings give back (height, width) images unchanged (inverted when invert is on).

    That is: a square side equal to S, margin 0, no crop, contrast, binarisation or denoising:
    step 6 then samples every pixel at its own centre (bilinear at scale 1, and
    resize_with_pad at scale 1 without padding). IDX sources use it to skip the resampling.
    """
    return (isinstance(settings, Preprocess) and not settings.raw and height == width == settings.size and settings.margin == 0
            and not (settings.crop or settings.contrast or settings.denoise) and settings.binarize is None)


def line_size(height: int, width: int, settings: Preprocess) -> tuple[int, int]:
    """(height, width) of a text line of this size after preprocess_lines: the settings' line
    height, the width scaled by the same factor (rounded half up, at least 1) and capped at
    max_line_width (the formats' defaults, gntkit.formats.dgrl, when None)."""
    from gntkit.formats.dgrl import DEFAULT_LINE_HEIGHT, DEFAULT_MAX_LINE_WIDTH

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
    _check_settings(settings)
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
    _kernels.grey_from_rgb(image, grey)
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
