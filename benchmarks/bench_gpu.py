"""Benchmark: the torch trainer's step on one GPU, fed three ways, beside its upper bound in the same run.

For VGG19 and hccr-compact (3,755 classes) at 64 x 64 and 96 x 96, in bf16 and fp16, it runs
gntkit's own training step (gntkit.training.torch_trainer.TorchSteps: AdamW, label smoothing,
decoupled weight decay, augmentation on, channels-last, as `gntkit train` runs it) and
reports images/s and the time of one step for each input:

  in-device   the upper bound (baseline): one batch made on the GPU once and fed to every step,
              so no input work at all
  gpu         `--loader gpu`: gntkit.datasets.torch.GpuResidentLoader (the split as uint8 in GPU
              memory, batches by index_select)
  host        `--loader host` (the default): gntkit.datasets.torch.make_loader with pinned memory
              and persistent workers, copied one batch ahead by DevicePrefetcher

"of in-device" divides a row's images/s by the in-device row's of the same network, size and
precision: what the input path costs the step. The shards are synthetic glyphs converted by
gntkit at each size (or --data DIR with gntkit shards of that size, e.g. HWDB1.1).

    python benchmarks/bench_gpu.py                                    # the full table
    python benchmarks/bench_gpu.py --models vgg19 --sizes 64 --precisions bf16 --steps 100

On a machine without a CUDA GPU it says so in one sentence and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

INPUTS = ("in-device", "gpu", "host")


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg19,hccr-compact")
    parser.add_argument("--sizes", default="64,96")
    parser.add_argument("--precisions", default="bf16,fp16")
    parser.add_argument("--inputs", default=",".join(INPUTS))
    parser.add_argument("--batch", type=int, default=128, help="batch per GPU")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (cuDNN picks its algorithms)")
    parser.add_argument("--classes", type=int, default=3755)
    parser.add_argument("--workers", type=int, default=6, help="DataLoader workers of the host loader")
    parser.add_argument("--samples", type=int, default=20000, help="synthetic samples (without --data)")
    parser.add_argument("--data", default=None, help="gntkit shards, a folder per size: DIR with {size} in it")
    return parser.parse_args()


def _synthetic_shards(root: Path, size: int, samples: int) -> Path:
    """Shards of synthetic glyphs at `size` (500 classes), converted by gntkit."""
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    corpus = root / "gnt"
    if not corpus.exists():
        per_writer = 500 * 4
        write_corpus(corpus, writers=max(1, -(-samples // per_writer)), num_classes=500, samples_per_class=4, seed=0)
    out = root / f"shards{size}"
    convert([corpus], out, to="tfrecord", split="all", charset="data", preprocess=Preprocess(size=size))
    return out


def _step_runner(name: str, size: int, precision: str, classes: int):
    """gntkit's TorchSteps for the network on this GPU, as `gntkit train` builds them."""
    import torch

    from gntkit.models import torch as models_torch
    from gntkit.training.config import TrainConfig
    from gntkit.training.torch_trainer import TorchSteps, build_optimizer, precision_setup

    device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    config = TrainConfig(model=name, precision=precision)
    model = models_torch.create_model(name, classes, size).to(device).to(memory_format=torch.channels_last)
    autocast_dtype, scaler, _ = precision_setup(precision, device)
    steps = TorchSteps(model, build_optimizer(model, config), config, device, autocast_dtype, scaler, True)
    steps.begin_epoch(0)
    return steps, device


def _batches(kind: str, data: Path, batch: int, device, workers: int):
    """An endless iterator of (uint8 images, int64 labels) batches for one input path (the split: "train" or the only one)."""
    import torch

    from gntkit.datasets import torch as datasets_torch

    if kind == "in-device":
        loader = datasets_torch.GpuResidentLoader(data, None, batch, device=device)
        images, labels = next(iter(loader))
        while True:
            yield images, labels
    if kind == "gpu":
        loader = datasets_torch.GpuResidentLoader(data, None, batch, device=device, drop_last=True)
    else:
        loader = datasets_torch.DevicePrefetcher(datasets_torch.make_loader(
            data, None, batch, num_workers=workers, drop_last=True, pin_memory=True), device)
    while True:
        yield from loader
        torch.cuda.current_stream(device).synchronize()  # an epoch boundary, as in training


def _measure(steps, batches, count: int, warmup: int) -> tuple[float, float]:
    """(images/s, ms per step) over `count` timed steps after `warmup` untimed ones."""
    import torch

    for i in range(warmup):
        images, labels = next(batches)
        steps.train_step(images, labels, 1e-4, i)
    torch.cuda.synchronize()
    started, seen = time.perf_counter(), 0
    for i in range(count):
        images, labels = next(batches)
        steps.train_step(images, labels, 1e-4, warmup + i)
        seen += int(labels.shape[0])
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seen / seconds, 1000 * seconds / count


def main() -> int:
    """Measure every (network, size, precision, input) row and print the table."""
    args = _arguments()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu.py measures training on a CUDA GPU and this machine has none visible, so there is nothing to measure.")
        return 0
    from gntkit.tools.host_heap import tune_host_malloc

    tune_host_malloc()
    name = torch.cuda.get_device_name()
    print(f"{name}, torch {torch.__version__}, batch {args.batch}, {args.steps} timed steps after {args.warmup}")
    print()
    print("| network, image | precision | input | images/s | ms per step | of in-device |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        for size in (int(s) for s in args.sizes.split(",")):
            data = Path(args.data.format(size=size)) if args.data else _synthetic_shards(Path(scratch), size, args.samples)
            for model in args.models.split(","):
                for precision in args.precisions.split(","):
                    _rows(args, data, model, size, precision)
    return 0


def _rows(args, data: Path, model: str, size: int, precision: str) -> None:
    """The table rows of one network, size and precision (every input, the upper bound first)."""
    import torch

    upper = None
    for kind in args.inputs.split(","):
        steps, device = _step_runner(model, size, precision, args.classes)
        rate, ms = _measure(steps, _batches(kind, data, args.batch, device, args.workers), args.steps, args.warmup)
        upper = rate if kind == "in-device" else upper
        share = f"{rate / upper:.0%}" if upper else "-"
        label = "baseline: in-device" if kind == "in-device" else kind
        print(f"| {model}, {size} | {precision} | {label} | {rate:,.0f} | {ms:.2f} | {share} |", flush=True)
        del steps
        gc.collect()
        torch.cuda.empty_cache()  # the next row builds its own model and optimizer


if __name__ == "__main__":
    sys.exit(main())
