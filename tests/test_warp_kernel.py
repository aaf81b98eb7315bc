"""The host warp of training (gntkit.kernels.warp through augment.warp_batch): against a plain numpy
reference, against torch's grid_sample, its input checks, and the TF trainer's CPU step seeing the
images torch's random_warp makes from the same seed, epoch and batch index."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.tools.reference.warp import naive_bilinear
from gntkit.training.augment import AUGMENT, affine_matrices, elastic_offsets, random_warp_batch, sampling_grid, warp_batch


def wide_warps(rng, count, size, elastic=True):
    """Warps far larger than training's: many points land outside the image, some far outside."""
    matrices = affine_matrices(rng, count)
    matrices[:, :, :2] *= rng.uniform(0.5, 2.0, (count, 1, 1)).astype(np.float32)
    matrices[:, :, 2] = rng.uniform(-1.5, 1.5, (count, 2)).astype(np.float32)
    matrices[0, :, 2] = [40.0, -40.0]  # the whole image outside
    offsets = (elastic_offsets(rng, count, size) * 4).astype(np.float32) if elastic else None
    return matrices, offsets


def ink(rng, count, size):
    return rng.integers(0, 256, (count, size, size), dtype=np.uint8)


@pytest.mark.numba
@pytest.mark.parametrize("size", [2, 3, 8, 17])
@pytest.mark.parametrize("elastic", [True, False])
def test_kernel_equals_the_numpy_reference(size, elastic):
    rng = np.random.default_rng(size)
    images = ink(rng, 6, size)
    matrices, offsets = wide_warps(rng, 6, size, elastic)
    grid = sampling_grid(matrices, offsets, size)
    assert (np.abs(grid) > 1).mean() > 0.2  # points outside the image are part of the test
    expected = naive_bilinear(images.astype(np.float64) / 255, grid.astype(np.float64))
    got = warp_batch(images, matrices, offsets)
    assert got.dtype == np.float32 and got.shape == images.shape
    np.testing.assert_allclose(got, expected, atol=4e-6)
    assert np.all(got[0] == 0) and got.max() > 0.2 and got.min() >= 0 and got.max() <= 1


@pytest.mark.numba
def test_identity_warp_gives_the_image_over_255():
    rng = np.random.default_rng(1)
    images = ink(rng, 3, 12)
    identity = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (3, 1, 1))
    got = warp_batch(images, identity, np.zeros((3, 4, 4, 2), np.float32))
    np.testing.assert_allclose(got, images / 255, atol=1e-6)


@pytest.mark.numba
def test_kernel_output_does_not_depend_on_the_thread_split():
    numba = pytest.importorskip("numba")
    rng = np.random.default_rng(2)
    images = ink(rng, 37, 16)
    matrices, offsets = wide_warps(rng, 37, 16)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = warp_batch(images, matrices, offsets)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(warp_batch(images, matrices, offsets), serial)


@pytest.mark.parametrize("size", [5, 32, 64])
def test_kernel_equals_torch_grid_sample(size):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(10 + size)
    images = ink(rng, 8, size)
    matrices, offsets = affine_matrices(rng, 8), elastic_offsets(rng, 8, size)
    matrices[:4, :, 2] *= 8  # half the batch shifted partly out of the image
    grid = torch.from_numpy(sampling_grid(matrices, offsets, size))
    expected = F.grid_sample(torch.from_numpy(images).float()[:, None] / 255, grid, mode="bilinear",
                             padding_mode="zeros", align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(warp_batch(images, matrices, offsets), expected, atol=1e-5)


@pytest.mark.numba
def test_random_warp_batch_draws_as_torch_random_warp():
    # the same rng gives torch's CPU warp (affines, then offsets, numpy grid, grid_sample)
    torch = pytest.importorskip("torch")
    from gntkit.training import torch_trainer

    images = ink(np.random.default_rng(4), 10, 24)
    got = random_warp_batch(images, np.random.default_rng([1, 2, 3, 7]))
    x = torch.from_numpy(images).float()[:, None] / 255
    expected = torch_trainer.random_warp(x, np.random.default_rng([1, 2, 3, 7]))[:, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - images / 255).max() > 0.3  # the warp moved ink
    assert AUGMENT.elastic_pixels > 0  # so the elastic draws were compared too


@pytest.mark.parametrize("images, matrices, offsets, sentence", [
    (np.zeros((2, 8, 8), np.float32), np.zeros((2, 2, 3), np.float32), None,
     "expected images as a uint8 numpy array (B, S, S) with S >= 2, found float32 (2, 8, 8)"),
    (np.zeros((2, 8, 6), np.uint8), np.zeros((2, 2, 3), np.float32), None, "found uint8 (2, 8, 6)"),
    (np.zeros((2, 1, 1), np.uint8), np.zeros((2, 2, 3), np.float32), None, "found uint8 (2, 1, 1)"),
    ([[[0, 0], [0, 0]]], np.zeros((1, 2, 3), np.float32), None, "found list"),
    (np.zeros((2, 8, 8), np.uint8), np.zeros((3, 2, 3), np.float32), None,
     "expected matrices as float32 (2, 2, 3) for 2 images, found float32 (3, 2, 3)"),
    (np.zeros((2, 8, 8), np.uint8), np.zeros((2, 2, 3), np.float64), None, "found float64 (2, 2, 3)"),
    (np.zeros((2, 8, 8), np.uint8), np.zeros((2, 2, 3), np.float32), np.zeros((2, 4, 3, 2), np.float32),
     "expected elastic offsets as float32 (2, G, G, 2) with G >= 2, found float32 (2, 4, 3, 2)"),
    (np.zeros((2, 8, 8), np.uint8), np.zeros((2, 2, 3), np.float32), np.zeros((2, 1, 1, 2), np.float32),
     "found float32 (2, 1, 1, 2)"),
    (np.zeros((2, 8, 8), np.uint8), np.full((2, 2, 3), np.nan, np.float32), None,
     "expected finite matrices and elastic offsets, found NaN or infinity"),
])
def test_warp_batch_names_bad_input(images, matrices, offsets, sentence):
    with pytest.raises(GntkitError, match=sentence.replace("(", r"\(").replace(")", r"\)")) as info:
        warp_batch(images, matrices, offsets)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


@pytest.mark.numba
def test_warp_batch_takes_any_layout_of_images():
    rng = np.random.default_rng(5)
    images = ink(rng, 4, 10)
    matrices, offsets = wide_warps(rng, 4, 10)
    flipped = np.ascontiguousarray(images.transpose(0, 2, 1)).transpose(0, 2, 1)  # same values, F-ordered
    assert not flipped.flags.c_contiguous
    np.testing.assert_array_equal(warp_batch(flipped, matrices, offsets), warp_batch(images, matrices, offsets))


def _tf_step(config, images, labels, *, epoch, index, on_gpu=None):
    """Weights of cnn3 (seeded) after one Steps.train_step on (images, labels), and the Steps."""
    tf = pytest.importorskip("tensorflow")
    from gntkit.models.tf import create_model
    from gntkit.training import tf_trainer

    tf.keras.utils.set_random_seed(0)
    model = create_model("cnn3", 4, images.shape[-1], width=0.25)
    optimizer = tf_trainer.build_optimizer(config, loss_scale=False)
    optimizer.build(model.trainable_variables)
    steps = tf_trainer.Steps(model, optimizer, config, tf.distribute.get_strategy(), on_gpu=on_gpu)
    steps.begin_epoch(epoch)
    steps.train_step(images, labels, 0.05, index)
    totals = steps.totals(False)
    return [v.numpy() for v in model.trainable_variables], totals, steps


def test_tf_cpu_step_trains_on_the_images_torch_random_warp_makes():
    # The TF step on a CPU warps on the host with torch's rng, draws and sampling: one step on
    # uint8 images with augmentation ends at the weights of one step, without augmentation, on
    # the float images torch's random_warp made from the same seed, epoch and batch index.
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from gntkit.training import tf_trainer, torch_trainer
    from gntkit.training.config import TrainConfig

    rng = np.random.default_rng(6)
    images, labels = ink(rng, 8, 20), np.arange(8) % 4
    common = dict(model="cnn3", epochs=1, batch_size=8, optimizer="sgd", momentum=0.0, weight_decay=0.0,
                  label_smoothing=0.0, schedule="constant", seed=17)
    augmented = TrainConfig(augment=True, **common)
    x = torch.from_numpy(images).float()[:, None] / 255
    seen_by_torch = torch_trainer.random_warp(x, np.random.default_rng([17, 2, 3, 7]))[:, 0].numpy()
    np.testing.assert_allclose(tf_trainer.host_warp(tf.constant(images), 17, 2, 3), seen_by_torch, atol=1e-5)

    warped_here, totals, steps = _tf_step(augmented, images, labels, epoch=2, index=3)
    assert steps.host_warp and totals[2] == 8
    # a batch that comes as a tensor (tf.data gives EagerTensors) is warped alike
    from_tensor, _, _ = _tf_step(augmented, tf.constant(images), tf.constant(labels), epoch=2, index=3)
    for a, b in zip(warped_here, from_tensor):
        np.testing.assert_array_equal(a, b)
    plain = TrainConfig(augment=False, **common)
    fed_torch_warp, _, _ = _tf_step(plain, seen_by_torch, labels, epoch=2, index=3)
    unwarped, _, _ = _tf_step(plain, images, labels, epoch=2, index=3)
    for a, b in zip(warped_here, fed_torch_warp):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(warped_here, unwarped)) > 1e-4  # the warp mattered
    # another batch index draws other warps
    other_index, _, _ = _tf_step(augmented, images, labels, epoch=2, index=4)
    assert max(np.abs(a - b).max() for a, b in zip(warped_here, other_index)) > 1e-4


def test_tf_step_on_gpus_keeps_warping_in_the_graph():
    # on_gpu=True (here still run on the CPU) takes the in-graph path: uint8 into the step, TF draws
    pytest.importorskip("tensorflow")
    from gntkit.training.config import TrainConfig

    rng = np.random.default_rng(7)
    images, labels = ink(rng, 8, 20), np.arange(8) % 4
    config = TrainConfig(model="cnn3", epochs=1, batch_size=8, optimizer="sgd", augment=True, seed=17)
    in_graph, totals, steps = _tf_step(config, images, labels, epoch=0, index=0, on_gpu=True)
    on_host, _, host_steps = _tf_step(config, images, labels, epoch=0, index=0)
    assert not steps.host_warp and host_steps.host_warp and totals[2] == 8
    assert all(np.isfinite(w).all() for w in in_graph)
    # TF's stateless draws are other warps than numpy's: the two paths really differ
    assert max(np.abs(a - b).max() for a, b in zip(in_graph, on_host)) > 1e-5


def test_tf_preview_on_a_cpu_shows_the_host_warp_as_torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from gntkit.training import tf_trainer, torch_trainer
    from gntkit.training.config import TrainConfig

    images = ink(np.random.default_rng(8), 5, 16)
    backend = tf_trainer.TFBackend(TrainConfig(framework="tf", model="cnn3", augment=True, device="cpu", seed=3))
    preview = backend.augmented_preview(images)
    x = torch.from_numpy(images).float()[:, None] / 255
    expected = torch_trainer.random_warp(x, np.random.default_rng([3, 99]))[:, 0].numpy() * 255
    assert preview.dtype == np.uint8 and preview.shape == images.shape
    # the same warp; rounding to uint8 may differ by one level where the two floats straddle .5
    assert np.abs(preview.astype(float) - np.round(expected)).max() <= 1
    assert np.abs(preview.astype(float) - images).max() > 50  # the warp moved ink
