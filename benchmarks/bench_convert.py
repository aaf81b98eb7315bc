"""Benchmark: `gntkit convert` to each format at 64 x 64 (issue 3), beside the common
per-sample pipeline measured in the same run on a subset.

gntkit runs as the real CLI in a subprocess (so peak RSS is the converter's own, read
with wait4 for the main process and the largest worker). The baseline is what tutorials
do, one sample at a time: np.fromfile header + bitmap, numpy crop to the ink box, PIL
resize into a 64 x 64 canvas keeping the aspect ratio, invert, then per format:
  tfrecord   - tf.train.Example(...).SerializeToString() + tf.io.TFRecordWriter.write
  hdf5       - h5py row writes into preallocated datasets
  webdataset - one PNG file per sample (PIL save)

    python benchmarks/bench_convert.py --records 100000 --baseline-records 3000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from corpus import make_corpus

FORMATS = ("tfrecord", "hdf5", "webdataset")


def run_gntkit(source: str, out: Path, to: str, workers: int) -> tuple[float, float, float]:
    """(seconds, main peak RSS MB, largest child peak RSS MB) of one CLI conversion."""
    if out.exists():
        shutil.rmtree(out)
    gntkit = Path(sys.executable).with_name("gntkit")
    start = time.perf_counter()
    process = subprocess.Popen([str(gntkit), "convert", source, "--to", to, "--out", str(out), "--workers", str(workers), "--quiet"],
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"gntkit convert --to {to} failed with status {status}")
    child_peak = _children_peak_mb()
    return seconds, usage.ru_maxrss / 1024, child_peak


def _children_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def tutorial_records(folder: Path, limit: int):
    """The per-record np.fromfile loop, as public converters write it."""
    count = 0
    for path in sorted(folder.glob("*.gnt")):
        with open(path, "rb") as f:
            while count < limit:
                header = np.fromfile(f, dtype="uint8", count=10)
                if not header.size:
                    break
                width = int(header[6]) + (int(header[7]) << 8)
                height = int(header[8]) + (int(header[9]) << 8)
                tag_code = (int(header[4]) << 8) + int(header[5])
                image = np.fromfile(f, dtype="uint8", count=width * height).reshape((height, width))
                count += 1
                yield tag_code, image
        if count >= limit:
            return


def tutorial_preprocess(image: np.ndarray, size: int = 64, margin: int = 4) -> np.ndarray:
    ink = np.argwhere(image < 255)
    if len(ink):
        (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
        image = image[top:bottom, left:right]
    h, w = image.shape
    scale = (size - 2 * margin) / max(h, w)
    resized = Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    canvas = Image.new("L", (size, size), 255)
    canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return 255 - np.asarray(canvas)


def baseline(to: str, folder: Path, out: Path, limit: int) -> float:
    """Seconds for `limit` samples through the per-sample pipeline into format `to`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    start = time.perf_counter()
    if to == "tfrecord":
        import tensorflow as tf

        with tf.io.TFRecordWriter(str(out / "baseline.tfrecord")) as writer:
            for i, (tag_code, image) in enumerate(tutorial_records(folder, limit)):
                x = tutorial_preprocess(image)
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[tag_code])),
                    "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(i).encode()])),
                }))
                writer.write(example.SerializeToString())
    elif to == "hdf5":
        import h5py

        with h5py.File(out / "baseline.h5", "w") as f:
            images = f.create_dataset("images", (limit, 64, 64), np.uint8, chunks=(256, 64, 64))
            labels = f.create_dataset("labels", (limit,), np.int64)
            for i, (tag_code, image) in enumerate(tutorial_records(folder, limit)):
                images[i] = tutorial_preprocess(image)
                labels[i] = tag_code
    else:
        for i, (tag_code, image) in enumerate(tutorial_records(folder, limit)):
            Image.fromarray(tutorial_preprocess(image)).save(out / f"{i:07d}_{tag_code:04x}.png")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--baseline-records", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records)
    folder = Path(corpus["folder"])
    work = Path(args.workdir)
    mb = corpus["bytes"] / 1e6
    print(f"corpus: {corpus['records']:,} records, {mb:,.0f} MB in 40 .gnt files; {args.workers} workers; 64x64 output")
    print(f"| {'format':<10} | {'gntkit s':>8} | {'gntkit samples/s':>16} | {'peak RSS main/worker MB':>23} | "
          f"{'baseline samples/s':>18} | {'ratio':>6} | {'HWDB1.1-train (897,758) est.':>28} |")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 18}|{'-' * 25}|{'-' * 20}|{'-' * 8}|{'-' * 30}|")
    for to in args.formats.split(","):
        seconds, main_mb, child_mb = run_gntkit(str(folder), work / f"out-{to}", to, args.workers)
        rate = corpus["records"] / seconds
        base_seconds = baseline(to, folder, work / f"baseline-{to}", args.baseline_records)
        base_rate = args.baseline_records / base_seconds
        print(f"| {to:<10} | {seconds:>8.2f} | {rate:>16,.0f} | {main_mb:>10,.0f} / {child_mb:>10,.0f} | {base_rate:>18,.0f} | "
              f"{rate / base_rate:>5.1f}x | {897_758 / rate:>10.0f} s gntkit, {897_758 / base_rate / 60:>5.0f} min base |")


if __name__ == "__main__":
    main()
