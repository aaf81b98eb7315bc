"""Conversion time of this tree beside an earlier commit's, alternated on one corpus in one run.

A refactor must not slow conversion down; these machines are noisy, so old and new runs are
interleaved (old, new, old, new, ...) and compared by their medians, after one untimed run of
each to fill numba's cache. Each run is a fresh process
that times `gntkit.shards.convert.convert` from the call (imports excluded), with the default settings
(64 x 64, sha256 of sources and shards). The earlier commit is checked out into a temporary git
worktree and imported from there.

Usage: python benchmarks/bench_ab.py --ref 2720351 --records 897758 --writers 240 --workdir /tmp/gntkit-full --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import make_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TIMED = """
import json, resource, shutil, sys, time
from gntkit.shards.convert import convert
src, out, to = sys.argv[1:4]
shutil.rmtree(out, ignore_errors=True)
start, cpu = time.perf_counter(), time.process_time()
manifest = convert(src, out, to=to, overwrite=True)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "samples": manifest["stats"]["samples_written"],
                  "shards": [s["sha256"] for split in manifest["splits"].values() for s in split["shards"]]}))
"""


def timed_run(code_root: Path, src: str, out: Path, to: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", TIMED, src, str(out), to], env=env, cwd=code_root,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the earlier commit to compare with")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--formats", default="tfrecord,hdf5")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records, writers=args.writers, zip_too=False)
    work = Path(args.workdir)
    with tempfile.TemporaryDirectory(prefix="gntkit-ab-") as tmp:
        old_root = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_root), args.ref], cwd=ROOT, check=True)
        try:
            results = {}
            # One untimed run of one file per code and format first: the new worktree's numba cache is
            # empty, and a compile (tens of CPU-s) is not what this compares.
            first_file = sorted(Path(corpus["folder"]).glob("*.gnt"))[0]
            for to in args.formats.split(","):
                for root in (old_root, ROOT):
                    timed_run(root, str(first_file), work / f"ab-warm-{to}", to)
            for to in args.formats.split(","):
                for _ in range(args.rounds):
                    for label, root in ((args.ref, old_root), ("this tree", ROOT)):
                        run = timed_run(root, corpus["folder"], work / f"ab-{to}", to)
                        results.setdefault((to, label), []).append(run)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_root)], cwd=ROOT, check=True)
    print(f"corpus: {corpus['records']:,} records, {corpus['bytes'] / 1e6:,.0f} MB in {args.writers} files; "
          f"runs alternated, {args.rounds} each")
    print(f"| {'format':<9} | {'code':<10} | {'seconds (each run)':<22} | {'median s':>8} | {'CPU s':>6} | {'same shards':>11} |")
    print(f"|{'-' * 11}|{'-' * 12}|{'-' * 24}|{'-' * 10}|{'-' * 8}|{'-' * 13}|")
    for to in args.formats.split(","):
        old = results[(to, args.ref)]
        for label in (args.ref, "this tree"):
            runs = results[(to, label)]
            same = all(r["shards"] == old[0]["shards"] for r in runs)
            seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            print(f"| {to:<9} | {label:<10} | {seconds:<22} | {statistics.median(r['seconds'] for r in runs):>8.2f} | "
                  f"{statistics.median(r['cpu'] for r in runs):>6.1f} | {'yes' if same else 'NO':>11} |")


if __name__ == "__main__":
    main()
