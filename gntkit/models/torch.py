"""PyTorch builders for the models of `gntkit.models.configs` (imports torch).

`create_model(name, num_classes, image_size)` returns a `torch.nn.Module` that
takes float images shaped (N, C, S, S) with values in [0, 1] (ink bright, as
gntkit shards store it, divided by 255) and returns logits (N, num_classes).
"""

from __future__ import annotations

from gntkit.errors import GntkitError, require
from gntkit.models import pretrained
from gntkit.models.configs import (
    ModelConfig,
    check_model_arguments,
    expected_parameter_count,
    feature_layers,
    feature_map_size,
)
from gntkit.models.crnn_torch import CRNN, init_layers

# torch is the one heavy framework this module uses; `import gntkit` never loads it.
torch = require("torch", "torch", "Building PyTorch models")
nn = torch.nn

__all__ = ["ConvNet", "GlobalWeightedAveragePooling", "create_model", "count_parameters",
           "apply_pretrained"]


class GlobalWeightedAveragePooling(nn.Module):
    """Global weighted average pooling (Melnyk et al. 2020): sum over positions of x * weight.

    The weight has one value per channel and position, shaped (C, S, S), and
    starts at 1 / (S * S): the layer starts as global average pooling. The
    published model starts it at one, which makes the first logits S * S times
    larger (36x at 96 x 96): with gntkit's defaults that cost hccr-compact
    accuracy and made its TensorFlow bf16 runs unstable (first-epoch loss 8.3-8.9
    where ln 30 is 3.4). With 1 / (S * S), benchmarks/bench_accuracy.py gave
    99.4% (torch) and 99.7% (TF) on unseen writers, against 96.4% and 87.5-92.4%
    with ones (docs/benchmarks.md).
    """

    def __init__(self, channels: int, side: int):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, side, side), 1.0 / (side * side)))

    def forward(self, x):
        """Map (N, C, S, S) to (N, C)."""
        return (x * self.weight).sum(dim=(2, 3))


class ConvNet(nn.Module):
    """A plain convolutional classifier built from a ModelConfig: `features`, flatten, `classifier`.

    Attributes:
        config: the ModelConfig it was built from.
        num_classes, image_size, channels, batch_norm: the build arguments.
    """

    def __init__(self, config: ModelConfig, num_classes: int, image_size: int,
                 channels: int = 1, batch_norm: bool | None = None):
        super().__init__()
        bn = config.batch_norm if batch_norm is None else bool(batch_norm)
        self.config = config
        self.num_classes = num_classes
        self.image_size = image_size
        self.channels = channels
        self.batch_norm = bn
        padding = config.kernel_size // 2 if config.padding == "same" else 0
        bias = config.conv_has_bias(bn)
        layers: list = []
        c_in = channels
        for step in feature_layers(config):  # a max pool comes before its convolution's ReLU: see there
            if step[0] == "max":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            elif step[0] == "avg":
                # count_include_pad=True: keras' ZeroPadding2D + AveragePooling2D compute the same.
                layers.append(nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True))
            elif step[0] == "relu":
                layers.append(nn.ReLU(inplace=True))
            else:
                v = step[1]
                layers.append(nn.Conv2d(c_in, v, kernel_size=config.kernel_size, padding=padding,
                                        bias=bias))
                if bn:
                    layers.append(nn.BatchNorm2d(v))
                c_in = v
        self.features = nn.Sequential(*layers)
        side = feature_map_size(config, image_size)
        if config.head == "gwap":
            self.pooling = GlobalWeightedAveragePooling(c_in, side)
            width = c_in
        else:
            self.pooling = nn.Flatten(1)
            width = c_in * side * side
        head: list = []
        for d in config.dense:
            head += [nn.Linear(width, d), nn.ReLU(inplace=True)]
            if config.dropout > 0:
                head.append(nn.Dropout(config.dropout))
            width = d
        if config.classifier_dropout > 0:
            head.append(nn.Dropout(config.classifier_dropout))
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)
        self._init_weights()

    def _init_weights(self) -> None:
        init_layers(self)  # the same scheme as gntkit.models.tf

    def forward(self, x):
        """Map float images (N, C, S, S) in [0, 1] to logits (N, num_classes)."""
        x = self.features(x)
        x = self.pooling(x)
        return self.classifier(x)


def create_model(name: str, num_classes: int, image_size: int, channels: int = 1,
                 batch_norm: bool | None = None, width: float = 1.0):
    """Build a registered model as a `torch.nn.Module`.

    Args:
        name: a name of `gntkit.models.configs.model_names()`: "vgg11", "vgg16", "vgg19"
            (add "_bn" for batch norm), "vgg16-transfer", "hccr-compact", "cnn3", "cnn2",
            "cnn2-tutorial", or the line model "crnn" (gntkit.models.crnn_torch).
        num_classes: number of output classes (3755 for HWDB1.1); crnn adds CTC's blank.
        image_size: side of the square input images (64 for gntkit's default shards); a line model's line height.
        channels: input channels (1 for gntkit shards).
        batch_norm: force batch norm on or off; None keeps the table's choice.
        width: multiplier for convolution and dense widths (1 = as published; tests use less).

    Returns:
        A ConvNet taking (N, channels, image_size, image_size) floats and returning logits (a CRNN for crnn).

    Raises:
        GntkitError: unknown name, bad sizes, or an image too small for the model.
    """
    config = check_model_arguments(name, num_classes, image_size, channels, width)
    if batch_norm is not None and not isinstance(batch_norm, bool):
        raise GntkitError(f"batch_norm must be True, False or None, found {batch_norm!r}.")
    # A line model (crnn) reads lines image_size pixels high and returns per-frame logits.
    model = (CRNN if config.is_line_model else ConvNet)(config, num_classes, image_size, channels, batch_norm)
    # The table is the single source of truth: a builder that disagrees with it is a bug.
    assert count_parameters(model) == expected_parameter_count(
        config, num_classes, image_size, channels, model.batch_norm)
    return model


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a torch module.

    Raises:
        GntkitError: `model` is not a torch.nn.Module.
    """
    if not isinstance(model, nn.Module):
        raise GntkitError(f"count_parameters needs a torch.nn.Module, found {type(model).__name__}.")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def apply_pretrained(model, path, freeze: str | None = None, channels: int = 1):
    """Load ImageNet VGG convolution weights from a local file into a model, optionally frozen.

    Reads a Keras `vgg16/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` or a
    torchvision `vgg16-397923af.pth` / `vgg19-dcbb9e9d.pth` (see
    `gntkit.models.pretrained`); every convolution's shape is checked before
    anything is copied. The dense head keeps its fresh initialisation. Call it
    before building the optimizer (frozen parameters get no gradients).

    Args:
        model: a ConvNet without batch norm from `create_model` ("vgg16",
            "vgg16-transfer", "vgg19", ...) with the file's convolution widths.
        path: the weights file; nothing is downloaded.
        freeze: None, or "features" to freeze every convolution (requires_grad False).
        channels: 1: the model takes grey images and the first convolution gets the
            file's weights summed over RGB; 3: the model takes RGB and keeps them.

    Returns:
        The same model, loaded.

    Raises:
        GntkitError: bad arguments, a missing file (naming where to get it), a model
            with batch norm, or the first convolution whose shape differs.
        FormatError: the file is not one of the two layouts.
    """
    path = pretrained.check_pretrained_arguments(path, freeze, channels)
    if not isinstance(model, ConvNet):
        raise GntkitError(f"apply_pretrained needs a gntkit ConvNet, found {type(model).__name__}.")
    if model.batch_norm:
        raise GntkitError(f"Model {model.config.name} has batch norm, but the ImageNet VGG files hold "
                          f"convolutions without it: build the model with batch_norm=False.")
    convs = [(f"features.{i}", m) for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    shapes = [tuple(m.weight.shape[i] for i in (2, 3, 1, 0)) for _, m in convs]  # OIHW -> HWIO
    arrays = pretrained.match_pretrained(pretrained.read_pretrained_convs(path), shapes,
                                         [name for name, _ in convs], channels, path)
    with torch.no_grad():
        for (_, conv), (kernel, bias) in zip(convs, arrays):
            conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))  # HWIO -> OIHW
            conv.bias.copy_(torch.from_numpy(bias))
    if freeze == "features":
        for parameter in model.features.parameters():
            parameter.requires_grad_(False)
    return model
