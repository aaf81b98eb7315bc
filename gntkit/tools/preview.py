"""`gntkit preview`: a labelled grid of samples (from GNT sources or converted shards), and
optionally the preprocessing stages side by side."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gntkit.errors import GntkitError
from gntkit.formats.sources import find_members
from gntkit.samples.lines import is_line_member
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import iter_batches, plan_charset
from gntkit.shards.manifest import choose_split, load_manifest, manifest_path
from gntkit.shards.plan import preprocess_settings
from gntkit.shards.registry import output_format

CELL = 72
LABEL_HEIGHT = 18
# A font to draw Chinese labels with: this variable's path, else the first installed font found here that has them.
FONT_ENV = "GNTKIT_FONT"
_CJK_FONT_GLOBS = ("*CJK*", "*cjk*", "wqy*", "*Hei*", "*Song*", "*Ming*", "*Droid*Fallback*", "PingFang*", "Hiragino Sans GB*",
                   "msyh*", "simsun*", "simhei*", "*Unifont*", "unifont*")
_FONT_SUFFIXES = (".ttf", ".ttc", ".otf")
# GB2312's first Chinese character: a font that draws it draws Chinese.
_CJK_PROBE = "啊"
# No font has a glyph for this private-use code point: its mask is the font's "missing glyph" box.
_NO_GLYPH = "\U0010FFFD"
FONT_PACKAGES = ("Debian/Ubuntu: sudo apt install fonts-noto-cjk or fonts-wqy-microhei; Fedora: sudo dnf install "
                 "google-noto-sans-cjk-fonts; macOS: PingFang is built in; conda: conda install -c conda-forge font-ttf-noto-cjk")


def _font_folders() -> list[Path]:
    """Where fonts are installed: the system's, the user's, and a conda environment's."""
    folders = ["/usr/share/fonts", "/usr/local/share/fonts", Path.home() / ".fonts", Path.home() / ".local/share/fonts",
               "/System/Library/Fonts", "/Library/Fonts", Path.home() / "Library/Fonts", "C:/Windows/Fonts",
               Path(sys.prefix) / "fonts", Path(sys.prefix) / "Library/fonts"]
    if os.environ.get("CONDA_PREFIX"):
        folders.append(Path(os.environ["CONDA_PREFIX"]) / "fonts")
    return [Path(folder) for folder in folders]


class LabelFont:
    """The font labels are drawn with, and which characters it has.

    Args:
        font: a Pillow font.
        path: its file, or None for Pillow's built-in font.
    """

    def __init__(self, font, path: Path | None):
        self.font = font
        self.path = path
        self._has: dict[str, bool] = {}

    def draws(self, text: str) -> bool:
        """True when the font has a glyph for every character of text (ASCII always)."""
        return all(self._has_glyph(c) for c in set(text) if not c.isascii() and not c.isspace())

    def _has_glyph(self, character: str) -> bool:
        if character not in self._has:
            try:
                mask, missing = self.font.getmask(character), self.font.getmask(_NO_GLYPH)
                self._has[character] = (mask.size, bytes(mask)) != (missing.size, bytes(missing))
            except UnicodeEncodeError:  # Pillow's bitmap font knows Latin-1 only
                self._has[character] = False
        return self._has[character]


def _truetype(path: Path, size: int = 14):
    """A Pillow font from a file, or None when Pillow cannot read it."""
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return None


def find_cjk_font() -> Path | None:
    """An installed font file that draws Chinese characters, if the machine has one."""
    for root in _font_folders():
        if not root.is_dir():
            continue
        for pattern in _CJK_FONT_GLOBS:
            for path in sorted(root.rglob(pattern)):
                if path.suffix.lower() in _FONT_SUFFIXES:
                    font = _truetype(path)
                    if font is not None and LabelFont(font, path).draws(_CJK_PROBE):
                        return path
    return None


def label_font(font: str | Path | None = None) -> LabelFont:
    """The font for labels: `font`, else the file $GNTKIT_FONT names, else an installed CJK font,
    else Pillow's built-in font (which has no Chinese characters).

    Raises:
        GntkitError: a font file given (or named by GNTKIT_FONT) that is missing or unreadable.
    """
    chosen = font if font is not None else os.environ.get(FONT_ENV) or None
    if chosen is not None:
        path = Path(chosen).expanduser()
        where = f"{path} ({FONT_ENV})" if font is None else str(path)
        if not path.is_file():
            raise GntkitError(f"{where}: expected a font file (.ttf, .ttc, .otf), found {'a folder' if path.is_dir() else 'nothing'}.")
        loaded = _truetype(path)
        if loaded is None:
            raise GntkitError(f"{where}: expected a font file (.ttf, .ttc, .otf) Pillow can read, found one it cannot.")
        return LabelFont(loaded, path)
    path = find_cjk_font()
    if path is not None:
        return LabelFont(_truetype(path), path)
    return LabelFont(ImageFont.load_default(), None)


def font_notice(font: LabelFont, lines: bool = False) -> str:
    """The sentence saying that Chinese text was not drawn with `font` (as GB codes, or in text
    lines as '?'), and how to get a font that draws it."""
    shown = "Chinese characters in the text lines are shown as '?'" if lines else "Chinese labels are shown as GB codes"
    why = f"the font {font.path} has no Chinese characters" if font.path else "no installed font has Chinese characters"
    return f"{shown}, because {why}: install a CJK font ({FONT_PACKAGES}) or pass --font PATH (or set {FONT_ENV})."


def _label_text(character: str, tag_code: int, drawable: bool) -> str:
    """A cell's label: the character, with its GB code where the character is not ASCII (CASIA's
    two-byte codes), or only the code when the font cannot draw the character."""
    if character.isascii() and character:
        return character
    return f"{character} {tag_code:04X}" if drawable and character else f"{tag_code:04X}"


def _captions(entries: list, font: LabelFont) -> tuple[list[str], bool]:
    """Labels of (character, tag_code) entries and text-line transcriptions (str); and whether
    any Chinese text among them could not be drawn with the font."""
    captions, undrawn = [], False
    for entry in entries:
        text = entry if isinstance(entry, str) else entry[0]
        drawable = font.draws(text)
        undrawn = undrawn or not drawable
        if isinstance(entry, str):
            captions.append(entry if drawable else entry.encode("ascii", "replace").decode("ascii"))
        else:
            captions.append(_label_text(entry[0], entry[1], drawable))
    return captions, undrawn


def _fit(image: np.ndarray, size: int) -> Image.Image:
    picture = Image.fromarray(image)
    picture.thumbnail((size, size), Image.BOX)
    return picture


def draw_grid(images, labels, columns: int = 8, invert_display: bool = False, font: LabelFont | None = None) -> Image.Image:
    """Place images (2-D uint8) in a grid, each with a text label under it.

    Args:
        images: 2-D uint8 arrays of any size (shrunk to fit a cell).
        labels: one text per image.
        columns: cells per row.
        invert_display: show ink dark on white (for images whose ink is bright).
        font: the labels' font (default: `label_font()`).
    """
    font = (font or label_font()).font
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("L", (columns * CELL, max(rows, 1) * (CELL + LABEL_HEIGHT)), 255)
    draw = ImageDraw.Draw(grid)
    for i, (image, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        shown = 255 - image if invert_display else image
        picture = _fit(np.ascontiguousarray(shown), CELL - 4)
        x0, y0 = c * CELL, r * (CELL + LABEL_HEIGHT)
        grid.paste(picture, (x0 + (CELL - picture.width) // 2, y0 + (CELL - picture.height) // 2))
        draw.rectangle([x0, y0, x0 + CELL - 1, y0 + CELL - 1], outline=200)
        draw.text((x0 + 2, y0 + CELL + 1), label, fill=0, font=font)
    return grid


LINE_ROW_HEIGHT = 48
LINE_ROW_WIDTH = 960


def draw_lines(images, texts, invert_display: bool = False, font: LabelFont | None = None) -> Image.Image:
    """Text lines one per row (shrunk to fit LINE_ROW_WIDTH x LINE_ROW_HEIGHT), each with its text under it.

    Args:
        images: 2-D uint8 line images; texts: their transcriptions (as the font can draw them,
            see `_captions`).
        invert_display: show ink dark on white (for images whose ink is bright).
        font: the texts' font (default: `label_font()`).
    """
    font = (font or label_font()).font
    row = LINE_ROW_HEIGHT + LABEL_HEIGHT + 4
    page = Image.new("L", (LINE_ROW_WIDTH + 8, max(len(images), 1) * row), 255)
    draw = ImageDraw.Draw(page)
    for i, (image, text) in enumerate(zip(images, texts)):
        picture = Image.fromarray(np.ascontiguousarray(255 - image if invert_display else image))
        picture.thumbnail((LINE_ROW_WIDTH, LINE_ROW_HEIGHT), Image.BOX)
        page.paste(picture, (4, i * row))
        draw.text((4, i * row + LINE_ROW_HEIGHT + 1), text, fill=0, font=font)
    page.info["kind"] = "lines"
    return page


def _shows_lines(first: Path, from_folder: bool, sources: list) -> bool:
    """True when the preview is of text lines (a DGRL conversion or DGRL sources)."""
    if from_folder:
        return "lines" in (load_manifest(first).get("features") or {})
    return any(is_line_member(m) for m in find_members(sources)[:4])


def _stage_settings(settings):
    """Cumulative preprocessing settings: each stage adds one step of `settings`."""
    stages = [("resize only", Preprocess(size=settings.size, margin=settings.margin, crop=False, invert=False))]
    keep = {"contrast": False, "binarize": None, "denoise": False}
    for name in ("contrast", "binarize", "denoise"):
        if getattr(settings, name) not in (False, None):
            keep[name] = getattr(settings, name)
            stages.append((name, Preprocess(size=settings.size, margin=settings.margin, crop=False, invert=False, **keep)))
    if settings.crop:
        stages.append(("crop", Preprocess(size=settings.size, margin=settings.margin, crop=True, invert=False, **keep)))
    if settings.invert:
        stages.append(("invert", Preprocess(size=settings.size, margin=settings.margin, crop=settings.crop, invert=True, **keep)))
    return stages


def _folder_samples(folder: Path, split: str | None, count: int) -> tuple[list, list, bool]:
    """The first samples of a converted folder: images, label entries ((character, tag_code),
    or a text line's transcription), whether ink is bright."""
    manifest = load_manifest(folder)
    split = choose_split(manifest, split, folder) if split is not None else next(iter(manifest["splits"]))
    fmt = output_format(manifest["format"])
    images, labels = [], []
    for shard in manifest["splits"][split]["shards"]:
        for sample in fmt.read_shard(folder / shard["file"], compression=manifest.get("compression")):
            images.append(sample["image"])
            # A text line's label is its transcription (its character field holds the same text).
            labels.append(sample["text"] if "text" in sample else (sample["character"], int(sample["tag_code"])))
            if len(images) >= count:
                return images, labels, bool(manifest["preprocess"].get("invert"))
    return images, labels, bool(manifest["preprocess"].get("invert"))


def _source_samples(sources: list, charset, count: int) -> tuple[list, list, bool]:
    """The first samples of source files of any format (original bitmaps), as `_folder_samples`."""
    chosen = find_members(sources)[:4]
    names = plan_charset(charset, chosen, on_error="skip")
    # The grid shows ink dark on white: MNIST-like sources store it bright on black.
    light_on_dark = any(getattr(m.format_module(), "POLARITY", "") == "light-on-dark" for m in chosen)
    images, labels = [], []
    for batch in iter_batches(chosen, names, None, on_unknown="drop", on_error="skip"):
        for i in range(len(batch)):
            images.append(batch.image(i).copy())
            labels.append(batch.meta["text"][i] if "text" in batch.meta else (batch.characters[i], int(batch.tag_codes[i])))
            if len(images) >= count:
                return images, labels, light_on_dark
    return images, labels, light_on_dark


def _stages_panel(raw_images: list, settings: Preprocess, font: LabelFont) -> Image.Image:
    """Each of the first raw images beside every preprocessing stage applied to it."""
    steps = _stage_settings(settings)
    stage_images, stage_labels = [], []
    for image in raw_images:
        stage_images.append(image)
        stage_labels.append("original")
        for name, step in steps:
            stage_images.append(preprocess_image(image, step))  # the invert stage shows bright ink, as stored
            stage_labels.append(name)
    return draw_grid(stage_images, stage_labels, len(steps) + 1, font=font)


def preview(source, out_png, *, count: int = 48, columns: int = 8, split: str | None = None, stages: int = 0,
            preprocess=None, charset="data", font: str | Path | None = None) -> dict:
    """Write a PNG grid of the first samples of sources (any registered format) or of a converted folder.

    Args:
        source: source(s) (.gnt and other formats, folders, archives), or a folder written by `convert`.
        out_png: the PNG to write.
        count: samples in the grid.
        columns: cells per row.
        split: for a converted folder, the split to show (default: the first).
        stages: for sources, also show the preprocessing stages of this many samples.
        preprocess: settings for the stages view: a Preprocess or a dict of its settings as
            gntkit.shards.plan.preprocess_settings takes them (binarize may be "otsu" or digits)
            (default Preprocess()).
        charset: for sources, the charset used for labels (None: the format's default).
        font: a font file for the labels (default: $GNTKIT_FONT, else an installed CJK font;
            see `label_font`).

    Returns:
        {"path", "samples", "labels": the texts under the samples, "font": the labels' font file (None:
        Pillow's own), "font_notice": None, or the sentence saying Chinese text was not drawn and how to fix it}.

    Raises:
        GntkitError: bad arguments, a font file that cannot be read, or sources / a folder that cannot be read.
    """
    if count < 1 or columns < 1 or stages < 0:
        raise GntkitError(f"count and columns must be at least 1 and stages at least 0, found {count}, {columns}, {stages}.")
    settings = preprocess if isinstance(preprocess, Preprocess) else Preprocess(
        **{k: v for k, v in preprocess_settings(**(preprocess or {})).items() if v is not None})
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise GntkitError(f"{out_png}: expected an output file name ending in .png, found {out_png.suffix or 'no suffix'}.")
    sources = source if isinstance(source, (list, tuple)) else [source]
    labels_font = label_font(font)
    first = Path(sources[0])
    from_folder = len(sources) == 1 and first.is_dir() and manifest_path(first) is not None
    if from_folder:
        images, entries, invert = _folder_samples(first, split, count)
    else:
        images, entries, invert = _source_samples(sources, charset, count)
    if not images:
        raise GntkitError(f"{first}: expected samples to preview, found none.")
    labels, undrawn = _captions(entries, labels_font)
    lines = _shows_lines(first, from_folder, sources)
    if lines:
        grid = draw_lines(images, labels, invert_display=invert, font=labels_font)
    else:
        grid = draw_grid(images, labels, columns, invert_display=invert, font=labels_font)
    if stages and not from_folder and not lines:
        panel = _stages_panel(images[:stages], settings, labels_font)
        combined = Image.new("L", (max(grid.width, panel.width), grid.height + panel.height + 8), 255)
        combined.paste(grid, (0, 0))
        combined.paste(panel, (0, grid.height + 8))
        grid = combined
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return {"path": str(out_png), "samples": len(images), "labels": labels,
            "font": str(labels_font.path) if labels_font.path else None,
            "font_notice": font_notice(labels_font, lines) if undrawn else None}
