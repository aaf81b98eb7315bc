"""TensorBoard event files of a TensorFlow run, through tf.summary."""

from __future__ import annotations

import numpy as np

from gntkit.errors import require

tf = require("tensorflow", "tensorflow", "Training with TensorFlow")

__all__ = ["TFBoard"]


class TFBoard:
    """TensorBoard event files through tf.summary."""

    def __init__(self, logdir):
        self.writer = tf.summary.create_file_writer(str(logdir))

    def scalars(self, values: dict, step: int) -> None:
        """Write each value under its tag at `step` and flush."""
        with self.writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, value, step=step)
        self.writer.flush()

    def images(self, tag: str, images, step: int) -> None:
        """Write uint8 images (N, S, S)."""
        with self.writer.as_default():
            tf.summary.image(tag, np.asarray(images, np.uint8)[..., None], step=step, max_outputs=len(images))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
