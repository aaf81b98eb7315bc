"""Benchmark: streaming read rate of the same shards from a local HTTP server beside local disk.

For each format, one epoch of ready batches (batch 256, 64 x 64 uint8, file order,
`ShardSet.iter_batches(..., streaming=True)`) is read:

  local disk      gntkit.datasets.open(FOLDER)                          (baseline; page cache warm)
  http, cold      gntkit.datasets.open("http://127.0.0.1:PORT/FORMAT")  with an empty cache_dir: every
                  shard is downloaded, checked against its sha256, then read
  http, cached    the same URL again with the cache the cold pass filled: the manifest, charset and
                  index files come over HTTP, the shards from the cache

The server is `python -m http.server` in its own process on 127.0.0.1 (no network), so the
transfer is loopback: the figures bound what gntkit adds (fetch, checksum, cache) rather than
measuring a real link. The data: benchmarks/corpus.py's synthetic corpus converted with the real
`gntkit.shards.convert` at 64 x 64 (bench_loaders' `prepare`), cached under --data.

    python benchmarks/bench_remote.py --records 50000
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BATCH = 256


def read_epoch(source, **options) -> tuple[float, int, int]:
    """(seconds, images, shard bytes) for one streaming epoch of `source`, open included."""
    import gntkit.datasets as datasets

    start = time.perf_counter()
    shards = datasets.open(source, **options)
    images = 0
    for batch, labels in shards.iter_batches(BATCH, shuffle=False, streaming=True):
        if batch.shape[1:] != (64, 64) or len(labels) != len(batch):
            raise SystemExit(f"unexpected batch shapes {batch.shape} {labels.shape}")
        images += len(batch)
    seconds = time.perf_counter() - start
    return seconds, images, sum(s.bytes or 0 for s in shards.shards)


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    """`python -m http.server` on 127.0.0.1, port chosen by the OS; returns (process, base URL)."""
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    match = re.search(r"port (\d+)", line)
    if not match:
        server.kill()
        raise SystemExit(f"http.server did not start: {line!r}")
    return server, f"http://127.0.0.1:{match.group(1)}"


def main() -> None:
    """Prepare the data, start the server, read each format from disk and over HTTP, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/gntkit-bench-loaders"))
    parser.add_argument("--formats", default="hdf5,tfrecord,webdataset")
    parser.add_argument("--repeats", type=int, default=2, help="passes per reader; the best is reported")
    args = parser.parse_args()
    from bench_loaders import prepare, warm_page_cache

    folders = prepare(args.data, args.records)
    server, base = start_server(args.data)
    rows = []
    try:
        for fmt in args.formats.split(","):
            warm_page_cache(folders[fmt])
            local = min(read_epoch(folders[fmt])[0] for _ in range(args.repeats))
            cold, cached = [], []
            for _ in range(args.repeats):
                cache = Path(tempfile.mkdtemp(prefix="gntkit-bench-remote-"))
                try:
                    seconds, images, size = read_epoch(f"{base}/{fmt}", cache_dir=cache)
                    cold.append(seconds)
                    cached.append(read_epoch(f"{base}/{fmt}", cache_dir=cache)[0])
                finally:
                    shutil.rmtree(cache)
            rows.append((fmt, images, size, local, min(cold), min(cached)))
            print(f"{fmt:<10} local {images / local:>10,.0f}/s  http cold {images / min(cold):>10,.0f}/s  "
                  f"http cached {images / min(cached):>10,.0f}/s", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    print(f"\nimages/s, one streaming epoch in file order (batch {BATCH}, 64x64 uint8), {args.records:,} records, "
          f"best of {args.repeats}; HTTP = python -m http.server on 127.0.0.1\n")
    print("| format | shard MB | local disk (baseline) | http, cold cache (fetch + sha256 + read) | http, cached "
          "| cold / local | cached / local |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for fmt, images, size, local, cold, cached in rows:
        print(f"| {fmt} | {size / 1e6:,.0f} | {images / local:,.0f} | {images / cold:,.0f} ({size / 1e6 / cold:,.0f} MB/s) | "
              f"{images / cached:,.0f} | {local / cold:.2f} | {local / cached:.2f} |")


if __name__ == "__main__":
    main()
