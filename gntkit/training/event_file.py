"""TensorBoard event files written without TensorFlow: scalars and image grids.

TensorBoard's own event writer (and so torch.utils.tensorboard.SummaryWriter) imports TensorFlow
when it is installed, which fills a PyTorch run's log with TensorFlow's start-up messages and
costs seconds. An event file is a TFRecord file of `Event` protocol buffers, so this writes the
messages with tensorboard's generated protobuf classes (which import no TensorFlow) and frames
them as gntkit frames TFRecord records (length, masked CRC32C of the length, data, masked CRC32C of
the data). TensorBoard and `tensorboard.backend.event_processing` read them as their own.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gntkit.errors import require
from gntkit.kernels.crc32c import crc32c, mask_crc

__all__ = ["EventFileWriter"]


def _record(data: bytes) -> bytes:
    """One TFRecord frame around `data`."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", mask_crc(crc32c(length))) + data
            + struct.pack("<I", mask_crc(crc32c(data))))


class EventFileWriter:
    """Appends TensorBoard events to `events.out.tfevents.<time>.<host>.<pid>` in a folder.

    Args:
        logdir: the folder (made if missing).

    Raises:
        GntkitError: tensorboard (for its protobuf classes) is not installed.
    """

    def __init__(self, logdir):
        require("tensorboard", "tensorboard", "Writing TensorBoard logs")
        from tensorboard.compat.proto import event_pb2, summary_pb2  # protobuf classes only: no TensorFlow

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        folder = Path(logdir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.gntkit"
        self._file = open(self.path, "ab")
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._file.write(_record(event.SerializeToString()))

    def scalars(self, values: dict, step: int) -> None:
        """Write each value under its tag at `step` and flush."""
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()])
        self._write(self._event(wall_time=time.time(), step=int(step), summary=summary))
        self._file.flush()

    def images(self, tag: str, images, step: int) -> None:
        """Write uint8 images (N, S, S) as one grid image (PNG), as SummaryWriter.add_images draws them."""
        grid = _grid(np.asarray(images, np.uint8))
        png = io.BytesIO()
        Image.fromarray(grid, mode="L").save(png, format="PNG")
        image = self._summary.Image(height=grid.shape[0], width=grid.shape[1], colorspace=1, encoded_image_string=png.getvalue())
        summary = self._summary(value=[self._summary.Value(tag=tag, image=image)])
        self._write(self._event(wall_time=time.time(), step=int(step), summary=summary))
        self._file.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if not self._file.closed:
            self._file.close()


def _grid(images: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """N grey images (N, H, W) side by side in rows of `columns`, `pad` black pixels apart."""
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"expected uint8 images (N, H, W) with N >= 1, found shape {images.shape}.")
    count, height, width = images.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.zeros((rows * (height + pad) + pad, columns * (width + pad) + pad), np.uint8)
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (height + pad), pad + (i % columns) * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid
