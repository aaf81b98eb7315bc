"""Keep a training run's freed memory in the process: glibc's heap top pad (M_TOP_PAD).

Every training step allocates and frees the same large host buffers (activations, gradients,
oneDNN scratch). With glibc's defaults, malloc gives the top of its heap back to the kernel as
soon as enough of it is free, and takes it again at the next step, where the kernel zeroes every
page once more. A pad makes malloc keep that much memory past the top when it grows or trims the
heap, so the pages stay mapped. Measured on cnn3 at 64 x 64, batch 64, 2 CPU cores, a plain torch
loop with bf16 autocast ran 985-995 images/s without a pad and 1,593-1,629 with the 128 MiB pad
set here at run time (docs/benchmarks.md, "Session 8"): TensorFlow gains a few percent.

jemalloc or tcmalloc (LD_PRELOAD, as torch's CPU launcher offers) would do the same, but only when
set before the process starts and when installed; glibc's own knob needs neither.
"""

from __future__ import annotations

import ctypes
import os
import platform

from gntkit.errors import GntkitError

__all__ = ["DEFAULT_PAD_BYTES", "pad_host_heap"]

DEFAULT_PAD_BYTES = 128 << 20  # 64 MiB gave 1,609 images/s in the measurement above, 128 MiB 1,787, 256 MiB 1,760
_M_TOP_PAD = -2  # from glibc's malloc.h


def _set_by_environment() -> bool:
    return "MALLOC_TOP_PAD_" in os.environ or "glibc.malloc.top_pad" in os.environ.get("GLIBC_TUNABLES", "")


def pad_host_heap(pad_bytes: int = DEFAULT_PAD_BYTES) -> str:
    """Ask glibc's malloc to keep `pad_bytes` of freed memory at the top of its heap.

    Leaves the pad alone where the environment sets it (MALLOC_TOP_PAD_, or glibc.malloc.top_pad
    in GLIBC_TUNABLES: `MALLOC_TOP_PAD_=0` turns it off) and where the C library is not glibc.

    Returns:
        What was done, as run.json records it: "128 MiB", "set by the environment",
        or "not glibc (musl)".

    Raises:
        GntkitError: `pad_bytes` is not a whole number of bytes from 0 to 1 GiB.
    """
    if isinstance(pad_bytes, bool) or not isinstance(pad_bytes, int) or not 0 <= pad_bytes <= 1 << 30:
        raise GntkitError(f"The host heap pad must be a whole number of bytes from 0 to 1 GiB; got {pad_bytes!r}.")
    if _set_by_environment():
        return "set by the environment"
    libc = platform.libc_ver()[0]
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if libc == "glibc" else None
    if mallopt is None:
        return f"not glibc ({libc or 'unknown C library'})"
    if mallopt(_M_TOP_PAD, pad_bytes) != 1:
        raise GntkitError(f"A bug in gntkit: glibc's mallopt(M_TOP_PAD, {pad_bytes}) refused a valid pad.")
    return f"{pad_bytes >> 20} MiB" if pad_bytes % (1 << 20) == 0 else f"{pad_bytes} bytes"
