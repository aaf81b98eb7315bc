"""The text-line recognizer (`crnn` in gntkit.models.configs) in TensorFlow/Keras (imports tensorflow).

`CRNN` takes float lines (N, H, W, C) in [0, 1], or (lines, widths in pixels), and returns float32
logits (N, W // 4, num_classes + 1), CTC's blank last. Frames past a line's own width are masked:
the GRU skips them, as gntkit.models.crnn_torch's packed sequences do, so both frameworks give a
line the same scores whatever the batch. Same layers, initialisation and parameter count as there.
"""

from __future__ import annotations

from gntkit.errors import GntkitError, require
from gntkit.models.configs import ModelConfig, feature_layers, line_frames

# tensorflow is the one heavy framework this module uses; `import gntkit` never loads it.
tf = require("tensorflow", "tensorflow", "Building TensorFlow models")
keras = tf.keras

__all__ = ["CRNN", "create_crnn"]


def _he_normal():
    """He-normal (torch's kaiming_normal_, fan in, ReLU gain), one initializer per layer (see gntkit.models.tf)."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


@keras.utils.register_keras_serializable(package="gntkit")
class CRNN(keras.Model):
    """Convolutions over the line height, rows averaged, a bidirectional GRU along the width, a dense layer.

    The convolutions compute under `dtype_policy`; the GRU and the dense layer in float32.
    """

    def __init__(self, config: ModelConfig, num_classes: int, image_size: int, channels: int = 1,
                 batch_norm: bool | None = None, dtype_policy: str | None = None, **kwargs):
        super().__init__(name=config.name, **kwargs)
        if not config.is_line_model:
            raise GntkitError(f"CRNN needs a line model of the table (crnn), found {config.name}.")
        bn = config.batch_norm if batch_norm is None else bool(batch_norm)
        self.config, self.num_classes, self.image_size, self.channels = config, num_classes, image_size, channels
        policy = dtype_policy or "float32"
        layers = keras.layers
        self.feature_stack = []
        conv_i = pool_i = 0
        for step in feature_layers(config):
            if step[0] in ("max", "hmax"):
                pool_i += 1
                size = (2, 2) if step[0] == "max" else (2, 1)
                self.feature_stack.append(layers.MaxPooling2D(size, size, name=f"pool{pool_i}", dtype=policy))
            elif step[0] == "relu":
                self.feature_stack.append(layers.ReLU(name=f"relu{conv_i}", dtype=policy))
            else:
                conv_i += 1
                self.feature_stack.append(layers.Conv2D(step[1], config.kernel_size, padding="same",
                                                        use_bias=config.conv_has_bias(bn), kernel_initializer=_he_normal(),
                                                        name=f"conv{conv_i}", dtype=policy))
                if bn:  # torch's BatchNorm2d defaults
                    self.feature_stack.append(layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                                        name=f"bn{conv_i}", dtype=policy))
        # reset_after=True is torch's GRU (the reset gate scales the recurrent term after its bias).
        self.recurrent = layers.Bidirectional(
            layers.GRU(config.recurrent, return_sequences=True, reset_after=True, dtype="float32"),
            name="recurrent", dtype="float32")
        self.classifier = layers.Dense(num_classes + 1, name="logits", dtype="float32")
        self((tf.zeros((1, image_size, 8, channels)), tf.constant([8], tf.int64)))  # create the weights

    def frames(self, widths):
        """Frames (int32 tensor) of lines `widths` pixels wide (at least 1 each)."""
        return tf.maximum(line_frames(self.config, tf.cast(widths, tf.int32)), 1)

    def call(self, inputs, training=False):
        """Map lines (N, H, W, C), or (lines, widths (N,)), to float32 logits (N, W // 4, num_classes + 1)."""
        images, widths = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
        x = images
        for layer in self.feature_stack:
            x = layer(x, training=training) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)
        x = tf.cast(tf.reduce_mean(x, axis=1), tf.float32)  # (N, T, C): the rows left are averaged
        steps = tf.shape(x)[1]
        mask = None
        if widths is not None:
            mask = tf.sequence_mask(tf.minimum(self.frames(widths), steps), steps)
        return self.classifier(self.recurrent(x, mask=mask, training=training))


def create_crnn(config: ModelConfig, num_classes: int, image_size: int, channels: int = 1,
                batch_norm: bool | None = None, dtype_policy: str | None = None) -> CRNN:
    """Build the line model `config` describes, its weights created (see CRNN)."""
    return CRNN(config, num_classes, image_size, channels, batch_norm, dtype_policy)
