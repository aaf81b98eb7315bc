"""gntkit.training.host_heap: the malloc settings the trainers make, and that freed memory stays mapped."""

import json
import os
import platform
import subprocess
import sys

import pytest

from gntkit.errors import GntkitError
from gntkit.training.host_heap import tune_host_malloc

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's")

# Child: optionally tune, then allocate 32 buffers of 1 MiB (over glibc's default mmap threshold of
# 128 KiB, under the tuned 32 MiB), count how many malloc mapped on their own, free them all and
# report what the heap kept free at its top.
_CHILD = """
import ctypes, json, sys
from gntkit.training.host_heap import tune_host_malloc
done = tune_host_malloc() if sys.argv[1] == "tune" else "not asked"

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
buffers = [libc.malloc(1 << 20) for _ in range(32)]
mapped_alone = libc.mallinfo2().hblks - before
for b in reversed(buffers):
    libc.free(b)
print(json.dumps({"done": done, "mapped_alone": mapped_alone, "kept_free_at_top": libc.mallinfo2().keepcost}))
"""


def _child(mode, **env):
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "GNTKIT_HOST_MALLOC")}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True,
                         env={**environment, **env})
    return json.loads(out.stdout.splitlines()[-1])


@glibc_only
def test_tuned_malloc_keeps_step_sized_buffers_on_a_heap_it_does_not_trim():
    tuned, plain = _child("tune"), _child("plain")
    assert tuned["done"] == "glibc malloc: mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB"
    assert tuned["mapped_alone"] == 0 and tuned["kept_free_at_top"] >= 32 << 20
    # glibc's defaults: each 1 MiB buffer is mapped alone and unmapped when freed
    assert plain["mapped_alone"] == 32 and plain["kept_free_at_top"] < 1 << 20


@glibc_only
@pytest.mark.parametrize("env", [{"MALLOC_TOP_PAD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
                                 {"GNTKIT_HOST_MALLOC": "keep"}])
def test_the_environment_decides_where_it_sets_malloc(env):
    left = _child("tune", **env)
    assert left["done"] == "malloc set by the environment" and left["mapped_alone"] == 32


@pytest.mark.parametrize("bad", [[(-3, -1, "x")], [(-3, 2.5, "x")], [(-3, True, "x")], [(-3, (1 << 30) + 1, "x")],
                                 [("-3", 1, "x")], [(-3, 1)], ["mmap"]])
def test_bad_settings_are_refused(bad):
    with pytest.raises(GntkitError, match="must be .mallopt parameter, bytes from 0 to 1 GiB, name."):
        tune_host_malloc(bad)

