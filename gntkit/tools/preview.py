"""`gntkit preview`: a labelled grid of samples (from GNT sources or converted shards), and
optionally the preprocessing stages side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gntkit.errors import GntkitError
from gntkit.formats.sources import find_members
from gntkit.samples.lines import is_line_member
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import iter_batches, plan_charset
from gntkit.shards.manifest import MANIFEST, choose_split, load_manifest
from gntkit.shards.plan import preprocess_settings
from gntkit.shards.registry import output_format

CELL = 72
LABEL_HEIGHT = 18
_CJK_FONT_GLOBS = ("*CJK*", "*cjk*", "wqy*", "*Hei*", "*Song*", "*Ming*", "*Droid*Fallback*", "*Unifont*", "unifont*")
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"), "/System/Library/Fonts", "C:/Windows/Fonts")


def find_cjk_font() -> Path | None:
    """A font file that can draw Chinese characters, if the machine has one."""
    for folder in _FONT_DIRS:
        root = Path(folder)
        if not root.is_dir():
            continue
        for pattern in _CJK_FONT_GLOBS:
            for path in sorted(root.rglob(pattern)):
                if path.suffix.lower() in (".ttf", ".ttc", ".otf"):
                    return path
    return None


def _label_font():
    path = find_cjk_font()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), 14), True
        except OSError:
            pass
    return ImageFont.load_default(), False


def _label_text(character: str, tag_code: int, cjk: bool) -> str:
    if cjk or character.isascii():
        return f"{character} {tag_code:04X}"
    return f"{tag_code:04X}"


def _fit(image: np.ndarray, size: int) -> Image.Image:
    picture = Image.fromarray(image)
    picture.thumbnail((size, size), Image.BOX)
    return picture


def draw_grid(images, labels, columns: int = 8, invert_display: bool = False) -> Image.Image:
    """Place images (2-D uint8) in a grid, each with a text label under it.

    Args:
        images: 2-D uint8 arrays of any size (shrunk to fit a cell).
        labels: one text per image.
        columns: cells per row.
        invert_display: show ink dark on white (for images whose ink is bright).
    """
    font, _ = _label_font()
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


def draw_lines(images, texts, invert_display: bool = False, cjk: bool = True) -> Image.Image:
    """Text lines one per row (shrunk to fit LINE_ROW_WIDTH x LINE_ROW_HEIGHT), each with its text under it.

    Args:
        images: 2-D uint8 line images; texts: their transcriptions.
        invert_display: show ink dark on white (for images whose ink is bright).
        cjk: a CJK font is available; without one, characters it cannot draw show as '?'.
    """
    font, _ = _label_font()
    row = LINE_ROW_HEIGHT + LABEL_HEIGHT + 4
    page = Image.new("L", (LINE_ROW_WIDTH + 8, max(len(images), 1) * row), 255)
    draw = ImageDraw.Draw(page)
    for i, (image, text) in enumerate(zip(images, texts)):
        picture = Image.fromarray(np.ascontiguousarray(255 - image if invert_display else image))
        picture.thumbnail((LINE_ROW_WIDTH, LINE_ROW_HEIGHT), Image.BOX)
        page.paste(picture, (4, i * row))
        shown = text if cjk else text.encode("ascii", "replace").decode("ascii")
        draw.text((4, i * row + LINE_ROW_HEIGHT + 1), shown, fill=0, font=font)
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


def _folder_samples(folder: Path, split: str | None, count: int, cjk: bool) -> tuple[list, list, bool]:
    """The first samples of a converted folder (images, labels, whether ink is bright)."""
    manifest = load_manifest(folder)
    split = choose_split(manifest, split, folder) if split is not None else next(iter(manifest["splits"]))
    fmt = output_format(manifest["format"])
    images, labels = [], []
    for shard in manifest["splits"][split]["shards"]:
        for sample in fmt.read_shard(folder / shard["file"], compression=manifest.get("compression")):
            images.append(sample["image"])
            # A text line's label is its transcription (its character field holds the same text).
            labels.append(sample["text"] if "text" in sample else _label_text(sample["character"], sample["tag_code"], cjk))
            if len(images) >= count:
                return images, labels, bool(manifest["preprocess"].get("invert"))
    return images, labels, bool(manifest["preprocess"].get("invert"))


def _source_samples(sources: list, charset, count: int, cjk: bool) -> tuple[list, list, bool]:
    """The first samples of source files of any format (original bitmaps)."""
    chosen = find_members(sources)[:4]
    names = plan_charset(charset, chosen, on_error="skip")
    # The grid shows ink dark on white: MNIST-like sources store it bright on black.
    light_on_dark = any(getattr(m.format_module(), "POLARITY", "") == "light-on-dark" for m in chosen)
    images, labels = [], []
    for batch in iter_batches(chosen, names, None, on_unknown="drop", on_error="skip"):
        for i in range(len(batch)):
            images.append(batch.image(i).copy())
            labels.append(batch.meta["text"][i] if "text" in batch.meta else _label_text(batch.characters[i], int(batch.tag_codes[i]), cjk))
            if len(images) >= count:
                return images, labels, light_on_dark
    return images, labels, light_on_dark


def _stages_panel(raw_images: list, settings: Preprocess) -> Image.Image:
    """Each of the first raw images beside every preprocessing stage applied to it."""
    steps = _stage_settings(settings)
    stage_images, stage_labels = [], []
    for image in raw_images:
        stage_images.append(image)
        stage_labels.append("original")
        for name, step in steps:
            stage_images.append(preprocess_image(image, step))  # the invert stage shows bright ink, as stored
            stage_labels.append(name)
    return draw_grid(stage_images, stage_labels, len(steps) + 1)


def preview(source, out_png, *, count: int = 48, columns: int = 8, split: str | None = None, stages: int = 0,
            preprocess=None, charset="data") -> dict:
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

    Returns:
        {"path", "samples", "font": whether a CJK font drew the characters}.

    Raises:
        GntkitError: bad arguments, or sources / a folder that cannot be read.
    """
    if count < 1 or columns < 1 or stages < 0:
        raise GntkitError(f"count and columns must be at least 1 and stages at least 0, found {count}, {columns}, {stages}.")
    if not isinstance(preprocess, Preprocess):
        settings = Preprocess(**{k: v for k, v in preprocess_settings(**(preprocess or {})).items() if v is not None})
    else:
        settings = preprocess
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise GntkitError(f"{out_png}: expected an output file name ending in .png, found {out_png.suffix or 'no suffix'}.")
    sources = source if isinstance(source, (list, tuple)) else [source]
    _, cjk = _label_font()
    first = Path(sources[0])
    from_folder = len(sources) == 1 and first.is_dir() and (first / MANIFEST).is_file()
    if from_folder:
        images, labels, invert = _folder_samples(first, split, count, cjk)
    else:
        images, labels, invert = _source_samples(sources, charset, count, cjk)
    if not images:
        raise GntkitError(f"{first}: expected samples to preview, found none.")
    if _shows_lines(first, from_folder, sources):
        grid = draw_lines(images, labels, invert_display=invert, cjk=cjk)
    else:
        grid = draw_grid(images, labels, columns, invert_display=invert)
    if stages and not from_folder and grid.info.get("kind") != "lines":
        panel = _stages_panel(images[:stages], settings)
        combined = Image.new("L", (max(grid.width, panel.width), grid.height + panel.height + 8), 255)
        combined.paste(grid, (0, 0))
        combined.paste(panel, (0, grid.height + 8))
        grid = combined
    out_png.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out_png)
    return {"path": str(out_png), "samples": len(images), "font": cjk}
