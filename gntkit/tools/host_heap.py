"""Keep a training process's freed host memory in the process: glibc malloc's thresholds.

Every training step allocates and frees the same large host buffers (activations, gradients,
oneDNN scratch). With glibc's defaults, a buffer over 128 KiB is mapped for it alone and unmapped
when freed, and a heap with more than 128 KiB free at its top is trimmed: either way the next step
maps the memory again and the kernel zeroes every page once more. Raising the mmap threshold to its
maximum (32 MiB) keeps such buffers on the heap, a 1 GiB trim threshold and a 64 MiB top pad keep
the heap mapped. Measured on cnn3 at 64 x 64, batch 64, 2 CPU cores, the plain torch loop with these
set at run time: fp32 497 -> 656 images/s, bf16 autocast 972 -> 1,671 (docs/benchmarks.md, "the host
allocator, max pool before ReLU"). All three matter: a top pad alone sets glibc's mmap
threshold fixed at 128 KiB, and the fp32 loop then ran at 276 (128 MiB pad) instead of 485; a trim
threshold alone, 341.

The settings are process-wide, so the library never applies them on its own: `gntkit train`
calls `tune_host_malloc()` before it trains (GNTKIT_HOST_MALLOC=keep opts out), and a program
that trains through gntkit.training calls it itself and may pass what it returns on as
`train(..., host_malloc=...)`, which run.json records.

jemalloc or tcmalloc (LD_PRELOAD, as torch's CPU launcher offers) would do the same, but only when
set before the process starts and when installed; glibc's own knobs need neither.
"""

from __future__ import annotations

import ctypes
import os
import platform

from gntkit.errors import GntkitError

__all__ = ["SETTINGS", "tune_host_malloc"]

# (mallopt parameter from glibc's malloc.h, value, how run.json names it)
SETTINGS = ((-3, 32 << 20, "mmap threshold 32 MiB"),  # M_MMAP_THRESHOLD; 32 MiB is glibc's maximum on 64 bits
            (-1, 1 << 30, "trim threshold 1 GiB"),  # M_TRIM_THRESHOLD
            (-2, 64 << 20, "top pad 64 MiB"))  # M_TOP_PAD
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _set_by_environment() -> bool:
    return (os.environ.get("GNTKIT_HOST_MALLOC") == "keep" or any(name in os.environ for name in _ENVIRONMENT)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


def tune_host_malloc(settings=SETTINGS) -> str:
    """Set glibc malloc's mmap threshold, trim threshold and top pad for this (training) process.

    Leaves malloc alone where the environment sets it (MALLOC_MMAP_THRESHOLD_,
    MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_MMAP_MAX_ or glibc.malloc.* in GLIBC_TUNABLES),
    where GNTKIT_HOST_MALLOC=keep asks for glibc's defaults, and where the C library is not glibc.
    Process-wide and for the rest of the process, like the frameworks' thread settings: call it
    once, before training (`gntkit train` does; gntkit.training never does on its own).

    Args:
        settings: (mallopt parameter, value, name) triples; the default is SETTINGS.

    Returns:
        What was done, as run.json records it: "glibc malloc: mmap threshold 32 MiB, ...",
        "malloc set by the environment" (also for GNTKIT_HOST_MALLOC=keep) or "malloc left as it is: not glibc (musl)".

    Raises:
        GntkitError: a setting is not an (int, int from 0 to 1 GiB, str) triple.
    """
    for setting in settings:
        if (not isinstance(setting, tuple) or len(setting) != 3 or not isinstance(setting[2], str)
                or any(isinstance(v, bool) or not isinstance(v, int) for v in setting[:2])
                or not 0 <= setting[1] <= 1 << 30):
            raise GntkitError(f"A malloc setting must be (mallopt parameter, bytes from 0 to 1 GiB, name); "
                              f"got {setting!r}.")
    if _set_by_environment():
        return "malloc set by the environment"
    libc = platform.libc_ver()[0]
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if libc == "glibc" else None
    if mallopt is None:
        return f"malloc left as it is: not glibc ({libc or 'unknown C library'})"
    for parameter, value, name in settings:
        if mallopt(parameter, value) != 1:
            raise GntkitError(f"A bug in gntkit: glibc's mallopt refused the {name} ({parameter}, {value}).")
    return "glibc malloc: " + ", ".join(name for _, _, name in settings)
