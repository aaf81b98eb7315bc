"""preprocess_records (bitmaps read in place from a buffer) against preprocess_batch and the reference."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import preprocess_batch, preprocess_records
from gntkit.tools.reference import preprocess as naive_preprocess


def scattered(seed: int, count: int = 9):
    """Bitmaps at random places in one read-only buffer with gaps, and the same bitmaps gathered."""
    rng = np.random.default_rng(seed)
    heights = rng.integers(1, 90, count).astype(np.int32)
    widths = rng.integers(1, 90, count).astype(np.int32)
    gaps = rng.integers(0, 40, count)
    starts = np.zeros(count, np.int64)
    position = 0
    for i in range(count):
        position += int(gaps[i])
        starts[i] = position
        position += int(heights[i]) * int(widths[i])
    buffer = np.full(position + 7, 255, np.uint8)
    images = []
    for i in range(count):
        image = np.where(rng.random((heights[i], widths[i])) < 0.3, rng.integers(0, 200, (heights[i], widths[i])), 255).astype(np.uint8)
        buffer[starts[i]:starts[i] + image.size] = image.ravel()
        images.append(image)
    buffer.flags.writeable = False
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(heights.astype(np.int64) * widths, out=offsets[1:])
    return buffer, starts, heights, widths, np.concatenate([im.ravel() for im in images]), offsets, images


@pytest.mark.parametrize("settings", [Preprocess(), Preprocess(size=32, binarize="otsu", denoise=True, contrast=True)])
@pytest.mark.parametrize("serial", [False, True])
def test_equals_preprocess_batch_and_reference(settings, serial):
    buffer, starts, heights, widths, pixels, offsets, images = scattered(1)
    got = preprocess_records(buffer, starts, heights, widths, settings, serial=serial)
    assert np.array_equal(got, preprocess_batch(pixels, offsets, heights, widths, settings))
    for i, image in enumerate(images):
        want = naive_preprocess.preprocess(image, settings)
        assert np.abs(got[i].astype(int) - want.astype(int)).max() <= 1


def test_empty_and_out():
    buffer, starts, heights, widths, *_ = scattered(2, count=3)
    out = np.empty((3, 64, 64), np.uint8)
    assert preprocess_records(buffer, starts, heights, widths, Preprocess(), out=out) is out
    empty = preprocess_records(buffer, starts[:0], heights[:0], widths[:0], Preprocess())
    assert empty.shape == (0, 64, 64)


def test_bad_spans_raise():
    buffer, starts, heights, widths, *_ = scattered(3, count=4)
    past = starts.copy()
    past[2] = len(buffer) - 1
    with pytest.raises(GntkitError, match=r"Sample 2 spans .* past the .* bytes of the buffer"):
        preprocess_records(buffer, past, heights, widths, Preprocess())
    negative = starts.copy()
    negative[1] = -5
    with pytest.raises(GntkitError, match="Sample 1 starts at -5"):
        preprocess_records(buffer, negative, heights, widths, Preprocess())
    with pytest.raises(GntkitError, match="starts"):
        preprocess_records(buffer, starts.astype(np.int32), heights, widths, Preprocess())
    with pytest.raises(GntkitError, match="raw=True"):
        preprocess_records(buffer, starts, heights, widths, Preprocess(raw=True))
