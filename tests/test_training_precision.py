"""Mixed precision, loss scaling and channels-last code paths, exercised on the CPU.

On a GPU `precision="auto"` picks bf16 (or fp16 with loss scaling) and torch uses
channels-last; this machine has no GPU, so the same code paths are driven here with
CPU autocast / CPU loss scaling. Speed and GPU numerics are not tested.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gntkit.training as training
from gntkit.training.batches import ArrayBatches
from gntkit.training.config import TrainConfig
from test_training import CHARSET, PREPROCESS, glyph_arrays

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from gntkit.models.tf import create_model as create_tf_model  # noqa: E402
from gntkit.models.torch import create_model as create_torch_model  # noqa: E402
from gntkit.training import tf_trainer, torch_trainer  # noqa: E402

# The options these tests were written for (the defaults before augmentation, label smoothing and
# AdamW became the defaults): plain SGD keeps tiny numeric differences tiny, where Adam's
# normalised step would magnify a near-zero gradient's rounding.
PLAIN = dict(optimizer="sgd", weight_decay=5e-4, label_smoothing=0.0, augment=False)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (32, 32, 32), dtype=np.uint8), np.arange(32) % 5


def _torch_epoch(batch, *, autocast=None, scaler=None, channels_last=False):
    torch.manual_seed(0)
    model = create_torch_model("cnn3", 5, 32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = TrainConfig(framework="torch", model="cnn3", epochs=1, batch_size=16, lr=0.01, **PLAIN)
    optimizer = torch_trainer.build_optimizer(model, config)
    result = torch_trainer.train_one_epoch(model, ArrayBatches(*batch, 16, shuffle=False), optimizer, config,
                                           epoch=0, steps_per_epoch=2, device=torch.device("cpu"),
                                           autocast_dtype=autocast, scaler=scaler, channels_last=channels_last)
    return result, model


def test_torch_channels_last_trains_the_same(batch):
    plain, a = _torch_epoch(batch)
    last, b = _torch_epoch(batch, channels_last=True)
    assert last["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_torch_bf16_autocast_close_to_fp32(batch):
    plain, _ = _torch_epoch(batch)
    bf16, model = _torch_epoch(batch, autocast=torch.bfloat16)
    assert math.isfinite(bf16["loss"]) and bf16["loss"] == pytest.approx(plain["loss"], rel=0.05)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_torch_fp16_with_a_grad_scaler(batch):
    try:
        scaler = torch.amp.GradScaler("cpu")
    except (AttributeError, RuntimeError, TypeError):
        pytest.skip("this torch has no CPU GradScaler")
    plain, _ = _torch_epoch(batch)
    fp16, _ = _torch_epoch(batch, autocast=torch.float16, scaler=scaler)
    assert math.isfinite(fp16["loss"]) and fp16["loss"] == pytest.approx(plain["loss"], rel=0.05)
    assert scaler.get_scale() > 1  # the scaler was used


@pytest.mark.parametrize("policy, loss_scale", [(None, False), (None, True), ("mixed_bfloat16", False),
                                                ("mixed_float16", True)])
def test_tf_precision_policies_and_loss_scaling(batch, policy, loss_scale):
    config = TrainConfig(framework="tf", model="cnn3", epochs=1, batch_size=16, lr=0.01, **PLAIN)
    tf.keras.utils.set_random_seed(0)
    model = create_tf_model("cnn3", 5, 32, dtype_policy=policy)
    optimizer = tf_trainer.build_optimizer(config, loss_scale=loss_scale)
    optimizer.build(model.trainable_variables)
    steps = tf_trainer.Steps(model, optimizer, config, tf.distribute.get_strategy())
    before = [v.numpy().copy() for v in model.trainable_variables]
    result = tf_trainer.train_one_epoch(steps, ArrayBatches(*batch, 16, shuffle=False), config, epoch=0,
                                        steps_per_epoch=2)
    assert math.isfinite(result["loss"]) and 1.0 < result["loss"] < 3.0
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bf16_run_on_cpu_end_to_end(tmp_path, framework):
    train = glyph_arrays(3, seed=1)
    summary = training.train_arrays(train, train, CHARSET, tmp_path / "run", framework=framework, model="cnn3",
                                    epochs=1, batch_size=32, precision="bf16", device="cpu", quiet=True,
                                    preprocess=PREPROCESS)
    assert math.isfinite(summary["last"]["train_loss"])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"] == "bf16"
    # the checkpoint is float32 and predicts
    module = training.trainer_module(framework)
    model, _ = module.load_run_model(tmp_path / "run", "best", "cpu")
    probs = module.predict_probabilities(model, train[0][:4])
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-4)
