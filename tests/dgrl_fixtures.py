"""DGRL pages in the real layout for tests and benchmarks: seeded text lines of synth glyphs.

A page is `lines` text lines; each line is 4-12 characters drawn with gntkit.tools.synth.render_glyph
side by side (a per-writer size and slant, small gaps, a margin), so a model can learn them.
Characters come from a small class list (GB2312 level-1 codes and a few ASCII symbols stored
as [byte, 0x00]); `unlabelled` of them, spread over the page, carry 0xFFFF as in real pages.
Pages are small (a few hundred pixels a side) to keep tests fast; the layout is the real one.
"""

from pathlib import Path

import numpy as np

from gntkit.formats.dgrl import UNLABELLED, encode_page
from gntkit.tools.synth import chinese_codes, render_glyph, writer_style

#: a few ASCII symbols as DGRL stores them ([byte, 0x00]: first byte high)
ASCII_CODES = [ord(c) << 8 for c in "A7,"]


def class_codes(num_chinese: int = 8) -> list[int]:
    """The fixture's classes: num_chinese GB2312 level-1 codes, then the ASCII symbols."""
    return chinese_codes(num_chinese) + ASCII_CODES


def line_bitmap(codes, rng: np.random.Generator, style, glyph_height: int) -> np.ndarray:
    """One text line: a glyph per code (an unlabelled code is drawn as some class), 255 background."""
    pool = class_codes()
    glyphs = []
    for code in codes:
        drawn = code if code != UNLABELLED else pool[int(rng.integers(len(pool)))]
        width = int(glyph_height * rng.uniform(0.8, 1.0))
        glyphs.append(render_glyph(drawn, rng, width, glyph_height, style=style))
        glyphs.append(np.full((glyph_height, int(rng.integers(1, 5))), 255, np.uint8))
    pad = 3
    line = np.concatenate(glyphs, axis=1)
    out = np.full((glyph_height + 2 * pad, line.shape[1] + 2 * pad), 255, np.uint8)
    out[pad:pad + glyph_height, pad:pad + line.shape[1]] = line
    return out


def page_lines(writer: int, page: int, *, lines: int = 3, unlabelled: int = 0, with_ascii: bool = True, glyph_height: int = 24,
               characters: tuple[int, int] = (4, 13), seed: int = 0) -> list[tuple[list[int], int, int, np.ndarray]]:
    """A page's lines as (codes, top, left, bitmap), seeded by writer, page and seed; a line has
    characters[0] to characters[1] - 1 characters."""
    rng = np.random.default_rng([seed, writer, page, 0xD6])
    style = writer_style(rng)
    chinese = chinese_codes(8)
    out, top = [], 5
    for _ in range(lines):
        count = int(rng.integers(*characters))
        codes = [chinese[int(rng.integers(len(chinese)))] for _ in range(count)]
        if with_ascii and rng.random() < 0.6:  # most lines get one ASCII symbol
            codes[int(rng.integers(count))] = ASCII_CODES[int(rng.integers(len(ASCII_CODES)))]
        out.append([codes, top, int(rng.integers(2, 10)), None])
        top += glyph_height + 12
    for k in range(unlabelled):  # spread over the lines, never two on one spot
        line = out[k % lines][0]
        line[(k // lines * 3 + 1) % len(line)] = UNLABELLED
    for entry in out:
        entry[3] = line_bitmap(entry[0], rng, style, glyph_height)
    return [tuple(entry) for entry in out]


def page_bytes(writer: int, page: int, *, bits: int = 8, **options) -> bytes:
    """The bytes of one DGRL page (see page_lines for options)."""
    lines = page_lines(writer, page, **options)
    height = max(top + bitmap.shape[0] for _, top, _, bitmap in lines) + 5
    width = max(left + bitmap.shape[1] for _, _, left, bitmap in lines) + 5
    return encode_page(lines, height, width, bits, illustration=f"writer {writer:03d} page {page}".encode())


def write_page(folder, writer: int, page: int, **options) -> Path:
    """Write `{writer:03d}-P{page:02d}.dgrl` (HWDB2.x naming) into folder; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{writer:03d}-P{page:02d}.dgrl"
    path.write_bytes(page_bytes(writer, page, **options))
    return path


def write_dgrl_corpus(folder, *, writers: int = 2, pages: int = 2, first_writer: int = 1, bits: int = 8,
                      unlabelled: int = 0, lines: int = 3, seed: int = 0) -> list[Path]:
    """pages pages per writer; page 1 of each writer gets `unlabelled` 0xFFFF characters."""
    return [write_page(folder, w, p, bits=bits, lines=lines, unlabelled=unlabelled if p == 1 else 0, seed=seed)
            for w in range(first_writer, first_writer + writers) for p in range(1, pages + 1)]
