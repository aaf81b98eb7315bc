"""Synthetic text pages in the real DGRL layout (HWDB2.x): lines of gntkit.tools.synth's
character-like glyphs, written by writers with a style of their own, deterministic by seed.

A writer keeps one `writer_style` (slant, stroke width, proportions, personal warp, ink) and one
glyph size on all of their pages, so every class is drawn consistently by a writer and a model
can learn the lines; each sample still varies (warp, jitter, pressure) as handwriting does.
A line is `characters` glyphs side by side on a shared baseline: Chinese classes about as
wide as they are high, ASCII symbols (style "f") narrower and smaller, with small
writer-dependent gaps, a margin, and a slight drift of the baseline. Lines stack down the page
with a gap; each is stored with its own (top, left) and bitmap, 8 or 1 bit per pixel, as
CASIA's pages are. Files are named `{writer}-P{page:02d}.dgrl` (HWDB2.x's names).

    write_pages("pages", writers=4, pages=2, lines=8, num_classes=20)

numpy and pillow (through gntkit.tools.synth).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.formats import FORMATS, get_format
from gntkit.formats.dgrl import SYNTH_FILE_NAME, encode_page
from gntkit.samples.charset import is_symbol_code
from gntkit.tools.synth import WriterStyle, chinese_codes, render_glyph, symbol_codes, write_corpus, writer_style

__all__ = ["write_pages", "write_synthetic", "page_lines", "line_bitmap"]

PAGE_MARGIN = 20  # pixels around the lines of a page
LINE_GAP = 0.45  # blank space between lines, in glyph heights


def _check_int(name: str, value, low: int, high: int = 1 << 30) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise GntkitError(f"{name} must be an integer from {low} to {high}, found {value!r}.")
    return int(value)


def line_bitmap(codes, rng: np.random.Generator, style: WriterStyle, glyph_height: int, font=None,
                boxes: list | None = None) -> np.ndarray:
    """One handwritten line: a glyph per code on a shared baseline, 255 background, a 4-pixel margin.

    Args:
        codes: tag codes (GB2312 codes, ASCII symbols as byte << 8).
        rng: this line's variation.
        style: the writer's style.
        glyph_height: a Chinese character's height in pixels (symbols are smaller).
        font: draw from this font file instead of composing strokes (see render_glyph).
        boxes: if a list, each glyph's box in the line, (top, left, height, width), is appended to it
            as it is drawn (the bitmap is the same either way).

    Returns:
        uint8 (H, W) array.
    """
    pad, drift = 4, max(1, glyph_height // 12)
    glyphs = []
    for code in codes:
        if is_symbol_code(code):
            height = int(glyph_height * rng.uniform(0.45, 0.65))
            width = max(4, int(height * rng.uniform(0.45, 0.8)))
        else:
            height = int(glyph_height * rng.uniform(0.9, 1.0))
            width = max(4, int(glyph_height * style.aspect * rng.uniform(0.82, 0.98)))
        glyphs.append(render_glyph(int(code), rng, width, height, style=style, font=font))
    gaps = (glyph_height * rng.uniform(0.04, 0.16, size=len(glyphs))).astype(int) + 1
    width = sum(g.shape[1] for g in glyphs) + int(gaps.sum()) + 2 * pad
    out = np.full((glyph_height + drift + 2 * pad, width), 255, np.uint8)
    x, baseline = pad, pad + glyph_height
    for glyph, gap in zip(glyphs, gaps):
        h, w = glyph.shape
        top = baseline - h + int(rng.integers(0, drift + 1))
        out[top:top + h, x:x + w] = np.minimum(out[top:top + h, x:x + w], glyph)
        if boxes is not None:
            boxes.append((top, x, h, w))
        x += w + int(gap)
    return out


def page_lines(writer: int, page: int, tag_codes, *, lines: int = 8, characters: tuple[int, int] = (8, 20),
               glyph_height: int = 64, seed: int = 0, font=None, boxes: list | None = None) -> list[tuple[list[int], int, int, np.ndarray]]:
    """One page's lines as (codes, top, left, bitmap), what `gntkit.formats.dgrl.encode_page` takes.

    The writer's style and glyph size follow from (seed, writer) alone, the page's text and
    variation from (seed, writer, page). A line has characters[0] to characters[1] glyphs,
    each class drawn from tag_codes with equal chance. If `boxes` is a list, one list per line of
    its glyphs' true boxes in the line's bitmap, (top, left, height, width), is appended to it.
    """
    writer_rng = np.random.default_rng([seed, writer, 0xD6])
    style = writer_style(writer_rng)
    size = max(8, int(round(glyph_height * writer_rng.uniform(0.85, 1.15))))
    rng = np.random.default_rng([seed, writer, page])
    out, top = [], PAGE_MARGIN
    for _ in range(lines):
        count = int(rng.integers(characters[0], characters[1] + 1))
        codes = [int(tag_codes[i]) for i in rng.integers(0, len(tag_codes), size=count)]
        line_boxes: list | None = [] if boxes is not None else None
        bitmap = line_bitmap(codes, rng, style, size, font=font, boxes=line_boxes)
        if boxes is not None:
            boxes.append(line_boxes)
        out.append((codes, top, PAGE_MARGIN + int(rng.integers(0, size // 2 + 1)), bitmap))
        top += bitmap.shape[0] + int(size * LINE_GAP)
    return out


def write_pages(out_dir, *, writers: int = 4, first_writer: int = 1, pages: int = 2, lines: int = 8,
                num_classes: int = 20, style: str = "c", num_symbols: int = 10, characters: tuple[int, int] = (8, 20),
                glyph_height: int = 64, bits: int = 8, seed: int = 0, font=None) -> list[Path]:
    """Write a synthetic HWDB2.x-like page set: `pages` DGRL pages per writer, `lines` lines a page.

    Args:
        out_dir: folder to create (must not exist, or be empty).
        writers: number of writers; first_writer: the first one's id (files `{id:03d}-P{page:02d}.dgrl`).
        pages: pages per writer; lines: lines per page.
        num_classes: Chinese classes (GB2312 level 1, spread over the range).
        style: "c" (Chinese only) or "f" (Chinese and ASCII symbols).
        num_symbols: symbol classes with style "f".
        characters: (fewest, most) characters a line.
        glyph_height: a Chinese character's height in pixels (each writer writes 0.85-1.15 times it).
        bits: 8 (grey) or 1 (black and white) bits per pixel.
        seed: everything is deterministic in the seed.
        font: draw the characters from this font file ("auto": an installed CJK font) under each
            writer's distortions, instead of composing them from strokes.

    Returns:
        The paths written, writer by writer, page by page.

    Raises:
        GntkitError: an argument out of range; OutputExistsError: out_dir is not empty.
    """
    writers, pages, lines = _check_int("writers", writers, 1), _check_int("pages", pages, 1, 99), _check_int("lines", lines, 1, 200)
    first_writer, glyph_height = _check_int("first_writer", first_writer, 0), _check_int("glyph_height", glyph_height, 8, 1024)
    if style not in ("c", "f"):
        raise GntkitError(f"style must be 'c' (Chinese only) or 'f' (with symbols), found {style!r}.")
    if bits not in (8, 1):
        raise GntkitError(f"bits must be 8 or 1 (bits per pixel of a DGRL page), found {bits!r}.")
    if (not isinstance(characters, (tuple, list)) or len(characters) != 2
            or not 1 <= _check_int("characters[0]", characters[0], 1) <= _check_int("characters[1]", characters[1], 1, 500)):
        raise GntkitError(f"characters must be (fewest, most) with 1 <= fewest <= most <= 500, found {characters!r}.")
    codes = chinese_codes(num_classes) + (symbol_codes(num_symbols) if style == "f" else [])
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir}: the folder exists and is not empty; choose a new one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for writer in range(first_writer, first_writer + writers):
        for page in range(1, pages + 1):
            page_rows = page_lines(writer, page, codes, lines=lines, characters=tuple(characters), glyph_height=glyph_height,
                                   seed=seed, font=font)
            height = max(top + bitmap.shape[0] for _, top, _, bitmap in page_rows) + PAGE_MARGIN
            width = max(left + bitmap.shape[1] for _, _, left, bitmap in page_rows) + PAGE_MARGIN
            path = out_dir / SYNTH_FILE_NAME.format(writer=writer, page=page)
            path.write_bytes(encode_page(page_rows, height, width, bits, illustration=f"synthetic page, writer {writer}".encode()))
            paths.append(path)
    return paths


def write_synthetic(out_dir, *, format: str = "gnt", writers: int = 4, first_writer: int = 1001, num_classes: int = 20,  # noqa: A002 - the CLI's word
                    samples_per_class: int = 2, style: str = "c", num_symbols: int = 10, seed: int = 0,
                    zip_name: str | None = None, font=None, pages: int = 2, lines: int = 8) -> list[Path]:
    """What `gntkit synth` writes: DGRL pages (`write_pages`, format "dgrl") or a corpus of one
    file per writer in another format (`gntkit.tools.synth.write_corpus`, which `samples_per_class`
    is for); `pages` and `lines` are for DGRL only.

    Returns:
        Paths written: the files, or the one zip.

    Raises:
        GntkitError: see write_pages and write_corpus.
    """
    if format not in FORMATS or getattr(get_format(format), "SYNTH_SAMPLES", None) != "lines":  # write_corpus names the formats
        return write_corpus(out_dir, writers=writers, first_writer=first_writer, num_classes=num_classes,
                            samples_per_class=samples_per_class, style=style, num_symbols=num_symbols, seed=seed,
                            zip_name=zip_name, font=font, format=format)
    paths = write_pages(out_dir, writers=writers, first_writer=first_writer, pages=pages, lines=lines, num_classes=num_classes,
                        style=style, num_symbols=num_symbols, seed=seed, font=font)
    if not zip_name:
        return paths
    zip_path = Path(out_dir) / zip_name
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in paths:
            archive.write(path, arcname=path.name)
            path.unlink()
    return [zip_path]
