"""TensorBoard event files of a torch run, through torch.utils.tensorboard."""

from __future__ import annotations

import numpy as np

from gntkit.errors import require

__all__ = ["TorchBoard"]


class TorchBoard:
    """TensorBoard event files through torch.utils.tensorboard.SummaryWriter."""

    def __init__(self, logdir):
        require("tensorboard", "tensorboard", "Writing TensorBoard logs")
        # Note: when TensorFlow is installed, tensorboard's event writer imports it into this process.
        # Forcing tensorboard's TF stub instead (its `tensorboard.compat.notf` switch) would break any
        # later TensorFlow use of tensorboard in the same process, so it is not done.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def scalars(self, values: dict, step: int) -> None:
        """Write each value under its tag at `step` and flush."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def images(self, tag: str, images, step: int) -> None:
        """Write uint8 images (N, S, S) as one image grid."""
        self.writer.add_images(tag, np.asarray(images, np.uint8)[:, None], step, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
