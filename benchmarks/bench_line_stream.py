"""Benchmark: the streaming text-line loader beside the in-memory one, same data, same run.

Input: `gntkit synth --format dgrl` pages (gntkit.tools.synth_pages: --writers x --pages pages of
--lines lines, 8-20 glyphs 64 pixels high), converted with the real `gntkit.shards.convert` at
--line-height 64 to --format shards (convert's 128 MiB, or --shard-records lines; cached under --data).

Each loader reads one shuffled epoch of batches of --batch lines in a child process of its own,
so its peak RSS is its own:

  open_lines (baseline)   gntkit.datasets.lines.open_lines: the whole split in memory, random batches
  stream, buckets         gntkit.datasets.line_stream.open_line_stream(buffer_lines=--buffer)
  stream, no buckets      the same with bucket=False (a plain shuffle buffer)

Each --writers value is one set (the split grows with it; the stream's buffer stays). Columns:
lines/s over the epoch (opening included; the best of --repeat epochs, each opening the set
again), peak RSS (VmHWM), RSS before reading (after the imports and one line read, which loads
the format's reader library), and the padding fraction: the share of the batches' pixels that
are padding right of a line.

    python benchmarks/bench_line_stream.py --writers 20 60 --pages 10 --lines 10 --buffer 256
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from child import print_result, run_child  # noqa: E402

MODES = ("open_lines", "stream", "stream-plain")
TITLES = {"open_lines": "open_lines, in memory (baseline)", "stream": "stream, buckets", "stream-plain": "stream, no buckets"}


def prepare(args, writers: int) -> Path:
    """The converted set of `writers` writers under --data, built once per parameter set."""
    from gntkit.shards.convert import convert
    from gntkit.tools.synth_pages import write_pages

    wanted = {"writers": writers, "pages": args.pages, "lines": args.lines, "format": args.format,
              "shard_records": args.shard_records, "seed": 0}
    root = Path(args.data) / f"writers-{writers}"
    stamp = root / "bench_line_stream.json"
    folder = root / "lines"
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder
    for old in (root / "pages", folder):
        if old.exists():
            shutil.rmtree(old)
    start = time.perf_counter()
    write_pages(root / "pages", writers=writers, pages=args.pages, lines=args.lines, num_classes=200, style="f", seed=0)
    convert(root / "pages", folder, to=args.format, workers=1, preprocess={"line_height": 64}, shard_records=args.shard_records,
            hash_sources=False)
    print(f"prepared {writers * args.pages * args.lines:,} lines in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    stamp.write_text(json.dumps(wanted))
    return folder


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS) or at its peak (VmHWM), in MB, from /proc (Linux).

    Not getrusage's ru_maxrss: that one keeps the parent's peak across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise SystemExit(f"/proc/self/status has no {field}")


def epoch(mode: str, folder: str, batch: int, buffer: int) -> tuple[float, int, int, int]:
    """(seconds, lines, pixels used, pixels in the batches) of opening the set and one shuffled epoch."""
    import gntkit.datasets.line_stream as line_stream
    import gntkit.datasets.lines as lines_module

    start = time.perf_counter()
    if mode == "open_lines":
        lines = lines_module.open_lines(folder)
    else:
        lines = line_stream.open_line_stream(folder, buffer_lines=buffer, bucket=mode == "stream")
    count = padded = used = 0
    for images, widths, _, _ in lines.batches(batch, seed=0, epoch=0):
        count += len(widths)
        padded += images.shape[0] * images.shape[1] * images.shape[2]
        used += int(widths.sum()) * images.shape[1]
    return time.perf_counter() - start, count, used, padded


def measure(mode: str, folder: str, batch: int, buffer: int, repeat: int) -> dict:
    """The best of `repeat` epochs of one loader in this process: lines/s, RSS, padding fraction."""
    import gntkit.datasets.line_stream
    import gntkit.datasets.lines  # noqa: F401 - its imports' memory counts before reading

    # The format's reader library (h5py, TensorFlow, webdataset) is loaded by the first line read.
    next(gntkit.datasets.line_stream.open_line_stream(folder, buffer_lines=1).batches(1, shuffle=False))
    imported = rss_mb()
    runs = [epoch(mode, folder, batch, buffer) for _ in range(repeat)]
    seconds = min(run[0] for run in runs)
    _, count, used, padded = runs[0]
    return {"lines": count, "seconds": seconds, "imported_mb": imported, "peak_mb": rss_mb("VmHWM"),
            "pixels_mb": used / 1e6, "padding": 1 - used / padded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[20, 60],
                        help="writers of each set measured (the split grows with them, the stream's buffer does not)")
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--lines", type=int, default=10, help="lines a page")
    parser.add_argument("--format", default="hdf5")
    parser.add_argument("--shard-records", type=int, default=None, help="lines a shard (default: convert's, 128 MiB shards)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--buffer", type=int, default=256, help="the stream's buffer_lines")
    parser.add_argument("--repeat", type=int, default=2, help="epochs per loader; the fastest is reported")
    parser.add_argument("--data", default="/tmp/gntkit-bench-line-stream")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print_result(measure(args.child, args.folder, args.batch, args.buffer, args.repeat))
        return
    shards = f"{args.shard_records} lines" if args.shard_records else "128 MiB (convert's default)"
    print(f"one shuffled epoch (best of {args.repeat}, opening included) at height 64, {args.format} shards of {shards}, "
          f"batch {args.batch}, stream buffer {args.buffer} lines\n")
    print("| lines (MB of pixels) | loader | lines/s | peak RSS MB | RSS before reading MB | padding |")
    print("|---|---|---:|---:|---:|---:|")
    for writers in args.writers:
        folder = prepare(args, writers)
        for mode in MODES:
            r = run_child([sys.executable, __file__, "--child", mode, "--folder", str(folder), "--batch", str(args.batch),
                           "--buffer", str(args.buffer), "--repeat", str(args.repeat)], mode)
            print(f"| {r['lines']:,} ({r['pixels_mb']:,.0f}) | {TITLES[mode]} | {r['lines'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} | "
                  f"{r['imported_mb']:,.0f} | {r['padding']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
