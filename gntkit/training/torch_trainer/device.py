"""Where and how a torch run computes: the device, the process group (torchrun), the precision."""

from __future__ import annotations

import os

from gntkit.errors import GntkitError, require
from gntkit.training.schedule import cpu_has_bf16, resolve_precision

# torch is the one heavy framework of this module; `import gntkit.training` does not load it.
torch = require("torch", "torch", "Training with PyTorch")

__all__ = ["resolve_device", "gpu_of_rank", "Distributed", "bf16_on_cpu", "precision_setup", "autocast"]


def resolve_device(name: str = "auto", local_rank: int = 0, local_ranks: int = 1):
    """Turn "auto", "cpu", "cuda", "cuda:1" or "mps" into a torch.device.

    With several ranks on this machine (`local_ranks` > 1, torchrun's LOCAL_WORLD_SIZE)
    each rank takes the GPU of its local rank (`gpu_of_rank`).

    Raises:
        GntkitError: a GPU is asked for and none is available, the name is unknown, or
            two ranks would share one GPU.
    """
    if not isinstance(name, str):
        raise GntkitError(f"device must be a string such as 'auto', 'cpu' or 'cuda', found {name!r}.")
    if name == "gpu":  # the TensorFlow spelling, accepted for symmetry
        name = "cuda"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GntkitError(f"Unknown torch device {name!r}: expected auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GntkitError(f"device {name!r} asks for a CUDA GPU, found none on this machine.")
        device = torch.device("cuda", gpu_of_rank(device.index, local_rank, local_ranks, torch.cuda.device_count()))
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise GntkitError(f"device {name!r} asks for Apple MPS, found it unavailable.")
    return device


def gpu_of_rank(index: int | None, local_rank: int, local_ranks: int, gpus: int) -> int:
    """The GPU index of a rank: `index` when given and alone on the machine, else the local rank's.

    Args:
        index: the N of an explicit "cuda:N", or None ("cuda", "auto").
        local_rank: this process's rank on its machine (torchrun's LOCAL_RANK).
        local_ranks: processes on this machine (torchrun's LOCAL_WORLD_SIZE).
        gpus: GPUs visible to this process.

    Raises:
        GntkitError: an explicit index with several local ranks, more local ranks than GPUs,
            or an index beyond the visible GPUs.
    """
    if index is not None and local_ranks > 1:
        raise GntkitError(f"--device cuda:{index} would put all {local_ranks} ranks of this machine on GPU {index}: "
                          "under torchrun use --device cuda (or auto), and each rank takes the GPU of its LOCAL_RANK.")
    if index is None and local_ranks > gpus:
        raise GntkitError(f"{local_ranks} ranks on this machine need a GPU each, found {gpus} visible: "
                          f"start torchrun with --nproc_per_node={gpus} or fewer.")
    chosen = local_rank if index is None else index
    if chosen >= gpus:
        raise GntkitError(f"GPU {chosen} asked for, found {gpus} visible (0..{gpus - 1}).")
    return chosen


class Distributed:
    """Process-group facts: rank, world_size, local_rank, device; no-ops when not distributed.

    Created from the torchrun environment (WORLD_SIZE > 1 starts a process group).
    """

    def __init__(self, device_name: str = "auto"):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # torchrun says how many ranks share this machine; other launchers may not (a rank then knows
        # of itself and of the local ranks below it).
        self.local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.local_rank + 1)))
        self.device = resolve_device(device_name, self.local_rank, self.local_ranks)
        self.started_group = False
        if self.world_size > 1:
            dist = torch.distributed
            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                if self.device.type == "cuda":
                    torch.cuda.set_device(self.device)
                dist.init_process_group(backend=backend)
                self.started_group = True

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the run folder."""
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum a few numbers over all processes."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def run_on_main(self, action):
        """Run `action()` on rank 0; a GntkitError it raises is raised on every process (same class)."""
        problem = None
        if self.is_main:
            try:
                action()
            except GntkitError as exc:
                if self.world_size == 1:
                    raise
                problem = exc
        if self.world_size > 1:
            box = [problem]
            torch.distributed.broadcast_object_list(box, src=0)
            problem = box[0]
        if problem is not None:
            raise problem

    def barrier(self) -> None:
        """Wait for every process (no-op when not distributed)."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        """Destroy the process group if this object started it."""
        if self.started_group:
            torch.distributed.destroy_process_group()


def bf16_on_cpu() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX) and torch's oneDNN can use it."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        supported = bool(mkldnn._is_mkldnn_bf16_supported()) if mkldnn is not None else False
    except (AttributeError, RuntimeError):
        supported = False
    return supported and torch.backends.mkldnn.is_available() and cpu_has_bf16()


def precision_setup(requested: str, device):
    """Return (autocast dtype or None, GradScaler or None, resolved name) for a device.

    "auto" is bf16 on GPUs that have it and on CPUs with native bf16 (`bf16_on_cpu`),
    fp16 with loss scaling on other GPUs, fp32 on other CPUs.
    """
    accelerator = device.type == "cuda"
    bf16 = torch.cuda.is_bf16_supported() if accelerator else (device.type == "cpu" and bf16_on_cpu())
    resolved = resolve_precision(requested, accelerator, bf16)
    if resolved == "fp32":
        return None, None, resolved
    if resolved == "bf16":
        return torch.bfloat16, None, resolved
    return torch.float16, torch.amp.GradScaler("cuda"), resolved


def autocast(device, dtype):
    """torch.autocast on `device` in `dtype`, or disabled when `dtype` is None (fp32)."""
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)
