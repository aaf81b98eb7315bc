"""Synthetic GNT data in the real binary layout, deterministic by seed, no fonts needed.

Each class (tag code) has a fixed prototype of 3-7 strokes (line segments in the unit
square), derived from the tag code alone, so the same character looks alike across
writers. Each writer adds a personal slant and stroke weight, each sample a random
affine jitter, per-point noise and a bitmap size drawn around HWDB's mean (about 68 x 75
pixels, from about 16 to a few hundred a side). A classifier can learn the classes;
no two samples are identical.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from gntkit.charset import builtin, is_symbol_code
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.formats.gnt import encode_records

# Printable ASCII symbols used for the symbol records of -f style files.
SYMBOLS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!?,.;:()+-"


def glyph_strokes(tag_code: int) -> np.ndarray:
    """The prototype strokes of a class: float (k, 4) rows (x0, y0, x1, y1) in [0.1, 0.9]."""
    rng = np.random.default_rng([0x6E7, int(tag_code)])
    count = int(rng.integers(3, 8))
    points = rng.uniform(0.1, 0.9, size=(count, 4))
    # Snap half of the strokes to horizontal or vertical, like real CJK strokes.
    for i in range(count):
        kind = rng.integers(0, 4)
        if kind == 0:
            points[i, 3] = points[i, 1]
        elif kind == 1:
            points[i, 2] = points[i, 0]
    return points


def _draw_segment(canvas: np.ndarray, x0, y0, x1, y1, radius: float, darkness: float) -> None:
    h, w = canvas.shape
    left = max(int(np.floor(min(x0, x1) - radius - 1)), 0)
    right = min(int(np.ceil(max(x0, x1) + radius + 1)), w - 1)
    top = max(int(np.floor(min(y0, y1) - radius - 1)), 0)
    bottom = min(int(np.ceil(max(y0, y1) + radius + 1)), h - 1)
    if left > right or top > bottom:
        return
    ys, xs = np.mgrid[top:bottom + 1, left:right + 1].astype(np.float64)
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else np.zeros_like(xs)
    dist = np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))
    coverage = np.clip(radius + 0.5 - dist, 0.0, 1.0)  # one pixel of anti-aliasing
    region = canvas[top:bottom + 1, left:right + 1]
    np.maximum(region, coverage * darkness, out=region)


def render_glyph(tag_code: int, rng: np.random.Generator, width: int | None = None, height: int | None = None,
                 slant: float = 0.0, weight: float = 1.0) -> np.ndarray:
    """Render one handwritten-looking sample of a class as a GNT bitmap.

    Args:
        tag_code: the class; decides the prototype strokes.
        rng: source of this sample's variation.
        width, height: bitmap size; drawn around HWDB's mean when None.
        slant: writer's shear (about -0.3..0.3).
        weight: writer's stroke-width factor (about 0.7..1.4).

    Returns:
        uint8 (height, width) array, 255 background, ink 0..254.
    """
    symbol = is_symbol_code(tag_code)
    if width is None or height is None:
        if symbol:
            height = int(np.clip(rng.normal(40, 15), 12, 120))
            width = int(np.clip(height * rng.uniform(0.2, 1.0), 8, 120))
        else:
            big = rng.random() < 0.01
            width = int(np.clip(rng.normal(68, 14) * (3 if big else 1), 16, 400))
            height = int(np.clip(rng.normal(75, 14) * (3 if big else 1), 16, 400))
    if not (1 <= width <= 65535 and 1 <= height <= 65535):
        raise GntkitError(f"A glyph needs 1..65535 pixels a side, found {width}x{height}.")
    strokes = glyph_strokes(tag_code).copy()
    strokes += rng.normal(0, 0.025, size=strokes.shape)
    angle = rng.normal(0, 0.06)
    scale = rng.uniform(0.85, 1.05)
    shear = slant + rng.normal(0, 0.05)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    shift = rng.normal(0, 0.03, size=2)
    canvas = np.zeros((height, width), np.float64)
    radius = max(0.6, weight * min(width, height) * rng.uniform(0.025, 0.045))
    darkness = rng.uniform(0.75, 1.0)
    for x0, y0, x1, y1 in strokes:
        p0 = matrix @ (np.array([x0, y0]) - 0.5) + 0.5 + shift
        p1 = matrix @ (np.array([x1, y1]) - 0.5) + 0.5 + shift
        _draw_segment(canvas, p0[0] * (width - 1), p0[1] * (height - 1), p1[0] * (width - 1), p1[1] * (height - 1), radius, darkness)
    ink = canvas * 255.0 + rng.normal(0, 6, size=canvas.shape) * (canvas > 0)
    return np.clip(255.0 - ink, 0, 255).astype(np.uint8)


def chinese_codes(num_classes: int) -> list[int]:
    """num_classes GB2312 level-1 tag codes spread evenly over the 3,755, in code order."""
    level1 = builtin("gb2312-1").tag_codes
    if not 1 <= num_classes <= len(level1):
        raise GntkitError(f"num_classes must be 1..{len(level1)}, found {num_classes}.")
    picks = np.linspace(0, len(level1) - 1, num_classes).round().astype(int)
    return [int(level1[i]) for i in picks]


def symbol_codes(num_symbols: int) -> list[int]:
    """num_symbols ASCII symbol tag codes ([byte, 0x00])."""
    if not 0 <= num_symbols <= len(SYMBOLS):
        raise GntkitError(f"num_symbols must be 0..{len(SYMBOLS)}, found {num_symbols}.")
    return [ord(c) << 8 for c in SYMBOLS[:num_symbols]]


def writer_records(writer_number: int, tag_codes, samples_per_class: int, seed: int = 0):
    """One writer's samples: (tag codes, bitmaps) in a shuffled writing order.

    Deterministic in (writer_number, tag_codes, samples_per_class, seed).
    """
    rng = np.random.default_rng([seed, writer_number])
    slant = rng.uniform(-0.25, 0.25)
    weight = rng.uniform(0.75, 1.35)
    order = [code for code in tag_codes for _ in range(samples_per_class)]
    order = [order[i] for i in rng.permutation(len(order))]
    bitmaps = [render_glyph(code, rng, slant=slant, weight=weight) for code in order]
    return order, bitmaps


def write_gnt(path: str | Path, tag_codes, bitmaps) -> Path:
    """Write records to a .gnt file (refuses to overwrite an existing file).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.exists():
        raise OutputExistsError(f"{path}: the file already exists; remove it or choose another name.")
    path.write_bytes(encode_records(tag_codes, bitmaps))
    return path


def write_corpus(out_dir: str | Path, *, writers: int = 4, first_writer: int = 1001, num_classes: int = 20,
                 samples_per_class: int = 2, style: str = "c", num_symbols: int = 10, seed: int = 0,
                 zip_name: str | None = None) -> list[Path]:
    """Write a synthetic corpus: one GNT file per writer, HWDB naming (`1001-c.gnt`, `1001-f.gnt`).

    Args:
        out_dir: folder to create (must not exist, or be empty).
        writers: number of writer files.
        first_writer: id of the first writer (HWDB1.1 starts at 1001).
        num_classes: Chinese classes (GB2312 level 1, spread over the range).
        samples_per_class: samples of each class per writer.
        style: "c" (Chinese only) or "f" (Chinese and ASCII symbols).
        num_symbols: symbol classes in "f" files.
        seed: everything is deterministic in the seed.
        zip_name: also pack the files into this zip inside out_dir (and remove the loose files).

    Returns:
        Paths written: the .gnt files, or the one zip.
    """
    if style not in ("c", "f"):
        raise GntkitError(f"style must be 'c' (Chinese only) or 'f' (with symbols), found {style!r}.")
    if writers < 1 or samples_per_class < 1:
        raise GntkitError(f"writers and samples_per_class must be at least 1, found {writers} and {samples_per_class}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir}: the folder exists and is not empty; choose a new one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = chinese_codes(num_classes) + (symbol_codes(num_symbols) if style == "f" else [])
    paths = []
    for number in range(first_writer, first_writer + writers):
        tag_codes, bitmaps = writer_records(number, codes, samples_per_class, seed)
        paths.append(write_gnt(out_dir / f"{number}-{style}.gnt", tag_codes, bitmaps))
    if zip_name:
        zip_path = out_dir / zip_name
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in paths:
                archive.write(path, arcname=path.name)
                path.unlink()
        return [zip_path]
    return paths
