"""torch and TensorFlow train alike: the same warp (affine and elastic) against a numpy reference,
the same decoupled weight decay, the same loss, and the same accuracy on the same data."""

from __future__ import annotations

import numpy as np
import pytest

import gntkit.training as training
from gntkit.tools.reference.warp import naive_bilinear
from gntkit.training.augment import AUGMENT, affine_matrices, elastic_offsets, sampling_grid
from gntkit.training.batches import ArrayBatches
from gntkit.training.config import TrainConfig
from test_training import CHARSET, PREPROCESS, glyph_arrays

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from gntkit.models.tf import create_model as create_tf_model  # noqa: E402
from gntkit.models.torch import create_model as create_torch_model  # noqa: E402
from gntkit.training import tf_trainer, torch_trainer  # noqa: E402


def test_warp_with_elastic_field_is_the_same_in_numpy_torch_and_tf():
    images, _ = glyph_arrays(1, seed=9, size=20)
    x = images[:4].astype(np.float32) / 255
    rng = np.random.default_rng(3)
    m, off = affine_matrices(rng, 4), elastic_offsets(rng, 4, 20)
    expected = naive_bilinear(x, sampling_grid(m, off, 20))
    a = torch_trainer.augment_batch(torch.from_numpy(x)[:, None], m, off)[:, 0].numpy()
    b = tf_trainer.apply_affine(tf.constant(x[..., None]), tf.constant(m), tf.constant(off))[..., 0].numpy()
    np.testing.assert_allclose(a, expected, atol=1e-4)
    np.testing.assert_allclose(b, expected, atol=1e-4)
    # the CPU path of training (grid made with numpy) draws and warps the same
    c = torch_trainer.random_warp(torch.from_numpy(x)[:, None], np.random.default_rng(3))[:, 0].numpy()
    np.testing.assert_allclose(c, expected, atol=1e-4)
    assert np.abs(a - x).max() > 0.1  # the warp moved ink


def test_tf_draws_the_elastic_field_from_the_same_ranges():
    _, tf_off = tf_trainer.warp_params(3000, tf.constant([4, 5], tf.int32), 32)
    np_off = elastic_offsets(np.random.default_rng(4), 3000, 32)
    limit = 2 * AUGMENT.elastic_pixels / 32
    assert tf_off.shape == np_off.shape and np.abs(tf_off.numpy()).max() <= limit
    assert abs(np.std(tf_off.numpy()) - np.std(np_off)) < 0.02 * limit


def _one_step(framework, weight_decay, optimizer):
    """Initial and updated (kernels, biases) of cnn3 after one step on one fixed batch."""
    rng = np.random.default_rng(0)
    batch = ArrayBatches(rng.integers(0, 256, (16, 20, 20), dtype=np.uint8), np.arange(16) % 4, 16, shuffle=False)
    config = TrainConfig(framework=framework, model="cnn3", width=0.25, epochs=1, batch_size=16, lr=0.05,
                         schedule="constant", optimizer=optimizer, momentum=0.0, weight_decay=weight_decay,
                         augment=False, label_smoothing=0.1)
    if framework == "torch":
        torch.manual_seed(0)
        model = create_torch_model("cnn3", 4, 20, width=0.25)
        before = [p.detach().numpy().copy() for p in model.parameters()]
        opt = torch_trainer.build_optimizer(model, config)
        torch_trainer.train_one_epoch(model, batch, opt, config, epoch=0, steps_per_epoch=1,
                                      device=torch.device("cpu"))
        after = [p.detach().numpy() for p in model.parameters()]
    else:
        tf.keras.utils.set_random_seed(0)
        model = create_tf_model("cnn3", 4, 20, width=0.25)
        opt = tf_trainer.build_optimizer(config, loss_scale=False)
        opt.build(model.trainable_variables)
        before = [v.numpy().copy() for v in model.trainable_variables]
        steps = tf_trainer.Steps(model, opt, config, tf.distribute.get_strategy())
        tf_trainer.train_one_epoch(steps, batch, config, epoch=0, steps_per_epoch=1)
        after = [v.numpy() for v in model.trainable_variables]
    return before, after


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_is_decoupled_and_skips_biases(framework, optimizer):
    """With decay, a weight ends lr x wd x w0 lower than without: the decay is not in the gradient."""
    wd, lr = 0.3, 0.05
    w0, plain = _one_step(framework, 0.0, optimizer)
    _, decayed = _one_step(framework, wd, optimizer)
    for start, a, b in zip(w0, plain, decayed):
        expected = -lr * wd * start if start.ndim > 1 else np.zeros_like(start)
        np.testing.assert_allclose(b - a, expected, atol=2e-6, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(900)  # two short trainings; minutes when the 2-core machine is shared
def test_both_frameworks_reach_the_same_accuracy_with_the_defaults(tmp_path):
    """Same data, same default options (augmentation, label smoothing, decoupled weight decay, AdamW):
    the final validation accuracies differ by at most 6 points (12 of 200 samples)."""
    train, val = glyph_arrays(16, seed=5), glyph_arrays(10, seed=6)
    results = {}
    for framework in ("torch", "tf"):
        summary = training.train_arrays(train, val, CHARSET, tmp_path / framework, framework=framework,
                                        model="cnn3", epochs=8, batch_size=32, lr=3e-3, preprocess=PREPROCESS,
                                        quiet=True)
        results[framework] = summary["last"]["val_accuracy"]
    assert min(results.values()) >= 0.8, results
    assert abs(results["torch"] - results["tf"]) <= 0.06, results


def test_tf_step_sets_the_learning_rate_inside_the_compiled_step():
    # The schedule's rate reaches the optimizer through the compiled step's argument (no eager
    # assignment per step): after a step the optimizer holds exactly the rate it was given.
    tf = pytest.importorskip("tensorflow")
    from gntkit.models.tf import create_model as create_tf_model
    from gntkit.training import tf_trainer
    from gntkit.training.config import TrainConfig

    config = TrainConfig(model="cnn3", epochs=1, batch_size=4, optimizer="adamw", lr=0.5, augment=True)
    model = create_tf_model("cnn3", 4, 20, width=0.25)
    opt = tf_trainer.build_optimizer(config, loss_scale=False)
    opt.build(model.trainable_variables)
    steps = tf_trainer.Steps(model, opt, config, tf.distribute.get_strategy())
    steps.begin_epoch(0)
    images, labels = np.random.default_rng(0).integers(0, 256, (4, 20, 20), dtype=np.uint8), np.arange(4) % 4
    for lr in (0.0123, 0.0456):
        steps.train_step(images, labels, lr, 0)
        steps.totals(False)  # runs the queued steps (steps run in groups, see the next test)
        assert float(opt.learning_rate.numpy()) == pytest.approx(lr, rel=1e-6)
    assert steps.totals(False)[2] == 8


def _tf_steps_after(max_per_call: int, batches, config):
    tf.keras.utils.set_random_seed(0)
    model = create_tf_model("cnn3", 4, 20, width=0.25)
    opt = tf_trainer.build_optimizer(config, loss_scale=False)
    opt.build(model.trainable_variables)
    steps = tf_trainer.Steps(model, opt, config, tf.distribute.get_strategy())
    steps.max_steps_per_call = max_per_call
    steps.begin_epoch(0)
    groups = []
    for i, (images, labels) in enumerate(batches):
        steps.train_step(images, labels, 0.01 * (1 + i % 3), i)
        groups.append(steps.steps_per_call)
    totals = steps.totals(False)
    return [v.numpy() for v in model.trainable_variables], totals, groups, opt.iterations.numpy()


def test_tf_steps_grouped_in_one_compiled_call_give_the_same_weights(monkeypatch):
    # Steps queued and run several per call of the compiled loop (_train_steps) give the weights
    # and sums of one call per step: each keeps its own learning rate, seed and augmentation;
    # a smaller last batch runs apart.
    monkeypatch.setattr(tf_trainer.steps, "CALL_SECONDS", 1e9)  # always the largest group allowed (read by Steps)
    rng = np.random.default_rng(3)
    batches = [(rng.integers(0, 256, (6, 20, 20), dtype=np.uint8), rng.integers(0, 4, 6)) for _ in range(8)]
    batches.append((rng.integers(0, 256, (2, 20, 20), dtype=np.uint8), rng.integers(0, 4, 2)))
    config = TrainConfig(model="cnn3", epochs=1, batch_size=6, optimizer="adamw", lr=0.01, augment=True,
                         label_smoothing=0.1)
    one, one_totals, one_groups, one_iterations = _tf_steps_after(1, batches, config)
    grouped, grouped_totals, groups, iterations = _tf_steps_after(3, batches, config)
    assert set(one_groups) == {1} and max(groups) == 3  # the grouping really happened
    assert iterations == one_iterations == 9
    assert grouped_totals[2] == one_totals[2] == 50
    assert grouped_totals == one_totals  # bit for bit: grouping must not change a run's result
    for a, b in zip(grouped, one):
        np.testing.assert_array_equal(a, b)
