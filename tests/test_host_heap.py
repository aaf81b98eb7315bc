"""gntkit.training.host_heap: the glibc heap pad the trainers set, and that it keeps freed memory mapped."""

import json
import os
import platform
import subprocess
import sys

import pytest

from gntkit.errors import GntkitError
from gntkit.training.host_heap import pad_host_heap

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the pad is glibc's")

# Child: optionally pad, then fill the main heap with 512 chunks of 64 KiB (below malloc's mmap
# threshold, so they come from the heap top), free them all and report what the heap kept.
_CHILD = """
import ctypes, json, sys
from gntkit.training.host_heap import pad_host_heap
done = pad_host_heap() if sys.argv[1] == "pad" else "not asked"
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
chunks = [libc.malloc(64 << 10) for _ in range(512)]
for c in reversed(chunks):
    libc.free(c)

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = MallInfo2
info = libc.mallinfo2()
print(json.dumps({"done": done, "kept_free_at_top": info.keepcost}))
"""


def _child(mode, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True,
                         env={**environment, **env})
    return json.loads(out.stdout.splitlines()[-1])


@glibc_only
def test_the_pad_keeps_freed_memory_at_the_heap_top():
    padded, plain = _child("pad"), _child("plain")
    assert padded["done"] == "128 MiB"
    # with the pad, the 32 MiB freed stay in the process (and the pad past them); without, glibc trims them
    assert padded["kept_free_at_top"] >= 32 << 20
    assert plain["kept_free_at_top"] < 1 << 20


@glibc_only
def test_the_environment_decides_where_it_sets_the_pad():
    off = _child("pad", MALLOC_TOP_PAD_="0")
    assert off["done"] == "set by the environment" and off["kept_free_at_top"] < 1 << 20
    tunable = _child("pad", GLIBC_TUNABLES="glibc.malloc.top_pad=0")
    assert tunable["done"] == "set by the environment" and tunable["kept_free_at_top"] < 1 << 20


@pytest.mark.parametrize("bad", [-1, 2.5, True, (1 << 30) + 1, "128M"])
def test_bad_pads_are_refused(bad):
    with pytest.raises(GntkitError, match="whole number of bytes from 0 to 1 GiB"):
        pad_host_heap(bad)
