"""TensorFlow Datasets features for gntkit's raw-pixel `image` field: `RawImage`, `RawImageDict`.

gntkit's TFRecord shards store each image as its height x width uint8 pixels, not as PNG.
TFDS's own `Image` feature decodes PNG and JPEG only, and `tfds.show_examples` draws only
features that are `tfds.features.Image`; a `Tensor` feature would read the pixels but leave
nothing to draw. `RawImage` is an `Image` that reads and writes the raw pixel bytes, so
`tfds.builder_from_directory(folder)` gives (height, width, 1) uint8 images, as TFDS's
grayscale datasets do, and `tfds.show_examples` draws them with their `ClassLabel` names.

Fixed-size output declares `image` as a `RawImage` of shape (S, S, 1). Variable-size output
(raw bitmaps, text lines) has no size one feature can state, and a TFDS feature decodes only
its own bytes; there the top-level feature is a `RawImageDict`, which shapes each record's
pixels with its `height` and `width` features after decoding.

`features.json` names these classes by their import paths (gntkit.shards.tfds_info's
`RAW_IMAGE_CLASS` and `RAW_IMAGE_DICT_CLASS`); TFDS imports this module when it reads the file
(FeatureConnector.cls_from_name), so reading a folder through TFDS needs gntkit installed, not
imported. The shards are the same bytes either way: TensorFlow's plain reader and gntkit's
readers read them as before.

This module imports tensorflow_datasets and TensorFlow (the TFDS adapter); nothing in gntkit
imports it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf  # TFDS decodes in a tf.data graph: TensorFlow ops are its decoding API
import tensorflow_datasets as tfds

from gntkit.errors import GntkitError


class RawImage(tfds.features.Image):
    """A grayscale uint8 image stored as its raw pixels (height x width bytes, row-major).

    Args:
        shape: (height, width, 1), with both sizes known, or (None, None, 1) for images of varying
            size, which decode to their flat pixels (`RawImageDict` shapes them).
        dtype: uint8 (the only one gntkit writes).
        encoding_format: None (the pixels are not encoded).
        use_colormap: passed to `tfds.features.Image`.
        doc: passed to `tfds.features.Image`.

    Raises:
        GntkitError: on a shape with unknown sizes or more than one channel, another dtype, or
            an encoding format.
    """

    def __init__(self, *, shape=None, dtype=np.uint8, encoding_format=None, use_colormap=False, doc=None):
        shape = tuple(shape or ())
        sized = len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape[:2])
        if len(shape) != 3 or shape[-1] != 1 or not (sized or shape[:2] == (None, None)):
            raise GntkitError(f"RawImage: expected a shape (height, width, 1) or (None, None, 1), found {shape}.")
        if np.dtype(dtype) != np.uint8 or encoding_format:
            raise GntkitError(f"RawImage: expected uint8 raw pixels, found dtype {np.dtype(dtype)} "
                              f"with encoding format {encoding_format!r}.")
        super().__init__(shape=shape, dtype=np.uint8, encoding_format=None, use_colormap=use_colormap, doc=doc)

    @property
    def sized(self) -> bool:
        """Whether every image has this feature's height and width (else each record has its own)."""
        return self.shape[0] is not None

    def encode_example(self, image_or_path_or_fobj) -> bytes:
        """The stored bytes of one image: its pixels, row-major (the bytes gntkit writes).

        Raises:
            GntkitError: if the value is not a 2-D or (height, width, 1) uint8 array, of this
                feature's size where it has one.
        """
        pixels = image_or_path_or_fobj
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape[2:] not in ((), (1,)) \
                or pixels.ndim < 2 or (self.sized and pixels.shape[:2] != self.shape[:2]):
            found = f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise GntkitError(f"RawImage: expected a uint8 array of shape {self.shape}, found {found}.")
        return np.ascontiguousarray(pixels).tobytes()

    def decode_example(self, example):
        """One record's stored bytes as a (height, width, 1) uint8 tensor, or flat where sizes vary (in a tf.data graph)."""
        pixels = tf.io.decode_raw(example, tf.uint8)
        return tf.reshape(pixels, self.shape) if self.sized else pixels

    def decode_example_np(self, example: bytes) -> np.ndarray:
        """One record's stored bytes as a (height, width, 1) uint8 array, or flat where sizes vary.

        Raises:
            GntkitError: if the byte count is not height x width.
        """
        pixels = np.frombuffer(example, dtype=np.uint8)
        if not self.sized:
            return pixels
        if pixels.size != self.shape[0] * self.shape[1]:
            raise GntkitError(f"RawImage: expected {self.shape[0] * self.shape[1]} pixel bytes of a {self.shape} image, "
                              f"found {pixels.size}.")
        return pixels.reshape(self.shape)


class RawImageDict(tfds.features.FeaturesDict):
    """The features of variable-size output: after decoding, each record's `image` (a `RawImage`
    of shape (None, None, 1)) is shaped (height, width, 1) by its `height` and `width` features.

    Raises:
        GntkitError: if `image`, `height` or `width` is missing, or `image` is not a variable-size
            `RawImage`.
    """

    def __init__(self, feature_dict, *, doc=None):
        super().__init__(feature_dict, doc=doc)
        image = self._feature_dict.get("image")
        if not isinstance(image, RawImage) or image.sized or not {"height", "width"} <= set(self._feature_dict):
            raise GntkitError(f"RawImageDict: expected a variable-size RawImage `image` with `height` and `width` "
                              f"features, found {sorted(self._feature_dict)} with image {image!r}.")

    def decode_example(self, serialized_example, *, decoders=None):
        """Decode one record (in a tf.data graph), `image` shaped (height, width, 1)."""
        example = super().decode_example(serialized_example, decoders=decoders)
        if example["image"].dtype == tf.uint8:  # not where a decoder kept the bytes (tfds.decode.SkipDecoding)
            height, width = example["height"], example["width"]
            example["image"] = tf.reshape(example["image"], tf.stack([height, width, tf.ones_like(height)]))
        return example

    def decode_example_np(self, serialized_example, *, decoders=None):
        """Decode one record with numpy, `image` shaped (height, width, 1)."""
        example = super().decode_example_np(serialized_example, decoders=decoders)
        if isinstance(example["image"], np.ndarray) and example["image"].dtype == np.uint8:
            example["image"] = example["image"].reshape(int(example["height"]), int(example["width"]), 1)
        return example
