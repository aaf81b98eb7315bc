"""Host-to-device transfers that never make the host wait: `host_to_device`, `DevicePrefetcher`.

A copy from pageable (ordinary) host memory to a GPU, or a tensor built on the GPU from
a numpy array, makes the host wait for the copy, so the CPU can no longer queue kernels
ahead of the GPU. Here every host array is built on the host, put in page-locked
(pinned) memory and moved with `non_blocking=True`; `DevicePrefetcher` does that for the
next batch while the current one is trained on, on a side CUDA stream. On a CPU the same
code runs without pinning (there is nothing to pin for) and the moves are no-ops.
Re-exported by gntkit.datasets.torch.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import require

# torch is this module's one heavy import, with the one-sentence install hint when it is missing.
torch = require("torch", "torch", "The PyTorch device transfers (gntkit.datasets.torch_prefetch)")

__all__ = ["pinned", "host_to_device", "DevicePrefetcher"]


def pinned(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` (on the host) in page-locked memory when a CUDA device can read it asynchronously; else as it is."""
    if tensor.device.type == "cpu" and torch.cuda.is_available() and not tensor.is_pinned():
        return tensor.pin_memory()
    return tensor


def host_to_device(values, device, dtype=None) -> torch.Tensor:
    """A tensor of host `values` (numpy array, tensor) on `device`, copied from pinned memory without a wait.

    Args:
        values: a numpy array or tensor (a tensor already on `device` is returned as it is, converted to `dtype`).
        device: the target torch.device (or its name).
        dtype: convert to this dtype on the host first (None: keep).
    """
    device = torch.device(device)
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    if tensor.device.type == "cpu":  # also for a CPU target: one code path (pinning and the move are no-ops there)
        if dtype is not None:
            tensor = tensor.to(dtype=dtype)
        return pinned(tensor).to(device, non_blocking=True)
    return tensor if dtype is None else tensor.to(dtype=dtype)


class DevicePrefetcher:
    """Batches of `batches` on `device`, each copied there while the batch before it is trained on.

    Iterating yields (images, labels) tensors on `device`. The copy of batch i + 1 is
    queued (from pinned memory, `non_blocking`, on a side CUDA stream) before batch i is
    handed out; the compute stream waits for it only when it uses the batch. Other
    attributes (`set_epoch`, `num_samples`, `state_dict`, ...) are those of `batches`.

    Args:
        batches: an iterable of (images, labels) pairs (numpy arrays or host tensors),
            such as gntkit.datasets.torch.make_loader's or in-memory batches.
        device: where the batches go.
    """

    def __init__(self, batches, device):
        self.batches = batches
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.batches)

    def __getattr__(self, name):
        if name == "batches":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.batches, name)

    def _transfer(self, batch, stream):
        """Queue the copy of one batch (None at the end) on `stream` (None: the current stream)."""
        if batch is None:
            return None
        images, labels = batch
        if stream is None:
            return host_to_device(images, self.device), host_to_device(labels, self.device)
        with torch.cuda.stream(stream):
            return host_to_device(images, self.device), host_to_device(labels, self.device)

    def __iter__(self):
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        source = iter(self.batches)
        ahead = self._transfer(next(source, None), stream)
        while ahead is not None:
            current = ahead
            if cuda:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_stream(stream)
                for tensor in current:  # memory made on the side stream is used on the compute stream
                    tensor.record_stream(compute)
            ahead = self._transfer(next(source, None), stream)
            yield current
