"""Benchmark: where a plain TensorFlow training step spends its time, fp32 beside bf16, per op.

    python benchmarks/bench_tf_ops.py --model cnn3 --size 64 --batch 64 --steps 20

Runs bench_train's plain TF step (`plain_tf_step`: GradientTape, AdamW, gntkit's model) under TensorFlow's
profiler, once in fp32 (the baseline) and once under keras' mixed_bfloat16 policy, each in its
own process, and prints every op's self time per step in both and the ratio: which kernels bf16
speeds up on this CPU and which it does not. IDLE is time TensorFlow's threads waited: it has
more threads than a 2-core machine has cores, so IDLE is not core time left unused.

Reads the profile with TensorFlow's own converter (`xspace_to_tools_data`, "framework_op_stats"),
a private module of the TF wheel: if a TF release moves it, this script says so and stops.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_train import plain_tf_step  # noqa: E402
from child import print_result, run_child  # noqa: E402


def profile(args) -> dict:
    """Child: profile `args.steps` steps; return {op name: self microseconds per step}."""
    import tensorflow as tf

    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError as error:
        raise SystemExit(f"This TensorFlow has no profile converter ({error}); bench_tf_ops cannot run.") from None
    step = plain_tf_step(args, "mixed_bfloat16" if args.precision == "bf16" else None)
    for _ in range(3):
        step().numpy()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(args.steps):
            loss = step()
        loss.numpy()
        tf.profiler.experimental.stop()
        files = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
        data, _ = plugin.xspace_to_tools_data(files, "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    column = {c["id"]: i for i, c in enumerate(table["cols"])}
    per_op: dict[str, float] = {}
    for row in table["rows"]:
        cells = [c.get("v") if isinstance(c, dict) else c for c in row["c"]]
        if cells[column["host_or_device"]] != "Host":
            continue
        name = f"{cells[column['type']]}  {cells[column['operation']]}"
        per_op[name] = per_op.get(name, 0.0) + cells[column["total_self_time"]] / args.steps
    return {"per_op": per_op}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn3")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=3755)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=15, help="ops shown, by fp32 time")
    parser.add_argument("--pool-order", default="textbook", choices=["textbook", "gntkit"],
                        help="ReLU before each max pool (textbook, bench_train's plain-tf) or after it (gntkit's models)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.precision:  # child process
        print_result(profile(args))
        return
    times = {}
    for precision in ("fp32", "bf16"):
        own = sys.argv[1:] if argv is None else list(argv)
        times[precision] = run_child([sys.executable, os.path.abspath(__file__), *own, "--precision", precision],
                                     f"{args.model} ({precision})")["per_op"]
    fp32, bf16 = times["fp32"], times["bf16"]
    print(f"# {args.model} at {args.size}, batch {args.batch}, {args.classes} classes, {args.steps} profiled "
          f"steps, {os.cpu_count()} CPUs; ms of thread time per step (self time, all of TF's threads)")
    print("| op | fp32 ms (baseline) | bf16 ms | fp32 / bf16 |")
    print("|---|---:|---:|---:|")
    for name in sorted(fp32, key=lambda n: -fp32[n])[:args.top]:
        b = bf16.get(name)
        ratio = f"{fp32[name] / b:.2f}x" if b else "-"
        print(f"| {name} | {fp32[name] / 1000:.2f} | {'-' if b is None else f'{b / 1000:.2f}'} | {ratio} |")
    total32 = sum(v for n, v in fp32.items() if not n.startswith("IDLE"))
    total16 = sum(v for n, v in bf16.items() if not n.startswith("IDLE"))
    print(f"| all ops but IDLE | {total32 / 1000:.2f} | {total16 / 1000:.2f} | {total32 / total16:.2f}x |")


if __name__ == "__main__":
    main()
