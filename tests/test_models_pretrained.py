"""ImageNet VGG weights from local files: the Keras .h5 and torchvision .pth layouts, both frameworks.

The files are written here in the published layouts (HDF5 groups and attributes of Keras'
`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`; the `features.N.weight` state dict of
torchvision's `vgg16-397923af.pth`) with seeded random values. The full-size VGG16 files
(14.7 M float32 parameters, 59 MB each) are written once per test run; training and error
tests use narrow VGGs whose files have the same key names and structure.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from gntkit.errors import FormatError, GntkitError
from gntkit.models import configs, pretrained

h5py = pytest.importorskip("h5py")
torch_models = pytest.importorskip("gntkit.models.torch")
tf_models = pytest.importorskip("gntkit.models.tf")
torch = torch_models.torch
keras = tf_models.keras



@pytest.fixture
def one_torch_thread():
    """Tiny nets train steadier on one intra-op thread when the few cores are shared (tests only)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

def vgg_layout(name: str, width: float = 1.0, in_channels: int = 3):
    """[(keras layer name, torchvision features index, HWIO shape)] of a VGG in the table."""
    layout, block, conv, index, c_in = [], 1, 0, 0, in_channels
    for v in configs.get_config(name, width).convs:
        if v == "M":
            block, conv, index = block + 1, 0, index + 1  # the pool's slot in torchvision's features
            continue
        conv += 1
        layout.append((f"block{block}_conv{conv}", index, (3, 3, c_in, v)))
        index += 2  # the convolution and its ReLU
        c_in = v
    return layout


def random_convs(layout, seed: int):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape, dtype=np.float32) * 0.05,
             rng.standard_normal(shape[3], dtype=np.float32) * 0.05) for _, _, shape in layout]


def write_keras_h5(path, layout, arrays, naming: str = "W_1", top: bool = False):
    """Keras 2 weights layout: root attribute layer_names; per layer a group with weight_names.

    top=True adds the include_top layers (flatten, fc1, fc2, predictions; small dense shapes).
    """
    layer_names = ["input_1"]
    for (name, _, _), _ in zip(layout, arrays):
        if name.endswith("_conv1") and name != "block1_conv1":
            layer_names.append(f"block{int(name[5]) - 1}_pool")
        layer_names.append(name)
    layer_names.append(f"block{layout[-1][0][5]}_pool")
    dense = {"fc1": (np.ones((16, 8), np.float32), np.zeros(8, np.float32)),
             "fc2": (np.ones((8, 8), np.float32), np.zeros(8, np.float32)),
             "predictions": (np.ones((8, 5), np.float32), np.zeros(5, np.float32))} if top else {}
    layer_names += ["flatten"] + list(dense) if top else []
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.6"
        convs = {name: a for (name, _, _), a in zip(layout, arrays)} | dense
        for layer in layer_names:
            group = f.create_group(layer)
            if layer not in convs:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            if naming == "W_1":  # the published files
                names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            else:  # later Keras 2 saves: a nested group per layer
                names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, value in zip(names, convs[layer]):
                group.create_dataset(n, data=value)


def write_torch_pth(path, layout, arrays, classifier=True, legacy=False):
    """torchvision VGG state dict: features.N.weight (OIHW) / .bias, classifier.{0,3,6}.*."""
    state = collections.OrderedDict()
    for (_, index, _), (kernel, bias) in zip(layout, arrays):
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(bias)
    if classifier:  # real names; small shapes (the real head is 120 M parameters)
        for i, (o, n) in zip((0, 3, 6), ((8, 16), (8, 8), (5, 8))):
            state[f"classifier.{i}.weight"] = torch.ones(o, n)
            state[f"classifier.{i}.bias"] = torch.zeros(o)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)


@pytest.fixture(scope="session")
def vgg16_files(tmp_path_factory):
    """Full-size VGG16 notop files in both layouts, holding the same seeded values."""
    folder = tmp_path_factory.mktemp("vgg16")
    layout = vgg_layout("vgg16")
    arrays = random_convs(layout, seed=16)
    h5 = folder / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    pth = folder / "vgg16-397923af.pth"
    write_keras_h5(h5, layout, arrays)
    write_torch_pth(pth, layout, arrays)
    return h5, pth, layout, arrays


NARROW = 1 / 16


@pytest.fixture
def narrow_files(tmp_path):
    """Narrow VGG16 and VGG19 files (width 1/16) in both layouts, same key names as the real ones."""
    out = {}
    for name in ("vgg16", "vgg19"):
        layout = vgg_layout(name, NARROW)
        arrays = random_convs(layout, seed=len(layout))
        write_keras_h5(tmp_path / f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5", layout, arrays,
                       naming="kernel")
        write_torch_pth(tmp_path / f"{name}.pth", layout, arrays)
        out[name] = (tmp_path / f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     tmp_path / f"{name}.pth", layout, arrays)
    return out


def torch_convs(model):
    return [m for m in model.features if isinstance(m, torch.nn.Conv2d)]


def keras_convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_both_real_layouts_read_the_same_convolutions(vgg16_files):
    h5, pth, layout, arrays = vgg16_files
    from_h5 = pretrained.read_pretrained_convs(h5)
    from_pth = pretrained.read_pretrained_convs(pth)
    assert [c.name for c in from_h5] == [name for name, _, _ in layout]
    assert [c.name for c in from_pth] == [f"features.{i}" for _, i, _ in layout]
    assert from_h5[0].name == "block1_conv1" and from_pth[-1].name == "features.28"
    for a, b, (kernel, bias) in zip(from_h5, from_pth, arrays):
        assert a.kernel.dtype == np.float32 and a.kernel.shape == kernel.shape
        np.testing.assert_array_equal(a.kernel, kernel)
        np.testing.assert_array_equal(b.kernel, kernel)  # OIHW in the file, HWIO here
        np.testing.assert_array_equal(a.bias, bias)
        np.testing.assert_array_equal(b.bias, bias)
    assert sum(c.kernel.size + c.bias.size for c in from_h5) == 14_714_688  # VGG16 notop, RGB


@pytest.mark.parametrize("layout_file", ["h5", "pth"])
def test_torch_transfer_model_from_real_files(vgg16_files, layout_file):
    h5, pth, layout, arrays = vgg16_files
    model = torch_models.create_model("vgg16-transfer", 10, 48, channels=3)
    assert torch_models.count_parameters(model) == 33_638_218
    torch_models.apply_pretrained(model, h5 if layout_file == "h5" else pth, freeze="features", channels=3)
    for conv, (kernel, bias) in zip(torch_convs(model), arrays):
        np.testing.assert_array_equal(conv.weight.detach().numpy(), kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(conv.bias.detach().numpy(), bias)
    # the frozen convolutions leave the new head: 512->4096->4096->10
    assert torch_models.count_parameters(model) == 33_638_218 - 14_714_688 == 18_923_530


@pytest.mark.parametrize("layout_file", ["h5", "pth"])
def test_keras_transfer_model_from_real_files(vgg16_files, layout_file):
    h5, pth, layout, arrays = vgg16_files
    model = tf_models.create_model("vgg16-transfer", 10, 48, channels=3)
    assert tf_models.count_parameters(model) == 33_638_218
    tf_models.apply_pretrained(model, h5 if layout_file == "h5" else pth, freeze="features", channels=3)
    for layer, (kernel, bias) in zip(keras_convs(model), arrays):
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
        np.testing.assert_array_equal(layer.bias.numpy(), bias)
        assert not layer.trainable
    assert tf_models.count_parameters(model) == 18_923_530


def test_grey_input_sums_the_first_kernel_over_rgb(vgg16_files):
    h5, pth, layout, arrays = vgg16_files
    t = torch_models.apply_pretrained(torch_models.create_model("vgg16", 10, 32), pth, channels=1)
    k = tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32), h5, channels=1)
    grey = arrays[0][0].sum(axis=2, keepdims=True)
    assert grey.shape == (3, 3, 1, 64)
    np.testing.assert_allclose(k.get_layer("conv1").kernel.numpy(), grey, rtol=1e-6)
    np.testing.assert_allclose(torch_convs(t)[0].weight.detach().numpy(), grey.transpose(3, 2, 0, 1), rtol=1e-6)
    np.testing.assert_array_equal(torch_convs(t)[1].weight.detach().numpy(), arrays[1][0].transpose(3, 2, 0, 1))


def test_same_features_in_both_frameworks_from_either_file(vgg16_files):
    """h5 into torch and pth into keras: the convolution stacks compute the same function."""
    h5, pth, _, _ = vgg16_files
    t = torch_models.apply_pretrained(torch_models.create_model("vgg16", 10, 32), h5).eval()
    k = tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32), pth)
    x = np.random.default_rng(3).random((2, 32, 32, 1), dtype=np.float32)
    with torch.no_grad():
        a = t.features(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    last_feature = k.layers[k.layers.index(k.get_layer("flatten")) - 1]  # relu13: pool5 comes before it
    b = keras.Model(k.inputs, last_feature.output)([x]).numpy()
    assert a.shape == b.shape == (2, 1, 1, 512)
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())


def _torch_step(model, steps=3):
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("freeze", ["features", None])
def test_torch_frozen_convolutions_do_not_train(narrow_files, freeze, one_torch_thread):
    h5, pth, layout, arrays = narrow_files["vgg16"]
    torch.manual_seed(0)
    model = torch_models.apply_pretrained(torch_models.create_model("vgg16", 10, 32, width=NARROW),
                                          h5, freeze=freeze, channels=1)
    head_before = [p.detach().clone() for p in model.classifier.parameters()]
    _torch_step(model)
    convs = torch_convs(model)
    unchanged = [np.array_equal(c.weight.detach().numpy(),
                                (kernel.sum(axis=2, keepdims=True) if i == 0 else kernel).transpose(3, 2, 0, 1))
                 and np.array_equal(c.bias.detach().numpy(), bias)
                 for i, (c, (kernel, bias)) in enumerate(zip(convs, arrays))]
    head_changed = [not torch.equal(a, b) for a, b in zip(head_before, model.classifier.parameters())]
    assert all(head_changed)
    assert all(unchanged) if freeze else not any(unchanged)


@pytest.mark.parametrize("freeze", ["features", None])
def test_keras_frozen_convolutions_do_not_train(narrow_files, freeze):
    h5, pth, layout, arrays = narrow_files["vgg16"]
    keras.utils.set_random_seed(0)
    model = tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32, width=NARROW),
                                       pth, freeze=freeze, channels=1)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    head_before = [w.numpy().copy() for layer in dense for w in layer.weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 32, 32, 1), dtype=np.float32), rng.integers(0, 10, 16),
              batch_size=8, epochs=1, verbose=0)
    unchanged = [np.array_equal(layer.kernel.numpy(), kernel.sum(axis=2, keepdims=True) if i == 0 else kernel)
                 and np.array_equal(layer.bias.numpy(), bias)
                 for i, (layer, (kernel, bias)) in enumerate(zip(keras_convs(model), arrays))]
    head_after = [w.numpy() for layer in dense for w in layer.weights]
    assert all(not np.array_equal(a, b) for a, b in zip(head_before, head_after))
    assert all(unchanged) if freeze else not any(unchanged)


def test_vgg19_files_with_top_and_legacy_torch_serialisation(narrow_files, tmp_path):
    h5, pth, layout, arrays = narrow_files["vgg19"]
    legacy = tmp_path / "vgg19-dcbb9e9d.pth"
    write_torch_pth(legacy, layout, arrays, legacy=True)  # the published files predate torch's zip format
    assert open(legacy, "rb").read(2) == b"\x80\x02"
    with_top = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    write_keras_h5(with_top, layout, arrays, top=True)  # the dense ImageNet head is skipped
    for path in (h5, pth, legacy, with_top):
        model = torch_models.apply_pretrained(
            torch_models.create_model("vgg19", 10, 32, channels=3, width=NARROW), path, channels=3)
        assert len(torch_convs(model)) == 16
        np.testing.assert_array_equal(torch_convs(model)[15].weight.detach().numpy(),
                                      arrays[15][0].transpose(3, 2, 0, 1))


@pytest.mark.parametrize("name, where", [
    ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
     "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    ("weights.bin", "download.pytorch.org/models/vgg16-397923af.pth"),
])
def test_missing_file_says_where_to_get_it(tmp_path, name, where):
    model = torch_models.create_model("vgg16", 10, 32, width=NARROW)
    with pytest.raises(GntkitError, match="does not exist") as info:
        torch_models.apply_pretrained(model, tmp_path / name)
    assert where in str(info.value) and str(info.value).count(". ") == 0
    with pytest.raises(GntkitError, match="does not exist"):
        tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32, width=NARROW), tmp_path / name)


def test_shape_mismatch_names_the_first_convolution_that_differs(narrow_files, tmp_path):
    h5, pth, layout, arrays = narrow_files["vgg16"]
    arrays = list(arrays)
    arrays[4] = (arrays[4][0][:, :, :, :-1], arrays[4][1][:-1])  # block3_conv1 loses an output channel
    bad = tmp_path / "vgg16_bad.h5"
    write_keras_h5(bad, layout, arrays)
    message = (r"convolution 5 \(block3_conv1\) has a 3x3x8x15 kernel \(HWIO\), "
               r"but the model's convolution 5 \(features.10\) needs 3x3x8x16")
    with pytest.raises(GntkitError, match=message):
        torch_models.apply_pretrained(torch_models.create_model("vgg16", 10, 32, width=NARROW), bad)
    with pytest.raises(GntkitError, match=r"convolution 5 \(block3_conv1\).*convolution 5 \(conv5\)"):
        tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32, width=NARROW), bad)
    # a model of another width: the very first convolution differs
    with pytest.raises(GntkitError, match=r"convolution 1 \(features.0\) has a 3x3x1x4 kernel"):
        torch_models.apply_pretrained(torch_models.create_model("vgg16", 10, 32, width=1 / 8), pth)


def test_wrong_vgg_channels_and_arguments(narrow_files):
    h5, pth, _, _ = narrow_files["vgg19"]
    vgg16 = torch_models.create_model("vgg16", 10, 32, width=NARROW)
    with pytest.raises(GntkitError, match="holds 16 convolutions .* but the model has 13"):
        torch_models.apply_pretrained(vgg16, h5)
    with pytest.raises(GntkitError, match="holds 16 convolutions .* but the model has 13"):
        tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32, width=NARROW), pth)
    h5_16 = narrow_files["vgg16"][0]
    with pytest.raises(GntkitError, match="channels=3 but the model's first convolution"):
        torch_models.apply_pretrained(vgg16, h5_16, channels=3)
    with pytest.raises(GntkitError, match="freeze must be None or 'features'"):
        torch_models.apply_pretrained(vgg16, h5_16, freeze="all")
    with pytest.raises(GntkitError, match="channels must be 1"):
        tf_models.apply_pretrained(tf_models.create_model("vgg16", 10, 32, width=NARROW), h5_16, channels=2)
    with pytest.raises(GntkitError, match="has batch norm"):
        torch_models.apply_pretrained(torch_models.create_model("vgg16_bn", 10, 32, width=NARROW), h5_16)
    with pytest.raises(GntkitError, match="has batch norm"):
        tf_models.apply_pretrained(tf_models.create_model("vgg16_bn", 10, 32, width=NARROW), h5_16)
    with pytest.raises(GntkitError, match="needs a gntkit ConvNet"):
        torch_models.apply_pretrained(torch.nn.Linear(2, 2), h5_16)


def test_reading_weights_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, gntkit.models.pretrained\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'h5py') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_files_that_are_not_vgg_weights(tmp_path):
    with pytest.raises(GntkitError, match="is a folder; expected a .h5 or .pth weights file"):
        pretrained.read_pretrained_convs(tmp_path)
    junk = tmp_path / "vgg16.bin"
    junk.write_bytes(b"GNT?" + bytes(100))
    with pytest.raises(FormatError, match=r"vgg16.bin at byte 0: expected an HDF5 file .* found the bytes 474e543f"):
        pretrained.read_pretrained_convs(junk)
    no_names = tmp_path / "plain.h5"
    with h5py.File(no_names, "w") as f:
        f.create_dataset("images", data=np.zeros(3))
    with pytest.raises(FormatError, match="'layer_names'"):
        pretrained.read_pretrained_convs(no_names)
    missing_dataset = tmp_path / "missing.h5"
    layout = vgg_layout("vgg16", NARROW)
    write_keras_h5(missing_dataset, layout, random_convs(layout, 0))
    with h5py.File(missing_dataset, "a") as f:
        del f["block2_conv1"]["block2_conv1_b_1:0"]
    with pytest.raises(FormatError, match="a dataset block2_conv1/block2_conv1_b_1:0 named in its 'weight_names'"):
        pretrained.read_pretrained_convs(missing_dataset)
    bn = tmp_path / "vgg16_bn.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3), "features.0.bias": torch.zeros(4),
                "features.1.weight": torch.ones(4), "features.1.bias": torch.zeros(4)}, bn)
    with pytest.raises(FormatError, match=r"found shape \(4,\) \(a batch-norm VGG"):
        pretrained.read_pretrained_convs(bn)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7)}, other)
    with pytest.raises(FormatError, match="found keys conv1.weight"):
        pretrained.read_pretrained_convs(other)
    truncated = tmp_path / "vgg16-397923af.pth"
    write_torch_pth(truncated, layout, random_convs(layout, 0))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(FormatError, match="readable by torch.load"):
        pretrained.read_pretrained_convs(truncated)
