"""Benchmark: SHA-256 of many files, hashlib (OpenSSL) one file at a time vs gntkit.shards.digest's
multi-buffer numba kernel (16 files side by side), on the benchmark corpus's .gnt files.

Both read the files from the page cache (a warm-up pass reads them first) and both give the
same digests (checked). MB/s counts file bytes hashed per wall second.

    python benchmarks/bench_digest.py [--records 100000] [--workdir /tmp/gntkit-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from corpus import make_corpus
from gntkit.shards.digest import sha256_files


def best_of(repeat: int, function):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records, writers=args.writers, zip_too=False)
    paths = sorted(Path(corpus["folder"]).glob("*.gnt"))
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    sha256_files(paths[:1], method="lanes")  # load the compiled kernel before timing
    for path in paths:  # page cache
        path.read_bytes()

    def one_by_one():
        out = []
        for path in paths:
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(4 << 20):
                    sha.update(block)
            out.append(sha.hexdigest())
        return out

    rows = [("baseline: hashlib.sha256, one file after another", lambda: one_by_one()),
            ("hashlib, 2 threads (gntkit.shards.digest method='hashlib')", lambda: sha256_files(paths, method="hashlib", threads=2)),
            ("gntkit.shards.digest lanes, 1 thread", lambda: sha256_files(paths, method="lanes", threads=1)),
            ("gntkit.shards.digest lanes, 2 threads", lambda: sha256_files(paths, method="lanes", threads=2))]
    print(f"{len(paths)} files, {total_mb:,.0f} MB, best of {args.repeat}")
    print(f"| {'method':<52} | {'seconds':>7} | {'MB/s':>6} | {'vs baseline':>11} |")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 8}|{'-' * 13}|")
    base_seconds, want = None, None
    for label, function in rows:
        seconds, digests = best_of(args.repeat, function)
        if want is None:
            base_seconds, want = seconds, digests
        assert digests == want, f"{label}: digests differ from hashlib's"
        print(f"| {label:<52} | {seconds:>7.2f} | {total_mb / seconds:>6,.0f} | {base_seconds / seconds:>10.1f}x |")


if __name__ == "__main__":
    main()
