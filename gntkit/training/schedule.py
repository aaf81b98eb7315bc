"""Learning-rate schedule and precision choice: small framework-free maths both trainers share."""

from __future__ import annotations

import math
from pathlib import Path

from gntkit.errors import GntkitError
from gntkit.training.config import PRECISIONS, TrainConfig, one_of, positive_int

__all__ = ["learning_rate_at", "resolve_precision", "cpu_has_bf16"]


def learning_rate_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step `step` (0-based, counted over the whole run).

    Warm-up is linear from 0 over `warmup_epochs`; then "cosine" decays to 0 at
    the end of `epochs`, "step" multiplies by `step_gamma` every `step_epochs`
    epochs, "constant" stays at the peak.

    Raises:
        GntkitError: steps_per_epoch below 1.
    """
    positive_int("steps_per_epoch", steps_per_epoch)
    peak = config.peak_lr
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.schedule == "constant":
        return peak
    if config.schedule == "step":
        every = config.step_epochs or max(1, config.epochs // 3)
        return peak * config.step_gamma ** ((step // steps_per_epoch) // every)
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (x86 flags avx512_bf16 or amx_bf16).

    Other CPUs emulate bf16, which is slower than fp32, so "auto" keeps fp32 there.
    """
    try:
        text = Path(cpuinfo).read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_precision(requested: str, accelerator: bool, bf16_supported: bool) -> str:
    """Pick fp32/bf16/fp16 from `precision` and the device.

    Args:
        requested: "auto", "fp32", "bf16" or "fp16".
        accelerator: training on a GPU.
        bf16_supported: the device computes bf16 natively (the GPU, or the CPU when not accelerator).

    Returns:
        "auto" gives bf16 where supported, else fp16 on accelerators and fp32 on CPUs.

    Raises:
        GntkitError: fp16 asked for on a CPU, or bf16 on a GPU without it.
    """
    one_of("precision", requested, PRECISIONS)
    if requested == "auto":
        if bf16_supported:
            return "bf16"
        return "fp16" if accelerator else "fp32"
    if requested == "fp16" and not accelerator:
        raise GntkitError("precision fp16 needs a GPU; on a CPU use fp32 or bf16.")
    if requested == "bf16" and accelerator and not bf16_supported:
        raise GntkitError("precision bf16 is not supported by this GPU; use fp16 or fp32.")
    return requested
