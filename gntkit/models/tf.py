"""TensorFlow/Keras builders for the models of `gntkit.models.configs` (imports tensorflow).

`create_model(name, num_classes, image_size)` returns a `keras.Sequential` that
takes float images shaped (N, S, S, C) with values in [0, 1] (ink bright, as
gntkit shards store it, divided by 255) and returns float32 logits
(N, num_classes).
"""

from __future__ import annotations

from gntkit.errors import GntkitError, require
from gntkit.models import pretrained
from gntkit.models.configs import (
    check_model_arguments,
    expected_parameter_count,
    feature_layers,
    feature_map_size,
)
from gntkit.models.crnn_tf import create_crnn

# tensorflow is the one heavy framework this module uses; `import gntkit` never loads it.
tf = require("tensorflow", "tensorflow", "Building TensorFlow models")
keras = tf.keras

__all__ = ["FusedBatchNormalization", "GlobalWeightedAveragePooling", "create_model", "count_parameters",
           "apply_pretrained"]


@keras.utils.register_keras_serializable(package="gntkit")
class GlobalWeightedAveragePooling(keras.layers.Layer):
    """Global weighted average pooling (Melnyk et al. 2020): sum over positions of x * weight.

    The weight has one value per position and channel, shaped (S, S, C), and
    starts at 1 / (S * S), so the layer starts as global average pooling (see
    gntkit.models.torch.GlobalWeightedAveragePooling for why not the published
    ones). Maps (N, S, S, C) to (N, C).
    """

    def build(self, input_shape):
        """Create the (S, S, C) weight for `input_shape` (N, S, S, C), every value 1 / (S * S)."""
        self.kernel = self.add_weight(name="kernel", shape=tuple(input_shape[1:]),
                                      initializer=keras.initializers.Constant(
                                          1.0 / (input_shape[1] * input_shape[2])),
                                      trainable=True)

    def call(self, inputs):
        """Weighted sum over the two spatial axes."""
        kernel = keras.ops.cast(self.kernel, inputs.dtype)
        return keras.ops.sum(inputs * kernel, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        """(N, C)."""
        return (input_shape[0], input_shape[-1])


@keras.utils.register_keras_serializable(package="gntkit")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras' BatchNormalization whose training step runs TensorFlow's fused kernel.

    keras 3 normalises a training batch with about ten separate element-wise ops
    and upcasts bf16 inputs to float32 around them; `FusedBatchNormV3` does the
    same in one oneDNN kernel on the input's own dtype (bf16 or float32) with
    float32 statistics, and its gradient is one kernel too. Measured on
    hccr-compact at 96, batch 32, 2 CPU cores (TF's profiler, and the plain loop
    of benchmarks/bench_train.py with each layer): keras' batch norm took about
    30% of a bf16 step; with this layer a bf16 step ran 1.46-1.5x and an fp32
    step 1.21-1.26x as fast (docs/benchmarks.md). Same weights, the same output
    and gradients as keras' layer (tests/test_models_zoo.py); the moving variance
    averages the batch variance with Bessel's correction, as torch's BatchNorm2d
    does. Inference, masks and inputs other than (N, H, W, C) use keras' own path.
    """

    def call(self, inputs, training=None, mask=None):
        """Normalise `inputs` (N, H, W, C); in training, with the fused kernel."""
        fused = (training and self.trainable and mask is None and len(inputs.shape) == 4
                 and self.axis in (-1, 3, [3], [-1]) and self.center and self.scale
                 and not self.renorm and not self.synchronized
                 and inputs.dtype in (tf.float32, tf.bfloat16, tf.float16))
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        empty = tf.constant([], tf.float32)
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=empty, variance=empty, epsilon=self.epsilon, exponential_avg_factor=1.0,
            data_format="NHWC", is_training=True)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)


_DTYPE_POLICIES = (None, "float32", "mixed_bfloat16", "mixed_float16")


def create_model(name: str, num_classes: int, image_size: int, channels: int = 1,
                 batch_norm: bool | None = None, width: float = 1.0,
                 dtype_policy: str | None = None):
    """Build a registered model as a `keras.Sequential`.

    Args:
        name: a name of `gntkit.models.configs.model_names()`: "vgg11", "vgg16", "vgg19"
            (add "_bn" for batch norm), "vgg16-transfer", "hccr-compact", "cnn3", "cnn2",
            "cnn2-tutorial", or the line model "crnn" (gntkit.models.crnn_tf).
        num_classes: number of output classes (3755 for HWDB1.1); crnn adds CTC's blank.
        image_size: side of the square input images (64 for gntkit's default shards); a line model's line height.
        channels: input channels (1 for gntkit shards).
        batch_norm: force batch norm on or off; None keeps the table's choice.
        width: multiplier for convolution and dense widths (1 = as published; tests use less).
        dtype_policy: None/"float32", "mixed_bfloat16" or "mixed_float16"; the class
            layer always computes in float32 so logits and the loss stay float32.

    Returns:
        A keras model taking (N, image_size, image_size, channels) floats, returning logits.

    Raises:
        GntkitError: unknown name, bad sizes, an image too small for the model, or a bad policy.
    """
    config = check_model_arguments(name, num_classes, image_size, channels, width)
    if batch_norm is not None and not isinstance(batch_norm, bool):
        raise GntkitError(f"batch_norm must be True, False or None, found {batch_norm!r}.")
    if dtype_policy not in _DTYPE_POLICIES:
        raise GntkitError(
            f"dtype_policy must be one of {', '.join(str(p) for p in _DTYPE_POLICIES)}, "
            f"found {dtype_policy!r}."
        )
    bn = config.batch_norm if batch_norm is None else batch_norm
    if config.is_line_model:  # per-frame logits of lines image_size pixels high (gntkit.models.crnn_tf)
        model = create_crnn(config, num_classes, image_size, channels, bn, dtype_policy)
        assert count_parameters(model) == expected_parameter_count(config, num_classes, image_size, channels, bn)
        return model
    policy = dtype_policy or "float32"
    stack: list = [keras.Input(shape=(image_size, image_size, channels), name="images")]
    stack += _feature_layers(config, bn, policy)
    feature_map_size(config, image_size)
    stack += _head_layers(config, num_classes, policy)
    model = keras.Sequential(stack, name=config.name)
    # The table is the single source of truth: a builder that disagrees with it is a bug.
    assert count_parameters(model) == expected_parameter_count(
        config, num_classes, image_size, channels, bn)
    return model


def _he_normal():
    """A new He-normal initializer (torch's kaiming_normal_, fan in, ReLU gain), with a seed of its own."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _feature_layers(config, bn: bool, policy: str) -> list:
    """The keras layers of the convolutional part, in gntkit.models.configs.feature_layers' order."""
    layers = keras.layers
    # Same scheme as gntkit.models.torch: He-normal convolutions, Glorot-uniform dense, zero biases.
    # One initializer per layer: a keras initializer draws its seed once, when it is made, so a
    # single instance shared by every convolution gave them all the same random stream (each
    # kernel a scaled copy of the first one's numbers, correlation 1.0), and TensorFlow learnt
    # far more slowly than torch from the first epoch (cnn3: 26% against 54% on unseen writers).
    stack: list = []
    conv_i = pool_i = 0
    for step in feature_layers(config):  # a max pool comes before its convolution's ReLU: see there
        if step[0] == "max":
            pool_i += 1
            stack.append(layers.MaxPooling2D(2, 2, name=f"pool{pool_i}", dtype=policy))
        elif step[0] == "avg":
            pool_i += 1
            # Explicit symmetric zero padding: keras' padding="same" pads only bottom/right
            # and leaves the padding out of the mean, which torch's AvgPool2d cannot do.
            stack.append(layers.ZeroPadding2D(1, name=f"pad{pool_i}", dtype=policy))
            stack.append(layers.AveragePooling2D(3, 2, name=f"pool{pool_i}", dtype=policy))
        elif step[0] == "relu":
            stack.append(layers.ReLU(name=f"relu{conv_i}", dtype=policy))
        else:
            conv_i += 1
            stack.append(layers.Conv2D(step[1], config.kernel_size, padding=config.padding,
                                       use_bias=config.conv_has_bias(bn),
                                       kernel_initializer=_he_normal(), name=f"conv{conv_i}",
                                       dtype=policy))
            if bn:
                # momentum 0.9 and epsilon 1e-5 are torch's BatchNorm2d defaults.
                stack.append(FusedBatchNormalization(momentum=0.9, epsilon=1e-5,
                                                     name=f"bn{conv_i}", dtype=policy))
    return stack


def _head_layers(config, num_classes: int, policy: str) -> list:
    """The keras layers after the features: pooling or flatten, dense layers, dropout, float32 logits."""
    layers = keras.layers
    stack: list = []
    if config.head == "gwap":
        stack.append(GlobalWeightedAveragePooling(name="gwap", dtype=policy))
    else:
        stack.append(layers.Flatten(name="flatten", dtype=policy))
    for i, d in enumerate(config.dense, 1):
        stack.append(layers.Dense(d, activation="relu", name=f"fc{i}", dtype=policy))
        if config.dropout > 0:
            stack.append(layers.Dropout(config.dropout, name=f"dropout{i}", dtype=policy))
    if config.classifier_dropout > 0:
        stack.append(layers.Dropout(config.classifier_dropout, name="head_dropout", dtype=policy))
    stack.append(layers.Dense(num_classes, name="logits", dtype="float32"))
    return stack


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a keras model.

    Raises:
        GntkitError: `model` is not a keras model.
    """
    if not isinstance(model, keras.Model):
        raise GntkitError(f"count_parameters needs a keras.Model, found {type(model).__name__}.")
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(tf.size(w)) for w in weights if "seed_generator" not in w.path))


def apply_pretrained(model, path, freeze: str | None = None, channels: int = 1):
    """Load ImageNet VGG convolution weights from a local file into a model, optionally frozen.

    Reads a Keras `vgg16/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` or a
    torchvision `vgg16-397923af.pth` / `vgg19-dcbb9e9d.pth` (see
    `gntkit.models.pretrained`; a .pth needs torch installed); every
    convolution's shape is checked before anything is copied. The dense head
    keeps its fresh initialisation. Call it before `model.compile` (keras
    reads `trainable` when it compiles).

    Args:
        model: a keras model without batch norm from `create_model` ("vgg16",
            "vgg16-transfer", "vgg19", ...) with the file's convolution widths.
        path: the weights file; nothing is downloaded.
        freeze: None, or "features" to freeze every convolution (trainable False).
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
    if not isinstance(model, keras.Model):
        raise GntkitError(f"apply_pretrained needs a keras.Model, found {type(model).__name__}.")
    if any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        raise GntkitError(f"Model {model.name} has batch norm, but the ImageNet VGG files hold "
                          f"convolutions without it: build the model with batch_norm=False.")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if any(not layer.use_bias for layer in convs):
        raise GntkitError(f"Model {model.name} has convolutions without bias; the VGG files have biases.")
    shapes = [tuple(layer.kernel.shape) for layer in convs]
    arrays = pretrained.match_pretrained(pretrained.read_pretrained_convs(path), shapes,
                                         [layer.name for layer in convs], channels, path)
    for layer, (kernel, bias) in zip(convs, arrays):
        layer.set_weights([kernel, bias])
        if freeze == "features":
            layer.trainable = False
    return model
