"""TensorBoard event files of a torch run, written without TensorFlow (gntkit.training.event_file)."""

from __future__ import annotations

from gntkit.training.event_file import EventFileWriter

__all__ = ["TorchBoard"]


class TorchBoard(EventFileWriter):
    """TensorBoard event files of a torch run: scalars and sample grids, without importing
    TensorFlow (torch.utils.tensorboard's SummaryWriter would load it into the process)."""
