"""Benchmark: the line recognizer (crnn) on unseen writers beside an isolated-character baseline, same run.

Input: DGRL pages in the real layout from gntkit/tools/fixtures/dgrl.py (`--writers` writers,
`--pages` pages of `--lines` lines, 4-12 synth glyphs of 11 classes each), split by writer: the
last `--test-writers` writers are never seen in training.

Rows (character error rate on the unseen writers' lines, and CPU seconds):
- `crnn (CTC, lines)`: `gntkit convert` to lines at --line-height, then `gntkit train --model crnn`
  (torch, CPU) and `gntkit evaluate` (greedy decoding): the recognizer must find the characters itself;
- `cnn3 on true character boxes`: the baseline: every glyph cut out at its true box (the fixture
  records them as it draws each line), preprocessed as single characters at 32 x 32, a cnn3
  classifier trained on the training writers' glyphs for the same epochs; its errors are
  substitutions only, as it is told where each character is.

    python benchmarks/bench_lines.py --epochs 15
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import gntkit.tools.fixtures.dgrl as fixture
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.training import evaluate, train, train_arrays
from gntkit.training.torch_trainer import load_run_model, predict_probabilities


def record_glyphs(writers, pages: int, lines: int) -> dict:
    """{writer: (codes, glyph bitmaps)} of every character the fixture draws on these pages, in order."""
    drawn: list = []
    original = fixture.render_glyph

    def recording(code, rng, *args, **kwargs):
        bitmap = original(code, rng, *args, **kwargs)
        drawn.append((code, bitmap))
        return bitmap

    fixture.render_glyph = recording
    try:
        out = {}
        for writer in writers:
            drawn.clear()
            for page in range(1, pages + 1):
                fixture.page_lines(writer, page, lines=lines)
            out[writer] = ([c for c, _ in drawn], [b for _, b in drawn])
    finally:
        fixture.render_glyph = original
    return out


def baseline(glyphs: dict, train_writers, test_writers, epochs: int, out: Path, seed: int) -> tuple[float, float, int]:
    """(CER, seconds, characters) of cnn3 on the true character boxes of the test writers."""
    codes = sorted({c for cs, _ in glyphs.values() for c in cs})
    settings = Preprocess(size=32)

    def arrays(writers):
        images = [preprocess_image(b, settings) for w in writers for b in glyphs[w][1]]
        labels = [codes.index(c) for w in writers for c in glyphs[w][0]]
        return np.stack(images), np.array(labels, np.int64)

    start = time.perf_counter()
    train_images, train_labels = arrays(train_writers)
    train_arrays((train_images, train_labels), None, [f"{c:04x}" for c in codes], out, model="cnn3", epochs=epochs,
                 batch_size=32, seed=seed, quiet=True, preprocess=settings)
    test_images, test_labels = arrays(test_writers)
    model, _ = load_run_model(out, "last")
    predicted = predict_probabilities(model, test_images).argmax(1)
    return float((predicted != test_labels).mean()), time.perf_counter() - start, len(test_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=14)
    parser.add_argument("--test-writers", type=int, default=4)
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--lines", type=int, default=6)
    parser.add_argument("--line-height", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=float, default=0.5, help="crnn width multiplier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    writers = list(range(1, args.writers + 1))
    train_writers, test_writers = writers[:-args.test_writers], writers[-args.test_writers:]
    with tempfile.TemporaryDirectory(prefix="gntkit-bench-lines-") as tmp:
        root = Path(tmp)
        fixture.write_dgrl_corpus(root / "pages", writers=args.writers, pages=args.pages, lines=args.lines)
        split = f"train=1-{train_writers[-1]},test={test_writers[0]}-{test_writers[-1]}"
        convert(root / "pages", root / "lines", to="hdf5", workers=1, split=split, hash_sources=False,
                preprocess={"line_height": args.line_height})
        start = time.perf_counter()
        train(root / "lines", root / "crnn", model="crnn", width=args.width, epochs=args.epochs, batch_size=16,
              lr=0.003, seed=args.seed, framework="torch", device="cpu", quiet=True)
        report = evaluate(root / "crnn", root / "lines", split="test", write=False)
        crnn_seconds = time.perf_counter() - start
        glyphs = record_glyphs(writers, args.pages, args.lines)
        cer, seconds, characters = baseline(glyphs, train_writers, test_writers, args.epochs, root / "cnn3", args.seed)
    print(f"{len(train_writers)} training writers, {len(test_writers)} unseen writers: {report['lines']} test lines, "
          f"{report['characters']} characters; {args.epochs} epochs, torch, CPU")
    print(f"{'model':<32} {'CER':>8} {'CR':>8} {'AR':>8} {'seconds':>9}")
    print(f"{'crnn (CTC, lines)':<32} {100 * report['cer']:7.2f}% {100 * report['correct_rate']:7.2f}% "
          f"{100 * report['accurate_rate']:7.2f}% {crnn_seconds:9.1f}")
    print(f"{'cnn3 on true character boxes':<32} {100 * cer:7.2f}% {100 * (1 - cer):7.2f}% {100 * (1 - cer):7.2f}% "
          f"{seconds:9.1f}   ({characters} characters)")


if __name__ == "__main__":
    main()
