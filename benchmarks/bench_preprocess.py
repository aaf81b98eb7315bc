"""Benchmark: gntkit's batch preprocessing kernel vs the per-sample PIL pipeline.

Baseline (what HCCR tutorials do, one image at a time): crop to the ink with numpy,
`PIL.Image.resize` (BOX = area averaging, or LANCZOS) to the aspect-preserving size,
paste into a 255 canvas with a margin, invert. gntkit does the same steps (area
averaging when shrinking) in one numba call over the whole batch.

Input: HWDB-like bitmaps made with numpy (seeded): sizes around 75 x 68 (height x
width), 255 paper, dark strokes with grey edges.

Run:  .venv/bin/python benchmarks/bench_preprocess.py [--count 20000] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
from PIL import Image

from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import preprocess_batch


def hwdb_like_batch(count: int, seed: int):
    """(pixels, pixel_offsets, heights, widths) of `count` synthetic handwriting bitmaps."""
    rng = np.random.default_rng(seed)
    heights = np.clip(rng.normal(75, 14, count), 12, 200).astype(np.int32)
    widths = np.clip(rng.normal(68, 14, count), 12, 200).astype(np.int32)
    offsets = np.zeros(count + 1, np.int64)
    offsets[1:] = np.cumsum(heights.astype(np.int64) * widths)
    pixels = np.empty(offsets[-1], np.uint8)
    for i in range(count):
        h, w = int(heights[i]), int(widths[i])
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        darkness = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(4, 12)):  # strokes: thick segments, dark core, soft edge
            (y0, y1), (x0, x1) = rng.uniform(0, h, 2), rng.uniform(0, w, 2)
            dy, dx = y1 - y0, x1 - x0
            t = np.clip(((ys - y0) * dy + (xs - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
            distance = np.hypot(ys - (y0 + t * dy), xs - (x0 + t * dx))
            width = rng.uniform(1.5, 3.5)
            darkness = np.maximum(darkness, np.clip(width - distance + 1, 0, 1) * rng.uniform(0.7, 1.0))
        pixels[offsets[i] : offsets[i + 1]] = (255 - 255 * darkness).astype(np.uint8).ravel()
    return pixels, offsets, heights, widths


def pil_pipeline(pixels, offsets, heights, widths, size, margin, resample):
    """The baseline: per-sample numpy crop + PIL resize into a canvas + invert."""
    inner = size - 2 * margin
    out = np.empty((len(heights), size, size), np.uint8)
    for i in range(len(heights)):
        image = pixels[offsets[i] : offsets[i + 1]].reshape(heights[i], widths[i])
        rows = np.flatnonzero((image < 255).any(axis=1))
        cols = np.flatnonzero((image < 255).any(axis=0))
        if rows.size:
            image = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        h, w = image.shape
        longer = max(h, w)
        nh = max(1, (2 * h * inner + longer) // (2 * longer))
        nw = max(1, (2 * w * inner + longer) // (2 * longer))
        resized = np.asarray(Image.fromarray(image).resize((nw, nh), resample))
        canvas = np.full((size, size), 255, np.uint8)
        top, left = margin + (inner - nh) // 2, margin + (inner - nw) // 2
        canvas[top : top + nh, left : left + nw] = resized
        out[i] = 255 - canvas
    return out


def best_time(function, repeat: int) -> tuple[float, np.ndarray]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    batch = hwdb_like_batch(args.count, args.seed)
    settings = Preprocess(size=args.size)
    heights, widths = batch[2], batch[3]
    print(f"{args.count} bitmaps, mean {heights.mean():.1f} x {widths.mean():.1f} (h x w), "
          f"{batch[0].size / 1e6:.1f} MB; output {args.size} x {args.size}, margin {settings.margin}; "
          f"{os.cpu_count()} CPUs, numba {numba.__version__}, best of {args.repeat}")

    # compile (or load the cached kernels) outside the timing
    preprocess_batch(batch[0], batch[1][:65], heights[:64], widths[:64], settings)
    rows = []
    baseline = None
    for name, resample in [("PIL per sample, BOX (baseline)", Image.BOX), ("PIL per sample, LANCZOS", Image.LANCZOS)]:
        seconds, result = best_time(lambda resample=resample: pil_pipeline(*batch, args.size, settings.margin, resample), args.repeat)
        rows.append((name, seconds, result))
        baseline = baseline or seconds
    threads = numba.get_num_threads()
    out = np.empty((args.count, args.size, args.size), np.uint8)
    for count in sorted({1, threads}):
        numba.set_num_threads(count)
        label = f"gntkit preprocess_batch, {count} thread{'s' if count > 1 else ''}"
        seconds, result = best_time(lambda: preprocess_batch(*batch, settings), args.repeat)
        rows.append((label, seconds, result))
        # a reused output buffer saves the page faults of a fresh (N, S, S) array
        seconds, result = best_time(lambda: preprocess_batch(*batch, settings, out=out), args.repeat)
        rows.append((label + ", out= reused", seconds, result))
    numba.set_num_threads(threads)

    reference = rows[0][2]
    print("\n| method | images/s | vs baseline | mean abs diff to baseline output (grey levels) |")
    print("|---|---:|---:|---:|")
    for name, seconds, result in rows:
        diff = np.abs(result.astype(np.int16) - reference).mean()
        print(f"| {name} | {args.count / seconds:,.0f} | {baseline / seconds:.1f}x | {diff:.3f} |")


if __name__ == "__main__":
    main()
