"""Preprocess(pad=True) against tf.image.resize_with_pad itself, and the MNIST digit preparation."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.samples.photos import prepare_digit
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import preprocess_batch

pytestmark = pytest.mark.numba  # prepare_digit runs the preprocessing kernel


def _batch(images):
    flat = np.concatenate([im.reshape(-1) for im in images])
    offsets = np.zeros(len(images) + 1, np.int64)
    np.cumsum([im.size for im in images], out=offsets[1:])
    heights = np.array([im.shape[0] for im in images], np.int32)
    widths = np.array([im.shape[1] for im in images], np.int32)
    return flat, offsets, heights, widths


@pytest.mark.parametrize("shape, size", [((28, 28), 224), ((20, 28), 224), ((28, 13), 48), ((60, 40), 32), ((7, 30), 64)])
def test_pad_matches_tensorflow(shape, size):
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(sum(shape) + size)
    ink = rng.integers(0, 256, (3, *shape), dtype=np.uint8)
    ours = preprocess_batch(*_batch([255 - im for im in ink]), Preprocess(size=size, margin=0, crop=False, pad=True))
    theirs = tf.image.resize_with_pad(ink[..., None].astype(np.float32), size, size).numpy()[..., 0]
    expected = np.clip(np.floor(theirs + 0.5), 0, 255).astype(np.int64)
    difference = np.abs(ours.astype(np.int64) - expected)
    # Both compute in float32 with the same taps; a value within float noise of .5 may round apart.
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999


def test_pad_settings():
    settings = Preprocess(size=224, margin=0, crop=False, pad=True)
    assert settings.to_json()["pad"] is True and "tf-resize-with-pad" in settings.steps[-2]
    assert "pad" not in Preprocess().to_json()  # settings without pad read as before
    assert Preprocess.from_json(settings.to_json()) == settings
    with pytest.raises(GntkitError, match="already normalised"):
        Preprocess(pad=True, binarize="otsu")
    # Without inversion the padding is the background of dark-on-light images: 255.
    out = preprocess_batch(*_batch([np.full((10, 20), 0, np.uint8)]), Preprocess(size=40, margin=0, crop=False, invert=False, pad=True))
    assert (out[0, :10] == 255).all() and (out[0, 10:30] == 0).all() and (out[0, 30:] == 255).all()


def _drawn_seven(canvas: int, offset: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("L", (canvas, canvas), 255)
    dy, dx = offset
    scale = canvas / 100
    ImageDraw.Draw(image).line([(dx + 20 * scale, dy + 10 * scale), (dx + 60 * scale, dy + 10 * scale), (dx + 30 * scale, dy + 70 * scale)],
                               fill=20, width=max(2, int(6 * scale)))
    return np.asarray(image)


def test_prepare_digit_fits_20_and_centres_by_mass():
    digit = prepare_digit(_drawn_seven(300, (80, 100)))  # drawn off-centre on a large page
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit)
    assert max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == 20  # longer side fits 20
    mass = digit.astype(np.float64)
    centre = ((mass.sum(1) @ np.arange(28)) / mass.sum(), (mass.sum(0) @ np.arange(28)) / mass.sum())
    assert abs(centre[0] - 13.5) <= 0.5 and abs(centre[1] - 13.5) <= 0.5
    # The same digit at another place and size prepares the same way (up to resampling).
    other = prepare_digit(_drawn_seven(120, (0, 0)))
    assert np.corrcoef(other.ravel(), digit.ravel())[0, 1] > 0.8
    with pytest.raises(GntkitError, match="no ink"):
        prepare_digit(np.full((50, 50), 255, np.uint8), threshold=100)


def test_prepare_digit_follows_the_run_settings():
    digit = prepare_digit(_drawn_seven(100, (0, 0)))
    big = prepare_digit(_drawn_seven(100, (0, 0)), Preprocess(size=56, margin=0, crop=False, pad=True))
    assert big.shape == (56, 56)
    assert abs(int(big.sum()) / 4 - int(digit.sum())) / digit.sum() < 0.05  # the same ink, twice the side


def test_prepare_digit_emnist_style_centres_the_box_in_24():
    digit = prepare_digit(_drawn_seven(300, (80, 100)), style="emnist")
    rows, cols = np.nonzero(digit)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert max(height, width) == 24  # a 2-pixel border on the longer side
    assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 0.5 and abs((cols.min() + cols.max()) / 2 - 13.5) <= 0.5
    with pytest.raises(GntkitError, match="style must be one of mnist, emnist"):
        prepare_digit(_drawn_seven(100, (0, 0)), style="kmnist")


def test_digit_style_from_the_run_manifest(tmp_path):
    import json

    from gntkit.training.prediction import digit_style

    assert digit_style(tmp_path) is None  # no manifest copy: not trained from shards
    for charset, expected in (("mnist", "mnist"), ("emnist-letters", "emnist"), ("fashion-mnist", None)):
        (tmp_path / "dataset_info.json").write_text(json.dumps({"source_formats": ["idx"], "charset": {"name": charset}}))
        assert digit_style(tmp_path) == expected
    (tmp_path / "dataset_info.json").write_text(json.dumps({"source_formats": ["gnt"], "charset": {"name": "gb2312-1"}}))
    assert digit_style(tmp_path) is None
    (tmp_path / "dataset_info.json").write_text("{")
    with pytest.raises(GntkitError, match="dataset_info.json"):
        digit_style(tmp_path)
