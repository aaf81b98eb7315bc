"""Benchmark: write 64x64 samples to TFRecord, HDF5 and WebDataset shards.

gntkit's batch writers beside the baselines most public converters use, measured in the
same run on a subset:
- TFRecord: per sample `tf.train.Example(...).SerializeToString()` + `tf.io.TFRecordWriter`;
- HDF5: preallocated h5py datasets written one row per sample;
- WebDataset: `webdataset.TarWriter` with one dict per sample (PNG via its PIL encoder).

Images are seeded random strokes on a white background (so PNG and gzip sizes are
realistic). Timings include SHA-256 of every byte written (gntkit's manifest needs it;
the baselines skip it) and file writes to the page cache. Prints a table.

    python benchmarks/bench_writers.py --records 200000 --baseline-records 20000

A second table compares the WebDataset writer's PNG encoder (`gntkit.kernels.png`, one
batch call) with zlib level 1 per image (`png_from_scanlines` below, the encoder it replaced) on
the same images: the stroke images, or with `--png-gnt FILE` the preprocessed 64x64
glyphs of a GNT file (e.g. one of `benchmarks/corpus.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import tempfile
import time
import zlib

import numpy as np

from gntkit.samples.batch import SampleBatch
from gntkit.shards.registry import get_writer_class

SIZE = 64
BATCH = 4096
ATTRS = {"gntkit_version": "bench", "charset": {"name": "bench"}, "preprocess": {"size": SIZE}}
CHARACTERS = "啊阿埃挨哎唉哀皑癌蔼矮艾碍爱隘鞍氨安俺按暗岸胺案肮昂盎凹敖熬翱袄傲奥懊澳芭捌扒叭吧笆八疤巴拔跋靶把耙坝霸罢爸白柏百摆佰败拜稗斑班搬扳般颁板版扮拌伴瓣半办绊邦帮梆榜膀绑棒磅蚌镑傍谤苞胞包褒剥"


def stroke_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """n white 64x64 images with 4-9 dark straight strokes each, 2-3 pixels thick."""
    images = np.full((n, SIZE, SIZE), 255, np.uint8)
    strokes = 9
    points = 48
    y0, x0, y1, x1 = (rng.integers(4, SIZE - 6, (n, strokes)) for _ in range(4))
    used = np.arange(strokes)[None, :] < rng.integers(4, strokes + 1, (n, 1))
    t = np.linspace(0.0, 1.0, points)[None, None, :]
    ys = np.rint(y0[..., None] + (y1 - y0)[..., None] * t).astype(np.int64)
    xs = np.rint(x0[..., None] + (x1 - x0)[..., None] * t).astype(np.int64)
    ink = rng.integers(0, 110, (n, strokes, 1)).astype(np.uint8) + np.zeros((1, 1, points), np.uint8)
    index = np.broadcast_to(np.arange(n)[:, None, None], ys.shape)
    mask = np.broadcast_to(used[..., None], ys.shape)
    for dy in (0, 1, 2):
        for dx in (0, 1):
            images[index[mask], ys[mask] + dy, xs[mask] + dx] = ink[mask]
    return images


def make_batches(records: int, seed: int = 0) -> list[SampleBatch]:
    """Fixed-size batches of BATCH samples, 4,000 per writer id, keys "{writer}/{i}"."""
    rng = np.random.default_rng(seed)
    batches = []
    for start in range(0, records, BATCH):
        n = min(BATCH, records - start)
        index = np.arange(start, start + n)
        labels = rng.integers(0, len(CHARACTERS), n)
        writers = [str(1001 + i // 4000) for i in index]
        batches.append(SampleBatch(
            keys=[f"{w}/{i % 4000}" for w, i in zip(writers, index)], writer_ids=writers,
            tag_codes=(0xB0A1 + labels).astype(np.uint16), labels=labels.astype(np.int64),
            characters=[CHARACTERS[v] for v in labels], heights=np.full(n, SIZE), widths=np.full(n, SIZE),
            images=stroke_images(n, rng),
        ))
    return batches


def subset(batches: list[SampleBatch], records: int) -> list[SampleBatch]:
    out, total = [], 0
    for batch in batches:
        if total >= records:
            break
        out.append(batch)
        total += len(batch)
    return out


def samples(batches):
    for batch in batches:
        for i in range(len(batch)):
            yield batch, i


# --------------------------------------------------------------------------- gntkit
def run_gntkit(fmt: str, batches, folder: str, compression=None) -> tuple[int, int]:
    path = os.path.join(folder, f"bench-{fmt}-{compression}")
    with get_writer_class(fmt)(path, split="train", attrs=ATTRS, compression=compression) as writer:
        for batch in batches:
            writer.write(batch)
    info = writer.close()
    return info["records"], info["bytes"]


def run_encode_only(batches) -> tuple[int, int]:
    from gntkit.shards.tfrecord import serialize_batch

    records = size = 0
    for batch in batches:
        frames, _ = serialize_batch(batch)
        records += len(batch)
        size += frames.nbytes
    return records, size


# --------------------------------------------------------------------------- baselines
def baseline_tfrecord(batches, folder: str, compression: str = "") -> tuple[int, int]:
    import tensorflow as tf  # the baseline is TensorFlow's own writer

    path = os.path.join(folder, "baseline.tfrecord")
    count = 0
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type=compression)) as writer:
        for batch, i in samples(batches):
            image = batch.images[i]
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[0]])),
                "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[1]])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(batch.labels[i])])),
                "tag_code": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(batch.tag_codes[i])])),
                "character": tf.train.Feature(bytes_list=tf.train.BytesList(value=[batch.characters[i].encode()])),
                "writer_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[batch.writer_ids[i].encode()])),
                "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[batch.keys[i].encode()])),
            }))
            writer.write(example.SerializeToString())
            count += 1
    return count, os.path.getsize(path)


def baseline_hdf5(batches, folder: str) -> tuple[int, int]:
    import h5py  # the baseline is plain h5py

    path = os.path.join(folder, "baseline.h5")
    n = sum(len(b) for b in batches)
    string = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, SIZE, SIZE), dtype="uint8", chunks=(64, SIZE, SIZE))
        labels = f.create_dataset("labels", (n,), dtype="int64")
        tag_codes = f.create_dataset("tag_codes", (n,), dtype="uint16")
        keys = f.create_dataset("keys", (n,), dtype=string)
        characters = f.create_dataset("characters", (n,), dtype=string)
        writer_ids = f.create_dataset("writer_ids", (n,), dtype=string)
        for row, (batch, i) in enumerate(samples(batches)):
            images[row] = batch.images[i]
            labels[row] = batch.labels[i]
            tag_codes[row] = batch.tag_codes[i]
            keys[row] = batch.keys[i]
            characters[row] = batch.characters[i]
            writer_ids[row] = batch.writer_ids[i]
    return n, os.path.getsize(path)


def baseline_webdataset(batches, folder: str) -> tuple[int, int]:
    import webdataset as wds  # the baseline is webdataset's own TarWriter

    path = os.path.join(folder, "baseline.tar")
    count = 0
    with wds.TarWriter(path) as sink:
        for batch, i in samples(batches):
            sink.write({
                "__key__": batch.keys[i].replace("/", "_"),
                "png": batch.images[i],
                "cls": int(batch.labels[i]),
                "json": {"key": batch.keys[i], "writer_id": batch.writer_ids[i], "tag_code": int(batch.tag_codes[i]),
                         "character": batch.characters[i], "label": int(batch.labels[i]), "height": SIZE, "width": SIZE},
            })
            count += 1
    return count, os.path.getsize(path)


def sha256_rate(nbytes: int = 256 << 20) -> float:
    data = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return nbytes / (time.perf_counter() - started)


# --------------------------------------------------------------------------- PNG encoders
def glyph_images(gnt_path: str) -> np.ndarray:
    """The records of one GNT file, preprocessed to SIZE x SIZE (0 background, bright ink)."""
    from gntkit.formats.gnt import GntFile
    from gntkit.formats.sources import mapped_bytes
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.transform import preprocess_batch

    gnt = GntFile(mapped_bytes(gnt_path), gnt_path)
    pixels, offsets = gnt.gather()
    return preprocess_batch(pixels, offsets, gnt.index.heights.astype(np.int32), gnt.index.widths.astype(np.int32),
                            Preprocess(size=SIZE))


def png_from_scanlines(scanlines, height: int, width: int) -> bytes:
    """The baseline PNG encoder: a grayscale PNG from its filtered scanlines (filter byte 0 per row), zlib level 1.

    Level 1 deflates a 64x64 glyph about 2.5x faster than level 6; this is the encoder the
    WebDataset writer used before `gntkit.kernels.png`.
    """
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressed = zlib.compress(scanlines, 1)
    return b"".join((b"\x89PNG\r\n\x1a\n", struct.pack(">I", 13), ihdr, struct.pack(">I", zlib.crc32(ihdr)),
                     struct.pack(">I", len(compressed)), b"IDAT", compressed,
                     struct.pack(">I", zlib.crc32(compressed, zlib.crc32(b"IDAT"))),
                     struct.pack(">I", 0), b"IEND", struct.pack(">I", zlib.crc32(b"IEND"))))


def png_rows(images: np.ndarray, repeats: int = 3) -> list[tuple[str, float, float]]:
    """(encoder, microseconds per image, mean PNG bytes), best of `repeats`, zlib level 1 first."""
    from gntkit.kernels.png import encode_pngs

    n, height, width = images.shape
    scanlines = np.zeros((n, height, width + 1), np.uint8)
    scanlines[:, :, 1:] = images

    def zlib_level_1():
        return sum(len(png_from_scanlines(rows, height, width)) for rows in scanlines)

    def kernel():
        return int(encode_pngs(images)[1][-1])

    kernel()  # compile or load the cached kernel outside the timing
    rows = []
    for name, function in (("zlib level 1, one call per image (baseline)", zlib_level_1),
                           ("gntkit.kernels.png.encode_pngs, one call per batch", kernel)):
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            size = function()
            best = min(best, time.perf_counter() - started)
        rows.append((name, best / n * 1e6, size / n))
    return rows


# --------------------------------------------------------------------------- main
def timed(function, *args, **kwargs):
    started = time.perf_counter()
    records, size = function(*args, **kwargs)
    return records, size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="samples written by each gntkit writer")
    parser.add_argument("--baseline-records", type=int, default=20_000, help="samples written by each baseline")
    parser.add_argument("--skip", default="", help="comma-separated rows to skip, e.g. 'tfrecord+gzip,baselines' ('png': the PNG table)")
    parser.add_argument("--png-gnt", default=None, help="GNT file whose preprocessed glyphs the PNG table encodes (default: the stroke images)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    started = time.perf_counter()
    batches = make_batches(args.records)
    print(f"built {args.records:,} samples of {SIZE}x{SIZE} in {time.perf_counter() - started:.1f} s")
    small = subset(batches, args.baseline_records)

    # Compile (or load cached) kernels and import the frameworks outside the timings.
    warm = tempfile.mkdtemp(prefix="gntkit-bench-warm-")
    try:
        for fmt in ("tfrecord", "hdf5", "webdataset"):
            run_gntkit(fmt, subset(batches, 1), warm)
        if "baselines" not in skip:
            import h5py  # noqa: F401
            import tensorflow  # noqa: F401
            import webdataset  # noqa: F401
    finally:
        shutil.rmtree(warm)

    rows = []  # (format, writer, records, bytes, seconds)
    folder = tempfile.mkdtemp(prefix="gntkit-bench-")
    try:
        plan = [
            ("TFRecord", "gntkit encode only (no hash, no disk)", "tfrecord-encode", lambda: run_encode_only(batches)),
            ("TFRecord", "gntkit TFRecordWriter", "tfrecord", lambda: run_gntkit("tfrecord", batches, folder)),
            ("TFRecord", "baseline: tf.train.Example per sample + tf.io.TFRecordWriter", "baselines", lambda: baseline_tfrecord(small, folder)),
            ("TFRecord gzip", "gntkit TFRecordWriter, gzip", "tfrecord+gzip", lambda: run_gntkit("tfrecord", batches, folder, "gzip")),
            ("TFRecord gzip", "baseline: as above, TFRecordWriter GZIP", "baselines", lambda: baseline_tfrecord(small, folder, "GZIP")),
            ("HDF5", "gntkit HDF5Writer", "hdf5", lambda: run_gntkit("hdf5", batches, folder)),
            ("HDF5", "baseline: h5py row writes per sample", "baselines", lambda: baseline_hdf5(small, folder)),
            ("HDF5 lzf", "gntkit HDF5Writer, lzf", "hdf5+lzf", lambda: run_gntkit("hdf5", batches, folder, "lzf")),
            ("WebDataset", "gntkit WebDatasetWriter", "webdataset", lambda: run_gntkit("webdataset", batches, folder)),
            ("WebDataset", "baseline: webdataset.TarWriter, dict per sample", "baselines", lambda: baseline_webdataset(small, folder)),
        ]
        for fmt, name, tag, function in plan:
            if tag in skip:
                continue
            records, size, seconds = timed(function)
            rows.append((fmt, name, records, size, seconds))
            print(f"  {name}: {records:,} records in {seconds:.2f} s", flush=True)
            for entry in os.listdir(folder):
                os.remove(os.path.join(folder, entry))
    finally:
        shutil.rmtree(folder)

    print()
    print("| format | writer | records | MB written | seconds | records/s | MB/s | vs baseline |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    baseline_rate = {fmt: records / seconds for fmt, name, records, _, seconds in rows if name.startswith("baseline")}
    for fmt, name, records, size, seconds in rows:
        rate = records / seconds
        base = baseline_rate.get(fmt, baseline_rate.get(fmt.split()[0]))  # "HDF5 lzf" vs the plain h5py baseline
        ratio = f"{rate / base:.1f}x" if base and not name.startswith("baseline") else ""
        print(f"| {fmt} | {name} | {records:,} | {size / 1e6:,.0f} | {seconds:.2f} | {rate:,.0f} | {size / 1e6 / seconds:,.0f} | {ratio} |")
    if "png" not in skip:
        images = glyph_images(args.png_gnt) if args.png_gnt else batches[0].images
        source = f"preprocessed glyphs of {args.png_gnt}" if args.png_gnt else "stroke images"
        print(f"\nPNG encoding of {len(images):,} {SIZE}x{SIZE} {source}:\n")
        print("| encoder | us/image | PNG bytes/image | speed vs zlib |")
        print("|---|---:|---:|---:|")
        rows = png_rows(images)
        for name, micros, size in rows:
            print(f"| {name} | {micros:.1f} | {size:,.0f} | {rows[0][1] / micros:.1f}x |")
    print(f"\nSHA-256 on this machine: {sha256_rate() / 1e6:,.0f} MB/s (one core); every gntkit row hashes all it writes.")
    print(f"cpu: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
