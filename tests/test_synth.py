"""Synthetic corpus: real layout, deterministic by seed, HWDB-like sizes, character-like classes that
unseen writers make harder to recognise than training writers."""

from pathlib import Path

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.formats.gnt import GntFile
from gntkit.samples.charset import decode_tag
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.tools.glyphs import glyph_strokes
from gntkit.tools.reference.gnt import read_records
from gntkit.tools.synth import (
    SYMBOLS,
    chinese_codes,
    find_cjk_font,
    render_glyph,
    symbol_codes,
    write_corpus,
    writer_records,
    writer_style,
)
from gntkit.tools.synth_pages import page_lines


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


def pixel_features(writers, codes, samples_per_class, size=20):
    """Writer-by-writer samples through gntkit's preprocessing: (float pixels, labels, writer ids)."""
    settings = Preprocess(size=size)
    features, labels, writer_ids = [], [], []
    for writer in writers:
        tags, bitmaps = writer_records(writer, codes, samples_per_class, seed=0)
        features += [preprocess_image(b, settings).astype(np.float64).ravel() / 255 for b in bitmaps]
        labels += [codes.index(c) for c in tags]
        writer_ids += [writer] * len(tags)
    return np.array(features), np.array(labels), np.array(writer_ids)


def softmax_regression(x, y, classes, steps=300, lr=0.5, l2=1e-3):
    """Multinomial logistic regression on pixels by full-batch gradient descent: (weights, bias)."""
    weights, bias = np.zeros((x.shape[1], classes)), np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        z = x @ weights + bias
        p = np.exp(z - z.max(1, keepdims=True))
        gradient = (p / p.sum(1, keepdims=True) - onehot) / len(x)
        weights -= lr * (x.T @ gradient + l2 * weights)
        bias -= lr * gradient.sum(0)
    return weights, bias


def test_unseen_writers_are_harder_than_training_writers():
    """Logistic regression on pixels, trained on writers 1-6 (3 of their 4 samples per class):
    near-perfect on its training samples, lower on the training writers' held-out samples, lower
    still on writers 7-12, and far above chance everywhere (10 classes: chance 0.1). The old
    random-stroke glyphs scored about the same on seen and unseen writers (0.96 / 0.95 over 6
    seeds of this set-up; these glyphs about 0.91 / 0.76)."""
    codes = chinese_codes(10)
    x, y, writer = pixel_features(range(1, 13), codes, 4)
    seen = writer <= 6
    held_out = np.zeros(len(y), bool)
    for w in range(1, 7):
        for label in range(10):
            held_out[np.flatnonzero((writer == w) & (y == label))[0]] = True
    train = seen & ~held_out
    mean, scale = x[train].mean(0), x[train].std(0) + 0.1
    weights, bias = softmax_regression((x[train] - mean) / scale, y[train], 10)

    def accuracy(mask):
        return float((((x[mask] - mean) / scale @ weights + bias).argmax(1) == y[mask]).mean())

    train_accuracy, seen_accuracy, unseen_accuracy = accuracy(train), accuracy(held_out), accuracy(~seen)
    assert train_accuracy >= 0.98
    assert train_accuracy > seen_accuracy > unseen_accuracy > 0.4, (train_accuracy, seen_accuracy, unseen_accuracy)


def test_every_class_has_its_own_composition():
    """All 3,755 GB2312 level-1 classes and the symbols: distinct strokes, inside the unit square."""
    codes = chinese_codes(3755) + symbol_codes(len(SYMBOLS))
    seen = set()
    for code in codes:
        strokes = glyph_strokes(code)
        assert strokes.ndim == 2 and strokes.shape[1] == 4 and 0.05 <= strokes.min() and strokes.max() <= 0.95
        seen.add(np.round(strokes, 6).tobytes())
    assert len(seen) == len(codes)


def test_a_writer_keeps_a_style():
    """Two samples of one class by one writer are closer than the same class by two writers."""
    code = chinese_codes(10)[3]
    settings = Preprocess(size=24)

    def samples(writer):
        tags, bitmaps = writer_records(writer, [code], 6, seed=3)
        return np.stack([preprocess_image(b, settings).astype(np.float64).ravel() for b in bitmaps])

    writers = [samples(w) for w in range(1, 9)]
    within = np.mean([np.abs(s[:, None] - s[None]).sum(-1)[np.triu_indices(6, 1)].mean() for s in writers])
    between = np.mean([np.abs(a[:, None] - b[None]).sum(-1).mean() for i, a in enumerate(writers) for b in writers[i + 1:]])
    assert within < 0.85 * between, (within, between)
    style = writer_style(np.random.default_rng(0))
    assert style != writer_style(np.random.default_rng(1)) and -0.22 <= style.slant <= 0.22


def test_render_glyph_is_a_valid_record():
    bitmap = render_glyph(0xB0A1, np.random.default_rng(0), width=12, height=78)
    assert bitmap.shape == (78, 12)
    from gntkit.formats.gnt import encode_records
    gnt = GntFile(np.frombuffer(encode_records([0xB0A1], [bitmap]), np.uint8))
    assert np.array_equal(gnt.bitmap(0), bitmap)


LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.mark.skipif(not LATIN_FONT.is_file(), reason="needs DejaVuSans (Debian: fonts-dejavu-core)")
def test_font_glyphs_take_the_writers_style(tmp_path):
    """Symbols drawn from a font: deterministic, valid records, each writer distorts them his own way;
    a character the font lacks (its .notdef box) is one clear error, not a silent box."""
    codes = symbol_codes(6)
    a = writer_records(1001, codes, 2, seed=0, font=LATIN_FONT)
    assert a[0] == writer_records(1001, codes, 2, seed=0, font=LATIN_FONT)[0]
    assert all(np.array_equal(x, y) for x, y in zip(a[1], writer_records(1001, codes, 2, seed=0, font=LATIN_FONT)[1]))
    b = writer_records(1002, codes, 2, seed=0, font=LATIN_FONT)
    assert all(bitmap.dtype == np.uint8 and bitmap.min() < 128 and bitmap.max() == 255 for bitmap in a[1] + b[1])
    settings = Preprocess(size=24)
    first = {code: preprocess_image(bitmap, settings).astype(float) for code, bitmap in zip(*a)}
    second = {code: preprocess_image(bitmap, settings).astype(float) for code, bitmap in zip(*b)}
    assert all(np.abs(first[c] - second[c]).mean() > 2 for c in codes)
    with pytest.raises(GntkitError, match=r"no glyph for '啊' \(U\+554A\)"):
        render_glyph(0xB0A1, np.random.default_rng(0), font=LATIN_FONT)
    with pytest.raises(GntkitError, match=r"DejaVuSans.ttf: the font has no glyph for '啊'"):
        write_corpus(tmp_path / "font", writers=1, num_classes=1, style="f", num_symbols=3, font=LATIN_FONT)


def test_font_errors_are_one_sentence(tmp_path):
    with pytest.raises(GntkitError, match="no such font file"):
        write_corpus(tmp_path / "c", writers=1, num_classes=2, font=tmp_path / "missing.ttf")
    assert not (tmp_path / "c").exists()
    (tmp_path / "not-a-font.ttf").write_bytes(b"PK\x03\x04 not a font")
    with pytest.raises(GntkitError, match="not a font file"):
        render_glyph(0xB0A1, np.random.default_rng(0), font=tmp_path / "not-a-font.ttf")
    if find_cjk_font() is None:
        with pytest.raises(GntkitError, match="found no CJK font"):
            render_glyph(0xB0A1, np.random.default_rng(0), font="auto")
    else:  # a CJK font is installed: it draws GB2312 characters
        bitmap = render_glyph(0xB0A1, np.random.default_rng(0), font="auto")
        assert bitmap.min() < 128 and bitmap.max() == 255


def test_bad_arguments_are_one_sentence():
    rng = np.random.default_rng(0)
    with pytest.raises(GntkitError, match="tag_code must be an integer 0..0xFFFF"):
        render_glyph(0x10000, rng)
    with pytest.raises(GntkitError, match="rng must be a numpy.random.Generator"):
        render_glyph(0xB0A1, 0)
    with pytest.raises(GntkitError, match="style must be a WriterStyle"):
        render_glyph(0xB0A1, rng, style={"slant": 0.1})
    with pytest.raises(GntkitError, match="1..65535 pixels a side"):
        render_glyph(0xB0A1, rng, width=0, height=10)
    with pytest.raises(GntkitError, match="samples_per_class must be an integer of at least 1"):
        writer_records(1001, [0xB0A1], 0)


def test_synth_writes_any_registered_format_it_knows_through_the_registry(tmp_path):
    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.samples.inspection import inspect_sources

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "pot"), "--format", "pot", "--writers", "2", "--classes", "5"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pot").iterdir()) == ["1001.pot", "1002.pot"]
    report = inspect_sources(tmp_path / "pot").to_json()
    assert report["formats"] == {"pot": 2} and report["records"] == 2 * 5 * 2 and report["problems"] == []
    refused = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--format", "png"])
    assert refused.exit_code == 2 and "format must be one of dgrl, gnt, pot" in refused.output and "Traceback" not in refused.output


def test_page_lines_record_each_glyph_box_without_changing_the_page():
    codes = chinese_codes(30) + symbol_codes(5)
    plain = page_lines(1002, 1, codes, lines=4, glyph_height=40, seed=3)
    boxes: list = []
    recorded = page_lines(1002, 1, codes, lines=4, glyph_height=40, seed=3, boxes=boxes)
    assert len(boxes) == len(plain) == 4
    for (codes_a, top_a, left_a, bitmap_a), (codes_b, top_b, left_b, bitmap_b), line_boxes in zip(plain, recorded, boxes):
        assert (codes_a, top_a, left_a) == (codes_b, top_b, left_b) and np.array_equal(bitmap_a, bitmap_b)
        assert len(line_boxes) == len(codes_a)
        covered = np.zeros(bitmap_a.shape, bool)
        previous_right = 0
        for top, left, height, width in line_boxes:
            assert 0 <= top and top + height <= bitmap_a.shape[0] and left >= previous_right and height > 0 and width > 0
            assert (bitmap_a[top:top + height, left:left + width] < 255).any()  # each box holds its glyph's ink
            covered[top:top + height, left:left + width] = True
            previous_right = left + width
        assert not (bitmap_a[~covered] < 255).any()  # and no ink lies outside the boxes
