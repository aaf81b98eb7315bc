"""Benchmark: training throughput (images/s) of VGG19 (3,755 classes) at 64 x 64 and 96 x 96,
in PyTorch and TensorFlow, through gntkit's trainers, beside a named baseline in the same run.

CPU speed of `gntkit train` (its defaults: augmentation on, precision auto) beside a plain fp32
loop of the same network and batch, same run:

    python benchmarks/bench_train.py --model cnn3 --sizes 64 --batch 64 --steps 20 --repeat 3 \
        --pipelines plain-torch,train-torch,plain-tf,train-tf

  plain-torch    baseline: the textbook fp32 loop (AdamW) on float tensors already in memory
  train-torch    gntkit.training.train_arrays(framework="torch"): epoch 2's images/s from metrics.csv
  plain-tf       baseline: a plain fp32 tf.function step (GradientTape, AdamW) on tensors in memory
  train-tf       gntkit.training.train_arrays(framework="tf"), the same way
  plain-tf-bf16  not a baseline: plain-tf under keras' mixed_bfloat16 policy, what bf16 alone gives TF
  plain-tf-keras-bn  baseline for networks with batch norm: plain-tf with keras' own
                 BatchNormalization (what a keras user writes) instead of gntkit's fused layer
  plain-torch-bf16  not a baseline: plain-torch with bf16 autocast and channels-last (what
                 precision auto runs in torch), no augmentation

The plain-* loops leave glibc's malloc as it is, as a user's loop does; the train-* pipelines run
gntkit's trainer as `gntkit train` does, malloc tuned first (gntkit.tools.host_heap). The plain-* loops build the
network in the textbook order, each ReLU before its max pool, as a
tutorial writes it (gntkit's models pool first: gntkit.models.configs.feature_layers).
`--pool-order gntkit` builds them in gntkit's order instead; `--pool-order both` measures every
plain-* pipeline in both orders, same run, to show what that order gains:

    python benchmarks/bench_train.py --model cnn3 --sizes 64 --batch 64 --steps 40 --repeat 3 \
        --pipelines plain-torch,plain-torch-bf16,plain-tf,plain-tf-bf16 --pool-order both

On a CPU it first measures this CPU's matmul rate (torch, 2048 x 2048, fp32 and bf16) in the same
run, and each row shows its arithmetic rate (images/s x the network's multiply-accumulates per
training image) and that rate's share of the matmul rate of its precision: how much a row has
left to gain from any trainer.

Does bf16 keep the accuracy (cnn3 on synthetic glyphs, fp32 beside precision auto, both frameworks)?

    python benchmarks/bench_train.py --accuracy

Pipelines (each measured in its own process, on in-memory uint8 images, so the model and the
input path are measured, not the disk):

  gntkit-torch   gntkit.training.torch_trainer.train_one_epoch: uint8 batches go to the device and
                 become float there; SGD, cosine schedule set per step (the real trainer loop)
  naive-torch    baseline: a per-sample torch Dataset returning float32 tensors (x / 255), the
                 default DataLoader collate, the textbook loop (zero_grad, forward, backward, step)
  gntkit-tf      gntkit.training.tf_trainer.train_one_epoch: one compiled step under the strategy
  keras-fit      baseline: the classic tutorial, model.compile(...) + model.fit(float32 numpy, ...)

CPU mode (default when no GPU is present): small batches and few steps, fp32.
GPU mode (when CUDA / a TF GPU is present, or --device gpu): mixed precision (bf16 where the GPU
has it, else fp16), channels-last for torch, batch 256; also reports peak GPU memory, the time of
one HWDB1.1-sized epoch (897,758 samples) and, with --data DIR (gntkit shards at the same size),
the gntkit shard loader alone, to say whether the loader or the GPU limits an epoch.

    python benchmarks/bench_train.py                       # CPU: both frameworks, 64 and 96
    python benchmarks/bench_train.py --steps 20 --batch 256 --device gpu --data shards64/
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from child import print_result, run_child  # noqa: E402
from gntkit.models.configs import get_config, multiply_accumulates  # noqa: E402
from gntkit.tools.reference.textbook_order import textbook_layers  # noqa: E402

HWDB11_TRAIN = 897_758
PIPELINES = ("gntkit-torch", "naive-torch", "gntkit-tf", "keras-fit")


def _images(n, size, classes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)


def _torch_setup(args):
    import torch

    from gntkit.training import torch_trainer

    device = torch_trainer.resolve_device("cuda" if args.device == "gpu" else args.device)
    return torch, torch_trainer, device


def run_gntkit_torch(args) -> dict:
    torch, torch_trainer, device = _torch_setup(args)
    from gntkit.models.torch import create_model
    from gntkit.training.batches import ArrayBatches
    from gntkit.training.config import TrainConfig

    config = TrainConfig(framework="torch", model=args.model, epochs=1, batch_size=args.batch,
                         precision=args.precision, lr=0.001)
    model = create_model(args.model, args.classes, args.size).to(device)
    autocast, scaler, precision = torch_trainer.precision_setup(config.precision, device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch_trainer.build_optimizer(model, config)
    x, y = _images((args.warmup + args.steps) * args.batch, args.size, args.classes)
    warm = ArrayBatches(x[: args.warmup * args.batch], y[: args.warmup * args.batch], args.batch, shuffle=False)
    timed = ArrayBatches(x[args.warmup * args.batch:], y[args.warmup * args.batch:], args.batch, shuffle=False)
    kwargs = dict(steps_per_epoch=args.warmup + args.steps, device=device, autocast_dtype=autocast,
                  scaler=scaler, channels_last=channels_last)
    torch_trainer.train_one_epoch(model, warm, optimizer, config, epoch=0, **kwargs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = torch_trainer.train_one_epoch(model, timed, optimizer, config, epoch=0, **kwargs)
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"seconds": result["seconds"], "images": result["images"], "precision": precision,
            "device": str(device), "memory": memory}


def run_naive_torch(args) -> dict:
    torch, torch_trainer, device = _torch_setup(args)
    import numpy as np

    from gntkit.models.torch import create_model

    x, y = _images((args.warmup + args.steps) * args.batch, args.size, args.classes)

    class PerSample(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return torch.tensor(x[i], dtype=torch.float32).div(255).unsqueeze(0), int(y[i])

    model = create_model(args.model, args.classes, args.size).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loader = torch.utils.data.DataLoader(PerSample(), batch_size=args.batch, shuffle=False)
    model.train()
    start = None
    count = 0
    for step, (images, labels) in enumerate(loader):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            count += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del np
    return {"seconds": time.perf_counter() - start, "images": count, "precision": "fp32",
            "device": str(device), "memory": memory}


def _tf_peak_memory(tf):
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
    except (ValueError, RuntimeError):
        return None


def run_gntkit_tf(args) -> dict:
    from gntkit.models.tf import create_model
    from gntkit.training import tf_trainer
    from gntkit.training.batches import ArrayBatches
    from gntkit.training.config import TrainConfig

    tf = tf_trainer.tf
    placement = tf_trainer.make_strategy("gpu" if args.device == "gpu" else args.device)
    policy, precision = tf_trainer.precision_policy(args.precision, placement.on_gpu)
    config = TrainConfig(framework="tf", model=args.model, epochs=1, batch_size=args.batch,
                         precision=args.precision, lr=0.001)
    with placement.strategy.scope():
        model = create_model(args.model, args.classes, args.size, dtype_policy=policy)
        optimizer = tf_trainer.build_optimizer(config, loss_scale=precision == "fp16")
        optimizer.build(model.trainable_variables)
        steps = tf_trainer.Steps(model, optimizer, config, placement.strategy)
    x, y = _images((args.warmup + args.steps) * args.batch, args.size, args.classes)
    warm = ArrayBatches(x[: args.warmup * args.batch], y[: args.warmup * args.batch], args.batch, shuffle=False)
    timed = ArrayBatches(x[args.warmup * args.batch:], y[args.warmup * args.batch:], args.batch, shuffle=False)
    tf_trainer.train_one_epoch(steps, warm, config, epoch=0, steps_per_epoch=args.warmup + args.steps)
    if placement.on_gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    result = tf_trainer.train_one_epoch(steps, timed, config, epoch=0, steps_per_epoch=args.warmup + args.steps)
    return {"seconds": result["seconds"], "images": result["images"], "precision": precision,
            "device": placement.description, "memory": _tf_peak_memory(tf) if placement.on_gpu else None}


def run_keras_fit(args) -> dict:
    import tensorflow as tf

    from gntkit.models.tf import create_model

    keras = tf.keras
    model = create_model(args.model, args.classes, args.size)
    model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = _images((args.warmup + args.steps) * args.batch, args.size, args.classes)
    # The tutorial way: the whole set as float32 numpy in memory, divided by 255 on the host.
    xf = (x.astype("float32") / 255.0)[..., None]
    model.fit(xf[: args.warmup * args.batch], y[: args.warmup * args.batch], batch_size=args.batch,
              epochs=1, verbose=0, shuffle=False)
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    if on_gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    start = time.perf_counter()
    model.fit(xf[args.warmup * args.batch:], y[args.warmup * args.batch:], batch_size=args.batch,
              epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": args.steps * args.batch, "precision": "fp32",
            "device": "GPU" if on_gpu else "CPU", "memory": _tf_peak_memory(tf) if on_gpu else None}


def run_loader(args) -> dict:
    """The gntkit shard loader alone (no model): can it feed the GPU?"""
    if args.framework_of_loader == "torch":
        from gntkit.datasets.torch import make_loader

        loader = make_loader(args.data, "train", args.batch, shuffle=True, num_workers=args.workers)
    else:
        from gntkit.datasets.tf import make_dataset

        loader = make_dataset(args.data, "train", args.batch, shuffle=True)
    count, start = 0, None
    for step, (images, _) in enumerate(loader):
        if step == args.warmup:
            start = time.perf_counter()
        elif step > args.warmup:
            count += len(images)
        if step >= args.warmup + args.steps:
            break
    return {"seconds": time.perf_counter() - start, "images": count, "precision": "-",
            "device": "host", "memory": None}


def run_plain_torch(args, bf16: bool = False) -> dict:
    """Baseline: the textbook fp32 loop on float tensors already in memory (no loader, no augmentation).

    `bf16`: the same loop with bf16 autocast and channels-last (not a baseline).
    """
    import contextlib

    torch, _, device = _torch_setup(args)
    from gntkit.models.torch import create_model

    torch.manual_seed(0)
    x, y = _images(args.batch, args.size, args.classes)
    images = torch.from_numpy(x).float().div(255).unsqueeze(1).to(device)
    labels = torch.from_numpy(y).to(device)
    model = create_model(args.model, args.classes, args.size).to(device)
    if args.pool_order == "textbook":  # as tutorials write it: the same modules and numbers, ReLU first
        model.features = torch.nn.Sequential(*textbook_layers(model.features, torch.nn.MaxPool2d, torch.nn.ReLU)[0])
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001)
    model.train()

    def step():
        optimizer.zero_grad()
        with torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return {"seconds": time.perf_counter() - start, "images": args.steps * args.batch,
            "precision": "bf16" if bf16 else "fp32", "device": str(device), "memory": None}


def run_plain_torch_bf16(args) -> dict:
    """Not a baseline: the plain torch loop with bf16 autocast and channels-last."""
    return run_plain_torch(args, bf16=True)


def plain_tf_step(args, policy: str | None = None, keras_batch_norm: bool = False):
    """The plain TF training step (GradientTape, AdamW) of `args.model` on one batch in memory.

    Returns a tf.function that runs one step and returns the loss. `keras_batch_norm` builds the
    network with keras' own BatchNormalization (changes gntkit.models.tf in this process only);
    `args.pool_order` "textbook" puts each ReLU back before its max pool (gntkit/tools/reference/textbook_order.py).
    Also used by bench_tf_ops, which profiles this step.
    """
    import tensorflow as tf

    import gntkit.models.tf as tf_models
    from gntkit.models.tf import create_model

    if keras_batch_norm:  # this child process only: build the network with keras' own layer
        tf_models.FusedBatchNormalization = tf.keras.layers.BatchNormalization

    tf.keras.utils.set_random_seed(0)
    x, y = _images(args.batch, args.size, args.classes)
    images, labels = tf.constant(x[..., None].astype("float32") / 255), tf.constant(y)
    model = create_model(args.model, args.classes, args.size, dtype_policy=policy)
    if args.pool_order == "textbook":  # the same layers and weights, each ReLU before its max pool
        keras = tf.keras
        layers = textbook_layers(model.layers, keras.layers.MaxPooling2D, keras.layers.ReLU)[0]
        model = keras.Sequential([keras.Input(model.input_shape[1:])] + layers)
    optimizer = tf.keras.optimizers.AdamW(0.001)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def run_plain_tf(args, policy: str | None = None, keras_batch_norm: bool = False) -> dict:
    """Baseline: a plain fp32 tf.function step (GradientTape, AdamW) on float tensors in memory."""
    step = plain_tf_step(args, policy, keras_batch_norm)
    for _ in range(args.warmup):
        step().numpy()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.numpy()
    return {"seconds": time.perf_counter() - start, "images": args.steps * args.batch,
            "precision": "bf16" if policy else "fp32", "device": "CPU", "memory": None}


def run_plain_tf_bf16(args) -> dict:
    """Not a baseline: the plain TF loop under keras' mixed_bfloat16 policy (what bf16 alone gives TF here)."""
    return run_plain_tf(args, "mixed_bfloat16")


def run_plain_tf_keras_bn(args) -> dict:
    """Baseline: plain-tf with keras' own BatchNormalization, as a keras user builds the network."""
    return run_plain_tf(args, keras_batch_norm=True)


def _run_gntkit_train(args, framework: str) -> dict:
    """`gntkit train` itself (train_arrays, default options: augmentation, precision auto, ...), epoch 2's rate."""
    import tempfile

    import gntkit.training as training
    from gntkit.tools.host_heap import tune_host_malloc

    x, y = _images(args.steps * args.batch, args.size, args.classes)
    classes = [f"c{i}" for i in range(args.classes)]
    options = {"compile": True} if args.compile else {}
    host_malloc = tune_host_malloc()  # as `gntkit train` does before it trains
    with tempfile.TemporaryDirectory() as out:
        summary = training.train_arrays((x, y), None, classes, f"{out}/run", framework=framework, model=args.model,
                                        epochs=2, batch_size=args.batch, precision=args.precision, quiet=True,
                                        host_malloc=host_malloc, **options)
        info = json.loads(open(f"{out}/run/run.json").read())
    last = summary["last"]
    return {"seconds": last["seconds"], "images": args.steps * args.batch, "precision": info["precision"],
            "device": info["device"], "memory": None}


def run_train_torch(args) -> dict:
    """gntkit train --framework torch."""
    return _run_gntkit_train(args, "torch")


def run_train_tf(args) -> dict:
    """gntkit train --framework tf."""
    return _run_gntkit_train(args, "tf")


def run_matmul_peak(args) -> dict:
    """This CPU's multiply-accumulate rate, same run: torch's 2048 x 2048 matmul in fp32 and in bf16.

    The rate a step's arithmetic is set beside (the columns GMAC/s and "of matmul"): a network's
    convolutions become matrix products of the same kernels' family, so a step near its
    precision's matmul rate has little left to gain from any trainer.
    """
    import torch

    n, rates = 2048, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = 0.0
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            best = max(best, 10 * n ** 3 / (time.perf_counter() - start))
        rates[name] = best / 1e9
    return {**rates, "threads": torch.get_num_threads()}


RUNNERS = {"plain-torch": run_plain_torch, "plain-torch-bf16": run_plain_torch_bf16, "train-torch": run_train_torch,
           "plain-tf": run_plain_tf,
           "plain-tf-bf16": run_plain_tf_bf16, "plain-tf-keras-bn": run_plain_tf_keras_bn,
           "train-tf": run_train_tf, "gntkit-torch": run_gntkit_torch, "naive-torch": run_naive_torch,
           "gntkit-tf": run_gntkit_tf, "keras-fit": run_keras_fit, "loader": run_loader,
           "matmul-peak": run_matmul_peak}


def _one(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print_result(RUNNERS[args.one](args))


def _measure(pipeline: str, size: int, args, pool_order: str = "textbook") -> dict:
    cmd = [sys.executable, __file__, "--one", pipeline, "--pool-order", pool_order,
           "--size", str(size), "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--classes", str(args.classes),
           "--model", args.model, "--device", args.device, "--precision", args.precision,
           "--workers", str(args.workers)] + (["--compile"] if args.compile else [])
    if args.data:
        cmd += ["--data", args.data, "--framework-of-loader", args.framework_of_loader]
    return run_child(cmd, f"{pipeline} at {size}x{size}")


def _gpu_present() -> bool:
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                             capture_output=True, text=True)
        return out.stdout.strip() == "True"
    except OSError:
        return False


def _glyph_arrays(classes: int, per_class: int, seed: int, size: int):
    """Synthetic handwriting as gntkit shards hold it: synth glyphs through gntkit's preprocessing."""
    import numpy as np

    from gntkit.samples.photos import preprocess_image
    from gntkit.samples.preprocess import Preprocess
    from gntkit.tools import synth

    rng = np.random.default_rng(seed)
    settings = Preprocess(size=size)
    images, labels = [], []
    for label, code in enumerate(synth.chinese_codes(classes)):
        for _ in range(per_class):
            bitmap = synth.render_glyph(code, rng, 48, 48, slant=rng.uniform(-0.25, 0.25),
                                        weight=rng.uniform(0.75, 1.35))
            images.append(preprocess_image(bitmap, settings))
            labels.append(label)
    return np.stack(images), np.array(labels, np.int64)


def accuracy_table(args) -> None:
    """Does bf16 keep the accuracy? cnn3 on synthetic glyphs, fp32 beside precision auto, both frameworks."""
    import tempfile

    import gntkit.training as training
    from gntkit.tools.host_heap import tune_host_malloc

    train, val = _glyph_arrays(20, 30, 1, 32), _glyph_arrays(20, 10, 2, 32)
    classes = [f"c{i}" for i in range(20)]
    host_malloc = tune_host_malloc()  # as `gntkit train` does before it trains
    print(f"# cnn3, 20 classes, 600 train / 200 validation glyphs at 32x32, {args.epochs} epochs, batch 32, "
          f"defaults otherwise")
    print("| framework | precision | val accuracy | train images/s (last epoch) |")
    print("|---|---|---|---|")
    for framework in ("torch", "tf"):
        for precision in ("fp32", "auto"):
            with tempfile.TemporaryDirectory() as out:
                s = training.train_arrays(train, val, classes, f"{out}/run", framework=framework, model="cnn3",
                                          epochs=args.epochs, batch_size=32, lr=3e-3, precision=precision, quiet=True,
                                          host_malloc=host_malloc)
                resolved = json.loads(open(f"{out}/run/run.json").read())["precision"]
            print(f"| {framework} | {precision} ({resolved}) | {100 * s['last']['val_accuracy']:.1f}% | "
                  f"{s['last']['images_per_second']:.0f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--sizes", default="64,96")
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help="default 8 on CPU, 256 on GPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 4 on CPU, 30 on GPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=3755)
    parser.add_argument("--model", default="vgg19")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--data", default=None, help="gntkit shards (train split) to time the loader alone")
    parser.add_argument("--framework-of-loader", default="torch", choices=["torch", "tf"])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per pipeline (interleaved); the best is shown")
    parser.add_argument("--compile", action="store_true", help="train-* pipelines: gntkit train --compile")
    parser.add_argument("--accuracy", action="store_true", help="bf16 vs fp32 accuracy table instead")
    parser.add_argument("--epochs", type=int, default=8, help="--accuracy: epochs per run")
    parser.add_argument("--pool-order", default="textbook", choices=["textbook", "gntkit", "both"],
                        help="plain-* loops: ReLU before each max pool (textbook), after it (gntkit's "
                             "models), or each plain-* pipeline in both orders")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accuracy:
        accuracy_table(args)
        return
    gpu = args.device == "gpu" or (args.device == "auto" and _gpu_present())
    args.batch = args.batch or (256 if gpu else 8)
    args.steps = args.steps or (30 if gpu else 4)
    if args.one:
        _one(args)
        return
    pipelines = [p for p in args.pipelines.split(",") if p]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {args.model}, {args.classes} classes, batch {args.batch}, {args.steps} timed steps after "
          f"{args.warmup} warm-up, {'GPU' if gpu else 'CPU'} ({os.cpu_count()} cores), best of {args.repeat}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    peak = None
    if not gpu:
        peak = _measure("matmul-peak", sizes[0], args)
        print(f"# this CPU's matmul rate, same run (torch, 2048 x 2048, {peak['threads']} threads): "
              f"fp32 {peak['fp32']:.1f} GMAC/s, bf16 {peak['bf16']:.1f} GMAC/s; a row's GMAC/s is its images/s "
              f"x the network's multiply-accumulates per training image (gntkit.models.configs."
              f"multiply_accumulates), 'of matmul' that rate over the matmul rate of its precision")
    orders = ["textbook", "gntkit"] if args.pool_order == "both" else [args.pool_order]
    header = (f"| {'pipeline':<13} | {'image':>5} | {'precision':>9} | {'images/s':>9} | {'ms/step':>8} | "
              f"{'GMAC/s':>7} | {'of matmul':>9} | {'HWDB1.1 epoch':>13} | {'peak GPU mem':>12} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for size in sizes:
        macs = multiply_accumulates(get_config(args.model), args.classes, size)["training"]
        rows = [(p, o) for p in pipelines for o in (orders if p.startswith("plain-") else ["textbook"])]
        rows += [("loader", "textbook")] if args.data else []
        # --repeat N: every pipeline N times, interleaved, keeping each one's best run, so that
        # other load on a shared machine does not decide the comparison.
        best = {}
        for _ in range(args.repeat):
            for row in rows:
                r = _measure(row[0], size, args, row[1])
                if row not in best or r["images"] / r["seconds"] > best[row]["images"] / best[row]["seconds"]:
                    best[row] = r
        for row in rows:
            pipeline, order = row
            r = best[row]
            rate = r["images"] / r["seconds"]
            epoch_h = HWDB11_TRAIN / rate / 3600
            mem = f"{r['memory'] / 2**30:.1f} GiB" if r.get("memory") else "-"
            gmacs, share = "-", "-"
            if pipeline != "loader":
                gmacs = f"{rate * macs / 1e9:.1f}"
                if peak and r["precision"] in peak:
                    share = f"{100 * rate * macs / 1e9 / peak[r['precision']]:.0f}%"
            name = f"{pipeline} ({order} order)" if len(orders) > 1 and pipeline.startswith("plain-") else pipeline
            print(f"| {name:<13} | {size:>5} | {r['precision']:>9} | {rate:>9.1f} | "
                  f"{1000 * r['seconds'] / max(1, r['images'] / args.batch):>8.0f} | {gmacs:>7} | {share:>9} | "
                  f"{epoch_h:>11.2f} h | {mem:>12} |", flush=True)


if __name__ == "__main__":
    main()
