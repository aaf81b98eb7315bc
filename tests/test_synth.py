"""Synthetic corpus: real layout, deterministic by seed, HWDB-like sizes, learnable classes."""

import numpy as np
from PIL import Image

from gntkit.charset import decode_tag
from gntkit.formats.gnt import GntFile
from gntkit.synth import render_glyph, write_corpus, writer_records
from naive_gnt import read_records


def test_deterministic_by_seed(tmp_path):
    a = write_corpus(tmp_path / "a", writers=2, seed=5)
    b = write_corpus(tmp_path / "b", writers=2, seed=5)
    c = write_corpus(tmp_path / "c", writers=2, seed=6)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()


def test_layout_and_symbols(tmp_path):
    (path,) = write_corpus(tmp_path / "f", writers=1, style="f", num_classes=5, num_symbols=4)
    assert path.name == "1001-f.gnt"
    records, _, reason = read_records(path.read_bytes())
    assert reason is None and len(records) == (5 + 4) * 2
    symbols = [r for r in records if r[1] & 0xFF == 0]
    assert len(symbols) == 8 and all(decode_tag(r[1]).isprintable() for r in symbols)


def test_sizes_look_like_hwdb():
    codes = [0xB0A1 + i for i in range(40)]
    _, bitmaps = writer_records(1001, codes, 25, seed=0)
    widths = np.array([b.shape[1] for b in bitmaps])
    heights = np.array([b.shape[0] for b in bitmaps])
    assert 55 < widths.mean() < 80 and 62 < heights.mean() < 88
    assert widths.min() >= 16 and max(widths.max(), heights.max()) > 120
    assert all(b.dtype == np.uint8 and b.max() == 255 and b.min() < 128 for b in bitmaps)


def test_classes_are_learnable_across_writers():
    """Nearest class mean on 24x24 thumbnails: train on writers 1-6, test on writers 7-8."""
    codes = [0xB0A1 + 37 * i for i in range(20)]

    def thumbnails(writer):
        labels, bitmaps = writer_records(writer, codes, 3, seed=0)
        x = np.stack([np.asarray(Image.fromarray(255 - b).resize((24, 24), Image.BOX), np.float32).ravel() for b in bitmaps])
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6), np.array([codes.index(c) for c in labels])

    train = [thumbnails(w) for w in range(1, 7)]
    x = np.concatenate([t[0] for t in train])
    y = np.concatenate([t[1] for t in train])
    means = np.stack([x[y == k].mean(0) for k in range(20)])
    correct = total = 0
    for writer in (7, 8):
        xt, yt = thumbnails(writer)
        correct += int(((xt @ means.T).argmax(1) == yt).sum())
        total += len(yt)
    assert correct / total > 0.8


def test_render_glyph_is_a_valid_record():
    bitmap = render_glyph(0xB0A1, np.random.default_rng(0), width=12, height=78)
    assert bitmap.shape == (78, 12)
    from gntkit.formats.gnt import encode_records
    gnt = GntFile(np.frombuffer(encode_records([0xB0A1], [bitmap]), np.uint8))
    assert np.array_equal(gnt.bitmap(0), bitmap)
