"""POT files in the real layout for tests and benchmarks: seeded strokes from synth's glyphs.

Each class's prototype segments (gntkit.synth.glyph_strokes, in the unit square), chained into
polylines where they continue one another, become strokes of 2-12 points per piece in tablet
units, with a per-writer size (150-260 units), slant and position (x about 500-2000, y about
6400-6900, as real OLHWDB files) and per-sample jitter; about one sample in four gets an extra
single-point stroke (a dot), as real files have.
"""

from pathlib import Path

import numpy as np

from gntkit.formats.pot import encode_records
from gntkit.synth import chinese_codes, glyph_strokes


def _polylines(segments: np.ndarray) -> list[np.ndarray]:
    """Chain segments that continue one another (end of one = start of the next) into polylines."""
    lines, current = [], [segments[0, :2], segments[0, 2:]]
    for x0, y0, x1, y1 in segments[1:]:
        if np.allclose(current[-1], (x0, y0)):
            current.append(np.array([x1, y1]))
        else:
            lines.append(np.array(current))
            current = [np.array([x0, y0]), np.array([x1, y1])]
    lines.append(np.array(current))
    return lines


def sample_strokes(tag_code: int, rng: np.random.Generator, size: float, slant: float, origin) -> list[np.ndarray]:
    """One handwritten-looking sample of a class as a list of int (k, 2) tablet-unit strokes: each
    of the class's polylines resampled at 2-12 points per piece with a little pen jitter."""
    strokes = []
    for line in _polylines(glyph_strokes(tag_code)):
        pieces = []
        for a, b in zip(line[:-1], line[1:]):
            count = int(rng.integers(2, 13))
            t = np.linspace(0.0, 1.0, count)[:-1, None]
            pieces.append(a + t * (b - a))
        unit = np.vstack(pieces + [line[-1:]]) + rng.normal(0, 0.003, size=(sum(map(len, pieces)) + 1, 2))
        unit[:, 0] += slant * (0.5 - unit[:, 1])
        strokes.append(np.clip(np.rint(origin + unit * size), 0, 32767).astype(np.int64))
    if rng.random() < 0.25:
        dot = np.array([[rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)]])
        strokes.append(np.rint(origin + dot * size).astype(np.int64))
    return strokes


def writer_samples(writer_number: int, tag_codes, samples_per_class: int = 1, seed: int = 0):
    """One writer's samples: (tag codes in writing order, list of strokes per sample)."""
    rng = np.random.default_rng([seed, writer_number, 0x907])
    size = rng.uniform(150, 260)  # tablet units a character spans (a whole real file: y within about 300)
    slant = rng.uniform(-0.2, 0.2)
    order = [code for code in tag_codes for _ in range(samples_per_class)]
    order = [order[i] for i in rng.permutation(len(order))]
    samples = []
    for code in order:
        origin = np.array([rng.uniform(500, 2000), rng.uniform(6400, 6900) - size])
        samples.append(sample_strokes(code, rng, size * rng.uniform(0.9, 1.1), slant, origin))
    return order, samples


def write_pot(path, tag_codes, samples) -> Path:
    """Write samples to a .pot file; returns the path."""
    path = Path(path)
    path.write_bytes(encode_records(tag_codes, samples))
    return path


def write_pot_corpus(out_dir, *, writers: int = 2, first_writer: int = 1001, num_classes: int = 10,
                     samples_per_class: int = 1, seed: int = 0) -> list[Path]:
    """One `{writer}.pot` file per writer (OLHWDB naming) in out_dir; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = chinese_codes(num_classes)
    paths = []
    for number in range(first_writer, first_writer + writers):
        order, samples = writer_samples(number, codes, samples_per_class, seed)
        paths.append(write_pot(out_dir / f"{number}.pot", order, samples))
    return paths
