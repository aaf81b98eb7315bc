"""The tutorials' networks and the compact HCCR network: exact parameter counts, layers, and
the same function in both frameworks given the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from gntkit.models import configs
from gntkit.tools.reference.textbook_order import textbook_layers

torch_models = pytest.importorskip("gntkit.models.torch")
tf_models = pytest.importorskip("gntkit.models.tf")
torch = torch_models.torch
keras = tf_models.keras
nn = torch.nn



@pytest.fixture
def one_torch_thread():
    """Tiny nets train steadier on one intra-op thread when the few cores are shared (tests only)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# (name, classes, image size, channels, the count the tutorial or paper prints)
PUBLISHED_COUNTS = [
    ("cnn2-tutorial", 10, 28, 1, 206_682),    # PyTorch MNIST tutorial
    ("cnn3", 10, 28, 1, 93_322),              # Keras 3-conv MNIST tutorial
    ("vgg16", 10, 224, 1, 134_300_362),       # VGG16 in tf.keras at 224x224x1
    ("vgg16-transfer", 10, 48, 3, 33_638_218),  # VGG16 notop + 4096-4096-dropout-10
    ("hccr-compact", 3755, 96, 1, 6_518_635),   # Melnyk et al.: "about 6.5 M"
]


@pytest.mark.parametrize("name, classes, size, channels, count", PUBLISHED_COUNTS)
def test_published_parameter_counts_in_both_frameworks(name, classes, size, channels, count):
    assert configs.expected_parameter_count(configs.get_config(name), classes, size, channels) == count
    t = torch_models.create_model(name, classes, size, channels)
    assert torch_models.count_parameters(t) == count
    del t
    k = tf_models.create_model(name, classes, size, channels)
    assert tf_models.count_parameters(k) == count


@pytest.mark.parametrize("name", configs.image_model_names())
def test_multiply_accumulates_match_torch_flop_counter(name):
    # The table's count against torch's own counter of the built network, forward and one
    # training step (backward without the images' gradient, as a training step runs it).
    from torch.utils.flop_counter import FlopCounterMode

    width, classes = 0.125, 7
    size = next(s for s in range(8, 129) if configs._fits(configs.get_config(name, width), s)) + 8
    model = torch_models.create_model(name, classes, size, width=width)
    images = torch.rand(2, 1, size, size)
    with FlopCounterMode(display=False) as counter:
        model(images)
    forward = counter.get_total_flops() // 4  # 2 FLOPs per MAC, 2 images
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    training = counter.get_total_flops() // 4
    assert configs.multiply_accumulates(configs.get_config(name, width), classes, size) == {
        "forward": forward, "training": training}


def test_multiply_accumulates_of_cnn3_by_hand_and_bad_sizes():
    # cnn3 at 64: valid 3x3 convolutions 1->32 (62x62), pool, 32->64 (29x29), pool, 64->64 (12x12),
    # dense 9216->64, 64->10; a training step skips the first convolution's input gradient.
    layers = [62 * 62 * 32 * 9, 29 * 29 * 64 * 32 * 9, 12 * 12 * 64 * 64 * 9, 9216 * 64, 64 * 10]
    macs = configs.multiply_accumulates(configs.get_config("cnn3"), 10, 64)
    assert macs == {"forward": sum(layers), "training": 3 * sum(layers) - layers[0]}
    with pytest.raises(configs.GntkitError, match="needs images of at least"):
        configs.multiply_accumulates(configs.get_config("cnn3"), 10, 8)
    with pytest.raises(configs.GntkitError, match="number of classes"):
        configs.multiply_accumulates(configs.get_config("cnn3"), 0, 64)


def test_cnn2_tutorial_layers():
    t = torch_models.create_model("cnn2-tutorial", 10, 28)
    described = [(type(m).__name__, getattr(m, "in_channels", None), getattr(m, "out_channels", None),
                  getattr(m, "padding", None)) for m in t.features]
    # the tutorial's conv, ReLU, pool, with each max pool moved before its ReLU (the same numbers:
    # test_max_pool_before_relu_equals_the_textbook_order_*)
    assert described == [("Conv2d", 1, 4, (1, 1)), ("MaxPool2d", None, None, 0), ("ReLU", None, None, None),
                         ("Conv2d", 4, 8, (1, 1)), ("MaxPool2d", None, None, 0), ("ReLU", None, None, None)]
    head = list(t.classifier)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].p, head[3].out_features) == (392, 512, 0.4, 10)
    # logits, not the tutorial's log-softmax: rows do not sum to one after exp
    with torch.no_grad():
        out = t.eval()(torch.rand(2, 1, 28, 28))
    assert not torch.allclose(out.exp().sum(1), torch.ones(2))


def test_hccr_compact_layers():
    cfg = configs.get_config("hccr-compact")
    assert configs.feature_map_size(cfg, 96) == 6 and configs.feature_map_size(cfg, 100) == 7
    t = torch_models.create_model("hccr-compact", 3755, 96)
    convs = [m for m in t.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 96, 64, 96, 128, 96, 128, 256, 192, 256, 448, 256, 448]
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in t.features) == 14
    assert sum(isinstance(m, nn.AvgPool2d) for m in t.features) == 4
    assert tuple(t.pooling.weight.shape) == (448, 6, 6)
    assert [type(m).__name__ for m in t.classifier] == ["Dropout", "Linear"]
    assert t.classifier[0].p == 0.5 and t.classifier[1].in_features == 448
    k = tf_models.create_model("hccr-compact", 3755, 96)
    assert tuple(k.get_layer("gwap").kernel.shape) == (6, 6, 448)
    assert k.get_layer("head_dropout").rate == 0.5 and not k.get_layer("conv14").use_bias
    # batch norm's moving mean and variance are weights but not trainable: 2 x 2,592 channels
    assert tf_models.count_parameters(k, trainable_only=False) == 6_518_635 + 5_184
    assert "hccr-compact: input 96x96x1, 3755 classes, 6,518,635 parameters" in configs.describe(cfg, 3755, 96)
    assert configs.describe(cfg, 3755, 96).endswith(", 1.2 G multiply-accumulates per image")


def _copy_torch_to_keras(t, k, config, image_size):
    """Copy every weight of a torch ConvNet into the keras model of the same name, in layer order."""
    tm = [m for m in t.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear,
                                                      torch_models.GlobalWeightedAveragePooling))]
    km = [layer for layer in k.layers if layer.weights and not isinstance(layer, keras.layers.Dropout)]
    assert len(tm) == len(km)
    first_dense = True
    for m, layer in zip(tm, km):
        if isinstance(m, nn.Conv2d):
            weights = [m.weight.detach().numpy().transpose(2, 3, 1, 0)]
            weights += [] if m.bias is None else [m.bias.detach().numpy()]
        elif isinstance(m, nn.BatchNorm2d):
            weights = [v.detach().numpy() for v in (m.weight, m.bias, m.running_mean, m.running_var)]
        elif isinstance(m, torch_models.GlobalWeightedAveragePooling):
            weights = [m.weight.detach().numpy().transpose(1, 2, 0)]
        else:
            w = m.weight.detach().numpy()
            if first_dense and config.head == "flatten":  # NCHW flatten order -> NHWC
                side = configs.feature_map_size(config, image_size)
                w = w.reshape(w.shape[0], -1, side, side).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
            first_dense = False
            weights = [w.T, m.bias.detach().numpy()]
        layer.set_weights(weights)


@pytest.mark.parametrize("name, width, size", [
    ("cnn2-tutorial", 1.0, 28),
    ("hccr-compact", 0.125, 40),  # 40 -> 20 -> 10 -> 5 -> 3: the average pools meet odd sides
    ("vgg16-transfer", 0.0625, 48),
])
def test_same_function_in_both_frameworks(name, width, size):
    torch.manual_seed(1)
    config = configs.get_config(name, width)
    t = torch_models.create_model(name, 7, size, width=width)
    with torch.no_grad():  # non-trivial batch-norm statistics and pooling weights
        for m in t.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, torch_models.GlobalWeightedAveragePooling):
                m.weight.uniform_(0.0, 0.1)
    t.eval()
    k = tf_models.create_model(name, 7, size, width=width)
    _copy_torch_to_keras(t, k, config, size)
    x = np.random.default_rng(2).random((3, size, size), dtype=np.float32)
    with torch.no_grad():
        a = t(torch.from_numpy(x)[:, None]).numpy()
    b = k(x[..., None], training=False).numpy()
    assert np.abs(a).max() > 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def _tie_heavy_images(size):
    """Images whose blank parts make whole pooling windows equal (ties) beside random ones."""
    x = np.random.default_rng(5).random((4, size, size), dtype=np.float32)
    x[:, : size // 2] = 0.0
    x[1] = 0.0
    return x


@pytest.mark.parametrize("name, width", [("cnn3", 0.5), ("vgg11_bn", 0.125)])
def test_max_pool_before_relu_equals_the_textbook_order_in_torch(name, width):
    # gntkit pools before the ReLU (configs.feature_layers); the textbook order, the same
    # modules with each ReLU back before its pool, gives the same output and every gradient
    # bit for bit, ties included.
    torch.manual_seed(3)
    model = torch_models.create_model(name, 5, 32, width=width).train()  # batch norm on batch statistics
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the two passes must not draw different masks
    textbook, swapped = textbook_layers(model.features, nn.MaxPool2d, nn.ReLU)
    assert swapped  # the model does pool first
    textbook = nn.Sequential(*textbook)
    images = torch.from_numpy(_tie_heavy_images(32))[:, None]
    labels = torch.tensor([0, 1, 2, 3])
    results = []
    for features in (model.features, textbook):
        model.zero_grad()
        logits = model.classifier(model.pooling(features(images)))
        nn.functional.cross_entropy(logits, labels).backward()
        results.append([logits.detach().clone()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))
    assert any(g.abs().max() > 0 for g in results[0][1:])


@pytest.mark.parametrize("name, width", [("cnn3", 0.5), ("vgg11_bn", 0.125)])
def test_max_pool_before_relu_equals_the_textbook_order_in_tf(name, width):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    model = tf_models.create_model(name, 5, 32, width=width)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # the two passes must not draw different masks
    textbook, swapped = textbook_layers(model.layers, keras.layers.MaxPooling2D, keras.layers.ReLU)
    assert swapped  # the model does pool first
    textbook = keras.Sequential([keras.Input((32, 32, 1))] + textbook)  # the same layers, same weights
    images = _tie_heavy_images(32)[..., None]
    labels = np.array([0, 1, 2, 3])
    results = []
    for network in (model, textbook):
        with tf.GradientTape() as tape:
            logits = network(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        results.append([logits.numpy()] + [g.numpy() for g in grads])
    assert all(np.array_equal(a, b) for a, b in zip(*results))
    assert any(np.abs(g).max() > 0 for g in results[0][1:])


def _numpy_average_pool(x):
    """3x3 stride-2 mean over the map zero-padded by one on each side (the "A" entry), NCHW."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(2, 3)) / 9
    return out


def test_average_pool_and_gwap_against_numpy():
    rng = np.random.default_rng(4)
    x = rng.random((2, 3, 5, 5), dtype=np.float32)
    pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
    np.testing.assert_allclose(pool(torch.from_numpy(x)).numpy(), _numpy_average_pool(x), rtol=1e-6)
    pad = keras.layers.ZeroPadding2D(1)
    kpool = keras.layers.AveragePooling2D(3, 2)
    np.testing.assert_allclose(kpool(pad(x.transpose(0, 2, 3, 1))).numpy().transpose(0, 3, 1, 2),
                               _numpy_average_pool(x), rtol=1e-6)
    weight = rng.random((3, 5, 5), dtype=np.float32)
    gwap = torch_models.GlobalWeightedAveragePooling(3, 5)
    with torch.no_grad():
        gwap.weight.copy_(torch.from_numpy(weight))
    expected = (x * weight).sum(axis=(2, 3))
    np.testing.assert_allclose(gwap(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5)
    layer = tf_models.GlobalWeightedAveragePooling()
    layer.build((None, 5, 5, 3))
    layer.set_weights([weight.transpose(1, 2, 0)])
    np.testing.assert_allclose(layer(x.transpose(0, 2, 3, 1)).numpy(), expected, rtol=1e-5)


def _separable_batch(rng, classes=4, n=16, size=16):
    """Each class lights one quadrant: a task a working network learns in a few steps."""
    y = np.arange(n) % classes
    x = rng.random((n, size, size), dtype=np.float32) * 0.2
    half = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, r * half:(r + 1) * half, c * half:(c + 1) * half] += 0.8
    return x, y


def test_hccr_compact_trains_in_both_frameworks(one_torch_thread):
    """A narrow copy (16x16 input: the four pools leave 1x1) fits a small batch in both frameworks."""
    x, y = _separable_batch(np.random.default_rng(5))
    torch.manual_seed(0)
    t = torch_models.create_model("hccr-compact", 4, 16, width=1 / 8)
    optimizer = torch.optim.Adam(t.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(t(xt), yt)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.15 * losses[0]  # dropout 0.5 makes single steps noisy
    keras.utils.set_random_seed(0)
    k = tf_models.create_model("hccr-compact", 4, 16, width=1 / 8)
    k.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = k.fit(x[..., None], y, batch_size=16, epochs=20, verbose=0).history["loss"]
    assert np.mean(history[-4:]) < 0.15 * history[0]


def test_hccr_compact_mixed_precision_keeps_float32_logits():
    k = tf_models.create_model("hccr-compact", 5, 32, width=0.125, dtype_policy="mixed_bfloat16")
    out = k(np.zeros((2, 32, 32, 1), np.float32))
    assert out.dtype == tf_models.tf.float32
    assert k.get_layer("gwap").compute_dtype == "bfloat16"
    assert k.get_layer("gwap").kernel.dtype == "float32"


def test_hccr_compact_keras_file_round_trip(tmp_path):
    """The GWAP layer is registered with keras, so a saved model loads without custom_objects."""
    k = tf_models.create_model("hccr-compact", 5, 16, width=1 / 16)
    k.get_layer("gwap").set_weights([np.random.default_rng(6).random((1, 1, 28), dtype=np.float32)])
    k.save(tmp_path / "hccr.keras")
    loaded = keras.models.load_model(tmp_path / "hccr.keras")
    x = np.random.default_rng(7).random((2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), k(x, training=False).numpy(), rtol=1e-6)
    assert type(loaded.get_layer("gwap")).__name__ == "GlobalWeightedAveragePooling"


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_hccr_compact_starts_with_logits_of_chance_size(framework):
    """GWAP starts as global average pooling: a fresh hccr-compact's loss is near ln(classes).

    With the published initialiser (ones) the first logits are S * S times larger (16x here)
    and the first loss is several times ln(classes); that cost the defaults accuracy.
    """
    classes, size = 30, 64
    x = np.random.default_rng(8).random((32, size, size), dtype=np.float32)
    y = np.arange(32) % classes
    if framework == "torch":
        torch.manual_seed(0)
        t = torch_models.create_model("hccr-compact", classes, size, width=0.25).train()
        np.testing.assert_allclose(t.pooling.weight.detach().numpy(), 1 / 16)
        loss = nn.functional.cross_entropy(t(torch.from_numpy(x)[:, None]), torch.from_numpy(y)).item()
    else:
        keras.utils.set_random_seed(0)
        k = tf_models.create_model("hccr-compact", classes, size, width=0.25)
        np.testing.assert_allclose(k.get_layer("gwap").kernel.numpy(), 1 / 16)
        logits = k(x[..., None], training=True)
        loss = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)))
    assert np.log(classes) * 0.8 < loss < np.log(classes) * 1.5


def _keras_and_fused_batch_norm(dtype=None):
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype)
    fused = tf_models.FusedBatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype)
    rng = np.random.default_rng(9)
    for layer in (plain, fused):
        layer.build((None, 5, 6, 3))
    weights = [rng.uniform(0.5, 1.5, 3), rng.uniform(-0.5, 0.5, 3), rng.uniform(-0.1, 0.1, 3),
               rng.uniform(0.5, 1.5, 3)]
    plain.set_weights([w.astype(np.float32) for w in weights])
    fused.set_weights([w.astype(np.float32) for w in weights])
    return plain, fused


def test_fused_batch_norm_trains_like_keras_batch_norm():
    tf = tf_models.tf
    plain, fused = _keras_and_fused_batch_norm()
    x = tf.constant(np.random.default_rng(10).normal(2.0, 3.0, (4, 5, 6, 3)).astype(np.float32))
    upstream = tf.constant(np.random.default_rng(11).normal(size=(4, 5, 6, 3)).astype(np.float32))
    results = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=True)
            loss = tf.reduce_sum(out * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([out.numpy()] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-6)
    # keras averages the biased batch variance, the fused kernel (like torch) the unbiased one
    n = 4 * 5 * 6
    biased = x.numpy().reshape(-1, 3).var(axis=0)
    start = plain.moving_variance.numpy() - 0.1 * biased  # the value both had before the step
    np.testing.assert_allclose(fused.moving_variance.numpy(), start + 0.1 * biased * n / (n - 1), rtol=1e-5)
    # inference is keras' own path: the same output from the same statistics
    fused.moving_mean.assign(plain.moving_mean)
    fused.moving_variance.assign(plain.moving_variance)
    np.testing.assert_array_equal(fused(x, training=False).numpy(), plain(x, training=False).numpy())


def test_fused_batch_norm_in_bf16_keeps_bf16_activations_and_float32_statistics():
    tf = tf_models.tf
    plain, fused = _keras_and_fused_batch_norm("mixed_bfloat16")
    x = tf.constant(np.random.default_rng(12).normal(1.0, 2.0, (8, 5, 6, 3)).astype(np.float32))
    a, b = plain(x, training=True), fused(x, training=True)
    assert b.dtype == tf.bfloat16 and fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(b, tf.float32).numpy(), tf.cast(a, tf.float32).numpy(), atol=0.05)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=0.01)


def test_models_with_batch_norm_use_the_fused_layer():
    k = tf_models.create_model("hccr-compact", 5, 16, width=1 / 16)
    norms = [layer for layer in k.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 14 and all(isinstance(layer, tf_models.FusedBatchNormalization) for layer in norms)


@pytest.mark.parametrize("dtype, jit", [("float32", True), ("mixed_float16", False)])
def test_fused_batch_norm_under_xla_and_float16(dtype, jit):
    """--compile (XLA) and fp16 go through the fused kernel too, and agree with keras' layer."""
    tf = tf_models.tf
    plain, fused = _keras_and_fused_batch_norm(dtype)
    x = tf.constant(np.random.default_rng(13).normal(0.5, 1.5, (6, 5, 6, 3)).astype(np.float32))
    outputs = []
    for layer in (plain, fused):
        def step(images, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(images)
                out = tf.cast(layer(images, training=True), tf.float32)
                loss = tf.reduce_sum(out * images)
            return out, tape.gradient(loss, images)
        outputs.append([t.numpy() for t in tf.function(step, jit_compile=jit)(x)])
    tolerance = 1e-4 if dtype == "float32" else 2e-2
    for a, b in zip(*outputs):
        assert np.isfinite(b).all()
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)
