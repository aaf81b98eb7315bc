"""Benchmark: read every record's bitmap of a GNT corpus into arrays.

gntkit (numba index + batch gather per file) beside the baseline most public converters
use: a per-record loop with np.fromfile(f, uint8, count=10) for the header, then
np.fromfile for the bitmap. Both from page-cached files, and both from a deflated zip
(the baseline then reads the zip member stream with f.read, since np.fromfile needs a
real file). Prints a table; ratios are the meaningful numbers on a noisy machine.

    python benchmarks/bench_read.py --records 100000
"""

from __future__ import annotations

import argparse
import time
import zipfile
from pathlib import Path

import numpy as np

from corpus import make_corpus
from gntkit.formats.gnt import GntFile
from gntkit.formats.sources import find_members


def baseline_fromfile(folder: Path) -> tuple[int, int]:
    """The tutorial loop: np.fromfile header, np.fromfile bitmap, one record at a time."""
    records = pixels = 0
    for path in sorted(folder.glob("*.gnt")):
        with open(path, "rb") as f:
            while True:
                header = np.fromfile(f, dtype="uint8", count=10)
                if not header.size:
                    break
                width = int(header[6]) + (int(header[7]) << 8)
                height = int(header[8]) + (int(header[9]) << 8)
                tag_code = (int(header[4]) << 8) + int(header[5])
                image = np.fromfile(f, dtype="uint8", count=width * height).reshape((height, width))
                records += 1
                pixels += image.size + 0 * tag_code
    return records, pixels


def baseline_zip(zip_path: Path) -> tuple[int, int]:
    """The same loop over zip member streams (f.read + np.frombuffer)."""
    records = pixels = 0
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(archive.namelist()):
            with archive.open(name) as f:
                while True:
                    raw = f.read(10)
                    if not raw:
                        break
                    header = np.frombuffer(raw, dtype="uint8")
                    width = int(header[6]) + (int(header[7]) << 8)
                    height = int(header[8]) + (int(header[9]) << 8)
                    image = np.frombuffer(f.read(width * height), dtype="uint8").reshape((height, width))
                    records += 1
                    pixels += image.size
    return records, pixels


def gntkit_views(source) -> tuple[int, int]:
    """gntkit zero-copy: map each file, index it, one (h, w) view per record; no pixel is copied."""
    records = pixels = 0
    for member in find_members(source):
        gnt = GntFile(member.read(), member.name)
        views = gnt.bitmaps()
        records += len(views)
        pixels += int(gnt.index.pixel_counts.sum())
    return records, pixels


def gntkit_gather(source) -> tuple[int, int]:
    """gntkit batch gather: every bitmap copied into one flat array per file (reused buffer)."""
    records = pixels = 0
    buffer = np.empty(64 << 20, np.uint8)
    for member in find_members(source):
        gnt = GntFile(member.read(), member.name)
        if gnt.index.pixel_counts.sum() > len(buffer):
            buffer = np.empty(int(gnt.index.pixel_counts.sum()), np.uint8)
        flat, offsets = gnt.gather(out=buffer)
        records += len(gnt)
        pixels += flat.size
    return records, pixels


def timed(fn, *args, repeat: int = 3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records)
    folder, zip_path = Path(corpus["folder"]), Path(corpus["zip"])
    mb = corpus["bytes"] / 1e6
    gntkit_views(folder)  # compile kernels and warm the page cache
    gntkit_gather(folder)
    baseline_fromfile(folder)
    rows = []
    for label, fn, source in [
        ("baseline np.fromfile loop, files", baseline_fromfile, folder),
        ("gntkit zero-copy views, files", gntkit_views, folder),
        ("gntkit batch gather (copy), files", gntkit_gather, folder),
        ("baseline f.read loop, zip", baseline_zip, zip_path),
        ("gntkit zero-copy views, zip", gntkit_views, zip_path),
        ("gntkit batch gather (copy), zip", gntkit_gather, zip_path),
    ]:
        seconds, (records, _) = timed(fn, source, repeat=args.repeat)
        assert records == corpus["records"], (label, records)
        rows.append((label, seconds, records / seconds, mb / seconds))
    print(f"corpus: {corpus['records']:,} records, {mb:,.0f} MB in 40 files (+ deflated zip); best of {args.repeat}")
    print(f"| {'reader':<34} | {'seconds':>8} | {'records/s':>11} | {'MB/s':>7} | {'vs baseline':>11} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 13}|{'-' * 9}|{'-' * 13}|")
    for i, (label, seconds, rps, mbps) in enumerate(rows):
        base = rows[0 if i < 3 else 3][1]
        print(f"| {label:<34} | {seconds:>8.3f} | {rps:>11,.0f} | {mbps:>7,.0f} | {base / seconds:>10.1f}x |")


if __name__ == "__main__":
    main()
