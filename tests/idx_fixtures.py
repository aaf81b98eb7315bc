"""MNIST-family files for tests, in the real IDX layout: learnable generated digits, seeded.

No real MNIST exists here, so digits 0-9 are drawn as pen strokes with per-sample slant,
scale, rotation, shift, stroke width and wobble (dark ink on white), then prepared as MNIST
was built: cropped, fitted into 20 x 20 and placed in a 28 x 28 field, ink bright on 0.
Files are written exactly as the MNIST download holds them (big-endian IDX headers, uint8),
plain or gzipped; EMNIST sets are stored transposed with their mapping file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _arc(cx, cy, rx, ry, a0, a1, n=12):
    return [(cx + rx * np.cos(t), cy + ry * np.sin(t)) for t in np.linspace(np.radians(a0), np.radians(a1), n)]


# Each digit as polylines in a unit box, x to the right, y down.
DIGIT_STROKES = {
    0: [_arc(0.5, 0.5, 0.3, 0.42, 0, 360, 24)],
    1: [[(0.35, 0.25), (0.55, 0.08), (0.55, 0.92)]],
    2: [_arc(0.5, 0.32, 0.28, 0.24, 200, 380) + [(0.2, 0.92), (0.82, 0.92)]],
    3: [_arc(0.48, 0.3, 0.28, 0.22, 210, 450), _arc(0.48, 0.7, 0.3, 0.22, 270, 510)],
    4: [[(0.65, 0.92), (0.65, 0.08), (0.18, 0.65), (0.85, 0.65)]],
    5: [[(0.78, 0.08), (0.3, 0.08), (0.26, 0.45)] + _arc(0.5, 0.66, 0.3, 0.26, 220, 500)],
    6: [[(0.7, 0.1), (0.35, 0.4)] + _arc(0.5, 0.68, 0.26, 0.24, 180, 540, 24)],
    7: [[(0.18, 0.08), (0.82, 0.08), (0.4, 0.92)]],
    8: [_arc(0.5, 0.28, 0.24, 0.2, 0, 360, 20), _arc(0.5, 0.7, 0.3, 0.22, 0, 360, 20)],
    9: [_arc(0.5, 0.32, 0.26, 0.24, 0, 360, 20) + [(0.76, 0.32), (0.7, 0.92)]],
}


def draw_digit(digit: int, rng: np.random.Generator, canvas: int = 64, width: int | None = None) -> np.ndarray:
    """One handwritten-looking digit: uint8 (canvas, canvas), dark ink on white paper."""
    slant, scale, angle = rng.normal(0, 0.2), rng.uniform(0.7, 1.0), rng.normal(0, 0.1)
    cos, sin = np.cos(angle), np.sin(angle)
    shift = rng.normal(0, 0.05, 2)
    image = Image.new("L", (canvas, canvas), 255)
    pen = ImageDraw.Draw(image)
    width = width or max(2, int(round(canvas / 64 * rng.integers(3, 7))))
    for stroke in DIGIT_STROKES[digit]:
        points = np.asarray(stroke) - 0.5 + rng.normal(0, 0.02, (len(stroke), 2))
        x = points[:, 0] + slant * points[:, 1]
        y = points[:, 1]
        x, y = cos * x - sin * y, sin * x + cos * y
        xy = (np.stack([x, y], 1) * scale + 0.5 + shift) * 0.8 + 0.1
        pen.line([tuple(p) for p in xy * (canvas - 1)], fill=int(rng.integers(0, 60)), width=width, joint="curve")
    return np.asarray(image)


def make_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (count, 28, 28) ink bright on 0, labels uint8 (count,)), classes in turn."""
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.transform import preprocess_batch

    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    drawn = np.stack([draw_digit(int(d), rng) for d in labels])
    # MNIST's recipe: fit the ink into 20 x 20 inside the 28 x 28 field (margin 4), ink bright.
    settings = Preprocess(size=28, margin=4)
    images = preprocess_batch(drawn.reshape(-1), np.arange(count + 1, dtype=np.int64) * drawn[0].size,
                              np.full(count, 64, np.int32), np.full(count, 64, np.int32), settings)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An array as an IDX file: 00 00 08 D, D big-endian uint32 sizes, the uint8 data row-major."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    """Write data to path (plain) or path + '.gz' (gzip, mtime 0); return the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path


def write_mnist(folder, train=None, test=None, gz: bool = False, train_count: int = 60, test_count: int = 20, seed: int = 0) -> dict:
    """The four MNIST files in a folder (plain or gzipped), from arrays or generated digits.

    Args:
        folder: where to write.
        train / test: (images (N, rows, cols), labels (N,)) or None for generated digits.
        gz: write `.gz` files.

    Returns:
        {"train": (images, labels), "test": (images, labels), "paths": [paths written]}.
    """
    folder = Path(folder)
    train = train if train is not None else make_digits(train_count, seed)
    test = test if test is not None else make_digits(test_count, seed + 1)
    paths = []
    for word, (images, labels) in (("train", train), ("t10k", test)):
        paths.append(write_file(folder / f"{word}-images-idx3-ubyte", idx_bytes(images), gz))
        paths.append(write_file(folder / f"{word}-labels-idx1-ubyte", idx_bytes(labels), gz))
    return {"train": train, "test": test, "paths": paths}


# EMNIST "letters"-style mapping: labels 1..N with upper- and lower-case codes; "digits": one code.
def write_emnist(folder, set_name: str = "letters", count: int = 30, classes: int = 5, gz: bool = True, seed: int = 0) -> dict:
    """An EMNIST set: images stored transposed, labels 1..classes, and its mapping file.

    Returns:
        {"upright": images as they should read (N, 28, 28), "labels": stored label values,
         "mapping": [(label, [codes])], "paths": [...]}.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    upright = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    upright[:, :, :7] = 0  # a left-hand blank band makes a transposition visible
    labels = (1 + np.arange(count) % classes).astype(np.uint8)
    mapping = [(label, [65 + label - 1, 97 + label - 1]) for label in range(1, classes + 1)]
    prefix = f"emnist-{set_name}-"
    paths = [write_file(folder / f"{prefix}train-images-idx3-ubyte", idx_bytes(upright.transpose(0, 2, 1)), gz),
             write_file(folder / f"{prefix}train-labels-idx1-ubyte", idx_bytes(labels), gz)]
    text = "".join(f"{label} {' '.join(str(c) for c in codes)}\n" for label, codes in mapping)
    (folder / f"{prefix}mapping.txt").write_text(text, encoding="ascii")
    paths.append(folder / f"{prefix}mapping.txt")
    return {"upright": upright, "labels": labels, "mapping": mapping, "paths": paths}


def main(argv=None) -> None:
    """Write a stand-in MNIST folder of generated digits: `python tests/idx_fixtures.py OUT [--train N] [--test N]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--plain", action="store_true", help="write uncompressed files (default: .gz as MNIST ships them)")
    args = parser.parse_args(argv)
    info = write_mnist(args.out, gz=not args.plain, train_count=args.train, test_count=args.test)
    print(f"wrote {args.train} training and {args.test} test digits: {', '.join(p.name for p in info['paths'])}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
