"""Benchmark: reading DGRL (HWDB2.x text pages) beside plain per-record Python loops, same run.

Input: DGRL pages in the real layout from gntkit/tools/fixtures/dgrl.py at about real size: `--lines`
lines of 14-24 synth glyphs `--glyph-height` pixels high (real pages: about 2,400 x 3,500
pixels, 10-13 lines, 220-300 characters), 8 bits per pixel.

Readers (lines/s and MB/s, whole files in memory, one thread):
- `gntkit open_file + gather`: gntkit.formats.dgrl: every length checked against the bytes
  present, label codes, then every line's bitmap copied out (what the stream does for --raw);
- `gntkit + preprocess_lines`: the same, then every line scaled to height 64 (PIL box filter)
  and inverted (what `convert` does by default);
- `per-record loop (numpy)`: the usual public reader: struct for the header and each line's
  fields, bytes.decode('gbk') of the labels, np.frombuffer(...).reshape(...).copy() per line;
- `per-record loop (struct, per pixel)`: gntkit/tools/reference/dgrl.py, the tests' plain-Python reference
  (one page only: it visits every pixel in Python).

    python benchmarks/bench_dgrl.py --pages 8
"""

from __future__ import annotations

import argparse
import struct
import time

import numpy as np

from gntkit.formats import dgrl  # noqa: E402
from gntkit.samples.line_images import preprocess_lines  # noqa: E402
from gntkit.samples.preprocess import Preprocess  # noqa: E402
from gntkit.tools.fixtures.dgrl import page_bytes  # noqa: E402
from gntkit.tools.reference.dgrl import read_dgrl  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def numpy_loop(data: bytes) -> int:
    """The usual Python DGRL reader: struct per field, gbk-decoded labels, a numpy copy per line."""
    (header_size,) = struct.unpack_from("<I", data, 0)
    code_length = struct.unpack_from("<h", data, header_size - 4)[0]
    _, _, lines = struct.unpack_from("<iii", data, header_size)
    pos = header_size + 12
    for _ in range(lines):
        (count,) = struct.unpack_from("<i", data, pos)
        data[pos + 4:pos + 4 + count * code_length].decode("gbk", errors="replace")
        pos += 4 + count * code_length
        _, _, height, width = struct.unpack_from("<iiii", data, pos)
        pos += 16
        np.frombuffer(data, np.uint8, height * width, pos).reshape(height, width).copy()
        pos += height * width
    return lines


def gntkit_read(data: np.ndarray) -> int:
    page = dgrl.open_file(data, "x.dgrl")
    page.gather()
    return len(page)


def gntkit_preprocess(data: np.ndarray, settings: Preprocess) -> int:
    page = dgrl.open_file(data, "x.dgrl")
    preprocess_lines([page.bitmap(i) for i in range(len(page))], settings)
    return len(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--glyph-height", type=int, default=110)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = [page_bytes(1, p, lines=args.lines, glyph_height=args.glyph_height, characters=(14, 25)) for p in range(1, args.pages + 1)]
    buffers = [np.frombuffer(d, np.uint8) for d in files]
    first = dgrl.open_file(buffers[0], "x.dgrl")
    lines = args.pages * args.lines
    megabytes = sum(map(len, files)) / 1e6
    print(f"{len(files)} DGRL pages ({first.index.header.page_height} x {first.index.header.page_width} pixels for the first), "
          f"{lines} lines, {len(first.index.label_codes)} characters on the first page, {megabytes:.1f} MB; one thread")
    settings = Preprocess(line_height=64, max_line_width=4096)
    rows = []
    seconds, count = _best(lambda: sum(gntkit_read(b) for b in buffers), args.repeat)
    rows.append(("gntkit open_file + gather", count, seconds, megabytes))
    seconds, count = _best(lambda: sum(gntkit_preprocess(b, settings) for b in buffers), args.repeat)
    rows.append(("gntkit + preprocess_lines (height 64)", count, seconds, megabytes))
    seconds, count = _best(lambda: sum(numpy_loop(d) for d in files), args.repeat)
    rows.append(("per-record loop (numpy)", count, seconds, megabytes))
    seconds, count = _best(lambda: len(read_dgrl(files[0])["lines"]), 1)
    rows.append(("per-record loop (struct, per pixel; 1 page)", count, seconds, len(files[0]) / 1e6))
    baseline = rows[2][1] / rows[2][2]
    print(f"{'reader':<46} {'lines':>6} {'seconds':>8} {'lines/s':>10} {'MB/s':>8} {'vs numpy loop':>13}")
    for name, count, seconds, size in rows:
        rate = count / seconds
        print(f"{name:<46} {count:>6} {seconds:>8.3f} {rate:>10,.0f} {size / seconds:>8,.0f} {rate / baseline:>12.2f}x")


if __name__ == "__main__":
    main()
