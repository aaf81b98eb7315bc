"""Benchmark: images/s delivered as ready batches (batch 256, 64 x 64 uint8 + int64 labels) by the
gntkit.datasets loaders, beside the stock readers of each format in the same run.

Readers, each measured with 1 and 2 worker processes (TensorFlow: a private thread pool of 1 or 2
threads and as many parallel calls, the closest tf.data equivalent):

  gntkit-torch  gntkit.datasets.torch.make_loader(..., shuffle=True)   (global shuffle, every format)
  gntkit-tf     gntkit.datasets.tf.make_dataset(..., shuffle=True)     (native tf.data for TFRecord,
                                                                        numba reads via tf.numpy_function else)
  gntkit-tf-numpy  the same with reader="numpy" (TFRecord only: the numba reads, PyTorch's exact order)
  stock         webdataset:  webdataset.WebDataset(shards).decode("l8").to_tuple("png", "cls") + DataLoader
                tfrecord:    tf.data.TFRecordDataset + parse_single_example per record, then batch
                hdf5:        an h5py per-sample torch Dataset (shuffle=True) + DataLoader

The stock webdataset and TFRecord readers read in file order (no shuffle): they are given the
easier task. Each measurement runs in its own process, after the shard files were read once
(page cache warm), skips the first batches (worker start-up), then counts images for --seconds
(epoch after epoch). The data: benchmarks/corpus.py's synthetic corpus (a pool of rendered glyphs) converted
with the real `gntkit.shards.convert` at 64 x 64, cached under --data.

    python benchmarks/bench_loaders.py --records 200000 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FORMATS = ("hdf5", "tfrecord", "webdataset")
BATCH = 256
WARMUP_BATCHES = 8


# --------------------------------------------------------------------------- data


def prepare(data: Path, records: int) -> dict[str, Path]:
    """Convert the cached synthetic corpus to each format once; returns format -> output folder."""
    from corpus import make_corpus
    from gntkit.shards.convert import convert

    corpus = make_corpus(data / "corpus", records=records, zip_too=False)
    folders = {}
    for fmt in FORMATS:
        out = data / fmt
        manifest = out / "gntkit.json"
        done = manifest.is_file() and json.loads(manifest.read_text()).get("complete") and \
            json.loads(manifest.read_text())["splits"]["all"]["num_records"] == records
        if not done:
            print(f"converting {records} records to {fmt} ...", file=sys.stderr, flush=True)
            convert(corpus["folder"], out, to=fmt, overwrite=True, workers=os.cpu_count())
        folders[fmt] = out
    return folders


def warm_page_cache(folder: Path) -> None:
    """Read every file once so that each reader starts from the page cache."""
    for path in sorted(folder.iterdir()):
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


# --------------------------------------------------------------------------- readers (run in a child process)


def gntkit_torch(folder: Path, workers: int):
    """gntkit's PyTorch loader, global shuffle."""
    from gntkit.datasets.torch import make_loader

    return make_loader(folder, batch_size=BATCH, shuffle=True, seed=0, num_workers=workers)


class _NumpyEpochs:
    """gntkit.datasets alone: `ShardSet.iter_batches` in this process (no framework, no workers), global shuffle."""

    def __init__(self, folder: Path):
        import gntkit.datasets as datasets

        self.shards = datasets.open(folder)
        self.epoch = 0

    def __iter__(self):
        self.epoch += 1
        return self.shards.iter_batches(BATCH, shuffle=True, seed=0, epoch=self.epoch)


def gntkit_numpy(folder: Path, workers: int):
    """The framework-free reads under both adapters (`workers` is ignored: one process)."""
    return _NumpyEpochs(folder)


def _tf_threads(dataset, workers: int):
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = workers
    return dataset.with_options(options)


def gntkit_tf(folder: Path, workers: int):
    """gntkit's tf.data pipeline with its default reader, global shuffle."""
    from gntkit.datasets.tf import make_dataset

    return _tf_threads(make_dataset(folder, batch_size=BATCH, shuffle=True, seed=0, num_parallel_reads=workers), workers)


def gntkit_tf_numpy(folder: Path, workers: int):
    """gntkit's tf.data pipeline over the numba bulk reads (tf.numpy_function per batch)."""
    from gntkit.datasets.tf import make_dataset

    return _tf_threads(make_dataset(folder, batch_size=BATCH, shuffle=True, seed=0, reader="numpy"), workers)


def stock(folder: Path, workers: int):
    """The format's stock reader, as its documentation and tutorials use it."""
    import gntkit.datasets as datasets

    shards = datasets.open(folder)
    paths = [str(s.path) for s in shards.shards]
    if shards.format == "tfrecord":
        import tensorflow as tf

        description = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            example = tf.io.parse_single_example(record, description)
            return tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), [64, 64]), example["label"]

        dataset = tf.data.TFRecordDataset(paths, num_parallel_reads=workers).map(parse, num_parallel_calls=workers)
        return _tf_threads(dataset.batch(BATCH).prefetch(tf.data.AUTOTUNE), workers)
    import torch

    if shards.format == "webdataset":
        import webdataset as wds

        dataset = wds.WebDataset(paths, shardshuffle=False, nodesplitter=None, workersplitter=wds.split_by_worker,
                                 empty_check=False).decode("l8").to_tuple("png", "cls")
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers)

    class H5PerSample(torch.utils.data.Dataset):
        """What tutorials write: open lazily per worker, index one sample per __getitem__."""

        def __init__(self):
            self.starts = [s.start for s in shards.shards]
            self.files = None

        def __len__(self):
            return len(shards)

        def __getitem__(self, i):
            import bisect

            import h5py

            if self.files is None:  # dataset handles opened once per worker
                self.files = [(f["images"], f["labels"]) for f in (h5py.File(p, "r") for p in paths)]
            k = bisect.bisect_right(self.starts, i) - 1
            images, labels = self.files[k]
            j = i - self.starts[k]
            return torch.from_numpy(images[j]), int(labels[j])

    return torch.utils.data.DataLoader(H5PerSample(), batch_size=BATCH, shuffle=True, num_workers=workers)


# gntkit-numpy is measured on request only (`--measure gntkit-numpy FOLDER 1`): it isolates
# gntkit.datasets' own reads, e.g. to compare two versions of it.
READERS = {"gntkit-numpy": gntkit_numpy, "gntkit-torch": gntkit_torch, "gntkit-tf": gntkit_tf, "gntkit-tf-numpy": gntkit_tf_numpy,
           "stock": stock}


def measure(reader: str, folder: Path, workers: int, seconds: float) -> dict:
    """Images/s of one reader: skip WARMUP_BATCHES batches, then count for `seconds`.

    Epochs follow one another until the time is up (a small corpus is read in well under a
    second by the fast readers; one epoch alone would measure start-up noise). Each new epoch's
    start-up (worker processes, the epoch's order) is counted, as a training run pays it.
    """
    loader = READERS[reader](folder, workers)
    images, batch_number, start = 0, 0, None
    while start is None or time.perf_counter() - start < seconds:
        for x, y in loader:
            if tuple(x.shape[1:]) != (64, 64) or len(y) != len(x):
                raise SystemExit(f"{reader}: unexpected batch shapes {tuple(x.shape)} {tuple(y.shape)}")
            if batch_number == WARMUP_BATCHES:
                start = time.perf_counter()
            elif batch_number > WARMUP_BATCHES:
                images += len(x)
                if time.perf_counter() - start >= seconds:
                    break
            batch_number += 1
    elapsed = time.perf_counter() - start
    return {"images": images, "seconds": elapsed, "rate": images / elapsed}


# --------------------------------------------------------------------------- driver


def main() -> None:
    """Prepare the data, measure every reader in its own process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/gntkit-bench-loaders"))
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per reader and worker count")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--measure", nargs=3, metavar=("READER", "FOLDER", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        reader, folder, workers = args.measure
        print(json.dumps(measure(reader, Path(folder), int(workers), args.seconds)))
        return
    folders = prepare(args.data, args.records)
    rows = []
    for fmt in args.formats.split(","):
        warm_page_cache(folders[fmt])
        readers = ("stock", "gntkit-torch", "gntkit-tf") + (("gntkit-tf-numpy",) if fmt == "tfrecord" else ())
        for reader in readers:
            rates = []
            for workers in (1, 2):
                env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
                command = [sys.executable, __file__, "--seconds", str(args.seconds), "--measure", reader, str(folders[fmt]), str(workers)]
                out = subprocess.run(command, capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise SystemExit(f"{reader} on {fmt} with {workers} workers failed:\n{out.stderr[-3000:]}")
                rates.append(json.loads(out.stdout.strip().splitlines()[-1])["rate"])
                print(f"{fmt:10s} {reader:13s} workers={workers}: {rates[-1]:10,.0f} images/s", file=sys.stderr, flush=True)
            rows.append((fmt, reader, rates))
    print(f"\nimages/s as ready batches (batch {BATCH}, 64x64 uint8), {args.records:,} records, {os.cpu_count()} cores\n")
    print("| format | reader | 1 worker | 2 workers | x stock (1 / 2) |")
    print("|---|---|---:|---:|---:|")
    for fmt, reader, rates in rows:
        base = next(r for f, name, r in rows if f == fmt and name == "stock")
        ratio = "1.0 / 1.0" if reader == "stock" else f"{rates[0] / base[0]:.1f} / {rates[1] / base[1]:.1f}"
        print(f"| {fmt} | {reader} | {rates[0]:,.0f} | {rates[1]:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
