"""The one switch for numba: every kernel is decorated with `njit` from here.

Set NUMBA_DISABLE_JIT=1 to run every kernel as plain Python (numba honours the
variable itself; the tests run once that way).
"""

from __future__ import annotations

import numba

# cache=True writes compiled kernels next to the module so later processes
# (conversion workers, CLI runs) skip compilation.
_DEFAULTS = {"cache": True, "nogil": True}


def njit(*args, **kwargs):
    """numba.njit with gntkit's defaults (cache, nogil); usable bare or with options."""
    options = {**_DEFAULTS, **kwargs}
    if args and callable(args[0]) and len(args) == 1:
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)


prange = numba.prange
