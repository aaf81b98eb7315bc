"""Preprocessing settings: what every image goes through (the kernels run in gntkit.samples.transform).

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

from dataclasses import dataclass, fields

import numpy as np

from gntkit.errors import GntkitError
from gntkit.formats.pot import check_pen_width

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
            gntkit.samples.line_images.preprocess_lines). None for the format's default. Left out of `to_json()` when None.

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


def keeps_images(settings: Preprocess, height: int, width: int) -> bool:
    """True when the settings give back (height, width) images unchanged (inverted when invert is on).

    That is: a square side equal to S, margin 0, no crop, contrast, binarisation or denoising:
    step 6 then samples every pixel at its own centre (bilinear at scale 1, and
    resize_with_pad at scale 1 without padding). IDX sources use it to skip the resampling.
    """
    return (isinstance(settings, Preprocess) and not settings.raw and height == width == settings.size and settings.margin == 0
            and not (settings.crop or settings.contrast or settings.denoise) and settings.binarize is None)
