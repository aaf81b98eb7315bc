"""The digit tutorial, with gntkit's trainers: a small CNN on generated handwriting-like digits.

No download: digits 0-9 are drawn as pen strokes with random slant, size, position, stroke
width and wobble, pushed through gntkit's own preprocessing (crop, resize to 28 x 28, invert:
the MNIST look), then trained in memory with `gntkit.training.train_arrays`, evaluated, and
used to recognise a digit saved as a PNG (dark ink on white, as a user would scan it).

    python examples/digits.py                       # PyTorch, cnn3, a minute or two on a CPU
    python examples/digits.py --framework tf --model cnn2 --epochs 5
    python examples/digits.py --model vgg16 --size 32 --width 0.25   # VGG16 needs at least 32 x 32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import gntkit.training as training
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.training.evaluation import compute_report

# Each digit as pen strokes (polylines) in a unit box, x to the right, y down.
_ARC = lambda cx, cy, rx, ry, a0, a1, n=12: [(cx + rx * np.cos(t), cy + ry * np.sin(t))  # noqa: E731
                                             for t in np.linspace(np.radians(a0), np.radians(a1), n)]
DIGIT_STROKES = {
    0: [_ARC(0.5, 0.5, 0.3, 0.42, 0, 360, 24)],
    1: [[(0.35, 0.25), (0.55, 0.08), (0.55, 0.92)]],
    2: [_ARC(0.5, 0.32, 0.28, 0.24, 200, 380) + [(0.2, 0.92), (0.82, 0.92)]],
    3: [_ARC(0.48, 0.3, 0.28, 0.22, 210, 450), _ARC(0.48, 0.7, 0.3, 0.22, 270, 510)],
    4: [[(0.65, 0.92), (0.65, 0.08), (0.18, 0.65), (0.85, 0.65)]],
    5: [[(0.78, 0.08), (0.3, 0.08), (0.26, 0.45)] + _ARC(0.5, 0.66, 0.3, 0.26, 220, 500)],
    6: [[(0.7, 0.1), (0.35, 0.4)] + _ARC(0.5, 0.68, 0.26, 0.24, 180, 540, 24)],
    7: [[(0.18, 0.08), (0.82, 0.08), (0.4, 0.92)]],
    8: [_ARC(0.5, 0.28, 0.24, 0.2, 0, 360, 20), _ARC(0.5, 0.7, 0.3, 0.22, 0, 360, 20)],
    9: [_ARC(0.5, 0.32, 0.26, 0.24, 0, 360, 20) + [(0.76, 0.32), (0.7, 0.92)]],
}


def draw_digit(digit: int, rng: np.random.Generator, canvas: int = 64) -> np.ndarray:
    """One handwritten-looking digit: uint8 (canvas, canvas), dark ink on white paper."""
    slant, scale, angle = rng.normal(0, 0.2), rng.uniform(0.7, 1.0), rng.normal(0, 0.1)
    cos, sin = np.cos(angle), np.sin(angle)
    shift = rng.normal(0, 0.05, 2)
    image = Image.new("L", (canvas, canvas), 255)
    pen = ImageDraw.Draw(image)
    width = int(rng.integers(2, 6))
    for stroke in DIGIT_STROKES[digit]:
        points = np.asarray(stroke) - 0.5 + rng.normal(0, 0.02, (len(stroke), 2))
        x = points[:, 0] + slant * points[:, 1]
        y = points[:, 1]
        x, y = cos * x - sin * y, sin * x + cos * y
        xy = np.stack([x, y], 1) * scale + 0.5 + shift
        pen.line([tuple(p) for p in xy * (canvas - 1)], fill=int(rng.integers(0, 60)), width=width, joint="curve")
    return np.asarray(image)


def make_digits(count_per_digit: int, size: int, seed: int):
    """(images uint8 (N, size, size) ink bright on 0, labels int64) as gntkit shards would hold them."""
    rng = np.random.default_rng(seed)
    settings = Preprocess(size=size)
    images, labels = [], []
    for digit in range(10):
        for _ in range(count_per_digit):
            images.append(preprocess_image(draw_digit(digit, rng), settings))
            labels.append(digit)
    order = rng.permutation(len(labels))
    return np.stack(images)[order], np.array(labels, np.int64)[order]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="torch", choices=["torch", "tf"])
    parser.add_argument("--model", default="cnn3", help="cnn3, cnn2, vgg11, vgg16, ... (VGG needs --size 32+)")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--width", type=float, default=1.0, help="narrow a VGG for a CPU, e.g. 0.25")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--per-digit", type=int, default=300, help="training images per digit")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="gntkit-digits-")) / "run"
    train = make_digits(args.per_digit, args.size, seed=1)
    val = make_digits(max(20, args.per_digit // 5), args.size, seed=2)
    print(f"{len(train[1])} training and {len(val[1])} validation digits at {args.size}x{args.size}")
    summary = training.train_arrays(
        train, val, [str(d) for d in range(10)], out, framework=args.framework, model=args.model,
        width=args.width, epochs=args.epochs, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0,
        augment=True, preprocess=Preprocess(size=args.size), overwrite=True)
    print(f"best validation accuracy {100 * summary['best_val_accuracy']:.2f}% (epoch {summary['best_epoch']}); "
          f"curves: {summary['curves_file']}")

    # Evaluate on fresh digits with the framework-free report.
    module = training.trainer_module(args.framework)
    model, _ = module.load_run_model(out, "best", "cpu")
    test_images, test_labels = make_digits(50, args.size, seed=3)
    probs = module.predict_probabilities(model, test_images)
    report = compute_report(np.log(probs + 1e-12), test_labels, [str(d) for d in range(10)], top_k=2)
    print(f"test: top-1 {100 * report['top1_accuracy']:.2f}%, top-2 {100 * report['topk_accuracy']:.2f}%")
    for pair in report["confused_pairs"][:3]:
        print(f"  {pair['true']} read as {pair['predicted']}: {pair['count']} times")

    # Recognise a "scanned" digit: a PNG with dark ink on white paper, any size.
    png = out / "my_seven.png"
    Image.fromarray(draw_digit(7, np.random.default_rng(77), canvas=200)).save(png)
    result = training.predict(out, [png], top_k=3)[0]
    print(f"{png.name}: " + ", ".join(f"{p['character']} ({p['probability']:.3f})" for p in result["predictions"]))


if __name__ == "__main__":
    main()
