"""Models: one config table, two builders that agree on layers and parameter counts."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.models import configs

torch_models = pytest.importorskip("gntkit.models.torch")
tf_models = pytest.importorskip("gntkit.models.tf")
torch = torch_models.torch
tf = tf_models.tf

ALL = configs.image_model_names()  # the line model has tests/test_models_crnn.py


def test_table_has_the_published_vgg19():
    cfg = configs.get_config("vgg19")
    convs = [v for v in cfg.convs if v != "M"]
    assert len(convs) == 16 and cfg.convs.count("M") == 5
    # blocks of 2, 2, 4, 4, 4 convolutions with 64-128-256-512-512 filters
    blocks, current = [], []
    for v in cfg.convs:
        if v == "M":
            blocks.append(current)
            current = []
        else:
            current.append(v)
    assert [len(b) for b in blocks] == [2, 2, 4, 4, 4]
    assert [b[0] for b in blocks] == [64, 128, 256, 512, 512]
    assert cfg.dense == (4096, 4096) and cfg.dropout == 0.5 and not cfg.batch_norm
    assert configs.get_config("vgg19_bn").batch_norm


def test_vgg19_parameter_count_by_hand():
    # 16 convolutions (weights + biases) + flatten 2x2x512 -> 4096 -> 4096 -> 3755
    widths = [1, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    conv = sum(9 * a * b + b for a, b in zip(widths[:-1], widths[1:]))
    dense = (2048 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 3755 + 3755)
    assert configs.expected_parameter_count(configs.get_config("vgg19"), 3755, 64) == conv + dense


@pytest.mark.parametrize("name", ALL)
def test_same_parameter_count_in_both_frameworks_at_hwdb_size(name):
    t = torch_models.create_model(name, 3755, 64)
    k = tf_models.create_model(name, 3755, 64)
    expected = configs.expected_parameter_count(configs.get_config(name), 3755, 64)
    assert torch_models.count_parameters(t) == expected
    assert tf_models.count_parameters(k) == expected


@pytest.mark.parametrize("name", ALL)
def test_output_shapes_small(name):
    # Narrow copies run quickly; the layer structure is the named model's.
    width = 1.0 if name.startswith("cnn") else 0.125
    size = 32
    t = torch_models.create_model(name, 10, size, width=width).eval()
    k = tf_models.create_model(name, 10, size, width=width)
    assert torch_models.count_parameters(t) == tf_models.count_parameters(k)
    with torch.no_grad():
        out = t(torch.zeros(3, 1, size, size))
    assert tuple(out.shape) == (3, 10) and out.dtype == torch.float32
    out_tf = k(np.zeros((3, size, size, 1), np.float32), training=False)
    assert tuple(out_tf.shape) == (3, 10) and out_tf.dtype == tf.float32


@pytest.mark.parametrize("size", [64, 96])
def test_vgg19_full_forward_shape(size):
    t = torch_models.create_model("vgg19", 100, size).eval()
    with torch.no_grad():
        assert tuple(t(torch.zeros(1, 1, size, size)).shape) == (1, 100)
    k = tf_models.create_model("vgg19", 100, size)
    assert tuple(k(np.zeros((1, size, size, 1), np.float32)).shape) == (1, 100)
    assert torch_models.count_parameters(t) == tf_models.count_parameters(k)


def test_three_channels_and_batch_norm_override():
    t = torch_models.create_model("cnn3", 5, 32, channels=3, batch_norm=True)
    k = tf_models.create_model("cnn3", 5, 32, channels=3, batch_norm=True)
    assert torch_models.count_parameters(t) == tf_models.count_parameters(k) == configs.expected_parameter_count(
        configs.get_config("cnn3"), 5, 32, 3, True)


def test_mixed_precision_policy_keeps_float32_logits():
    k = tf_models.create_model("cnn2", 7, 32, dtype_policy="mixed_bfloat16")
    out = k(np.zeros((2, 32, 32, 1), np.float32))
    assert out.dtype == tf.float32
    assert k.get_layer("conv1").compute_dtype == "bfloat16"


def test_same_function_given_the_same_weights():
    """Copy torch weights into keras (NCHW->NHWC flatten order handled) and compare outputs."""
    size, classes = 32, 6
    torch.manual_seed(0)
    t = torch_models.create_model("cnn3", classes, size).eval()
    k = tf_models.create_model("cnn3", classes, size)
    convs = [m for m in t.features if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in t.classifier if isinstance(m, torch.nn.Linear)]
    for i, conv in enumerate(convs, 1):
        k.get_layer(f"conv{i}").set_weights([conv.weight.detach().numpy().transpose(2, 3, 1, 0),
                                             conv.bias.detach().numpy()])
    side = configs.feature_map_size(configs.get_config("cnn3"), size)
    channels = convs[-1].out_channels
    w0 = linears[0].weight.detach().numpy()  # (out, C*H*W) in NCHW order
    w0 = w0.reshape(-1, channels, side, side).transpose(0, 2, 3, 1).reshape(w0.shape[0], -1)
    k.get_layer("fc1").set_weights([w0.T, linears[0].bias.detach().numpy()])
    k.get_layer("logits").set_weights([linears[1].weight.detach().numpy().T, linears[1].bias.detach().numpy()])
    x = np.random.default_rng(0).random((4, size, size), dtype=np.float32)
    with torch.no_grad():
        a = t(torch.from_numpy(x)[:, None]).numpy()
    b = k(x[..., None], training=False).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="vgg20", num_classes=10, image_size=64), "Unknown model 'vgg20'"),
    (dict(name="vgg19", num_classes=1, image_size=64), "at least 2 classes"),
    (dict(name="vgg19", num_classes=10, image_size=28), "at least 32x32"),
    (dict(name="cnn3", num_classes=10, image_size=8), "at least"),
    (dict(name="vgg19", num_classes=10, image_size=64, channels=0), "number of channels"),
    (dict(name="vgg19", num_classes=10, image_size=64, width=0), "width multiplier"),
])
def test_bad_arguments_one_sentence(kwargs, message):
    for module in (torch_models, tf_models):
        with pytest.raises(GntkitError, match=message):
            module.create_model(**kwargs)


def test_count_parameters_rejects_other_objects():
    with pytest.raises(GntkitError):
        torch_models.count_parameters("vgg19")
    with pytest.raises(GntkitError):
        tf_models.count_parameters(object())
