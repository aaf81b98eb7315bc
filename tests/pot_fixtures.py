"""POT files in the real layout for tests and benchmarks: seeded strokes from synth's glyphs.

Each class's prototype segments (gntkit.tools.glyphs.glyph_strokes, in the unit square), chained into
polylines where they continue one another, become strokes of 2-12 points per piece in tablet
units, with a per-writer size (150-260 units), slant and position (x about 500-2000, y about
6400-6900, as real OLHWDB files) and per-sample jitter; about one sample in four gets an extra
single-point stroke (a dot), as real files have.
"""

from pathlib import Path

from gntkit.formats.pot import encode_records
from gntkit.tools.synth import chinese_codes, sample_strokes, writer_strokes  # noqa: F401 - sample_strokes is re-exported for tests

# The generator moved into gntkit.tools.synth (`gntkit synth --format pot` uses it); the names stay here.
writer_samples = writer_strokes


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
