"""Benchmark: `gntkit convert` to each format at 64 x 64, beside the common
per-sample pipeline measured in the same run on a subset.

gntkit runs as the real CLI in a subprocess; its wall time, CPU time (user + system, of the
CLI and its children) and peak RSS (from the manifest's stats, getrusage in each process)
are reported. The baseline is what tutorials
do, one sample at a time: np.fromfile header + bitmap, numpy crop to the ink box, PIL
resize into a 64 x 64 canvas keeping the aspect ratio, invert, then per format:
  tfrecord   - tf.train.Example(...).SerializeToString() + tf.io.TFRecordWriter.write
  hdf5       - h5py row writes into preallocated datasets
  webdataset - one PNG file per sample (PIL save)

    python benchmarks/bench_convert.py --records 100000 --baseline-records 3000
    python benchmarks/bench_convert.py --records 897758 --writers 240 --workdir /tmp/gntkit-full   # HWDB1.1-train size
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from corpus import make_corpus

FORMATS = ("tfrecord", "hdf5", "webdataset")


def run_gntkit(source: str, out: Path, to: str, workers: int, *extra: str) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds, manifest stats) of one CLI conversion; the manifest records peak RSS."""
    if out.exists():
        shutil.rmtree(out)
    gntkit = Path(sys.executable).with_name("gntkit")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([str(gntkit), "convert", source, "--to", to, "--out", str(out), "--workers", str(workers), "--quiet", *extra],
                   stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = json.loads((out / "gntkit.json").read_text(encoding="utf-8"))["stats"]
    return seconds, cpu, stats


_IN_PROCESS = """
import json, os, sys, time
from gntkit.shards.convert import convert
source, out, to, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start, cpu = time.perf_counter(), sum(os.times()[:2])
convert(source, out, to=to, workers=workers)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": sum(os.times()[:2]) - cpu}))
"""


def run_in_process(source: str, out: Path, to: str, workers: int) -> tuple[float, float]:
    """(seconds, CPU seconds) of `gntkit.shards.convert.convert` timed from the call, in a fresh interpreter
    that has already imported gntkit (the CLI's fixed cost of imports and start-up left out)."""
    if out.exists():
        shutil.rmtree(out)
    result = subprocess.run([sys.executable, "-c", _IN_PROCESS, source, str(out), to, str(workers)],
                            capture_output=True, text=True, check=True)
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return timing["seconds"], timing["cpu"]


def rss_text(stats: dict) -> str:
    rss = stats["peak_rss_mb"]
    return f"{rss['main']:,.0f}" + (f" / {rss['worker']:,.0f}" if rss.get("worker") is not None else "")


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
    parser.add_argument("--writers", type=int, default=40, help="files in the corpus (HWDB1.1-train has 240)")
    parser.add_argument("--baseline-records", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--variants", action="store_true", help="also tfrecord with --parallel processes and with --no-hash-sources")
    parser.add_argument("--scaling", action="store_true", help="also convert a quarter of the corpus to show memory stays flat")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="also time gntkit.shards.convert.convert N times per format, from the call (no CLI start-up)")
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records, writers=args.writers, zip_too=False)
    folder = Path(corpus["folder"])
    work = Path(args.workdir)
    mb = corpus["bytes"] / 1e6
    print(f"corpus: {corpus['records']:,} records, {mb:,.0f} MB in {args.writers} .gnt files; {args.workers} workers; 64x64 output")
    print(f"| {'format':<34} | {'gntkit s':>8} | {'CPU s':>6} | {'samples/s':>9} | {'peak RSS MB':>11} | "
          f"{'baseline samples/s':>18} | {'ratio':>6} | {'HWDB1.1-train (897,758) at this rate':>36} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 8}|{'-' * 11}|{'-' * 13}|{'-' * 20}|{'-' * 8}|{'-' * 38}|")
    # Every gntkit run happens before the baselines import TensorFlow: Linux keeps a process's peak RSS
    # across exec, so a CLI forked from a 600 MB benchmark process would report the benchmark's memory.
    rows = [(to, ()) for to in args.formats.split(",")]
    if args.variants and "tfrecord" in args.formats:
        rows += [("tfrecord", ("--parallel", "processes")), ("tfrecord", ("--no-hash-sources",))]
    measured = [(to, extra, *run_gntkit(str(folder), work / f"out-{to}", to, args.workers, *extra)) for to, extra in rows]
    scaling = []
    if args.scaling:
        files = sorted(folder.glob("*.gnt"))
        for count in (len(files) // 4, len(files)):
            subset = work / f"subset-{count}"
            if not subset.exists():
                subset.mkdir()
                for path in files[:count]:
                    (subset / path.name).symlink_to(path)
            scaling.append((count, *run_gntkit(str(subset), work / "out-scaling", "tfrecord", args.workers)))
    in_process = [(to, *run_in_process(str(folder), work / f"out-{to}", to, args.workers))
                  for to in args.formats.split(",") for _ in range(args.in_process)]
    base_rates = {to: args.baseline_records / baseline(to, folder, work / f"baseline-{to}", args.baseline_records)
                  for to in dict.fromkeys(to for to, _ in rows)}
    for to, extra, seconds, cpu, stats in measured:
        rate = corpus["records"] / seconds
        base_rate = base_rates[to]
        label = " ".join((to, *extra))
        print(f"| {label:<34} | {seconds:>8.2f} | {cpu:>6.1f} | {rate:>9,.0f} | {rss_text(stats):>11} | {base_rate:>18,.0f} | "
              f"{rate / base_rate:>5.1f}x | {897_758 / rate:>6.1f} s gntkit, {897_758 / base_rate / 60:>5.0f} min baseline |")
    if in_process:
        print()
        print("in-process: gntkit.shards.convert.convert timed from the call (imports and CLI start-up excluded)")
        print(f"| {'format':<10} | {'seconds':>7} | {'CPU s':>6} | {'samples/s':>9} |")
        print(f"|{'-' * 12}|{'-' * 9}|{'-' * 8}|{'-' * 11}|")
        for to, seconds, cpu in in_process:
            print(f"| {to:<10} | {seconds:>7.2f} | {cpu:>6.1f} | {corpus['records'] / seconds:>9,.0f} |")
    if scaling:
        print()
        print("memory vs corpus size (tfrecord): peak RSS must not grow with the corpus")
        print(f"| {'files':>5} | {'records':>8} | {'seconds':>7} | {'peak RSS MB':>11} |")
        print(f"|{'-' * 7}|{'-' * 10}|{'-' * 9}|{'-' * 13}|")
        for count, seconds, _cpu, stats in scaling:
            print(f"| {count:>5} | {stats['samples_written']:>8,} | {seconds:>7.2f} | {rss_text(stats):>11} |")


if __name__ == "__main__":
    main()
