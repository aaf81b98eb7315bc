"""Benchmark: top-1 accuracy on unseen writers, and the train/test gap, of gntkit's registry models in
both frameworks, trained with `gntkit train`'s defaults on a writer-disjoint synthetic corpus.

    python benchmarks/bench_accuracy.py                              # the default table (~15 min on 2 cores)
    python benchmarks/bench_accuracy.py --epochs 2 --models cnn3     # a quick check
    python benchmarks/bench_accuracy.py --precisions auto,fp32,bf16  # each model at each precision
    python benchmarks/bench_accuracy.py --models cnn3,hccr-compact:4 --frameworks torch --work /tmp/acc

What one run does, through gntkit's public paths only:

1. Corpus: `gntkit.tools.synth.write_corpus` writes GNT files for `--train-writers` + `--test-writers`
   writers (ids from 1001; character-like glyphs composed from radicals, each writer with a style of
   their own), `--classes` GB2312 classes, `--samples` samples of each class per writer.
2. Shards: `gntkit.shards.convert.convert(..., to="hdf5", charset="data", split="train=1001-1040,test=1041-1052")`
   puts the test writers in "test" only: no test writer's glyph is ever trained on.
3. Per model and framework, in its own process (torch and TensorFlow never share one):
   `gntkit.training.train(shards, run, framework=F, model=M, epochs=E, val_split="none", quiet=True)`;
   every other option is `gntkit train`'s default (AdamW, cosine, label smoothing, weight decay,
   augmentation, seed 0, precision auto, batch 128). `val_split="none"` because the default "auto"
   would validate (and pick the "best" checkpoint) on the test writers when there is no "val"
   split; here the test writers are never used for model selection: the LAST checkpoint is scored.
4. `gntkit.training.evaluate(run, shards, split=..., checkpoint="last")` on "test" (unseen writers)
   and on "train" (the training writers' own glyphs, no augmentation); gap = train - test, in points.

Baseline (same run, same shards): nearest class mean on the raw 64 x 64 pixels (numpy), the
simplest classifier of the same images. images/s is the training rate the trainer records per epoch
(metrics.csv), averaged over the epochs after the first (the first includes warm-up and tracing);
seconds is the wall time of the train call.

Models: the default list is the small digit CNNs (cnn2, cnn2-tutorial, cnn3) and hccr-compact (the
compact HCCR network, Melnyk et al. 2020), which fit a 2-core CPU's budget. VGG16/VGG19 (and their
_bn variants, vgg11 and vgg16-transfer) are left out by default: too slow on 2 CPU cores. At 64 x 64
VGG19 does about 1.6 G multiply-adds per image (hccr-compact: 0.53 G, the slowest default row) and
has 45 M parameters at 30 classes (hccr-compact: 4.8 M); both frameworks together would take most of
an hour for this table alone (an estimate from the arithmetic, not a measurement). Name them in
--models to include them anyway. `--models NAME:EPOCHS` gives one model its own epoch count (the
epochs column says what each row had). The default table (4 models x 2 frameworks, 10 epochs each)
took 17-19 minutes here with other jobs on the 2 cores (load average 1.4-3.0), about 14 by the rates
measured with less load; hccr-compact is most of it (about 100 images/s in torch and 60-75 in
TensorFlow at 64 x 64). The script prints its estimate before the runs start.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from child import print_result, run_child

FRAMEWORKS = ("torch", "tf")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_MODELS = "cnn2,cnn2-tutorial,cnn3,hccr-compact"
# Training images/s of `gntkit train` measured on the 2-core AMD EPYC (AVX-512 BF16) this benchmark
# was written on, 64 x 64, defaults; only used to print the time estimate before the runs start.
RATE_GUESS = {("cnn2", "torch"): 2100, ("cnn2", "tf"): 1750, ("cnn2-tutorial", "torch"): 5100,
              ("cnn2-tutorial", "tf"): 5500, ("cnn3", "torch"): 630, ("cnn3", "tf"): 900,
              ("hccr-compact", "torch"): 100, ("hccr-compact", "tf"): 58}


def parse_models(text: str, default_epochs: int) -> list[tuple[str, int]]:
    """Parse "cnn3,hccr-compact:4" into [(name, epochs)]; a name without ":E" gets `default_epochs`.

    Raises:
        SystemExit: an unknown model name or a bad epoch count (one sentence).
    """
    from gntkit.models.configs import model_names

    models = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, epochs = item.partition(":")
        if name not in model_names():
            raise SystemExit(f"--models: unknown model {name!r}; expected one of {', '.join(model_names())}.")
        if epochs and (not epochs.isdigit() or int(epochs) < 1):
            raise SystemExit(f"--models: epochs after {name}: must be a positive integer, found {epochs!r}.")
        models.append((name, int(epochs) if epochs else default_epochs))
    if not models:
        raise SystemExit(f"--models: expected at least one model name, found {text!r}.")
    return models


def corpus_settings(args) -> dict:
    """The settings that determine the corpus and its shards (a cached corpus is reused only if equal)."""
    first_test = 1001 + args.train_writers
    return {"train_writers": args.train_writers, "test_writers": args.test_writers, "classes": args.classes,
            "samples": args.samples, "seed": args.seed, "size": args.size,
            "split": f"train=1001-{first_test - 1},test={first_test}-{first_test + args.test_writers - 1}"}


def build_corpus(work: Path, settings: dict) -> tuple[Path, dict, float]:
    """Write the synthetic GNT corpus and convert it to HDF5 shards (reused when `settings` match).

    Returns:
        (shard folder, its manifest, seconds spent: 0 when reused).
    """
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    shards = work / "shards"
    stamp = work / "corpus.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings and (shards / "gntkit.json").is_file():
        return shards, json.loads((shards / "gntkit.json").read_text()), 0.0
    start = time.perf_counter()
    gnt = work / "gnt"
    if gnt.exists():
        for old in gnt.iterdir():
            old.unlink()
    write_corpus(gnt, writers=settings["train_writers"] + settings["test_writers"], first_writer=1001,
                 num_classes=settings["classes"], samples_per_class=settings["samples"], style="c",
                 seed=settings["seed"])
    manifest = convert(gnt, shards, to="hdf5", split=settings["split"], charset="data",
                       preprocess={"size": settings["size"]}, overwrite=True, hash_sources=False)
    stamp.write_text(json.dumps(settings))
    return shards, manifest, time.perf_counter() - start


def check_disjoint(manifest: dict) -> tuple[list[str], list[str]]:
    """The train and test writers of the shards; exits if they share a writer or a split is missing."""
    splits = manifest["splits"]
    if "train" not in splits or "test" not in splits:
        raise SystemExit(f"the shards have splits {sorted(splits)}; expected train and test.")
    train, test = splits["train"]["writers"], splits["test"]["writers"]
    shared = sorted(set(train) & set(test))
    if shared:
        raise SystemExit(f"writers {shared} are in both train and test: the corpus is not writer-disjoint.")
    return train, test


def baseline_nearest_mean(shards: Path) -> dict:
    """Nearest class mean on the raw pixels (float32, numpy): train and unseen-writer top-1."""
    import numpy as np

    import gntkit.datasets as datasets

    start = time.perf_counter()
    x_train, y_train = datasets.open(shards, "train").read_arrays()
    x_test, y_test = datasets.open(shards, "test").read_arrays()
    flat = x_train.reshape(len(x_train), -1).astype(np.float32) / 255
    classes = int(max(y_train.max(), y_test.max())) + 1
    means = np.stack([flat[y_train == c].mean(axis=0) for c in range(classes)])

    def top1(x, y):
        v = x.reshape(len(x), -1).astype(np.float32) / 255
        distances = (v * v).sum(1)[:, None] - 2 * v @ means.T + (means * means).sum(1)[None, :]
        return float((distances.argmin(1) == y).mean())

    return {"train_top1": top1(x_train, y_train), "test_top1": top1(x_test, y_test),
            "seconds": time.perf_counter() - start}


def run_one(shards: Path, run_dir: Path, model: str, framework: str, epochs: int, precision: str = "auto") -> dict:
    """Train one model with `gntkit train`'s defaults (no validation split) at `precision`, score the last checkpoint.

    Returns:
        parameters, precision, seconds (train call), images_per_second (mean after epoch 1),
        train_top1 and test_top1 (gntkit evaluate on the "train" and "test" splits).
    """
    import gntkit.training as training

    start = time.perf_counter()
    # "none", not None: train() treats an option given as None as left out, and val_split's default
    # "auto" would then validate on the test writers (metrics.csv and the "best" checkpoint).
    summary = training.train(shards, run_dir, framework=framework, model=model, epochs=epochs, val_split="none",
                             precision=precision, quiet=True, overwrite=True)
    seconds = time.perf_counter() - start
    from gntkit.training.metrics import read_metrics

    rows = read_metrics(summary["metrics_file"])
    timed = rows[1:] or rows
    rate = sum(r["images_per_second"] for r in timed) / len(timed)
    test = training.evaluate(run_dir, shards, split="test", checkpoint="last", write=True)
    train = training.evaluate(run_dir, shards, split="train", checkpoint="last", write=False)
    info = json.loads((run_dir / "run.json").read_text())
    if info["data"]["val_split"] is not None:
        raise SystemExit(f"{run_dir}: the run validated on split {info['data']['val_split']!r}; expected none.")
    return {"parameters": summary["parameters"], "precision": info["precision"], "epochs": summary["epochs_completed"],
            "seconds": seconds, "images_per_second": rate, "train_top1": train["top1_accuracy"],
            "test_top1": test["top1_accuracy"], "last_train_accuracy_augmented": rows[-1]["train_accuracy"]}


def measure(shards: Path, work: Path, model: str, framework: str, epochs: int, precision: str) -> dict:
    """`run_one` in a fresh process (torch and TensorFlow never share one); returns its result dict."""
    run_dir = work / "runs" / f"{model}-{framework}-{precision}"
    cmd = [sys.executable, __file__, "--one", f"{model}:{framework}:{epochs}:{precision}", "--shards", str(shards),
           "--run-dir", str(run_dir)]
    return run_child(cmd, f"{model} ({framework}, {precision})")


def estimate_seconds(models, frameworks, train_images: int) -> float | None:
    """Rough wall time of the training runs from RATE_GUESS (None if a model has no guess)."""
    total = 0.0
    for model, epochs in models:
        for framework in frameworks:
            rate = RATE_GUESS.get((model, framework))
            if rate is None:
                return None
            total += train_images * epochs / rate + 12  # start-up, tracing, two evaluations (measured)
    return total


def row(name, framework, precision, params, epochs, train, test, rate, seconds) -> str:
    """One markdown table row; accuracies as fractions, the gap in percentage points."""
    gap = 100 * (train - test)
    return (f"| {name} | {framework} | {precision} | {params} | {epochs} | {100 * train:.1f}% | {100 * test:.1f}% | "
            f"{gap:+.1f} | {rate} | {seconds:.0f} |")


def print_header(args, settings, manifest, train_writers, test_writers, corpus_seconds, models) -> None:
    """The command, the corpus and the estimate, before the table."""
    splits = manifest["splits"]
    n_train, n_test = splits["train"]["num_records"], splits["test"]["num_records"]
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"cpu: {os.cpu_count()} cores; load average {args.load_start:.2f} at the start")
    print(f"corpus: gntkit synth (seed {settings['seed']}), {settings['classes']} GB2312 classes, "
          f"{settings['samples']} samples per class per writer; train writers {train_writers[0]}-{train_writers[-1]} "
          f"({len(train_writers)}, {n_train} images), unseen test writers {test_writers[0]}-{test_writers[-1]} "
          f"({len(test_writers)}, {n_test} images); HDF5 shards at {settings['size']}x{settings['size']}, "
          f"split {settings['split']}, charset data"
          + (f"; built in {corpus_seconds:.0f} s" if corpus_seconds else "; reused from the work folder"))
    print(f"chance: {100 / settings['classes']:.1f}%")
    guess = estimate_seconds(models, args.frameworks, n_train)
    guess = None if guess is None else guess * len(args.precisions)
    print("estimate: " + (f"about {guess / 60:.0f} minutes of training runs" if guess is not None
                          else "unknown (a model without a measured rate)"), flush=True)


def run_table(args) -> None:
    """Build the corpus, train every model in every framework, print the one markdown table."""
    import tempfile

    models = parse_models(args.models, args.epochs)
    load_start = args.load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        settings = corpus_settings(args)
        shards, manifest, corpus_seconds = build_corpus(work, settings)
        train_writers, test_writers = check_disjoint(manifest)
        print_header(args, settings, manifest, train_writers, test_writers, corpus_seconds, models)
        base = baseline_nearest_mean(shards)
        lines = [row("nearest class mean (baseline)", "numpy", "fp32", "-", "-", base["train_top1"], base["test_top1"],
                     "-", base["seconds"])]
        started = time.perf_counter()
        for model, epochs in models:
            for framework, precision in ((f, p) for f in args.frameworks for p in args.precisions):
                r = measure(shards, work, model, framework, epochs, precision)
                shown = f"{precision} ({r['precision']})" if precision == "auto" else r["precision"]
                lines.append(row(model, framework, shown, f"{r['parameters']:,}", r["epochs"], r["train_top1"],
                                 r["test_top1"], f"{r['images_per_second']:.0f}", r["seconds"]))
                print(f"[{time.perf_counter() - started:.0f} s] {lines[-1]}", file=sys.stderr, flush=True)
    print()
    print("| model | framework | precision | params | epochs | train top-1 | unseen-writer top-1 | gap (points) "
          "| images/s | seconds |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    print()
    print(f"load average: {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
          f"{time.perf_counter() - started:.0f} s of training runs")


def main(argv=None) -> None:
    """Parse the options; run the table, or (--one, internal) one model in this process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated registry names, NAME:EPOCHS for a model's own epochs (default {DEFAULT_MODELS})")
    parser.add_argument("--frameworks", default="torch,tf", help="comma-separated: torch, tf")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto, fp32, bf16; every model and "
                                                               "framework is trained at each (default auto)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of a model named without :EPOCHS")
    parser.add_argument("--train-writers", type=int, default=40)
    parser.add_argument("--test-writers", type=int, default=12)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--samples", type=int, default=2, help="samples of each class per writer")
    parser.add_argument("--size", type=int, default=64, help="image side of the shards")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (training uses gntkit's default seed 0)")
    parser.add_argument("--work", default=None, help="keep the corpus, shards and runs here (reused if the corpus "
                                                     "settings match); default a temporary folder")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--shards", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        model, framework, epochs, precision = args.one.split(":")
        print_result(run_one(Path(args.shards), Path(args.run_dir), model, framework, int(epochs), precision))
        return
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    if not args.frameworks or any(f not in FRAMEWORKS for f in args.frameworks):
        raise SystemExit(f"--frameworks: expected torch and/or tf, found {','.join(args.frameworks)!r}.")
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not args.precisions or any(p not in PRECISIONS for p in args.precisions):
        raise SystemExit(f"--precisions: expected auto, fp32 and/or bf16, found {','.join(args.precisions)!r}.")
    for name in ("epochs", "train_writers", "test_writers", "classes", "samples", "size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, found {getattr(args, name)}.")
    run_table(args)


if __name__ == "__main__":
    main()
