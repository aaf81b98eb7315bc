"""Preprocessing kernels against the plain-numpy reference, plus settings and input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image

from gntkit.errors import GntkitError
from gntkit.kernels import edits
from gntkit.kernels import preprocess as kernels
from gntkit.samples.photos import load_image, preprocess_image, to_grey
from gntkit.samples.preprocess import MAX_IMAGE_PIXELS, Preprocess
from gntkit.samples.transform import preprocess_batch
from gntkit.tools.reference import preprocess as naive

# ---------------------------------------------------------------- inputs

EDGE_SHAPES = [(1, 1), (1, 9), (9, 1), (1, 200), (200, 1), (12, 78), (78, 12), (2, 3), (56, 56), (64, 64),
               (75, 68), (300, 250), (5, 7)]


def hwdb_like(rng, height, width):
    """A bitmap like a GNT one: 255 paper, a few dark strokes with grey edges, some specks."""
    image = np.full((height, width), 255, np.uint8)
    for _ in range(rng.integers(1, 6)):
        if rng.random() < 0.5:  # horizontal-ish stroke
            y = rng.integers(0, height)
            x0, x1 = sorted(rng.integers(0, width, 2))
            thickness = rng.integers(1, max(2, height // 8) + 1)
            image[y : y + thickness, x0 : x1 + 1] = rng.integers(0, 120)
        else:
            x = rng.integers(0, width)
            y0, y1 = sorted(rng.integers(0, height, 2))
            thickness = rng.integers(1, max(2, width // 8) + 1)
            image[y0 : y1 + 1, x : x + thickness] = rng.integers(0, 120)
    edge = (rng.random((height, width)) < 0.05) & (image == 255)
    image[edge] = rng.integers(120, 255, int(edge.sum()))
    return image


def random_images(rng, count, shapes=None):
    images = []
    for i in range(count):
        if shapes is not None:
            height, width = shapes[i % len(shapes)]
        else:
            height, width = (int(v) for v in rng.integers(1, 160, 2))
        kind = rng.random()
        if kind < 0.6:
            images.append(hwdb_like(rng, height, width))
        elif kind < 0.8:
            images.append(rng.integers(0, 256, (height, width), dtype=np.uint8))
        elif kind < 0.9:  # grey paper, photo-like
            paper = rng.integers(150, 230)
            image = np.clip(rng.normal(paper, 6, (height, width)), 0, 255).astype(np.uint8)
            image[hwdb_like(rng, height, width) < 120] = rng.integers(10, 80)
            images.append(image)
        else:
            images.append(np.full((height, width), 255 if rng.random() < 0.5 else 0, np.uint8))
    return images


def pack(images):
    """Images -> (pixels, pixel_offsets, heights, widths) as in SampleBatch raw mode."""
    offsets = np.zeros(len(images) + 1, np.int64)
    offsets[1:] = np.cumsum([image.size for image in images])
    pixels = np.concatenate([image.ravel() for image in images]) if images else np.zeros(0, np.uint8)
    heights = np.array([image.shape[0] for image in images], np.int32)
    widths = np.array([image.shape[1] for image in images], np.int32)
    return pixels, offsets, heights, widths


def assert_close(found, expected, tolerance=1):
    assert found.shape == expected.shape and found.dtype == expected.dtype
    diff = np.abs(found.astype(np.int64) - expected.astype(np.int64))
    assert diff.max(initial=0) <= tolerance, f"max difference {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


def kernel_histogram(image):
    hist = np.empty(256, np.int64)
    edits.grey_histogram(image, hist)
    return hist


# ---------------------------------------------------------------- single steps


def test_grey_from_rgb_matches_reference():
    rng = np.random.default_rng(1)
    for channels in (3, 4):
        rgb = rng.integers(0, 256, (37, 23, channels), dtype=np.uint8)
        rgb[0, 0] = 255
        rgb[0, 1] = 0
        if channels == 4:
            rgb[0, 1, 3] = 255
            rgb[1, 0, 3] = 0
        grey = np.empty(rgb.shape[:2], np.uint8)
        edits.grey_from_rgb(rgb, grey)
        assert_close(grey, naive.grey(rgb))
        assert grey[0, 0] == 255 and grey[0, 1] == 0
        if channels == 4:
            assert grey[1, 0] == 255  # fully transparent -> white paper


def test_grey_exact_values():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], np.uint8)
    grey = np.empty((1, 4), np.uint8)
    edits.grey_from_rgb(rgb, grey)
    assert grey.tolist() == [[76, 150, 29, 100]]  # round(76.245), round(149.685), round(29.07)


def test_histogram():
    image = np.random.default_rng(2).integers(0, 256, (31, 17), dtype=np.uint8)
    assert np.array_equal(kernel_histogram(image), np.bincount(image.ravel(), minlength=256))


def kernel_contrast(image):
    lo, hi = edits.contrast_levels(kernel_histogram(image))
    table = np.empty(256, np.uint8)
    edits.contrast_table(lo, hi, table)
    result = np.empty_like(image)
    edits.apply_table(image, table, result)
    return result


def test_contrast_matches_reference_exactly():
    rng = np.random.default_rng(3)
    for image in random_images(rng, 60, EDGE_SHAPES):
        assert np.array_equal(kernel_contrast(image), naive.contrast(image))


def test_contrast_on_grey_paper():
    image = np.full((20, 20), 200, np.uint8)
    image[5:15, 8:10] = 40
    result = kernel_contrast(image)
    assert set(np.unique(result)) == {0, 255}
    one_level = np.full((4, 4), 77, np.uint8)
    assert np.array_equal(kernel_contrast(one_level), one_level)


def test_otsu_maximises_exact_variance():
    rng = np.random.default_rng(4)
    for image in random_images(rng, 25, EDGE_SHAPES[:8] + [(20, 30), (40, 40)]):
        found = edits.otsu_threshold(kernel_histogram(image))
        variances = naive.otsu_variances(image)
        present = [v for v in variances if v is not None]
        if not present:
            assert found == 0
            continue
        best = max(present)
        assert variances[found] is not None
        assert float(variances[found]) >= float(best) * (1 - 1e-12)


@pytest.mark.parametrize(
    "levels, expected",
    [((255,), 0), ((0,), 0), ((0, 255), 0), ((30, 200), 30), ((10, 10, 10, 250), 10)],
)
def test_otsu_edge_cases(levels, expected):
    image = np.array([levels], np.uint8)
    assert edits.otsu_threshold(kernel_histogram(image)) == expected == naive.otsu_threshold(image)


def test_threshold_table_composes():
    table = np.empty(256, np.uint8)
    edits.identity_table(table)
    edits.threshold_table(table, 100)
    assert np.array_equal(table, naive.binarize(np.arange(256, dtype=np.uint8)[None], 100)[0])


def test_remap_histogram():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (20, 20), dtype=np.uint8)
    table = rng.integers(0, 256, 256).astype(np.uint8)
    mapped = np.empty(256, np.int64)
    edits.remap_histogram(kernel_histogram(image), table, mapped)
    assert np.array_equal(mapped, np.bincount(table[image].ravel(), minlength=256))


def test_remove_specks_matches_reference():
    rng = np.random.default_rng(6)
    images = [np.where(rng.random(shape) < p, rng.integers(0, 255, shape), 255).astype(np.uint8)
              for shape in EDGE_SHAPES for p in (0.05, 0.3)]
    images += random_images(rng, 20)
    for image in images:
        result = image.copy()
        edits.remove_specks(result)
        assert np.array_equal(result, naive.denoise(image))


def test_remove_specks_cases():
    image = np.full((5, 5), 255, np.uint8)
    image[0, 0] = 0  # corner speck: outside counts as background
    image[2, 2] = image[3, 3] = 10  # diagonal pair: not isolated
    result = image.copy()
    edits.remove_specks(result)
    assert result[0, 0] == 255 and result[2, 2] == 10 and result[3, 3] == 10
    single = np.zeros((1, 1), np.uint8)
    edits.remove_specks(single)
    assert single[0, 0] == 255


def test_ink_box():
    rng = np.random.default_rng(7)
    for image in random_images(rng, 60, EDGE_SHAPES):
        assert kernels.ink_box(image) == naive.ink_box(image)
    assert kernels.ink_box(np.full((3, 4), 255, np.uint8)) == (0, 3, 0, 4)


def test_fit_size_exhaustive():
    for inner in (1, 2, 7, 56, 84, 196):
        for height in range(1, 90, 3):
            for width in list(range(1, 90, 5)) + [300, 999]:
                assert kernels.fit_size(height, width, inner) == naive.fit_size(height, width, inner)


def kernel_resize(image, height, width):
    canvas = np.zeros((height, width), np.uint8)
    side = max(image.shape + (height, width))
    kernels.resample_into(image, 0, image.shape[0], 0, image.shape[1], canvas, 0, 0, height, width, 0,
                          np.empty(max(image.shape[1], min(image.shape[0], height) * width), np.float32),
                          np.empty(height * width, np.float32), np.empty(image.shape[1]),
                          np.empty((2, side), np.uint64), np.empty((2, 3 * side), np.float32))
    return canvas


@pytest.mark.parametrize("target", [(1, 1), (1, 56), (56, 1), (9, 56), (56, 60), (88, 88), (196, 150)])
def test_resize_matches_reference(target):
    rng = np.random.default_rng(8)
    for image in random_images(rng, 12, EDGE_SHAPES):
        assert_close(kernel_resize(image, *target), naive.resize(image, *target))


def test_resize_long_sums():
    # shrinking by hundreds: each output sums hundreds of taps (float64 accumulation in the kernels)
    rng = np.random.default_rng(15)
    for shape, target in [((20000, 3), (56, 2)), ((3, 20000), (2, 56)), ((5000, 700), (56, 8))]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        assert_close(kernel_resize(image, *target), naive.resize(image, *target))
        constant = np.full(shape, 255, np.uint8)
        assert np.array_equal(kernel_resize(constant, *target), np.full(target, 255, np.uint8))


def test_resize_identity_and_constant():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (13, 21), dtype=np.uint8)
    assert np.array_equal(kernel_resize(image, 13, 21), image)
    for shape in [(7, 300), (300, 7), (1, 1)]:
        constant = np.full(shape, 255, np.uint8)
        assert np.array_equal(kernel_resize(constant, 56, 23), np.full((56, 23), 255, np.uint8))


def test_resize_area_averages_when_shrinking():
    image = np.array([[0, 255, 0, 255]], np.uint8)
    assert kernel_resize(image, 1, 2).tolist() == [[128, 128]]  # 127.5 rounded half up
    assert kernel_resize(image, 1, 1).tolist() == [[128]]
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    assert np.abs(kernel_resize(checker, 32, 32).astype(int) - 128).max() <= 1  # no aliasing


def test_resize_bilinear_when_enlarging():
    image = np.array([[0, 200]], np.uint8)
    assert kernel_resize(image, 1, 4).tolist() == [[0, 50, 150, 200]]


# ---------------------------------------------------------------- the whole chain

SETTINGS = [
    Preprocess(),
    Preprocess(size=96),
    Preprocess(size=224, margin=0),
    Preprocess(crop=False, invert=False),
    Preprocess(size=64, binarize="otsu"),
    Preprocess(size=64, binarize=128, denoise=True),
    Preprocess(size=96, contrast=True),
    Preprocess.for_photos(64),
    Preprocess(size=8, margin=3, denoise=True),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s.steps))
def test_batch_matches_reference(settings):
    rng = np.random.default_rng(10)
    images = random_images(rng, 2 * len(EDGE_SHAPES), EDGE_SHAPES) + random_images(rng, 12)
    images += [np.full((30, 20), 255, np.uint8), np.zeros((30, 20), np.uint8)]
    out = preprocess_batch(*pack(images), settings)
    assert out.shape == (len(images), settings.size, settings.size) and out.dtype == np.uint8
    for image, found in zip(images, out):
        assert_close(found, naive.preprocess(image, settings))


def test_default_output_layout():
    image = np.full((40, 20), 255, np.uint8)
    image[10:30, 5:15] = 0  # a 20 x 10 ink block
    found = preprocess_batch(*pack([image]), Preprocess())[0]
    # crop -> 20x10 -> fit 56: 56x28, centred inside the 4-pixel margin, inverted
    expected = np.zeros((64, 64), np.uint8)
    expected[4:60, 18:46] = 255
    assert np.array_equal(found, expected)


def test_all_background_and_all_ink():
    blank = np.full((17, 33), 255, np.uint8)
    ink = np.zeros((17, 33), np.uint8)
    for settings in SETTINGS:
        out = preprocess_batch(*pack([blank, ink]), settings)
        background = 0 if settings.invert else 255
        assert np.all(out[0] == background)  # nothing to crop: resized whole, blank
        assert_close(out[1], naive.preprocess(ink, settings))


def test_tiny_and_extreme_aspect():
    settings = Preprocess()
    dot = np.zeros((1, 1), np.uint8)
    out = preprocess_batch(*pack([dot]), settings)[0]
    assert np.all(out[4:60, 4:60] == 255) and out.sum() == 255 * 56 * 56  # a dot fills the inner box
    bar = np.zeros((12, 78), np.uint8)
    out = preprocess_batch(*pack([bar]), settings)[0]
    rows = np.flatnonzero(out.any(1))
    assert len(rows) == 9 and np.all(out[rows[0] : rows[-1] + 1, 4:60] == 255)  # 12*56/78 = 8.6 -> 9


def test_out_argument_and_empty_batch():
    rng = np.random.default_rng(11)
    images = random_images(rng, 5)
    out = np.full((5, 64, 64), 7, np.uint8)
    assert preprocess_batch(*pack(images), Preprocess(), out=out) is out
    assert np.array_equal(out, preprocess_batch(*pack(images), Preprocess()))
    empty = preprocess_batch(*pack([]), Preprocess(size=32))
    assert empty.shape == (0, 32, 32)


def test_read_only_input_and_offset_start():
    rng = np.random.default_rng(12)
    images = random_images(rng, 6)
    pixels, offsets, heights, widths = pack(images)
    expected = preprocess_batch(pixels, offsets, heights, widths, Preprocess())
    shifted = np.concatenate([np.zeros(5, np.uint8), pixels, np.zeros(3, np.uint8)])
    shifted.flags.writeable = False
    found = preprocess_batch(shifted, offsets + 5, heights, widths, Preprocess())
    assert np.array_equal(found, expected)


def test_input_is_not_modified():
    rng = np.random.default_rng(13)
    pixels, offsets, heights, widths = pack(random_images(rng, 10))
    before = pixels.copy()
    preprocess_batch(pixels, offsets, heights, widths, Preprocess.for_photos())
    assert np.array_equal(pixels, before)


@hypothesis_settings(max_examples=40, deadline=None, derandomize=True)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([8, 17, 32, 64]),
    crop=st.booleans(),
    invert=st.booleans(),
    binarize=st.sampled_from([None, "otsu", 0, 100, 254, 255]),
    denoise=st.booleans(),
    contrast=st.booleans(),
)
def test_property_batch_matches_reference(height, width, seed, size, crop, invert, binarize, denoise, contrast):
    settings = Preprocess(size=size, crop=crop, invert=invert, binarize=binarize, denoise=denoise, contrast=contrast)
    image = random_images(np.random.default_rng(seed), 1, [(height, width)])[0]
    found = preprocess_batch(*pack([image]), settings)[0]
    assert_close(found, naive.preprocess(image, settings))


# ---------------------------------------------------------------- input checks


def good_batch():
    return list(pack(random_images(np.random.default_rng(14), 3, [(4, 5), (6, 2), (3, 3)])))


def _bad(index, value):
    batch = good_batch()
    batch[index] = value(batch[index]) if callable(value) else value
    return batch


@pytest.mark.parametrize(
    "batch",
    [
        _bad(0, lambda p: p.astype(np.int16)),  # pixels dtype
        _bad(0, lambda p: np.stack([p, p], 1)[:, 0]),  # pixels not contiguous
        _bad(0, lambda p: p.reshape(1, -1)),  # pixels 2-D
        _bad(0, lambda p: p.tolist()),  # not an array
        _bad(0, lambda p: p[:-1]),  # offsets[-1] past the end
        _bad(1, lambda o: o.astype(np.int32)),  # offsets dtype
        _bad(1, lambda o: o[:-1]),  # offsets length
        _bad(1, lambda o: o - 1),  # negative start
        _bad(1, lambda o: o + np.array([0, 1, 0, 0])),  # span mismatch
        _bad(1, lambda o: o[::-1].copy()),  # not monotone
        _bad(1, lambda o: o + 1000),  # past the end
        _bad(2, lambda h: h.astype(np.int64)),  # heights dtype
        _bad(2, lambda h: h * np.array([1, 0, 1], np.int32)),  # zero height
        _bad(3, lambda w: -w),  # negative width
        _bad(3, lambda w: w[:2]),  # widths length
    ],
)
def test_bad_batches_raise(batch):
    with pytest.raises(GntkitError):
        preprocess_batch(*batch, Preprocess())


def test_negative_sizes_with_matching_spans_raise():
    pixels = np.zeros(4, np.uint8)
    with pytest.raises(GntkitError):
        preprocess_batch(pixels, np.array([0, 4], np.int64), np.array([-2], np.int32), np.array([-2], np.int32), Preprocess())


def test_huge_image_rejected():
    side = 1 << 14
    heights = np.array([side], np.int32)
    widths = np.array([side + 1], np.int32)
    with pytest.raises(GntkitError, match="more than"):
        preprocess_batch(np.zeros(1, np.uint8), np.array([0, side * (side + 1)], np.int64), heights, widths, Preprocess())
    assert side * (side + 1) > MAX_IMAGE_PIXELS


def test_bad_out_and_settings_raise():
    pixels, offsets, heights, widths = good_batch()
    for out in [np.empty((3, 32, 32), np.uint8), np.empty((3, 64, 64), np.float32),
                np.empty((3, 64, 128), np.uint8)[:, :, ::2], [[0]]]:
        with pytest.raises(GntkitError):
            preprocess_batch(pixels, offsets, heights, widths, Preprocess(), out=out)
    read_only = np.empty((3, 64, 64), np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(GntkitError):
        preprocess_batch(pixels, offsets, heights, widths, Preprocess(), out=read_only)
    with pytest.raises(GntkitError, match="overlap"):
        buffer = np.zeros(3 * 64 * 64, np.uint8)
        buffer[: len(pixels)] = pixels
        preprocess_batch(buffer[: len(pixels)], offsets, heights, widths, Preprocess(), out=buffer.reshape(3, 64, 64))
    with pytest.raises(GntkitError, match="raw"):
        preprocess_batch(pixels, offsets, heights, widths, Preprocess(raw=True))
    with pytest.raises(GntkitError):
        preprocess_batch(pixels, offsets, heights, widths, {"size": 64})


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 7}, {"size": 1025}, {"size": 64.0}, {"size": True}, {"margin": 32}, {"margin": -1},
        {"size": 8, "margin": 4}, {"margin": 2.5}, {"binarize": "mean"}, {"binarize": 256}, {"binarize": -1},
        {"binarize": True}, {"binarize": 1.5}, {"crop": 1}, {"invert": "yes"}, {"raw": True, "binarize": "otsu"},
        {"raw": True, "denoise": True}, {"raw": True, "contrast": True},
    ],
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(GntkitError):
        Preprocess(**kwargs)


def test_settings_defaults_and_normalisation():
    settings = Preprocess()
    assert (settings.size, settings.margin, settings.crop, settings.invert) == (64, 4, True, True)
    assert settings.binarize is None and not settings.denoise and not settings.contrast and not settings.raw
    assert Preprocess(size=96).margin == 6 and Preprocess(size=224).margin == 14
    assert Preprocess(margin=4) == settings
    raw = Preprocess(raw=True)
    assert not raw.crop and not raw.invert and raw.steps == []
    assert Preprocess(binarize=np.int64(9)).binarize == 9 and type(Preprocess(size=np.int32(32)).size) is int
    photos = Preprocess.for_photos(96)
    assert photos.steps[:3] == ["contrast", "binarize:otsu", "denoise"] and photos.size == 96


@pytest.mark.parametrize("settings", SETTINGS + [Preprocess(raw=True)], ids=lambda s: ",".join(s.steps) or "raw")
def test_json_round_trip(settings):
    data = json.loads(json.dumps(settings.to_json()))
    assert data["version"] == 1 and data["steps"] == settings.steps
    assert Preprocess.from_json(data) == settings
    del data["steps"]
    assert Preprocess.from_json(data) == settings


def test_json_steps_in_order():
    data = Preprocess(size=96, contrast=True, binarize=100, denoise=True).to_json()
    assert data["steps"] == ["contrast", "binarize:100", "denoise", "crop",
                             "resize:96x96,margin=6,area-shrink-bilinear-enlarge", "invert"]


@pytest.mark.parametrize(
    "change",
    [{"version": 2}, {"version": None}, {"colour": True}, {"steps": ["invert"]}, {"size": 3}],
)
def test_bad_json_raises(change):
    data = {**Preprocess().to_json(), **change}
    with pytest.raises(GntkitError):
        Preprocess.from_json(data)
    with pytest.raises(GntkitError):
        Preprocess.from_json([1, 2])


# ---------------------------------------------------------------- user images


def test_preprocess_image_grey_equals_batch():
    rng = np.random.default_rng(15)
    image = hwdb_like(rng, 50, 41)
    expected = preprocess_batch(*pack([image]), Preprocess(size=96))[0]
    assert np.array_equal(preprocess_image(image, Preprocess(size=96)), expected)
    assert np.array_equal(preprocess_image(np.asfortranarray(image), Preprocess(size=96)), expected)
    assert np.array_equal(preprocess_image(image[:, :, None], Preprocess(size=96)), expected)


def test_preprocess_image_colour():
    rng = np.random.default_rng(16)
    grey = hwdb_like(rng, 40, 30)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert np.array_equal(to_grey(rgb), grey)
    rgba = np.concatenate([rgb, np.full((40, 30, 1), 255, np.uint8)], axis=2)
    settings = Preprocess()
    assert np.array_equal(preprocess_image(rgba, settings), preprocess_image(grey, settings))
    colour = rng.integers(0, 256, (33, 47, 4), dtype=np.uint8)
    assert_close(preprocess_image(colour, settings), naive.preprocess(colour, settings))


def test_preprocess_image_blank_gives_blank_canvas():
    assert not preprocess_image(np.full((20, 30), 255, np.uint8), Preprocess()).any()


def test_photo_preset_on_a_synthetic_photo():
    rng = np.random.default_rng(17)
    photo = np.clip(rng.normal(180, 5, (120, 100)), 0, 255).astype(np.uint8)  # grey, noisy paper
    photo[30:90, 45:55] = 40  # a vertical stroke
    photo[55:62, 20:80] = 50  # a horizontal stroke
    photo[5, 5] = photo[110, 90] = 30  # specks that would spoil the crop box
    out = preprocess_image(photo, Preprocess.for_photos(64))
    assert_close(out, naive.preprocess(photo, Preprocess.for_photos(64)))
    ys, xs = np.nonzero(out)
    assert (ys.min(), ys.max() + 1) == (4, 60)  # cropped to the cross, not the specks
    assert np.all(out[:4] == 0) and out.max() == 255


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4), np.uint8),
     np.zeros(4, np.uint8), [[0, 255]], np.zeros((2, 2, 2, 3), np.uint8)],
)
def test_preprocess_image_bad_input(image):
    with pytest.raises(GntkitError):
        preprocess_image(image, Preprocess())


def test_load_image_modes(tmp_path):
    rng = np.random.default_rng(18)
    grey = hwdb_like(rng, 30, 20)
    grey[0, 0] = 0
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert np.array_equal(load_image(tmp_path / "grey.png"), grey)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(load_image(str(tmp_path / "rgb.png")), rgb)
    rgba = np.concatenate([rgb, np.full((30, 20, 1), 200, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png").shape == (30, 20, 4)
    deep = grey.astype(np.uint16) * 257
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.array_equal(load_image(tmp_path / "deep.png"), grey)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    assert load_image(tmp_path / "photo.jpg").shape == (30, 20, 3)


def test_load_image_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(GntkitError, match="notes.txt"):
        load_image(tmp_path / "notes.txt")
    with pytest.raises(GntkitError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(GntkitError, match="blank.png.*no ink"):
        load_image(tmp_path / "blank.png")
    good = Image.fromarray(hwdb_like(np.random.default_rng(19), 40, 40))
    good.save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(GntkitError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(GntkitError, match=str(tmp_path.name)):
        load_image(tmp_path)
