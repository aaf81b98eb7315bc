"""The torch and TensorFlow trainers compute the same training step.

The same initial weights go into both frameworks' model (`keras_weights_from_torch`:
convolution kernels OIHW -> HWIO, dense matrices transposed, the first dense layer's
rows reordered from torch's channel-major flatten to keras' channel-last one, batch-norm
scale, offset and running statistics, the GWAP weight (C, S, S) -> (S, S, C)). Then, on
the same batch, with the hyper-parameters of a TrainConfig and the trainers' own
optimizer, loss and step code (torch_trainer.build_optimizer + TorchSteps,
tf_trainer.build_optimizer + Steps):

- one step gives the same loss, the same gradients and the same updated weights;
- 50 steps (cosine schedule, augmentation on) give the same loss curve and end at the
  same weights and batch-norm running statistics.

Dropout is switched off (its masks are drawn by each framework's own generator); every
other layer type of the model table runs: valid and same convolutions, batch norm, max
and average pooling, flatten, global weighted average pooling, dense.

Tolerances are relative: |a - b| / |b| over the concatenation of a model's tensors (the
Euclidean norm), measured on this 2-core CPU with torch 2.13 and TensorFlow 2.21. Without batch
norm (cnn3, cnn2) the two frameworks differ only by fp32 summation order: loss and gradients
agree to 5e-7, Adam's first update to 2e-5, 50 losses to 2e-4; the limits are 1e-4 (one step)
and 2e-3 (curve). With batch norm and ReLU (hccr-compact) fp32 rounding flips the odd ReLU
whose input lies within 1e-5 of zero (one or two per layer in a batch of 16), and batch norm
spreads a flipped unit over its whole channel: the gradients agree to about 1e-2, and torch
against torch itself started from weights perturbed by 1e-6 relative parts by 4% over 50
steps. Its limits are 5e-2 (gradients), 0.3 (Adam's first update, which is nearly the sign of
each gradient component) and 0.1 (curve); its loss (1e-5) and batch-norm running statistics
(1e-3) are held as tightly as the others'. Every difference found between the trainers moved
these by far more: keras' Adam epsilon moved cnn3's first update by 2e-2, one initializer
shared by every keras convolution made all their kernels one random stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.models.configs import feature_map_size
from gntkit.training.batches import ArrayBatches
from gntkit.training.config import TrainConfig
from gntkit.training.schedule import learning_rate_at
from test_training import glyph_arrays

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from gntkit.models import tf as models_tf  # noqa: E402
from gntkit.models import torch as models_torch  # noqa: E402
from gntkit.training import tf_trainer, torch_trainer  # noqa: E402

CURVE_STEPS = 50
BATCH = 16
NUM_CLASSES = 20

# name, width, image side, tolerances (see above): every layer type of the model table, small
# enough for a CPU test.
PLAIN = {"loss": 1e-5, "gradients": 1e-4, "update": 1e-4, "statistics": 1e-3, "curve": 2e-3}
WITH_BATCH_NORM = {**PLAIN, "gradients": 5e-2, "update": 0.3, "curve": 0.1}
MODELS = [("cnn3", 0.25, 28, PLAIN), ("cnn2", 0.25, 28, PLAIN), ("hccr-compact", 0.125, 32, WITH_BATCH_NORM)]


def _weighted_modules(model):
    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear, models_torch.GlobalWeightedAveragePooling)
    return [m for m in model.modules() if isinstance(m, kinds)]


def _dense_from_torch(weight, flatten_shape):
    """A torch Linear weight (out, in) as a keras kernel (in, out); after a flatten, rows reordered."""
    if flatten_shape is None:
        return weight.T
    c, h, w = flatten_shape
    return weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)


def keras_weights_from_torch(model, arrays=None) -> list[list[np.ndarray]]:
    """Per weighted layer of a torch ConvNet, its arrays in the keras layer's order and layout.

    Args:
        model: a gntkit.models.torch ConvNet.
        arrays: None (the module's parameters and buffers), or a dict parameter -> array that
            replaces each parameter (its gradient, say); buffers are then left out.

    Returns:
        One list per layer (convolution: kernel[, bias]; batch norm: gamma, beta[, moving mean,
        moving variance]; GWAP: kernel; dense: kernel, bias), in the order of the keras model's layers.
    """
    def value(p):
        return np.array((arrays[p] if arrays is not None else p.detach()).numpy())  # a copy, not a view

    side = feature_map_size(model.config, model.image_size)
    channels = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    flatten_shape = (channels, side, side) if model.config.head == "flatten" else None
    layers = []
    for m in _weighted_modules(model):
        if isinstance(m, torch.nn.Conv2d):
            layers.append([value(m.weight).transpose(2, 3, 1, 0)] + ([value(m.bias)] if m.bias is not None else []))
        elif isinstance(m, torch.nn.BatchNorm2d):
            stats = [m.running_mean.numpy().copy(), m.running_var.numpy().copy()] if arrays is None else []
            layers.append([value(m.weight), value(m.bias), *stats])
        elif isinstance(m, models_torch.GlobalWeightedAveragePooling):
            layers.append([value(m.weight).transpose(1, 2, 0)])
        else:
            layers.append([_dense_from_torch(value(m.weight), flatten_shape), value(m.bias)])
            flatten_shape = None
    return layers


def _keras_weighted_layers(model):
    return [layer for layer in model.layers if layer.weights and not isinstance(layer, tf.keras.layers.Dropout)]


def _build_pair(name, width, side, config):
    """The torch model (seeded) and a keras model holding the same weights, dropout off in both."""
    torch.manual_seed(config.seed)
    torch_model = models_torch.create_model(name, NUM_CLASSES, side, width=width)
    tf.keras.utils.set_random_seed(config.seed)
    keras_model = models_tf.create_model(name, NUM_CLASSES, side, width=width)
    for module in torch_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for layer in keras_model.layers:
        if isinstance(layer, tf.keras.layers.Dropout):
            layer.rate = 0.0
    layers = _keras_weighted_layers(keras_model)
    arrays = keras_weights_from_torch(torch_model)
    assert len(layers) == len(arrays)
    for layer, values in zip(layers, arrays):
        layer.set_weights(values)
    return torch_model, keras_model


def _config(name, width, **options):
    return TrainConfig(model=name, width=width, epochs=1, batch_size=BATCH, **options)


def _batches(side, count):
    images, labels = glyph_arrays(max(1, -(-count * BATCH // NUM_CLASSES)), seed=5, size=side)
    return ArrayBatches(images, labels, BATCH, shuffle=True, seed=0)


def _relative(actual: list, expected: list) -> float:
    """|a - b| / |b| over the concatenation of the tensors (Euclidean norms)."""
    a = np.concatenate([np.ravel(x) for x in actual])
    b = np.concatenate([np.ravel(x) for x in expected])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _torch_steps(model, config):
    return torch_trainer.TorchSteps(model, torch_trainer.build_optimizer(model, config), config, torch.device("cpu"))


def _tf_steps(model, config):
    optimizer = tf_trainer.build_optimizer(config, loss_scale=False)
    optimizer.build(model.trainable_variables)
    return tf_trainer.Steps(model, optimizer, config, tf.distribute.get_strategy(), on_gpu=False)


def _torch_gradients(model, config, images, labels):
    logits = model(torch_trainer.to_model_input(images, torch.device("cpu")))
    loss = torch_trainer.smoothed_cross_entropy(logits, torch.as_tensor(labels), config.label_smoothing)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return float(loss), dict(zip(params, grads))


def _tf_gradients(model, config, images, labels):
    with tf.GradientTape() as tape:
        logits = model(tf_trainer.to_model_input(tf.constant(images)), training=True)
        loss = tf.reduce_mean(tf_trainer.smoothed_cross_entropy(labels, logits, config.label_smoothing))
    return float(loss), tape.gradient(loss, model.trainable_variables)


def _trainable(keras_model):
    return [w for layer in _keras_weighted_layers(keras_model) for w in layer.trainable_weights]


def _keras_arrays(keras_model) -> list[list[np.ndarray]]:
    return [[w.numpy() for w in layer.weights] for layer in _keras_weighted_layers(keras_model)]


def _split(layers: list[list[np.ndarray]], keras_model):
    """(trainable arrays, batch-norm running statistics) of per-layer arrays in keras order."""
    trainable, statistics = [], []
    for layer, arrays in zip(_keras_weighted_layers(keras_model), layers):
        n = len(layer.trainable_weights)
        trainable += arrays[:n]
        statistics += arrays[n:]
    return trainable, statistics


@pytest.mark.parametrize("name,width,side,limits", MODELS)
def test_one_step_gives_the_same_loss_gradients_and_update(name, width, side, limits):
    config = _config(name, width, augment=False)
    torch_model, keras_model = _build_pair(name, width, side, config)
    images, labels = next(iter(_batches(side, 1)))
    # the forward and backward passes, with each trainer's loss
    torch_loss, torch_grads = _torch_gradients(torch_model, config, images, labels)
    tf_loss, tf_grads = _tf_gradients(keras_model, config, images, labels)
    assert abs(tf_loss - torch_loss) <= limits["loss"] * abs(torch_loss)
    expected = [g for layer in keras_weights_from_torch(torch_model, torch_grads) for g in layer]
    assert len(expected) == len(tf_grads)
    assert _relative([g.numpy() for g in tf_grads], expected) <= limits["gradients"]
    # one optimizer step through each trainer's step code (decay, Adam, the learning rate, batch norm)
    before = keras_weights_from_torch(torch_model)
    for layer, values in zip(_keras_weighted_layers(keras_model), before):
        layer.set_weights(values)  # the statistics again: the keras model ran in training mode above
    lr = learning_rate_at(config, 0, 1)
    torch_steps, tf_steps = _torch_steps(torch_model, config), _tf_steps(keras_model, config)
    for steps in (torch_steps, tf_steps):
        steps.begin_epoch(0)
        steps.train_step(images, labels, lr, 0)
    torch_sum, tf_sum = torch_steps.totals(False)[0], tf_steps.totals(False)[0]
    assert abs(tf_sum - torch_sum) <= limits["loss"] * abs(torch_sum)
    tf_delta = [[x - x0 for x, x0 in zip(la, lb)] for la, lb in zip(_keras_arrays(keras_model), before)]
    torch_delta = [[x - x0 for x, x0 in zip(la, lb)] for la, lb in zip(keras_weights_from_torch(torch_model), before)]
    tf_update, tf_stats = _split(tf_delta, keras_model)
    torch_update, torch_stats = _split(torch_delta, keras_model)
    assert _relative(tf_update, torch_update) <= limits["update"]
    if torch_stats:
        assert _relative(tf_stats, torch_stats) <= limits["statistics"]


@pytest.mark.parametrize("name,width,side,limits", MODELS)
def test_fifty_steps_give_the_same_loss_curve(name, width, side, limits):
    config = _config(name, width, augment=True, lr=3e-3)  # the default schedule from a peak that learns in 50 steps
    torch_model, keras_model = _build_pair(name, width, side, config)
    batches = _batches(side, CURVE_STEPS)
    steps_per_epoch = len(batches)
    curves = []
    for steps in (_torch_steps(torch_model, config), _tf_steps(keras_model, config)):
        steps.begin_epoch(0)
        losses, previous = [], 0.0
        for i, (images, labels) in zip(range(CURVE_STEPS), batches):
            steps.train_step(images, labels, learning_rate_at(config, i, steps_per_epoch), i)
            total = steps.totals(False)[0]
            losses.append((total - previous) / len(labels))
            previous = total
        curves.append(np.array(losses))
    torch_curve, tf_curve = curves
    worst = np.abs(tf_curve - torch_curve) / np.abs(torch_curve)
    assert worst.max() <= limits["curve"], (
        f"{name}: loss curves part at step {int(worst.argmax())} by {worst.max():.2e} relative; torch "
        f"{np.round(torch_curve[::10], 4).tolist()} vs tf {np.round(tf_curve[::10], 4).tolist()} (every 10th step)")
    assert torch_curve[-10:].mean() < 0.95 * torch_curve[:5].mean()  # the curve is one of learning


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_every_convolution_draws_its_own_initial_kernel(framework):
    """He-normal kernels, independent between layers, with the same spread in both frameworks."""
    if framework == "torch":
        torch.manual_seed(0)
        model = models_torch.create_model("cnn3", NUM_CLASSES, 28)
        kernels = [np.array(m.weight.detach().numpy()).transpose(2, 3, 1, 0)
                   for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    else:
        tf.keras.utils.set_random_seed(0)
        model = models_tf.create_model("cnn3", NUM_CLASSES, 28)
        kernels = [layer.kernel.numpy() for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    for kernel in kernels:
        fan_in = np.prod(kernel.shape[:3])
        assert abs(kernel.std() / np.sqrt(2 / fan_in) - 1) < 0.1
    for a, b in zip(kernels, kernels[1:]):
        n = min(a.size, b.size)
        # independent draws: |correlation| about 1/sqrt(n) (n >= 288 here), not 1
        assert abs(np.corrcoef(a.ravel()[:n], b.ravel()[:n])[0, 1]) < 5 / np.sqrt(n)


def test_sgd_momentum_follows_a_changing_learning_rate_as_torch():
    """Three SGD steps at learning rates 0.1, 0.05, 0.02: the same weights in both trainers."""
    config = _config("cnn3", 0.25, augment=False, optimizer="sgd", momentum=0.9)
    torch_model, keras_model = _build_pair("cnn3", 0.25, 28, config)
    batches = list(zip(range(3), _batches(28, 3)))
    for steps in (_torch_steps(torch_model, config), _tf_steps(keras_model, config)):
        steps.begin_epoch(0)
        for i, (images, labels) in batches:
            steps.train_step(images, labels, (0.1, 0.05, 0.02)[i], i)
        steps.totals(False)
    tf_arrays = [x for layer in _keras_arrays(keras_model) for x in layer]
    torch_arrays = [x for layer in keras_weights_from_torch(torch_model) for x in layer]
    assert _relative(tf_arrays, torch_arrays) <= PLAIN["update"]
