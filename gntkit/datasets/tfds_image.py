"""`RawImage`: TensorFlow Datasets' `Image` feature for gntkit's raw-pixel `image` field.

gntkit's TFRecord shards store each fixed-size image as its S x S uint8 pixels, not as PNG.
TFDS's own `Image` feature decodes PNG and JPEG only, and `tfds.show_examples` draws only
features that are `tfds.features.Image`; a `Tensor` feature would read the pixels but leave
nothing to draw. `RawImage` is an `Image` that reads and writes the raw pixel bytes, so
`tfds.builder_from_directory(folder)` gives (S, S, 1) uint8 images, as TFDS's grayscale
datasets do, and `tfds.show_examples` draws them with their `ClassLabel` names.

`features.json` names this class by its import path (`gntkit.datasets.tfds_image.RawImage`,
`gntkit.shards.tfds_info.RAW_IMAGE_CLASS`); TFDS imports that module when it reads the file
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
    """A fixed-size grayscale uint8 image stored as its raw pixels (height x width bytes, row-major).

    Args:
        shape: (height, width, 1), every size known.
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
        if len(shape) != 3 or shape[-1] != 1 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise GntkitError(f"RawImage: expected a shape (height, width, 1) with every size known, found {shape}.")
        if np.dtype(dtype) != np.uint8 or encoding_format:
            raise GntkitError(f"RawImage: expected uint8 raw pixels, found dtype {np.dtype(dtype)} "
                              f"with encoding format {encoding_format!r}.")
        super().__init__(shape=shape, dtype=np.uint8, encoding_format=None, use_colormap=use_colormap, doc=doc)

    @property
    def num_pixels(self) -> int:
        """Bytes per stored image: height x width."""
        return self.shape[0] * self.shape[1]

    def encode_example(self, image_or_path_or_fobj) -> bytes:
        """The stored bytes of one image: its pixels, row-major (the bytes gntkit writes).

        Raises:
            GntkitError: if the value is not a uint8 array of this feature's shape, with or without
                the channel axis.
        """
        pixels = image_or_path_or_fobj
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.size != self.num_pixels \
                or pixels.shape not in (self.shape, self.shape[:2]):
            found = f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
            raise GntkitError(f"RawImage: expected a uint8 array of shape {self.shape}, found {found}.")
        return np.ascontiguousarray(pixels).tobytes()

    def decode_example(self, example):
        """The (height, width, 1) uint8 image tensor of one record's stored bytes (in a tf.data graph)."""
        return tf.reshape(tf.io.decode_raw(example, tf.uint8), self.shape)

    def decode_example_np(self, example: bytes) -> np.ndarray:
        """The (height, width, 1) uint8 image array of one record's stored bytes.

        Raises:
            GntkitError: if the byte count is not height x width.
        """
        if len(example) != self.num_pixels:
            raise GntkitError(f"RawImage: expected {self.num_pixels} pixel bytes of a {self.shape} image, "
                              f"found {len(example)}.")
        return np.frombuffer(example, dtype=np.uint8).reshape(self.shape)
