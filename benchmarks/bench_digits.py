"""Benchmark: the digit tutorials' own training loops beside `gntkit train` on the same network and
data, on CPU, in one run (images/s of one training epoch).

    python benchmarks/bench_digits.py                     # 6,000 generated digits, 1 thread each
    python benchmarks/bench_digits.py --count 2000 --threads 2 --repeat 3

Data: generated MNIST-style digits (gntkit/tools/fixtures/idx.py: pen strokes with per-sample jitter,
fitted into 20 x 20 in a 28 x 28 field), written as real IDX files, then converted with
`gntkit convert` (IDX defaults: 28 x 28 as stored) to TFRecord and HDF5 shards.

Pipelines, each in its own process with the same thread count (OMP/MKL/TF/torch threads):

  keras-fit       baseline, the Keras 3-conv tutorial: its Sequential model (Conv 32-64-64, dense 64),
                  RMSprop, model.fit on float32 numpy arrays (x / 255), batch 32
  gntkit-tf       gntkit.training.train(framework="tf", model="cnn3") on the TFRecord shards,
                  batch 32, Adam (gntkit has no RMSprop), fp32, no augmentation
  torch-loader    baseline, the PyTorch 2-conv tutorial: a hand-written per-sample Dataset
                  (ToTensor-style float conversion per image, as torchvision's MNIST does), the default
                  DataLoader (batch 128, shuffle), the tutorial's net, Adam 1e-4, the textbook loop
  gntkit-torch    gntkit.training.train(framework="torch", model="cnn2-tutorial") on the HDF5 shards,
                  batch 128, Adam 1e-4, fp32, no augmentation

The tutorial loops time one epoch after a few warm-up steps; gntkit's figure is epoch 2's
images/s from its metrics.csv (epoch 1 includes compiling and the first reads). With --repeat N
the pipelines run round-robin N times and the table shows the best and the worst of each: on a
shared machine the best is the least disturbed.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child import child_env, print_result, read_result

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ("keras-fit", "gntkit-tf", "torch-loader", "gntkit-torch")


def _arrays(folder: Path):
    from gntkit.tools.reference.idx import read_pair

    return read_pair(folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte")


def _keras_fit(folder: Path, threads: int) -> float:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    images, labels = _arrays(folder)
    x = (images.astype(np.float32) / 255.0)[..., None]
    y = labels.astype(np.int64)
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0)  # build and trace
    start = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - start)


class _TutorialDataset:
    """The tutorial's per-sample dataset: one image at a time, converted as torchvision's ToTensor does."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        import torch

        image = torch.from_numpy(self.images[i].copy()).float().div(255).unsqueeze(0)
        return image, int(self.labels[i])


def _torch_loader(folder: Path, threads: int) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images, labels = _arrays(folder)

    class Net(nn.Module):  # the tutorial's network: 206,682 parameters
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
            self.fc1, self.fc2 = nn.Linear(392, 512), nn.Linear(512, 10)
            self.dropout = nn.Dropout(0.4)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
            return nn.functional.log_softmax(self.fc2(x), dim=1)

    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(_TutorialDataset(images, labels), batch_size=128, shuffle=True)

    def step(x, y):
        optimizer.zero_grad()
        loss = nn.functional.nll_loss(net(x), y)
        loss.backward()
        optimizer.step()

    for i, (x, y) in enumerate(loader):  # warm-up
        step(x, y)
        if i == 2:
            break
    start = time.perf_counter()
    for x, y in loader:
        step(x, y)
    return len(labels) / (time.perf_counter() - start)


def _gntkit(data: Path, framework: str, model: str, batch: int, lr: float, threads: int) -> float:
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import gntkit.training as training

    with tempfile.TemporaryDirectory() as tmp:
        training.train(data, Path(tmp) / "run", framework=framework, model=model, epochs=2, batch_size=batch, optimizer="adam", lr=lr,
                       weight_decay=0.0, label_smoothing=0.0, augment=False, precision="fp32", train_split="all", val_split="none",
                       quiet=True)
        with open(Path(tmp) / "run" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    return float(rows[-1]["images_per_second"])


def _child(args) -> None:
    folder = Path(args.folder)
    if args.child == "keras-fit":
        rate = _keras_fit(folder / "idx", args.threads)
    elif args.child == "torch-loader":
        rate = _torch_loader(folder / "idx", args.threads)
    elif args.child == "gntkit-tf":
        rate = _gntkit(folder / "tfrecord", "tf", "cnn3", 32, 1e-3, args.threads)
    else:
        rate = _gntkit(folder / "hdf5", "torch", "cnn2-tutorial", 128, 1e-4, args.threads)
    print_result({"pipeline": args.child, "images_per_second": rate})


def _prepare(folder: Path, count: int) -> None:
    from gntkit.shards.convert import convert
    from gntkit.tools.fixtures.idx import make_digits, write_mnist

    write_mnist(folder / "idx", train=make_digits(count, seed=1), test=make_digits(max(count // 6, 10), seed=2))
    for to in ("tfrecord", "hdf5"):  # one 'all' split: the benchmark trains without validation
        convert(folder / "idx", folder / to, to=to, split="all", progress=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=6000, help="training images")
    parser.add_argument("--threads", type=int, default=1, help="threads per pipeline (all alike)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--repeat", type=int, default=1, help="round-robin passes over the pipelines")
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    env = child_env(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-digits-") as tmp:
        _prepare(Path(tmp), args.count)
        for _ in range(args.repeat):
            for pipeline in args.pipelines.split(","):
                command = [sys.executable, __file__, "--child", pipeline, "--folder", tmp, "--threads", str(args.threads)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                result = read_result(done.stdout)
                if done.returncode != 0 or result is None:
                    print(f"{pipeline} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                rates.setdefault(pipeline, []).append(result["images_per_second"])
    results = {pipeline: max(values) for pipeline, values in rates.items()}
    print(f"\n{args.count:,} generated 28x28 digits, {args.threads} thread(s) per pipeline, CPU, fp32, best of {args.repeat}\n")
    print(f"| {'pipeline':<13} | {'network':<26} | {'images/s':>9} | {'worst':>7} | {'vs tutorial loop':>16} |")
    print(f"|{'-' * 15}|{'-' * 28}|{'-' * 11}|{'-' * 9}|{'-' * 18}|")
    pairs = {"keras-fit": ("keras-fit", "cnn3 (Keras 3-conv)"), "gntkit-tf": ("keras-fit", "cnn3 (Keras 3-conv)"),
             "torch-loader": ("torch-loader", "cnn2-tutorial (2-conv)"), "gntkit-torch": ("torch-loader", "cnn2-tutorial (2-conv)")}
    for pipeline, rate in results.items():
        baseline, network = pairs[pipeline]
        ratio = f"{rate / results[baseline]:.2f}x" if baseline in results else "-"
        print(f"| {pipeline:<13} | {network:<26} | {rate:>9,.0f} | {min(rates[pipeline]):>7,.0f} | {ratio:>16} |")


if __name__ == "__main__":
    main()
