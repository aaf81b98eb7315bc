"""Training in both frameworks on a generated learnable set (20 classes, 32 x 32):
accuracy, run folder, resume, predict on PNG/JPEG files, export loaded without gntkit.

Everything runs on the CPU; GPU-only paths (mixed precision, channels-last, multi-GPU)
are not exercised here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import gntkit.training as training
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.samples.charset import Charset, decode_tag
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.tools import synth
from gntkit.training import figures
from gntkit.training.metrics import read_metrics
from gntkit.training.run_folder import RunFolder

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

FRAMEWORKS = ["torch", "tf"]
SIZE = 32
NUM_CLASSES = 20
CODES = synth.chinese_codes(NUM_CLASSES)
CHARSET = Charset("test20", CODES, [decode_tag(c) for c in CODES], "GB code order")
PREPROCESS = Preprocess(size=SIZE)
# A small CNN trains to >= 90% in seconds on a CPU; the real VGG19 is covered by test_models.
FAST = dict(model="cnn3", epochs=6, batch_size=32, optimizer="adam", lr=2e-3, weight_decay=0.0,
            seed=0, quiet=True)


def glyph_arrays(samples_per_class: int, seed: int, size: int = SIZE):
    """Learnable images as gntkit shards hold them: synth glyphs through gntkit's preprocessing."""
    rng = np.random.default_rng(seed)
    settings = Preprocess(size=size)
    images, labels = [], []
    for label, code in enumerate(CODES):
        for _ in range(samples_per_class):
            bitmap = synth.render_glyph(code, rng, 48, 48, slant=rng.uniform(-0.25, 0.25),
                                        weight=rng.uniform(0.75, 1.35))
            images.append(preprocess_image(bitmap, settings))
            labels.append(label)
    return np.stack(images), np.array(labels, np.int64)


@pytest.fixture(scope="module")
def data():
    return glyph_arrays(30, seed=1), glyph_arrays(10, seed=2)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """One trained run per framework, shared by the tests below."""
    out = {}
    for framework in FRAMEWORKS:
        path = tmp_path_factory.mktemp("runs") / framework
        summary = training.train_arrays(data[0], data[1], CHARSET, path, framework=framework,
                                        preprocess=PREPROCESS, **FAST)
        out[framework] = (path, summary)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_short_training_reaches_90_percent(runs, framework):
    path, summary = runs[framework]
    assert summary["best_val_accuracy"] >= 0.90, summary
    assert summary["epochs_completed"] == FAST["epochs"] and not summary["stopped_early"]
    assert summary["parameters"] == 122_644  # cnn3 at 32x32, 20 classes: same in both frameworks
    rows = read_metrics(path / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, FAST["epochs"] + 1))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    # the run is self-contained
    info = json.loads((path / "run.json").read_text())
    assert info["config"]["framework"] == framework and info["image_size"] == SIZE
    assert RunFolder(path).read_classes() == CHARSET.characters
    assert Charset.load(path / "charset.json") == CHARSET
    assert Preprocess.from_json(json.loads((path / "preprocess.json").read_text())) == PREPROCESS
    assert Image.open(path / "curves.png").size == (1000, 420)
    run = RunFolder(path, framework)
    assert run.has_checkpoint("best") and run.has_checkpoint("last")
    log = (path / "train.log").read_text()
    assert "122,644 parameters" in log


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_resume_continues_with_the_same_metrics(data, tmp_path, monkeypatch, framework):
    (train_x, train_y), (val_x, val_y) = data
    small_train = (train_x[::3], train_y[::3])
    small_val = (val_x[::2], val_y[::2])
    # augmentation, dropout (cnn2) and label smoothing all draw random numbers: resume must replay them
    options = dict(model="cnn2", batch_size=32, optimizer="sgd", lr=0.05, augment=True,
                   label_smoothing=0.1, seed=3, quiet=True, framework=framework, preprocess=PREPROCESS)
    straight = training.train_arrays(small_train, small_val, CHARSET, tmp_path / "straight", epochs=3, **options)

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):  # the process dies right after epoch 1 was checkpointed
        raise Crash()

    monkeypatch.setattr(figures, "draw_curves", crash)
    with pytest.raises(Crash):
        training.train_arrays(small_train, small_val, CHARSET, tmp_path / "resumed", epochs=3, **options)
    monkeypatch.undo()
    with pytest.raises(OutputExistsError):
        training.train_arrays(small_train, small_val, CHARSET, tmp_path / "resumed", epochs=3, **options)
    with pytest.raises(GntkitError, match="trained with model='cnn2'"):
        training.train_arrays(small_train, small_val, CHARSET, tmp_path / "resumed", epochs=3, resume=True,
                              **{**options, "model": "cnn3"})
    resumed = training.train_arrays(small_train, small_val, CHARSET, tmp_path / "resumed", epochs=3,
                                    resume=True, **options)
    a = read_metrics(tmp_path / "straight" / "metrics.csv")
    b = read_metrics(tmp_path / "resumed" / "metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_top5", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (key, ra, rb)
    assert resumed["epochs_completed"] == straight["epochs_completed"] == 3
    assert "resuming after epoch 1 of 3" in (tmp_path / "resumed" / "train.log").read_text()


def _draw_user_image(code: int, seed: int, path, mode: str = "RGB"):
    """A 'photo' of one character: dark ink on white paper, larger than the training images."""
    rng = np.random.default_rng(seed)
    bitmap = synth.render_glyph(code, rng, 150, 170)
    canvas = np.full((230, 260), 255, np.uint8)  # white margins around the character
    canvas[30:200, 50:200] = bitmap
    Image.fromarray(canvas).convert(mode).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_predict_user_images_returns_the_trained_class(runs, tmp_path, framework):
    path, _ = runs[framework]
    picks = [0, 7, 13]
    files = [_draw_user_image(CODES[c], 100 + c, tmp_path / f"char{c}.png") for c in picks]
    files.append(_draw_user_image(CODES[7], 200, tmp_path / "char7.jpg", mode="L"))
    results = training.predict(path, files, top_k=3)
    assert [r["image"] for r in results] == [str(f) for f in files]
    for result, c in zip(results, picks + [7]):
        best = result["predictions"][0]
        assert (best["class_id"], best["character"]) == (c, CHARSET.characters[c]), result
        assert len(result["predictions"]) == 3
        probs = [p["probability"] for p in result["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_predict_errors_are_one_sentence(runs, tmp_path, framework):
    path, _ = runs[framework]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(GntkitError, match="broken.png cannot be read as an image"):
        training.predict(path, [broken])
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(blank)
    with pytest.raises(GntkitError, match="blank.png has no ink"):
        training.predict(path, [blank])
    with pytest.raises(GntkitError, match="missing.png cannot be read"):
        training.predict(path, [tmp_path / "missing.png"])
    with pytest.raises(GntkitError, match="top_k"):
        training.predict(path, [blank], top_k=0)
    with pytest.raises(GntkitError, match="expected a gntkit run folder"):
        training.predict(tmp_path, [blank])


EXPORT_CHECK = {
    "torch": """
        import torch
        model = torch.jit.load(ARTIFACT)
        probs = model(torch.from_numpy(images)).numpy()
    """,
    "tf": """
        import tensorflow as tf
        loaded = tf.saved_model.load(ARTIFACT)
        probs = loaded.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    """,
}


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_export_loads_without_gntkit_and_predicts_the_same(runs, data, tmp_path, framework):
    path, _ = runs[framework]
    artifact = training.export(path, out=tmp_path / "export")
    with pytest.raises(OutputExistsError):
        training.export(path, out=tmp_path / "export")
    meta = json.loads((tmp_path / "export" / "export.json").read_text())
    assert meta["input"]["shape"] == ["N", SIZE, SIZE] and meta["output"]["shape"] == ["N", NUM_CLASSES]
    assert (tmp_path / "export" / "charset.txt").read_text(encoding="utf-8").split("\n")[:NUM_CLASSES] == CHARSET.characters
    images = data[1][0][:16]
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent("""
        import sys, numpy as np

        class NoGntkit:  # prove the artifact needs no gntkit code
            def find_spec(self, name, path=None, target=None):
                if name == "gntkit" or name.startswith("gntkit."):
                    raise ImportError("gntkit must not be imported")
                return None
        sys.meta_path.insert(0, NoGntkit())
        ARTIFACT = sys.argv[1]
        images = np.load(sys.argv[2])
    """) + textwrap.dedent(EXPORT_CHECK[framework]) + textwrap.dedent("""
        np.save(sys.argv[3], probs)
        assert not any(m.startswith("gntkit") for m in sys.modules)
    """)
    subprocess.run([sys.executable, "-c", script, str(artifact), str(tmp_path / "images.npy"),
                    str(tmp_path / "probs.npy")], check=True, cwd=tmp_path)
    exported = np.load(tmp_path / "probs.npy")
    module = training.trainer_module(framework)
    model, _ = module.load_run_model(path, "best", "cpu")
    direct = module.predict_probabilities(model, images)
    assert exported.shape == (16, NUM_CLASSES)
    np.testing.assert_allclose(exported, direct, rtol=1e-4, atol=1e-5)
    assert np.array_equal(exported.argmax(1), direct.argmax(1))


def test_export_rejects_a_wrong_format(runs):
    with pytest.raises(GntkitError, match="A torch run exports as torchscript or onnx"):
        training.export(runs["torch"][0], format="savedmodel")
    with pytest.raises(GntkitError, match="A tf run exports as savedmodel"):
        training.export(runs["tf"][0], format="torchscript")


def test_onnx_without_the_package_says_what_to_install(runs, tmp_path):
    import importlib.util

    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript"):
        pytest.skip("onnx is installed here")
    with pytest.raises(GntkitError, match="pip install onnx onnxscript"):
        training.export(runs["torch"][0], out=tmp_path / "onnx", format="onnx")
    assert not (tmp_path / "onnx").exists()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_early_stopping_stops(data, tmp_path, framework):
    (train_x, train_y), (val_x, val_y) = data
    # A learning rate this small changes nothing: no epoch beats the first, so patience 1 stops at epoch 2.
    summary = training.train_arrays((train_x[:64], train_y[:64]), (val_x[:40], val_y[:40]), CHARSET,
                                    tmp_path / "run", framework=framework, model="cnn3", epochs=5,
                                    batch_size=32, lr=1e-12, schedule="constant", early_stopping=1,
                                    preprocess=PREPROCESS, quiet=True)
    assert summary["stopped_early"] and summary["epochs_completed"] == 2 and summary["best_epoch"] == 1


def test_bad_training_input_one_sentence(data, tmp_path):
    (train_x, train_y), _ = data
    with pytest.raises(GntkitError, match="class ids 0..19"):
        training.train_arrays((train_x, train_y + 5), None, CHARSET, tmp_path / "a", model="cnn3", epochs=1)
    with pytest.raises(GntkitError, match="uint8 of shape"):
        training.train_arrays((train_x.astype(np.float32), train_y), None, CHARSET, tmp_path / "b", epochs=1)
    with pytest.raises(GntkitError, match="Unknown training option 'epoch'"):
        training.train_arrays((train_x, train_y), None, CHARSET, tmp_path / "c", epoch=1)
    with pytest.raises(GntkitError, match="at least 32x32"):
        training.train_arrays((train_x[:, :28, :28].copy(), train_y), None, CHARSET, tmp_path / "d",
                              model="vgg19", epochs=1)
    with pytest.raises(GntkitError, match="fp16 needs a GPU"):
        training.train_arrays((train_x, train_y), None, CHARSET, tmp_path / "e", model="cnn3", epochs=1,
                              precision="fp16", device="cpu")


def test_augmentation_is_the_same_warp_in_both_frameworks():
    """torch affine_grid/grid_sample and TF ImageProjectiveTransformV3 give the same pixels."""
    import tensorflow as tf
    import torch

    from gntkit.training import tf_trainer, torch_trainer
    from gntkit.training.augment import affine_matrices

    images, _ = glyph_arrays(1, seed=9)
    x = images[:6].astype(np.float32) / 255
    m = affine_matrices(np.random.default_rng(1), 6)
    a = torch_trainer.augment_batch(torch.from_numpy(x)[:, None], m)[:, 0].numpy()
    b = tf_trainer.apply_affine(tf.constant(x[..., None]), tf.constant(m))[..., 0].numpy()
    np.testing.assert_allclose(a, b, atol=2e-3)
    identity = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (6, 1, 1))
    np.testing.assert_allclose(torch_trainer.augment_batch(torch.from_numpy(x)[:, None], identity)[:, 0].numpy(),
                               x, atol=1e-6)
    np.testing.assert_allclose(tf_trainer.apply_affine(tf.constant(x[..., None]), tf.constant(identity))[..., 0],
                               x, atol=1e-6)
    # the TF sampler draws from the same ranges as the numpy one
    tf_m = tf_trainer.warp_params(2000, tf.constant([1, 2], tf.int32), SIZE)[0].numpy()
    np_m = affine_matrices(np.random.default_rng(2), 2000)
    for i in range(2):
        for j in range(3):
            assert abs(tf_m[:, i, j].mean() - np_m[:, i, j].mean()) < 0.01
            assert abs(tf_m[:, i, j].std() - np_m[:, i, j].std()) < 0.01


def test_label_smoothing_is_the_same_loss_in_both_frameworks():
    import tensorflow as tf
    import torch

    from gntkit.training import tf_trainer, torch_trainer

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    for eps in (0.0, 0.1, 0.3):
        a = float(torch_trainer.smoothed_cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), eps))
        b = float(tf.reduce_mean(tf_trainer.smoothed_cross_entropy(tf.constant(labels), tf.constant(logits), eps)))
        assert a == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tensorboard_event_files_in_every_run(runs, framework):
    """Both frameworks log loss, accuracy, learning rate per epoch and sample images for `tensorboard --logdir RUN`."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path, _ = runs[framework]
    events = EventAccumulator(str(path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    names = set(tags.get("scalars", [])) | set(tags.get("tensors", []))
    for tag in ("loss/train", "loss/validation", "accuracy/train", "accuracy/validation", "learning_rate"):
        assert tag in names, (tag, tags)
    images = set(tags.get("images", [])) | names
    assert {"samples/stored", "samples/augmented"} <= images, tags
    series = events.Scalars("loss/train") if "loss/train" in tags.get("scalars", []) else events.Tensors("loss/train")
    assert [e.step for e in series] == list(range(1, FAST["epochs"] + 1))


def test_both_frameworks_train_alike(runs):
    """One config (FAST), the same data: the final validation accuracies are within 5 points (10 of 200)."""
    torch_acc = runs["torch"][1]["last"]["val_accuracy"]
    tf_acc = runs["tf"][1]["last"]["val_accuracy"]
    assert abs(torch_acc - tf_acc) <= 0.05, (torch_acc, tf_acc)


def test_a_torch_run_loads_no_tensorflow(tmp_path):
    """TensorBoard logs of a PyTorch run are written without TensorFlow, so its start-up messages
    (absl, oneDNN, "Could not find cuda drivers") never reach a torch user's log."""
    import subprocess
    import sys

    from gntkit.tools.fixtures.idx import write_mnist

    pytest.importorskip("tensorboard")
    write_mnist(tmp_path / "mnist", train_count=64, test_count=16)
    code = (
        "import sys; from gntkit.shards.convert import convert; import gntkit.training as t;"
        f"convert({str(tmp_path / 'mnist')!r}, {str(tmp_path / 'data')!r}, to='hdf5');"
        f"t.train({str(tmp_path / 'data')!r}, {str(tmp_path / 'run')!r}, framework='torch', model='cnn3', epochs=1, quiet=True);"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "cuda drivers" not in done.stderr and "oneDNN" not in done.stderr
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
