"""Benchmark: the line recognizer (crnn) on unseen writers beside an isolated-character baseline, same run.

Input: a synthetic HWDB2.x-like page set from `gntkit.tools.synth_pages.write_pages` (what
`gntkit synth --format dgrl` writes): `--writers` writers, each with a style and glyph size of their
own, `--pages` pages of `--lines` lines of 8-20 glyphs of `--classes` Chinese-like classes. The last
`--test-writers` writers are never seen in training.

Rows (character error rate, the ICDAR 2013 rates CR and AR on the unseen writers' lines, wall and CPU
seconds of training plus evaluation):
- `crnn (CTC, lines)`: `gntkit convert` to lines at --line-height (32), then `gntkit train --model crnn`
  (torch, CPU; --width 0.25, batch 8, lr 0.003) and `gntkit evaluate` of the last epoch (greedy
  decoding): the recognizer must find the characters itself;
- `cnn3 on true character boxes` (the baseline): every glyph cut out of its line at its true box
  (recorded by `synth_pages.page_lines(boxes=...)` while it draws the lines; the pages are drawn
  again and checked byte for byte against the DGRL files), preprocessed as single characters at
  32 x 32, a cnn3 classifier trained on the training writers' glyphs for the same epochs (last epoch); its errors
  are substitutions only, as it is told where each character is.

    OMP_NUM_THREADS=1 python benchmarks/bench_lines.py    # 150 classes, 48 writers (8 unseen), 30 epochs

One thread: on the shared 2-core machine, torch's two threads waited on each other while other
processes held a core (a crnn step of 8 lines took 1-20 s instead of 0.13 s with one thread).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gntkit.formats.dgrl import SYNTH_FILE_NAME, encode_page
from gntkit.samples.photos import preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.tools.synth import chinese_codes
from gntkit.tools.synth_pages import PAGE_MARGIN, page_lines, write_pages
from gntkit.training import evaluate, train, train_arrays
from gntkit.training.torch_trainer import load_run_model, predict_probabilities


def true_glyphs(pages: Path, writers, num_pages: int, lines: int, codes, seed: int) -> dict:
    """{writer: (codes, glyph images)}: every character cut out of its line at the box it was drawn in.

    The pages are drawn again with their boxes recorded and encoded; each must equal its file's bytes.
    """
    out = {}
    for writer in writers:
        labels, images = [], []
        for page in range(1, num_pages + 1):
            boxes: list = []
            rows = page_lines(writer, page, codes, lines=lines, seed=seed, boxes=boxes)
            height = max(top + bitmap.shape[0] for _, top, _, bitmap in rows) + PAGE_MARGIN
            width = max(left + bitmap.shape[1] for _, _, left, bitmap in rows) + PAGE_MARGIN
            path = pages / SYNTH_FILE_NAME.format(writer=writer, page=page)
            drawn = encode_page(rows, height, width, 8, illustration=f"synthetic page, writer {writer}".encode())
            if drawn != path.read_bytes():
                raise SystemExit(f"{path}: the page drawn again with boxes differs from the file; the boxes would not be its glyphs'.")
            for (line_codes, _, _, bitmap), line_boxes in zip(rows, boxes):
                labels += line_codes
                images += [bitmap[top:top + h, left:left + w] for top, left, h, w in line_boxes]
        out[writer] = (labels, images)
    return out


def baseline(glyphs: dict, train_writers, test_writers, epochs: int, out: Path, seed: int, threads: int) -> dict:
    """CER, wall and CPU seconds and character count of cnn3 on the true character boxes of the test writers."""
    codes = sorted({c for cs, _ in glyphs.values() for c in cs})
    index = {c: i for i, c in enumerate(codes)}
    settings = Preprocess(size=32)

    def arrays(writers):
        images = [preprocess_image(b, settings) for w in writers for b in glyphs[w][1]]
        labels = [index[c] for w in writers for c in glyphs[w][0]]
        return np.stack(images), np.array(labels, np.int64)

    (train_images, train_labels), (test_images, test_labels) = arrays(train_writers), arrays(test_writers)
    torch.set_num_threads(threads)  # numba's parallel preprocessing may have changed the shared OpenMP count
    wall, cpu = time.perf_counter(), time.process_time()  # like the crnn row: training and reading, not preprocessing
    train_arrays((train_images, train_labels), None, [f"{c:04x}" for c in codes], out, model="cnn3", epochs=epochs,
                 batch_size=32, seed=seed, quiet=True, preprocess=settings)
    model, _ = load_run_model(out, "last")
    predicted = predict_probabilities(model, test_images).argmax(1)
    return {"cer": float((predicted != test_labels).mean()), "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu, "characters": len(test_labels), "train_characters": len(train_labels)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--writers", type=int, default=48)
    parser.add_argument("--test-writers", type=int, default=8)
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--line-height", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=float, default=0.25, help="crnn width multiplier")
    parser.add_argument("--batch-size", type=int, default=8, help="crnn lines per batch")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    threads = torch.get_num_threads()  # from OMP_NUM_THREADS; both models train with it
    first = 1001
    writers = list(range(first, first + args.writers))
    train_writers, test_writers = writers[:-args.test_writers], writers[-args.test_writers:]
    codes = chinese_codes(args.classes)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="gntkit-bench-lines-") as tmp:
        root = Path(tmp)
        write_pages(root / "pages", writers=args.writers, first_writer=first, pages=args.pages, lines=args.lines,
                    num_classes=args.classes, seed=args.seed)
        split = f"train={train_writers[0]}-{train_writers[-1]},test={test_writers[0]}-{test_writers[-1]}"
        convert(root / "pages", root / "lines", to="hdf5", workers=1, split=split, hash_sources=False,
                preprocess={"line_height": args.line_height})
        torch.set_num_threads(threads)
        wall, cpu = time.perf_counter(), time.process_time()
        train(root / "lines", root / "crnn", model="crnn", width=args.width, epochs=args.epochs, batch_size=args.batch_size,
              lr=0.003, seed=args.seed, framework="torch", device="cpu", quiet=True)
        # the last epoch's checkpoint: "best" is picked on the test lines (the set has no val split)
        report = evaluate(root / "crnn", root / "lines", split="test", checkpoint="last", write=False)
        crnn_wall, crnn_cpu = time.perf_counter() - wall, time.process_time() - cpu
        glyphs = true_glyphs(root / "pages", writers, args.pages, args.lines, codes, args.seed)
        base = baseline(glyphs, train_writers, test_writers, args.epochs, root / "cnn3", args.seed, threads)
    print(f"{args.classes} classes; {len(train_writers)} training writers ({base['train_characters']} characters), "
          f"{len(test_writers)} unseen writers: {report['lines']} test lines, {report['characters']} characters; "
          f"{args.epochs} epochs, torch, CPU ({os.cpu_count()} cores, {threads} torch thread(s))")
    print(f"{'model':<30} {'CER':>8} {'CR':>8} {'AR':>8} {'wall s':>8} {'CPU s':>8}")
    print(f"{'crnn (CTC, lines)':<30} {100 * report['cer']:7.2f}% {100 * report['correct_rate']:7.2f}% "
          f"{100 * report['accurate_rate']:7.2f}% {crnn_wall:8.1f} {crnn_cpu:8.1f}")
    print(f"{'cnn3 on true character boxes':<30} {100 * base['cer']:7.2f}% {100 * (1 - base['cer']):7.2f}% "
          f"{100 * (1 - base['cer']):7.2f}% {base['wall']:8.1f} {base['cpu']:8.1f}")
    print(f"whole run (pages, conversion, both models): {time.perf_counter() - start_wall:.1f} s wall, "
          f"{time.process_time() - start_cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
