"""Benchmark: POT (OLHWDB online characters) indexing and stroke rendering beside named baselines, same run.

Input: POT files in the real layout from gntkit/tools/fixtures/pot.py (synth glyph strokes in tablet
units, 2-12 points per stroke, a dot in a quarter of the samples), `--writers` files of
`--classes` samples each (OLHWDB1.1 files hold about 3,700).

Indexing (records/s, whole files in memory):
- `gntkit index_pot`: the numba kernel that validates every record (size, tag, stroke count
  against the pen-up markers, end marker, coordinates, extent) and keeps the bounding boxes;
- `per-record loop (struct)`: the plain reader of the tests (gntkit/tools/reference/pot.py): struct per
  point, the same checks;
- `per-record loop (numpy)`: struct for each header, np.frombuffer for the points, the end
  marker and the pen-up count checked with numpy: the usual Python POT reader.

Rendering (samples/s on one core, NUMBA_NUM_THREADS-independent: the serial kernel):
- `gntkit render`: anti-aliased distance-to-segment coverage at pen width 3 (0.4 px per
  tablet unit, canvas = bounding box + pen pad);
- `PIL ImageDraw.line`: per sample a new L image of the same size, one `line(..., width=3,
  joint="curve")` per stroke and an ellipse per single-point stroke (PIL's lines are NOT
  anti-aliased: the baseline does less work per pixel).

Times are CPU seconds of the process (time.process_time), best of --repeat.

    python benchmarks/bench_pot.py --writers 4 --classes 3755
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time

import numpy as np

from gntkit.formats import pot  # noqa: E402
from gntkit.tools.fixtures.pot import write_pot_corpus  # noqa: E402
from gntkit.tools.reference.pot import read_records  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, object]:
    # CPU seconds of this process (every reader here runs on one thread): on a machine shared
    # with other work, wall time measures the other work as much as the reader.
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def numpy_loop(data: bytes) -> int:
    """The usual Python POT reader: a loop over records, numpy for each record's points."""
    pos, count = 0, 0
    while pos < len(data):
        size, _, _, strokes = struct.unpack_from("<HHHH", data, pos)
        points = np.frombuffer(data, "<i2", (size - 8) // 2, pos + 8).reshape(-1, 2)
        if tuple(points[-1]) != (-1, -1) or int(((points[:, 0] == -1) & (points[:, 1] == 0)).sum()) != strokes:
            raise ValueError(f"bad record at {pos}")
        pos += size
        count += 1
    return count


def pil_render(pot_file, pen_width: float) -> int:
    """Every sample drawn with PIL ImageDraw.line on a canvas of the same size as gntkit's."""
    from PIL import Image, ImageDraw

    extras = pot_file.strokes()
    index, pad = pot_file.index, pot.pad_for(pen_width)
    width_px = int(round(pen_width))
    for i in range(len(pot_file)):
        points = extras["points"][extras["points_offsets"][i]:extras["points_offsets"][i + 1]]
        lengths = extras["stroke_lengths"][extras["stroke_lengths_offsets"][i]:extras["stroke_lengths_offsets"][i + 1]]
        image = Image.new("L", (int(index.widths[i]), int(index.heights[i])), 255)
        draw = ImageDraw.Draw(image)
        mapped = (points - index.boxes[i, :2]) * pot.RENDER_SCALE + pad + 0.5
        start = 0
        for length in lengths.tolist():
            stroke = [tuple(p) for p in mapped[start:start + length].tolist()]
            if length == 1:
                (x, y), r = stroke[0], pen_width / 2
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
            else:
                draw.line(stroke, fill=0, width=width_px, joint="curve")
            start += length
    return len(pot_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--classes", type=int, default=3755)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pen-width", type=float, default=3.0)
    args = parser.parse_args()
    import numba

    numba.set_num_threads(1)  # per core
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pot_corpus(folder, writers=args.writers, num_classes=args.classes, seed=0)
        files = [p.read_bytes() for p in paths]
    buffers = [np.frombuffer(d, np.uint8) for d in files]
    records = sum(len(read_records(d)[0]) for d in files[:1]) * len(files)
    pot.open_file(buffers[0], "warm.pot").render(np.arange(2), serial=True)  # compile first
    megabytes = sum(map(len, files)) / 1e6
    print(f"{len(files)} POT files, {records:,} records, {megabytes:.1f} MB; pen width {args.pen_width}; one core")
    rows = []
    seconds, count = _best(lambda: sum(len(pot.index_pot(b, "x.pot")) for b in buffers), args.repeat)
    rows.append(("index", "gntkit index_pot (numba)", count, seconds))
    seconds, count = _best(lambda: sum(numpy_loop(d) for d in files), args.repeat)
    rows.append(("index", "per-record loop (numpy)", count, seconds))
    seconds, count = _best(lambda: sum(len(read_records(d)[0]) for d in files), 1)
    rows.append(("index", "per-record loop (struct)", count, seconds))
    opened = [pot.open_file(b, "x.pot") for b in buffers]
    seconds, count = _best(lambda: sum(len(f.render(pen_width=args.pen_width, serial=True)[2]) for f in opened), args.repeat)
    rows.append(("render", "gntkit render (numba, anti-aliased)", count, seconds))
    seconds, count = _best(lambda: sum(pil_render(f, args.pen_width) for f in opened), 1)
    rows.append(("render", "PIL ImageDraw.line per sample", count, seconds))
    print(f"{'task':<7} {'reader':<38} {'records':>9} {'cpu s':>8} {'records/s':>12} {'vs baseline':>11}")
    baselines = {"index": rows[1][3] / rows[1][2], "render": rows[4][3] / rows[4][2]}
    for task, name, count, seconds in rows:
        speedup = baselines[task] / (seconds / count)
        print(f"{task:<7} {name:<38} {count:>9,} {seconds:>8.3f} {count / seconds:>12,.0f} {speedup:>10.1f}x")


if __name__ == "__main__":
    main()
