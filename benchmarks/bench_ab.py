"""This tree beside an earlier commit, alternated on the same data in one run: conversion, loaders, training.

A refactor must not slow anything down; these machines are noisy, so old and new runs are
interleaved (old, new, old, new, ...) and compared by their medians, after one untimed run of
each to fill numba's cache. Each run is a fresh process that imports gntkit from its tree (the
earlier commit is checked out into a temporary git worktree) and times, imports excluded:

  convert  `convert(corpus, to=FORMAT)` with the default settings (64 x 64, sha256 of sources and shards)
  loaders  one epoch of `gntkit.datasets.torch.make_loader(HDF5 shards, batch_size=256, shuffle=True)`,
           with 0 and with 2 worker processes
  train    `gntkit.training.train(..., model="cnn3", epochs=1)` in torch and in TensorFlow on the HDF5
           shards of the first --train-records records, with glibc malloc tuned as `gntkit train` does

Usage: python benchmarks/bench_ab.py --ref 8b6590a --records 200000 --writers 40 --what convert,loaders,train --rounds 2
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
import json, os, resource, shutil, sys, time
import gntkit
# Ask the tree itself which layout it has: an editable install would find a module missing
# from an older tree in the installed one.
if os.path.isdir(os.path.join(os.path.dirname(gntkit.__file__), "shards")):
    from gntkit.shards.convert import convert
else:  # the layout before the stage packages
    from gntkit.convert import convert
src, out, to = sys.argv[1:4]
split = sys.argv[4] if len(sys.argv) > 4 else None
shutil.rmtree(out, ignore_errors=True)
start, cpu = time.perf_counter(), time.process_time()
manifest = convert(src, out, to=to, overwrite=True, split=split)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "samples": manifest["stats"]["samples_written"],
                  "shards": [s["sha256"] for split in manifest["splits"].values() for s in split["shards"]]}))
"""


TIMED_LOADER = """
import json, sys, time
from gntkit.datasets.torch import make_loader
folder, workers = sys.argv[1], int(sys.argv[2])
loader = make_loader(folder, batch_size=256, shuffle=True, seed=0, num_workers=workers)
start, images = time.perf_counter(), 0
for images_batch, labels in loader:
    images += len(labels)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "images": images, "rate": images / seconds}))
"""

TIMED_TRAIN = """
import json, os, shutil, sys, time
import gntkit
import gntkit.training as training
folder, out, framework = sys.argv[1:4]
if os.path.isdir(os.path.join(os.path.dirname(gntkit.__file__), "tools")):
    from gntkit.tools.host_heap import tune_host_malloc  # the stage layout: the CLI tunes, so this run does
    options = {"host_malloc": tune_host_malloc()}
else:  # before: every run_training call tuned malloc itself
    options = {}
shutil.rmtree(out, ignore_errors=True)
start = time.perf_counter()
training.train(folder, out, framework=framework, model="cnn3", epochs=1, quiet=True, val_split="none", **options)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds}))
"""


def _run(code_root: Path, script: str, *args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, cwd=code_root,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_ab: a timed run in {code_root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed_run(code_root: Path, src: str, out: Path, to: str, split: str | None = None) -> dict:
    return _run(code_root, TIMED, src, out, to, *([split] if split else []))


def _convert_rows(args, corpus, work, old_root) -> dict:
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
                results.setdefault((f"convert {to}", label), []).append(run)
    return results


def _shards(root: Path, src, out: Path, split: str | None = None) -> Path:
    """HDF5 shards of a corpus, written once by `root`'s code."""
    if not (out / "charset.txt").is_file():
        timed_run(root, str(src), out, "hdf5", split)
    return out


def _loader_rows(args, corpus, work, old_root) -> dict:
    results = {}
    folder = _shards(old_root, corpus["folder"], work / "ab-loaders-hdf5")
    for workers in (0, 2):
        for root in (old_root, ROOT):  # untimed: numba cache and page cache
            _run(root, TIMED_LOADER, folder, workers)
        for _ in range(args.rounds):
            for label, root in ((args.ref, old_root), ("this tree", ROOT)):
                results.setdefault((f"loader, {workers} workers", label), []).append(_run(root, TIMED_LOADER, folder, workers))
    return results


def _train_rows(args, work, old_root) -> dict:
    results = {}
    small = make_corpus(str(work / "ab-train-corpus"), records=args.train_records, writers=8, zip_too=False)
    folder = _shards(old_root, small["folder"], work / "ab-train-hdf5", "train=0-999999")
    for framework in ("torch", "tf"):
        for _ in range(args.rounds):
            for label, root in ((args.ref, old_root), ("this tree", ROOT)):
                run = _run(root, TIMED_TRAIN, folder, work / f"ab-run-{framework}", framework)
                results.setdefault((f"train cnn3, {framework}", label), []).append(run)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the earlier commit to compare with")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--formats", default="tfrecord,hdf5")
    parser.add_argument("--what", default="convert", help="comma-separated: convert, loaders, train")
    parser.add_argument("--train-records", type=int, default=6000, help="records the training rows train on")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    corpus = make_corpus(args.workdir, records=args.records, writers=args.writers, zip_too=False)
    work = Path(args.workdir)
    what = args.what.split(",")
    with tempfile.TemporaryDirectory(prefix="gntkit-ab-") as tmp:
        old_root = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_root), args.ref], cwd=ROOT, check=True)
        try:
            results = {}
            if "convert" in what:
                results.update(_convert_rows(args, corpus, work, old_root))
            if "loaders" in what:
                results.update(_loader_rows(args, corpus, work, old_root))
            if "train" in what:
                results.update(_train_rows(args, work, old_root))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_root)], cwd=ROOT, check=True)
    _print_table(args, corpus, results)


def _print_table(args, corpus, results) -> None:
    print(f"corpus: {corpus['records']:,} records, {corpus['bytes'] / 1e6:,.0f} MB in {args.writers} files; "
          f"runs alternated, {args.rounds} each; baseline: {args.ref}")
    print(f"| {'what':<24} | {'code':<10} | {'seconds (each run)':<22} | {'median s':>8} "
          f"| {'this tree / baseline':>20} | {'same shards':>11} |")
    print(f"|{'-' * 26}|{'-' * 12}|{'-' * 24}|{'-' * 10}|{'-' * 22}|{'-' * 13}|")
    for what in dict.fromkeys(key for key, _ in results):
        old = results[(what, args.ref)]
        base = statistics.median(r["seconds"] for r in old)
        for label in (args.ref, "this tree"):
            runs = results[(what, label)]
            median = statistics.median(r["seconds"] for r in runs)
            same = "" if "shards" not in runs[0] else ("yes" if all(r["shards"] == old[0]["shards"] for r in runs) else "NO")
            seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            print(f"| {what:<24} | {label:<10} | {seconds:<22} | {median:>8.2f} | {median / base:>19.2f}x | {same:>11} |")


if __name__ == "__main__":
    main()
