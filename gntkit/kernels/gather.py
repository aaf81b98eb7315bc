"""numba kernel that copies bitmaps lying anywhere in one buffer into one flat array.

A format whose bitmaps lie in its file (GNT, and any format of that shape) gathers them
with this for raw batches; preprocessing reads them in place instead (gntkit.samples.transform).
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit, parallel_ranges

# Bitmaps per indivisible run of gather_bitmaps: a few hundred KB of copying per run.
GATHER_GRAIN = 64


def gather_bitmaps(buf, starts, pixel_counts, out, out_offsets):
    """Copy bitmap i (buf[starts[i]:starts[i] + pixel_counts[i]]) into out at out_offsets[i], in parallel.

    Python threads over the nogil gather_range (gntkit.jit.parallel_ranges), not a
    parallel=True kernel, which compiled for seconds to save microseconds.
    """
    def body(first, end):
        gather_range(buf, starts, pixel_counts, out, out_offsets, first, end)

    parallel_ranges(starts.shape[0], GATHER_GRAIN, body)


@njit
def gather_range(buf, starts, pixel_counts, out, out_offsets, first, end):
    """gather_bitmaps of bitmaps first..end-1, on the calling thread."""
    # Byte loops, not out[a:b] = buf[c:d]: the slice assignment compiles numba's
    # shape-mismatch message formatting; LLVM turns the loop into a block copy all the same.
    # Unsigned indices skip numba's negative-index wraparound, which would block the block copy.
    for i in range(first, end):
        src = np.uint64(starts[i])
        dst = np.uint64(out_offsets[i])
        for k in range(np.uint64(pixel_counts[i])):
            out[dst + k] = buf[src + k]


def gather_bitmaps_serial(buf, starts, pixel_counts, out, out_offsets):
    """gather_bitmaps on the calling thread only."""
    gather_range(buf, starts, pixel_counts, out, out_offsets, 0, starts.shape[0])
