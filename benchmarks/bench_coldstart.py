"""Cold start: seconds of the first `gntkit` command with an empty numba cache, and compile time per kernel.

Every cold run is a fresh process with NUMBA_CACHE_DIR pointing at a new empty folder (so
nothing is loaded from any cache); the warm run repeats the command with the cache that
run left. Two code trees run side by side, in the same run:

- baseline: this working tree with the kernel files of BASELINE_REV (before the compile-time
  work: a parallel=True preprocessing kernel, read-only and writeable specialisations,
  slice-assignment copies), everything else identical, in one process (GNTKIT_COMPILE_AHEAD=0);
- one-process: this working tree with GNTKIT_COMPILE_AHEAD=0 (every kernel compiled by the
  command itself, one after another);
- current: this working tree as users run it (gntkit.tools.compile_ahead's helper process compiles
  the preprocessing kernels beside the command).
With --repeat N every row runs N times, the trees alternating, and the table shows the median
(and the range) of the cold wall seconds.

Timing is the wall clock of the whole command and the CPU seconds (user + system) of its
process, since this 2-core machine is shared: CPU seconds move less with the load.

Usage: python benchmarks/bench_coldstart.py [--records 3750] [--formats tfrecord hdf5 webdataset]
       [--kernels 25] [--baseline-rev REV] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

# The commit before the compile-time work, and the kernel files that work changed (gntkit/jit.py
# stays current: other kernels now import its parallel_ranges; its njit is unchanged).
BASELINE_REV = "2ae6cf6"
BASELINE_FILES = ("gntkit/kernels/gnt.py", "gntkit/kernels/preprocess.py")

# Run inside a benchmark child: record, per kernel and signature, the CPU seconds numba spent
# compiling it (its callees' compiles subtracted) and the part of them inside LLVM.
PROBE = r"""
import sys, time, json
from numba.core import event
clock = time.process_time
stack, rows, llvm = [], {}, {"depth": 0, "start": 0.0}
class Compile(event.Listener):
    def on_start(self, ev):
        stack.append([ev.data["dispatcher"], ev.data["args"], clock(), 0.0, 0.0])
    def on_end(self, ev):
        dispatcher, args, start, child, in_llvm = stack.pop()
        spent = clock() - start
        func = dispatcher.py_func
        key = f"{func.__module__}.{func.__qualname__}"
        if key.startswith("gntkit"):
            row = rows.setdefault(key, [0.0, 0.0, 0])
            row[0] += spent - child; row[1] += in_llvm; row[2] += 1
        elif stack:  # numba's own helpers count for the gntkit kernel that needed them
            stack[-1][3] -= spent - child
            stack[-1][4] += in_llvm
        if stack:
            stack[-1][3] += spent
class Llvm(event.Listener):
    def on_start(self, ev):
        if llvm["depth"] == 0: llvm["start"] = clock()
        llvm["depth"] += 1
    def on_end(self, ev):
        llvm["depth"] -= 1
        if llvm["depth"] == 0 and stack: stack[-1][4] += clock() - llvm["start"]
event.register("numba:compile", Compile())
event.register("numba:llvm_lock", Llvm())
from gntkit.cli.main import app
try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(rows, f)
"""


def build_baseline(folder: Path, rev: str) -> Path:
    """A copy of gntkit/ (with cli/ as gntkit/cli) whose kernel files come from rev."""
    tree = folder / "baseline"
    shutil.copytree(REPO / "gntkit", tree / "gntkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "cli", tree / "gntkit" / "cli", ignore=shutil.ignore_patterns("__pycache__"))
    for name in BASELINE_FILES:
        text = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
        (tree / name).write_text(text)
    return tree


def build_current(folder: Path) -> Path:
    """The working tree laid out as installed (cli/ as gntkit/cli), so both trees import alike."""
    tree = folder / "current"
    shutil.copytree(REPO / "gntkit", tree / "gntkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "cli", tree / "gntkit" / "cli", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def run(tree: Path, args: list[str], cache: Path, probe_out: Path | None = None, helper: bool = False) -> dict:
    """One command in a fresh process; wall and CPU seconds, and whether it printed the compile notice."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": str(cache), "GNTKIT_COMPILE_AHEAD": "1" if helper else "0"}
    if probe_out is None:
        command = [sys.executable, "-c", "import sys; from gntkit.cli.main import app; app(sys.argv[1:])", *args]
    else:
        command = [sys.executable, "-c", PROBE, str(probe_out), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=cache.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}) in {tree}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "notice": "compiling numba kernels" in done.stderr}


def commands(source: Path, out: Path, formats: list[str]) -> list[tuple[str, list[str]]]:
    rows = [(f"convert --to {fmt}", ["convert", str(source), "--to", fmt, "--out", str(out / fmt), "--overwrite", "--quiet"])
            for fmt in formats]
    rows.append(("inspect", ["inspect", str(source), "--quiet"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3750, help="records in the one writer file (a HWDB1.1 writer has about 3,750)")
    parser.add_argument("--formats", nargs="+", default=["tfrecord", "hdf5", "webdataset"])
    parser.add_argument("--kernels", type=int, default=25, help="kernels listed in the per-kernel table")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--repeat", type=int, default=1, help="cold runs per row (median shown)")
    args = parser.parse_args()

    from corpus import make_corpus

    with tempfile.TemporaryDirectory(prefix="gntkit-coldstart-") as tmp:
        tmp = Path(tmp)
        corpus = make_corpus(tmp / "corpus", records=args.records, writers=1, zip_too=False)
        source = Path(corpus["folder"])
        trees = {"baseline": build_baseline(tmp, args.baseline_rev), "current": build_current(tmp)}
        variants = [("baseline", trees["baseline"], False), ("one-process", trees["current"], False),
                    ("current", trees["current"], True)]
        print(f"one writer file: {corpus['records']:,} records, {corpus['bytes'] / 1e6:.1f} MB; "
              f"baseline = kernel files of {args.baseline_rev}; load average {os.getloadavg()[0]:.1f} at start; "
              f"{args.repeat} cold run(s) per row")
        print(f"{'command':<22} {'tree':<12} {'cold wall s':>11} {'(range)':>11} {'cold CPU s':>10} {'warm wall s':>11} "
              f"{'warm CPU s':>10}  notice cold/warm")
        for label, command in commands(source, tmp / "out", args.formats):
            results = {name: [] for name, _, _ in variants}
            for _ in range(args.repeat):
                for name, tree, helper in variants:
                    cache = Path(tempfile.mkdtemp(prefix=f"numba-{name}-", dir=tmp))
                    cold = run(tree, command, cache, helper=helper)
                    warm = run(tree, command, cache, helper=helper)
                    results[name].append((cold, warm))
                    shutil.rmtree(cache, ignore_errors=True)
            for name, _, _ in variants:
                runs = results[name]
                walls = sorted(c["wall"] for c, _ in runs)
                cold, warm = sorted(runs, key=lambda r: r[0]["wall"])[len(runs) // 2]  # the median run
                print(f"{label:<22} {name:<12} {cold['wall']:>11.1f} {f'{walls[0]:.1f}-{walls[-1]:.1f}':>11} {cold['cpu']:>10.1f} "
                      f"{warm['wall']:>11.1f} {warm['cpu']:>10.1f}  "
                      f"{'yes' if cold['notice'] else 'no'}/{'yes' if warm['notice'] else 'no'}", flush=True)
        per_kernel_table(trees, source, tmp, args.formats[0], args.kernels)
        print(f"load average {os.getloadavg()[0]:.1f} at end")


def per_kernel_table(trees: dict, source: Path, tmp: Path, fmt: str, limit: int) -> None:
    """Compile CPU seconds per kernel (all its signatures) for one cold convert, both trees."""
    import json

    results = {}
    for name, tree in trees.items():
        cache = Path(tempfile.mkdtemp(prefix=f"numba-probe-{name}-", dir=tmp))
        probe_out = tmp / f"probe-{name}.json"
        run(tree, ["convert", str(source), "--to", fmt, "--out", str(tmp / f"probe-{name}"), "--overwrite", "--quiet"], cache, probe_out)
        results[name] = json.loads(probe_out.read_text())
    keys = sorted(set(results["baseline"]) | set(results["current"]),
                  key=lambda k: -max(results["baseline"].get(k, [0])[0], results["current"].get(k, [0])[0]))
    print(f"\ncompile CPU seconds per kernel, cold `convert --to {fmt}` (own time: callees' compiles subtracted; "
          "numba's helpers counted in the kernel that needed them; sigs: signatures compiled)")
    print(f"{'kernel':<52} {'baseline s':>10} {'(LLVM)':>7} {'sigs':>4} {'current s':>10} {'(LLVM)':>7} {'sigs':>4}")
    for key in keys[:limit]:
        cells = []
        for name in ("baseline", "current"):
            own, llvm, sigs = results[name].get(key, [0.0, 0.0, 0])
            cells.append(f"{own:>10.2f} {llvm:>7.2f} {sigs:>4}" if sigs else f"{'-':>10} {'':>7} {'':>4}")
        print(f"{key.removeprefix('gntkit.'):<52} {cells[0]} {cells[1]}")
    for name in ("baseline", "current"):
        rows = results[name].values()
        print(f"{name}: {sum(r[0] for r in rows):.1f} compile CPU-s ({sum(r[1] for r in rows):.1f} in LLVM) "
              f"over {sum(r[2] for r in rows)} signatures of {len(results[name])} kernels")


if __name__ == "__main__":
    main()
