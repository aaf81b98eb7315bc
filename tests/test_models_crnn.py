"""The line model (crnn): one table entry, the same network in torch and TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.models import configs

torch_models = pytest.importorskip("gntkit.models.torch")
tf_models = pytest.importorskip("gntkit.models.tf")
torch = torch_models.torch
tf = tf_models.tf


def _gru_to_keras(weight, hidden):
    """torch's gate blocks (r, z, n) stacked on rows -> keras' (z, r, h) on columns."""
    r, z, n = np.split(weight, 3, axis=0)
    return np.concatenate([z, r, n], axis=0).T if weight.ndim == 2 else np.concatenate([z, r, n])


def copy_torch_to_keras(t, k):
    """Load a torch CRNN's weights (and batch-norm statistics) into a keras CRNN."""
    convs = [m for m in t.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in t.features if isinstance(m, torch.nn.BatchNorm2d)]
    for i, (conv, bn) in enumerate(zip(convs, norms), 1):
        layer = next(layer for layer in k.feature_stack if layer.name == f"conv{i}")
        layer.set_weights([conv.weight.detach().numpy().transpose(2, 3, 1, 0)])
        layer = next(layer for layer in k.feature_stack if layer.name == f"bn{i}")
        layer.set_weights([p.detach().numpy() for p in (bn.weight, bn.bias, bn.running_mean, bn.running_var)])
    gru, h = t.recurrent, t.config.recurrent
    for direction, suffix in ((k.recurrent.forward_layer, ""), (k.recurrent.backward_layer, "_reverse")):
        get = {name: p.detach().numpy() for name, p in gru.named_parameters()}
        direction.set_weights([_gru_to_keras(get[f"weight_ih_l0{suffix}"], h),
                               _gru_to_keras(get[f"weight_hh_l0{suffix}"], h),
                               np.stack([_gru_to_keras(get[f"bias_ih_l0{suffix}"], h),
                                         _gru_to_keras(get[f"bias_hh_l0{suffix}"], h)])])
    k.classifier.set_weights([t.classifier.weight.detach().numpy().T, t.classifier.bias.detach().numpy()])


@pytest.mark.parametrize("height", [32, 64, 128])
def test_same_parameter_count_in_both_frameworks(height):
    expected = configs.expected_parameter_count(configs.get_config("crnn"), 3755, height)
    assert torch_models.count_parameters(torch_models.create_model("crnn", 3755, height)) == expected
    assert tf_models.count_parameters(tf_models.create_model("crnn", 3755, height)) == expected
    # convolutions + batch norm, two GRU directions (3 gates, two biases each), dense to classes + blank
    convs = 9 * (1 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 256) + 2 * (64 + 128 + 3 * 256)
    assert expected == convs + 2 * (3 * 256 * (256 + 256) + 6 * 256) + 513 * 3756


def test_same_per_frame_log_probs_given_the_same_weights():
    """Torch weights copied into keras: the same log-probabilities on the same padded batch, padding skipped."""
    torch.manual_seed(0)
    t = torch_models.create_model("crnn", 12, 32, width=0.25).eval()
    with torch.no_grad():  # batch-norm statistics away from 0/1, so that they are compared too
        for m in t.features:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    k = tf_models.create_model("crnn", 12, 32, width=0.25)
    copy_torch_to_keras(t, k)
    rng = np.random.default_rng(0)
    x = rng.random((3, 32, 96), dtype=np.float32)
    widths = np.array([96, 60, 40], np.int64)
    x[1, :, 60:] = x[2, :, 40:] = 0  # padding, as gntkit.datasets.lines pads
    with torch.no_grad():
        a = torch.log_softmax(t(torch.from_numpy(x)[:, None], torch.from_numpy(widths)), -1).numpy()
    b = tf.nn.log_softmax(k((x[..., None], widths), training=False)).numpy()
    frames = configs.line_frames(configs.get_config("crnn"), widths)
    assert a.shape == b.shape == (3, 24, 13)
    for line, count in enumerate(frames):
        np.testing.assert_allclose(a[line, :count], b[line, :count], rtol=1e-4, atol=1e-4)
    # a line reads the same in a batch padded less (the GRU skips the padding frames)
    with torch.no_grad():
        narrow = torch.log_softmax(t(torch.from_numpy(x[2:, :, :64])[:, None], torch.tensor([40])), -1).numpy()
    np.testing.assert_allclose(narrow[0, :10], a[2, :10], rtol=1e-4, atol=1e-5)


def test_line_and_image_models_kept_apart():
    assert configs.line_model_names() == ["crnn"]
    assert "crnn" not in configs.image_model_names() and "cnn3" in configs.image_model_names()
    assert list(configs.line_frames(configs.get_config("crnn"), np.array([3, 4, 103]))) == [0, 1, 25]
    with pytest.raises(GntkitError, match="single characters"):
        configs.line_frames(configs.get_config("cnn3"), 10)
    with pytest.raises(GntkitError, match="at least 16x16"):
        torch_models.create_model("crnn", 10, 8)
