"""The model table: every architecture gntkit trains, described once, framework-free.

`gntkit.models.torch` and `gntkit.models.tf` each build a network from these
descriptions with one builder, so a name means the same layers (and the same
parameter count) in both frameworks.

A convolution list follows timm's VGG tables: an int is a convolution with
that many output channels (kernel `kernel_size`, stride 1, padding `padding`,
optional batch norm, ReLU), ``"M"`` is a 2x2 max pool with stride 2 and ``"A"``
a 3x3 average pool with stride 2 over the map zero-padded by 1 on every side
(the padding counts in the mean, so both frameworks compute the same thing).

After the convolutions the head (`head`) turns the feature map into a vector:
``"flatten"`` flattens it; ``"gwap"`` is global weighted average pooling (one
learned weight per position and channel, summed over positions: Melnyk et al.
2020). The vector passes through the dense layers in `dense` (ReLU, dropout
`dropout` after each), dropout `classifier_dropout`, then a final dense layer
with one output per class. Every model returns logits: no softmax or
log-softmax (the tutorials that end in one are reproduced up to that layer;
the losses apply it).

A line model (`recurrent` > 0: crnn) reads a text line of any width: its convolution list
may also hold ``"H"``, a 2x1 max pool that halves the height only; the rows left after the
convolutions are averaged, a bidirectional GRU with `recurrent` units per direction runs along
the width, and a dense layer gives num_classes + 1 scores per frame (CTC's blank last).
"""

from __future__ import annotations

import dataclasses

from gntkit.errors import GntkitError

__all__ = [
    "ModelConfig",
    "MODEL_CONFIGS",
    "model_names",
    "get_config",
    "feature_map_size",
    "feature_layers",
    "expected_parameter_count",
    "multiply_accumulates",
    "check_model_arguments",
    "describe",
    "image_model_names",
    "line_model_names",
    "line_frames",
]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One architecture: convolution list, dense widths, dropout and defaults.

    Attributes:
        name: registry name, e.g. "vgg19".
        convs: ints (convolution output channels), "M" (2x2 max pool) and "A"
            (3x3 average pool, stride 2, padding 1).
        dense: widths of the hidden dense layers before the class layer.
        dropout: dropout rate after each hidden dense layer (0 = none).
        kernel_size: convolution kernel size.
        padding: "same" (output as large as input) or "valid" (no padding).
        batch_norm: whether convolutions are followed by batch norm by default.
        description: one line for `gntkit train --help` and the docs.
        conv_bias: whether a convolution followed by batch norm keeps its bias
            (batch norm's shift makes it redundant); without batch norm a
            convolution always has a bias.
        head: "flatten" or "gwap" (global weighted average pooling).
        classifier_dropout: dropout rate just before the class layer (0 = none).
        recurrent: GRU units per direction of a line model (0 = an image classifier).
    """

    name: str
    convs: tuple
    dense: tuple
    dropout: float
    kernel_size: int = 3
    padding: str = "same"
    batch_norm: bool = False
    description: str = ""
    conv_bias: bool = True
    head: str = "flatten"
    classifier_dropout: float = 0.0
    recurrent: int = 0

    @property
    def is_line_model(self) -> bool:
        """Whether the model reads text lines (CTC over frames) rather than single characters."""
        return self.recurrent > 0

    def conv_has_bias(self, batch_norm: bool | None = None) -> bool:
        """Whether the convolutions have a bias when built with `batch_norm` (None = the table's)."""
        bn = self.batch_norm if batch_norm is None else batch_norm
        return self.conv_bias or not bn

    def scaled(self, width: float) -> ModelConfig:
        """Return a copy with every convolution and hidden dense width multiplied by `width`.

        A narrow copy (width 1/8, say) keeps the layer structure of the named
        model but trains on a CPU in seconds; tests use it. Widths are rounded
        and never drop below 1.

        Raises:
            GntkitError: `width` is not a positive number.
        """
        if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
            raise GntkitError(f"The width multiplier must be a positive number, found {width!r}.")
        if width == 1:
            return self
        convs = tuple(v if isinstance(v, str) else max(1, int(round(v * width))) for v in self.convs)
        dense = tuple(max(1, int(round(v * width))) for v in self.dense)
        recurrent = max(1, int(round(self.recurrent * width))) if self.recurrent else 0
        return dataclasses.replace(self, convs=convs, dense=dense, recurrent=recurrent)


# Convolution lists of the VGG paper (configurations A, D and E), as in timm.
_VGG_CONVS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}

MODEL_CONFIGS: dict[str, ModelConfig] = {}

for _name, _convs in _VGG_CONVS.items():
    _n = sum(1 for v in _convs if v != "M")
    MODEL_CONFIGS[_name] = ModelConfig(
        name=_name, convs=_convs, dense=(4096, 4096), dropout=0.5,
        description=f"VGG ({_n} 3x3 convolutions, 5 max pools, dense 4096-4096-classes, dropout 0.5)",
    )
    MODEL_CONFIGS[_name + "_bn"] = dataclasses.replace(
        MODEL_CONFIGS[_name], name=_name + "_bn", batch_norm=True,
        description=MODEL_CONFIGS[_name].description + " with batch norm",
    )

# The small CNNs of the digit tutorials (docs/models.md names each tutorial).
# cnn3: TensorFlow's CNN tutorial (3 valid 3x3 convolutions 32-64-64, two pools, dense 64);
# 93,322 parameters at 28x28x1 with 10 classes, as the tutorial's summary prints.
MODEL_CONFIGS["cnn3"] = ModelConfig(
    name="cnn3", convs=(32, "M", 64, "M", 64), dense=(64,), dropout=0.0, padding="valid",
    description="small CNN: 3 valid 3x3 convolutions 32-64-64, 2 max pools, dense 64-classes",
)
# cnn2: two tiny convolutions with pools, then one 512-unit dense layer with dropout
# (gntkit's own small net; not the PyTorch tutorial's, which is cnn2-tutorial).
MODEL_CONFIGS["cnn2"] = ModelConfig(
    name="cnn2", convs=(16, "M", 32, "M"), dense=(512,), dropout=0.5,
    description="tiny CNN: 2 same 3x3 convolutions 16-32, 2 max pools, dense 512-classes, dropout 0.5",
)
# cnn2-tutorial: the PyTorch MNIST tutorial's net (conv 1->4, 4->8, dense 392->512, dropout 0.4);
# 206,682 parameters at 28x28x1 with 10 classes. The tutorial ends in log-softmax; gntkit
# returns the logits before it (cross-entropy on logits is the same loss).
MODEL_CONFIGS["cnn2-tutorial"] = ModelConfig(
    name="cnn2-tutorial", convs=(4, "M", 8, "M"), dense=(512,), dropout=0.4,
    description="PyTorch MNIST tutorial net: 2 same 3x3 convolutions 4-8, 2 max pools, "
                "dense 512-classes, dropout 0.4",
)
# vgg16-transfer: the Keras VGG16 transfer tutorial (ImageNet convolutions, include_top=False,
# 48x48x3, frozen) with a new head 4096-4096-dropout-classes; load the convolutions with
# apply_pretrained(..., freeze="features").
MODEL_CONFIGS["vgg16-transfer"] = ModelConfig(
    name="vgg16-transfer", convs=_VGG_CONVS["vgg16"], dense=(4096, 4096), dropout=0.0,
    classifier_dropout=0.5,
    description="VGG16 convolutions (for ImageNet weights) with a new head 4096-4096-dropout 0.5-classes",
)
# hccr-compact: Melnyk et al. 2020 ("Melnyk-Net"): 14 bias-free 3x3 convolutions with batch
# norm, 4 average pools, global weighted average pooling, dropout 0.5, one dense layer;
# 6,518,635 trainable parameters at 96x96x1 with 3,755 classes.
MODEL_CONFIGS["hccr-compact"] = ModelConfig(
    name="hccr-compact",
    convs=(64, 64, "A", 96, 64, 96, "A", 128, 96, 128, "A", 256, 192, 256, "A", 448, 256, 448),
    dense=(), dropout=0.0, batch_norm=True, conv_bias=False, head="gwap", classifier_dropout=0.5,
    description="compact HCCR net (Melnyk et al. 2020): 14 3x3 convolutions with batch norm, "
                "4 average pools, global weighted average pooling, dropout 0.5, dense classes",
)


# crnn: the reference text-line recognizer (CRNN, Shi et al. 2016, compacted): 5 bias-free 3x3
# convolutions with batch norm, two 2x2 pools (horizontal stride 4: one frame per 4 pixels of
# width) and two height-only pools, the remaining rows averaged, a bidirectional GRU of 256
# units per direction, a dense layer to the charset plus CTC's blank. Lines of height 32..128.
MODEL_CONFIGS["crnn"] = ModelConfig(
    name="crnn", convs=(64, "M", 128, "M", 256, 256, "H", 256, "H"), dense=(), dropout=0.0,
    batch_norm=True, conv_bias=False, recurrent=256,
    description="text-line recognizer: 5 3x3 convolutions with batch norm, 2 max pools and 2 height pools, "
                "bidirectional GRU 256, dense classes + blank, CTC",
)


def model_names() -> list[str]:
    """Return the registered model names, sorted."""
    return sorted(MODEL_CONFIGS)


def image_model_names() -> list[str]:
    """The registered models that classify single-character images, sorted."""
    return [name for name in model_names() if not MODEL_CONFIGS[name].is_line_model]


def line_model_names() -> list[str]:
    """The registered models that read text lines (CTC), sorted."""
    return [name for name in model_names() if MODEL_CONFIGS[name].is_line_model]


def line_frames(config: ModelConfig, widths):
    """Frames a line model gives for lines `widths` pixels wide (numpy or int): its 2x2 pools floor-halve the width.

    Raises:
        GntkitError: `config` is not a line model.
    """
    if not config.is_line_model:
        raise GntkitError(f"Model {config.name} classifies single characters: it has no frames (use --model crnn).")
    for v in config.convs:
        if v == "M":
            widths = widths // 2
    return widths


def get_config(name: str, width: float = 1.0) -> ModelConfig:
    """Look up a model by name (optionally narrowed by `width`).

    Args:
        name: a registered name such as "vgg19", "vgg16_bn" or "cnn3".
        width: multiplier for every convolution and hidden dense width (1 = as published).

    Returns:
        The ModelConfig.

    Raises:
        GntkitError: the name is not registered or the width is not positive.
    """
    if not isinstance(name, str) or name not in MODEL_CONFIGS:
        raise GntkitError(
            f"Unknown model {name!r}: expected one of {', '.join(model_names())}."
        )
    return MODEL_CONFIGS[name].scaled(width)


def _next_side(config: ModelConfig, v, side: int) -> int:
    """Side of the map after one entry of the convolution list."""
    if v == "M":
        return side // 2
    if v == "A":
        return (side - 1) // 2 + 1  # 3x3, stride 2, padding 1
    if v == "H":
        return side // 2  # a line model's height pool (the height is the side that matters)
    return side - (config.kernel_size - 1 if config.padding == "valid" else 0)


def _fits(config: ModelConfig, image_size: int) -> bool:
    side = image_size
    for v in config.convs:
        side = _next_side(config, v, side)
        if side < 1:
            return False
    return True


def feature_layers(config: ModelConfig) -> list[tuple]:
    """The feature extractor of `config` as the steps both frameworks' builders follow, in order.

    Steps: ("conv", channels) (with batch norm after it where the model has it),
    ("relu",), ("max",) (2x2 max pool, stride 2) and ("avg",) (3x3 average pool,
    stride 2, padding 1), ("hmax",) (2x1 max pool: halves the height of a line).

    A max pool that follows a convolution comes before that convolution's ReLU:
    ReLU and max pooling commute exactly (both are monotone; the values, the
    gradients and the ties are the same either way, tests/test_models_zoo.py),
    and the ReLU and its gradient then run on a quarter of the values. Measured
    on cnn3 at 64, batch 64, 2 CPU cores, the plain bf16 step beside the textbook
    order in the same run: torch 1,616 -> 1,721 images/s, TF 1,750 -> 1,824; fp32
    within 1% (bench_train --pool-order both; docs/benchmarks.md, "the host allocator,
    max pool before ReLU").
    """
    steps: list[tuple] = []
    for v in config.convs:
        if v in ("M", "H"):
            pool = ("max",) if v == "M" else ("hmax",)
            if steps and steps[-1] == ("relu",):
                steps.insert(len(steps) - 1, pool)
            else:
                steps.append(pool)
        elif v == "A":
            steps.append(("avg",))
        else:
            steps += [("conv", v), ("relu",)]
    return steps


def feature_map_size(config: ModelConfig, image_size: int) -> int:
    """Side of the feature map after the convolutions of `config` for square inputs.

    Raises:
        GntkitError: the image is too small for the model's convolutions and pools.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise GntkitError(f"The image size must be a positive integer, found {image_size!r}.")
    side = image_size
    for v in config.convs:
        side = _next_side(config, v, side)
        if side < 1:
            smallest = next(s for s in range(1, 4097) if _fits(config, s))
            fitting = [name for name in model_names() if _fits(MODEL_CONFIGS[name], image_size)]
            raise GntkitError(
                f"Model {config.name} needs images of at least {smallest}x{smallest} pixels, "
                f"found {image_size}x{image_size}: choose a model for {image_size}x{image_size} images "
                f"(--model {', '.join(fitting) or 'none of the registered ones'}) or convert at --size {smallest} or larger."
            )
    return side


def expected_parameter_count(config: ModelConfig, num_classes: int, image_size: int,
                             channels: int = 1, batch_norm: bool | None = None) -> int:
    """Count the trainable parameters that `config` has, computed from the table alone.

    Both framework builders must produce exactly this many trainable parameters;
    tests check it. Batch norm adds 2 trainable parameters per channel (its
    running mean and variance are buffers, not parameters).

    Args:
        config: the architecture.
        num_classes: outputs of the class layer.
        image_size: side of the square input.
        channels: input channels.
        batch_norm: force batch norm on or off; None keeps the table's choice.

    Returns:
        The number of trainable parameters.

    Raises:
        GntkitError: the image is too small for the model.
    """
    bn = config.batch_norm if batch_norm is None else batch_norm
    bias = config.conv_has_bias(bn)
    total = 0
    c_in = channels
    for v in config.convs:
        if isinstance(v, str):
            continue
        total += c_in * v * config.kernel_size ** 2 + (v if bias else 0)
        if bn:
            total += 2 * v
        c_in = v
    side = feature_map_size(config, image_size)
    if config.is_line_model:  # GRU per direction: 3 gates, input and recurrent kernels and biases
        h = config.recurrent
        return total + 2 * (3 * h * (c_in + h) + 6 * h) + (2 * h + 1) * (num_classes + 1)
    width = c_in * side * side
    if config.head == "gwap":
        total += width  # one weight per position and channel
        width = c_in
    for d in (*config.dense, num_classes):
        total += width * d + d
        width = d
    return total


def multiply_accumulates(config: ModelConfig, num_classes: int, image_size: int,
                         channels: int = 1) -> dict:
    """Multiply-accumulates per image of the convolutions and dense layers, from the table alone.

    What a throughput is measured against: images/s x training MACs is the
    rate at which a step does its arithmetic (benchmarks/bench_train.py sets it
    beside the machine's matmul rate). Only convolutions and matrix products
    count, as `torch.utils.flop_counter` counts them (tests compare the two):
    pooling, batch norm, activations, global weighted average pooling and the
    optimizer are memory work, not multiply-accumulates.

    Args:
        config: the architecture.
        num_classes: outputs of the class layer.
        image_size: side of the square input.
        channels: input channels.

    Returns:
        {"forward": MACs of one forward pass, "training": forward plus backward,
        where every layer's weight gradient costs its forward MACs again and its
        input gradient too, except the first layer's, which a training step does
        not compute (the images need no gradient)}.

    Raises:
        GntkitError: the image is too small for the model.
    """
    _check_common(num_classes, image_size, channels)
    layers = []  # forward MACs of each convolution and dense layer, in order
    side, c_in = image_size, channels
    for v in config.convs:
        side_out = _next_side(config, v, side)
        if side_out < 1:
            feature_map_size(config, image_size)  # raises the one-sentence error
        if not isinstance(v, str):
            layers.append(side_out * side_out * v * c_in * config.kernel_size ** 2)
            c_in = v
        side = side_out
    width = c_in if config.head == "gwap" else c_in * side * side
    for d in (*config.dense, num_classes):
        layers.append(width * d)
        width = d
    forward = sum(layers)
    return {"forward": forward, "training": 3 * forward - layers[0]}


def _check_common(num_classes, image_size, channels) -> None:
    for label, value in (("number of classes", num_classes), ("image size", image_size),
                         ("number of channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GntkitError(f"The {label} must be a positive integer, found {value!r}.")
    if num_classes < 2:
        raise GntkitError(f"A classifier needs at least 2 classes, found {num_classes}.")


def check_model_arguments(name: str, num_classes: int, image_size: int, channels: int = 1,
                          width: float = 1.0) -> ModelConfig:
    """Validate `create_model` arguments shared by both frameworks and return the config.

    Raises:
        GntkitError: one sentence naming the bad argument.
    """
    config = get_config(name, width)
    _check_common(num_classes, image_size, channels)
    feature_map_size(config, image_size)
    return config


def describe(config: ModelConfig, num_classes: int, image_size: int, channels: int = 1,
             batch_norm: bool | None = None) -> str:
    """One line naming the model, its input, parameter count and forward multiply-accumulates, printed at the start of training."""
    n = expected_parameter_count(config, num_classes, image_size, channels, batch_norm)
    if config.is_line_model:
        return (f"{config.name}: input lines {image_size} pixels high x any width x{channels}, {num_classes} classes "
                f"+ CTC blank, {n:,} parameters ({n * 4 / 2**20:.1f} MiB as float32), "
                f"one frame per {2 ** config.convs.count('M')} pixels of width")
    bn = config.batch_norm if batch_norm is None else batch_norm
    # Batch norm is named only where it differs from the table's choice for this model.
    override = "" if bn == config.batch_norm else (" +bn" if bn else " -bn")
    return (f"{config.name}{override}: "
            f"input {image_size}x{image_size}x{channels}, {num_classes} classes, "
            f"{n:,} parameters ({n * 4 / 2**20:.1f} MiB as float32), "
            f"{_si(multiply_accumulates(config, num_classes, image_size, channels)['forward'])} "
            f"multiply-accumulates per image")


def _si(count: int) -> str:
    """1.20 G, 22.7 M, 843 k: a count in three significant figures."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return str(count)

