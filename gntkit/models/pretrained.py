"""ImageNet-pretrained VGG convolutions from a local file, read without a deep-learning framework.

Two file layouts are read, the two that users already have on disk:

- Keras' `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` and the VGG19
  file (HDF5, Keras 2 weights layout): the root attribute `layer_names` lists
  the layers in order; each layer's group has an attribute `weight_names`
  naming its datasets relative to the group (`block1_conv1_W_1:0`,
  `block1_conv1_b_1:0` in the published files, `block1_conv1/kernel:0` in
  later saves). Kernels are HWIO. Long attribute lists may be split into
  `layer_names0`, `layer_names1`, ... as Keras writes them.
- torchvision's `vgg16-397923af.pth` / `vgg19-dcbb9e9d.pth` state dicts:
  `features.{i}.weight` (OIHW) and `features.{i}.bias`; the `classifier.*`
  entries (the ImageNet head) are ignored. Reading them needs torch
  (`torch.load(weights_only=True)`), whichever framework trains.

`read_pretrained_convs` returns the convolutions in network order as numpy
arrays (kernels HWIO, float32); `match_pretrained` checks them against a
model's convolution shapes. `gntkit.models.torch.apply_pretrained` and
`gntkit.models.tf.apply_pretrained` use both. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import numpy as np

from gntkit.errors import FormatError, GntkitError, require

__all__ = [
    "KERAS_WEIGHTS_URL",
    "TORCHVISION_WEIGHTS_URLS",
    "FREEZE_CHOICES",
    "PretrainedConv",
    "read_pretrained_convs",
    "match_pretrained",
    "check_pretrained_arguments",
]

# Where users get the files (named in the error for a missing file; gntkit fetches nothing).
KERAS_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/{arch}/"
                     "{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5")
TORCHVISION_WEIGHTS_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
FREEZE_CHOICES = (None, "features")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclasses.dataclass(frozen=True)
class PretrainedConv:
    """One pretrained convolution.

    Attributes:
        name: its name in the file ("block1_conv1" or "features.0").
        kernel: float32 array (kh, kw, in, out) (HWIO, Keras' order).
        bias: float32 array (out,).
    """

    name: str
    kernel: np.ndarray
    bias: np.ndarray


def _where_to_get(path: str) -> str:
    arch = "vgg19" if "vgg19" in os.path.basename(path).lower() else "vgg16"
    keras_url = KERAS_WEIGHTS_URL.format(arch=arch)
    torch_url = TORCHVISION_WEIGHTS_URLS[arch]
    if path.lower().endswith((".h5", ".hdf5")):
        return f"Keras publishes the {arch.upper()} ImageNet weights at {keras_url}"
    if path.lower().endswith((".pth", ".pt")):
        return f"torchvision publishes the {arch.upper()} ImageNet weights at {torch_url}"
    return f"the {arch.upper()} ImageNet weights are published at {keras_url} (Keras) and {torch_url} (torchvision)"


def check_pretrained_arguments(path, freeze=None, channels: int = 1) -> str:
    """Validate the arguments shared by both frameworks' `apply_pretrained`.

    Args:
        path: the weights file (str or os.PathLike).
        freeze: None (train everything) or "features" (freeze every convolution).
        channels: 1 (grey input: the first convolution's RGB weights are summed)
            or 3 (RGB input: kept as they are).

    Returns:
        The path as a str.

    Raises:
        GntkitError: a bad argument, or a file that does not exist (the sentence
            says where the published file is).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise GntkitError(f"The pretrained weights path must be a file path, found {type(path).__name__}.")
    path = os.fspath(path)
    if freeze not in FREEZE_CHOICES:
        raise GntkitError(f"freeze must be None or 'features', found {freeze!r}.")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise GntkitError(f"channels must be 1 (grey) or 3 (RGB) for ImageNet weights, found {channels!r}.")
    if os.path.isdir(path):
        raise GntkitError(f"Pretrained weights path {path} is a folder; expected a .h5 or .pth weights file.")
    if not os.path.isfile(path):
        raise GntkitError(f"Pretrained weights file {path} does not exist; {_where_to_get(path)} "
                          f"(gntkit never downloads).")
    return path


def read_pretrained_convs(path) -> list[PretrainedConv]:
    """Read the convolutions of a Keras VGG .h5 or torchvision VGG .pth file, in network order.

    The layout is recognised by content (HDF5 signature, zip or pickle), not by name.

    Args:
        path: the weights file.

    Returns:
        One PretrainedConv per convolution, kernels HWIO float32.

    Raises:
        GntkitError: the file does not exist (naming where to get it).
        FormatError: the file is neither layout, or its entries are not VGG convolutions.
        MissingDependencyError: h5py (for .h5) or torch (for .pth) is not installed.
    """
    path = check_pretrained_arguments(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_SIGNATURE:
        return _read_keras_h5(path)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        # zip: torch.save since 1.6; pickle protocol 2: the legacy format of the published VGG files.
        return _read_torch_state_dict(path)
    raise FormatError(path, 0, "an HDF5 file (Keras weights) or a torch .pth state dict (zip or pickle)",
                      f"the bytes {head.hex()}")


def _h5_names(group, name: str) -> list[str]:
    """A Keras name-list attribute, joined from its numbered chunks when Keras split it."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_keras_h5(path: str) -> list[PretrainedConv]:
    h5py = require("h5py", "h5py", "Reading Keras .h5 weights")
    convs: list[PretrainedConv] = []
    with h5py.File(path, "r") as f:
        # A full-model save keeps the weights layout under "model_weights".
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        layer_names = _h5_names(root, "layer_names")
        if not layer_names:
            raise FormatError(path, None, "a Keras weights file whose root attribute 'layer_names' lists its layers",
                              "no 'layer_names' attribute (not a Keras 2 .h5 weights file)")
        for layer in layer_names:
            if layer not in root:
                raise FormatError(path, None, f"a group for layer {layer!r} named in 'layer_names'", "none")
            group = root[layer]
            arrays = []
            for weight in _h5_names(group, "weight_names"):
                if weight not in group or not isinstance(group[weight], h5py.Dataset):
                    raise FormatError(path, None, f"a dataset {layer}/{weight} named in its 'weight_names'", "none")
                data = group[weight]
                if data.dtype.kind != "f":
                    raise FormatError(path, None, f"floating-point weights in {layer}/{weight}", f"dtype {data.dtype}")
                arrays.append(np.asarray(data, dtype=np.float32))
            if not any(a.ndim == 4 for a in arrays):
                continue  # input, pooling and dense layers
            if len(arrays) != 2 or arrays[0].ndim != 4 or arrays[1].shape != arrays[0].shape[3:]:
                raise FormatError(path, None, f"layer {layer}: a 4-D kernel (HWIO) then a bias of its output channels",
                                  f"weights shaped {', '.join(str(a.shape) for a in arrays)}")
            convs.append(PretrainedConv(layer, np.ascontiguousarray(arrays[0]), arrays[1]))
    if not convs:
        raise FormatError(path, None, "convolution layers (4-D kernels)", "none among its layers")
    return convs


def _read_torch_state_dict(path: str) -> list[PretrainedConv]:
    torch = require("torch", "torch", "Reading torchvision .pth weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise FormatError(path, None, "a torch state dict readable by torch.load(weights_only=True)",
                          f"an error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(state, Mapping):
        raise FormatError(path, None, "a state dict (a mapping of parameter names to tensors)", type(state).__name__)
    found: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not key.startswith("features."):
            continue  # the ImageNet classifier and anything else beside the convolutions
        parts = key.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("weight", "bias") \
                or not torch.is_tensor(value) or not value.is_floating_point():
            raise FormatError(path, None, "features.<index>.weight/.bias tensors of a VGG without batch norm",
                              f"the entry {key!r}")
        if parts[2] == "weight" and value.dim() != 4:
            raise FormatError(path, None, f"a 4-D convolution weight at {key!r} (a VGG without batch norm)",
                              f"shape {tuple(value.shape)} (a batch-norm VGG such as vgg16_bn?)")
        found.setdefault(int(parts[1]), {})[parts[2]] = value.detach().to(torch.float32).numpy()
    if not found:
        raise FormatError(path, None, "torchvision VGG keys features.0.weight, features.0.bias, ...",
                          f"keys {', '.join(list(map(str, state))[:4]) or 'none'}")
    convs = []
    for index in sorted(found):
        entry = found[index]
        if set(entry) != {"weight", "bias"} or entry["bias"].shape != entry["weight"].shape[:1]:
            raise FormatError(path, None, f"features.{index}.weight (O, I, kh, kw) and features.{index}.bias (O,)",
                              f"{', '.join(f'{k} {v.shape}' for k, v in sorted(entry.items()))}")
        kernel = np.ascontiguousarray(entry["weight"].transpose(2, 3, 1, 0))  # OIHW -> HWIO
        convs.append(PretrainedConv(f"features.{index}", kernel, np.ascontiguousarray(entry["bias"])))
    return convs


def _shape(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def match_pretrained(convs, model_shapes, model_names, channels: int, path) -> list[tuple]:
    """Check pretrained convolutions against a model's and return the arrays to load.

    Args:
        convs: `read_pretrained_convs(path)`.
        model_shapes: the model's convolution kernel shapes in order, HWIO.
        model_names: the model's names for those convolutions (for messages).
        channels: 1 sums the first convolution's kernel over its RGB inputs; 3 keeps it.
        path: the file (for messages).

    Returns:
        (kernel HWIO float32, bias float32) per model convolution, in order.

    Raises:
        GntkitError: one sentence naming the first convolution whose shape differs,
            or a different number of convolutions, or a channels mismatch.
    """
    model_shapes = [tuple(int(v) for v in s) for s in model_shapes]
    if len(convs) != len(model_shapes):
        raise GntkitError(
            f"{path} holds {len(convs)} convolutions (VGG16 has 13, VGG19 16) but the model has "
            f"{len(model_shapes)}: use the file of the same VGG.")
    if model_shapes[0][2] != channels:
        raise GntkitError(f"channels={channels} but the model's first convolution ({model_names[0]}) takes "
                          f"{model_shapes[0][2]} input channels: build the model with channels={channels}.")
    arrays = []
    for i, (conv, want, name) in enumerate(zip(convs, model_shapes, model_names)):
        kernel = conv.kernel
        if i == 0 and channels == 1 and kernel.shape[2] == 3:
            # Grey = R = G = B: a filter's response to grey input is its RGB weights summed.
            kernel = kernel.sum(axis=2, keepdims=True, dtype=np.float32)
        if kernel.shape != want:
            raise GntkitError(
                f"{path}: convolution {i + 1} ({conv.name}) has a {_shape(kernel.shape)} kernel (HWIO), "
                f"but the model's convolution {i + 1} ({name}) needs {_shape(want)}.")
        arrays.append((kernel, conv.bias))
    return arrays
