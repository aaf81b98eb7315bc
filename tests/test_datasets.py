"""gntkit.datasets without a framework: open(), random access and bulk reads against the stock
readers, the epoch order / rank / worker partition, the numba kernels against plain-Python
references, and the errors.

Shards come from the real `gntkit convert` on a synthetic corpus (converted once per format per
test run). The ground truth is the HDF5 conversion read with plain h5py; TFRecord and WebDataset
must give the same samples in the same order (convert is deterministic), and the WebDataset
shards are also read with tarfile + pillow.

The helpers at the top (`convert_sets`, `stock_truth`, `identify`) are imported by
test_datasets_torch.py and test_datasets_tf.py.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import gntkit.datasets as datasets
from gntkit.errors import FormatError, GntkitError
from gntkit.kernels import shards as _kernels
from gntkit.kernels.example_parse import parse_example
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.tools.synth import write_corpus

FORMATS = ("tfrecord", "hdf5", "webdataset")
SIZE = 16
SPLIT = "train=1001-1002,test=1003"
TRAIN, TEST = 80, 40  # records: 2 writers x 20 classes x 2 samples, 1 writer x ...


def make_corpus(folder: Path) -> Path:
    """3 writers x 20 classes x 2 samples of synthetic GNT."""
    write_corpus(folder, writers=3, num_classes=20, samples_per_class=2, seed=7)
    return folder


def convert_sets(root: Path, formats=FORMATS, **options) -> dict[str, Path]:
    """Convert one synthetic corpus to each format (16x16, train/test by writer, 30 records per shard)."""
    corpus = make_corpus(root / "gnt")
    settings = dict(split=SPLIT, preprocess=Preprocess(size=SIZE), shard_records=30, workers=1)
    settings.update(options)
    for fmt in formats:
        convert(corpus, root / fmt, to=fmt, **settings)
    return {fmt: root / fmt for fmt in formats}


@dataclass
class Truth:
    """A split as the stock reader sees it, in file order."""

    images: np.ndarray
    labels: np.ndarray
    keys: list
    index: dict  # image bytes -> record index

    def __len__(self):
        return len(self.labels)


def stock_truth(hdf5_folder: Path, split: str) -> Truth:
    """Read an HDF5 conversion's split with plain h5py, shard by shard in manifest order."""
    import h5py

    manifest = json.loads((hdf5_folder / "gntkit.json").read_text(encoding="utf-8"))
    images, labels, keys = [], [], []
    for shard in manifest["splits"][split]["shards"]:
        with h5py.File(hdf5_folder / shard["file"], "r") as f:
            images.append(f["images"][:])
            labels.append(f["labels"][:])
            keys += [k.decode() if isinstance(k, bytes) else k for k in f["keys"][:]]
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int64)
    index = {image.tobytes(): i for i, image in enumerate(images)}
    assert len(index) == len(images), "synthetic samples must be distinct to identify them by pixels"
    return Truth(images, labels, keys, index)


def identify(truth: Truth, images, labels) -> list[int]:
    """Record index of each delivered image (by its pixels), checking that the label is right."""
    images, labels = np.asarray(images), np.asarray(labels)
    assert images.dtype == np.uint8 and images.shape[1:] == (SIZE, SIZE) and labels.dtype == np.int64
    found = [truth.index[image.tobytes()] for image in images]
    assert (truth.labels[found] == labels).all(), "a label does not match its image"
    return found


def expected_share(n: int, seed: int, epoch: int, shuffle, rank: int, world: int, shard_sizes=None, even="pad") -> list[int]:
    """Plain-Python restatement of the documented rank share (order, then contiguous slices with wrap-around)."""
    if shuffle is False:
        order = list(range(n))
    else:
        order = datasets.epoch_order(n, seed, epoch, shuffle, shard_sizes).tolist()
    if even == "pad":
        per = -(-n // world)
        padded = [order[i % n] for i in range(per * world)]
        return padded[rank * per:(rank + 1) * per]
    per = n // world
    return order[rank * per:(rank + 1) * per]


@pytest.fixture(scope="session")
def sets(tmp_path_factory) -> dict[str, Path]:
    return convert_sets(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="session")
def truth(sets) -> dict[str, Truth]:
    return {split: stock_truth(sets["hdf5"], split) for split in ("train", "test")}


# --------------------------------------------------------------------------- open and metadata


@pytest.mark.parametrize("fmt", FORMATS)
def test_open_exposes_manifest_metadata(sets, fmt):
    shards = datasets.open(sets[fmt])
    assert shards.format == fmt and shards.split == "train" and shards.splits == ["train", "test"]
    assert len(shards) == TRAIN and [s.records for s in shards.shards] == [30, 30, 20]
    assert [s.start for s in shards.shards] == [0, 30, 60] and all(s.path.is_file() for s in shards.shards)
    assert shards.num_classes == 3755 and len(shards.charset) == 3755
    assert shards.charset.characters[0] == "啊"
    assert shards.image_size == SIZE and not shards.raw and shards.preprocess["size"] == SIZE
    assert shards.info["complete"] is True and shards.info["format"] == fmt
    assert f"format='{fmt}'" in repr(shards) and "records=80" in repr(shards)
    test = datasets.open(sets[fmt], split="test", verify=True)
    assert test.split == "test" and len(test) == TEST


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_read_arrays_match_stock_reader(sets, truth, fmt, split):
    images, labels = datasets.open(sets[fmt], split).read_arrays()
    assert images.dtype == np.uint8 and images.shape == (len(truth[split]), SIZE, SIZE)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, truth[split].images)
    np.testing.assert_array_equal(labels, truth[split].labels)


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_access_and_bulk_reads(sets, truth, fmt):
    shards, t = datasets.open(sets[fmt]), truth["train"]
    for i in (0, 29, 30, 59, 60, 79):  # shard boundaries
        image, label = shards.get(i)
        np.testing.assert_array_equal(image, t.images[i])
        assert label == t.labels[i]
    order = np.random.default_rng(3).permutation(TRAIN)
    order = np.concatenate([order, order[:5]])  # repeats are allowed
    for streaming in (False, True):
        images, labels = shards.read_batch(order, streaming=streaming)
        np.testing.assert_array_equal(images, t.images[order])
        np.testing.assert_array_equal(labels, t.labels[order])
    images, labels = shards.read_range(25, 35)
    np.testing.assert_array_equal(images, t.images[25:35])
    empty_images, empty_labels = shards.read_batch(np.zeros(0, np.int64))
    assert empty_images.shape == (0, SIZE, SIZE) and empty_labels.shape == (0,)


def test_webdataset_matches_tarfile_and_pillow(sets, truth):
    from PIL import Image

    manifest = json.loads((sets["webdataset"] / "gntkit.json").read_text(encoding="utf-8"))
    images, labels, keys = [], [], []
    for shard in manifest["splits"]["train"]["shards"]:
        with tarfile.open(sets["webdataset"] / shard["file"]) as archive:
            for member in archive.getmembers():
                data = archive.extractfile(member).read()
                if member.name.endswith(".png"):
                    images.append(np.asarray(Image.open(io.BytesIO(data))))
                    keys.append(member.name[:-4])
                elif member.name.endswith(".cls"):
                    labels.append(int(data))
    np.testing.assert_array_equal(np.stack(images), truth["train"].images)
    assert labels == truth["train"].labels.tolist() and keys == truth["train"].keys


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset"])
def test_shards_without_index_files_are_scanned(sets, truth, tmp_path, fmt):
    copy = tmp_path / fmt
    shutil.copytree(sets[fmt], copy)
    manifest = json.loads((copy / "gntkit.json").read_text(encoding="utf-8"))
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            (copy / shard["index"]).unlink()
            shard["index"] = None
    (copy / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    images, labels = datasets.open(copy).read_arrays()
    np.testing.assert_array_equal(images, truth["train"].images)
    np.testing.assert_array_equal(labels, truth["train"].labels)


@pytest.mark.parametrize("fmt, compression", [("tfrecord", "gzip"), ("hdf5", "gzip"), ("hdf5", "lzf")])
def test_compressed_shards(tmp_path, truth, fmt, compression):
    folder = convert_sets(tmp_path, formats=[fmt], compression=compression)[fmt]
    shards = datasets.open(folder)
    assert shards.compression == compression
    images, labels = shards.read_arrays()
    np.testing.assert_array_equal(images, truth["train"].images)
    order = np.random.default_rng(0).permutation(TRAIN)
    images, labels = shards.read_batch(order)
    np.testing.assert_array_equal(images, truth["train"].images[order])
    np.testing.assert_array_equal(labels, truth["train"].labels[order])


def test_raw_mode_gives_original_bitmaps(tmp_path):
    folders = convert_sets(tmp_path, preprocess=Preprocess(raw=True), split="all")
    opened = {fmt: datasets.open(folder) for fmt, folder in folders.items()}
    assert all(s.raw and s.image_size is None and s.split == "all" for s in opened.values())
    for i in (0, 17, 119):
        hdf5_image, hdf5_label = opened["hdf5"].get(i)
        assert hdf5_image.ndim == 2 and hdf5_image.shape != (SIZE, SIZE)
        for fmt in ("tfrecord", "webdataset"):
            image, label = opened[fmt].get(i)
            np.testing.assert_array_equal(image, hdf5_image)
            assert label == hdf5_label
    with pytest.raises(GntkitError, match="fixed-size images"):
        opened["tfrecord"].read_batch([0, 1])
    with pytest.raises(GntkitError, match="fixed-size images"):
        opened["hdf5"].read_arrays()


@pytest.mark.parametrize("fmt", FORMATS)
def test_concurrent_reads_from_threads(sets, truth, fmt):
    """tf.data calls read_batch from several threads: lazily opened state must be built once and stay right."""
    from concurrent.futures import ThreadPoolExecutor

    shards, t = datasets.open(sets[fmt]), truth["train"]
    orders = [np.random.default_rng(seed).permutation(TRAIN)[:25] for seed in range(16)]

    def read(job):
        order, streaming = job
        images, labels = shards.read_batch(order, streaming=streaming)
        return np.array_equal(images, t.images[order]) and np.array_equal(labels, t.labels[order])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, [(order, k % 2 == 1) for k, order in enumerate(orders)]))


def test_shardset_pickles_and_reopens(sets, truth):
    shards = datasets.open(sets["tfrecord"])
    shards.read_batch([1, 2])
    copy = pickle.loads(pickle.dumps(shards))
    images, _ = copy.read_batch([5, 70])
    np.testing.assert_array_equal(images, truth["train"].images[[5, 70]])
    shards.close()
    np.testing.assert_array_equal(shards.get(3)[0], truth["train"].images[3])


def test_import_loads_no_framework():
    code = ("import sys, gntkit.datasets as d; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'h5py', 'webdataset') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- epoch order and partition


def test_epoch_order_is_seeded_and_epoch_dependent():
    a = datasets.epoch_order(1000, seed=1, epoch=0)
    assert sorted(a.tolist()) == list(range(1000)) and a.dtype == np.int64
    np.testing.assert_array_equal(a, datasets.epoch_order(1000, seed=1, epoch=0, shuffle=True))
    assert (a != datasets.epoch_order(1000, seed=1, epoch=1)).mean() > 0.9
    assert (a != datasets.epoch_order(1000, seed=2, epoch=0)).mean() > 0.9
    np.testing.assert_array_equal(datasets.epoch_order(7, 1, 3, shuffle=False), np.arange(7))
    assert datasets.epoch_order(0, 0, 0).shape == (0,)


def test_shard_order_keeps_shards_together():
    sizes = [5, 3, 0, 7]
    order = datasets.epoch_order(15, seed=4, epoch=2, shuffle="shard", shard_sizes=sizes)
    assert sorted(order.tolist()) == list(range(15))
    shard_of = np.searchsorted([0, 5, 8, 8], order, side="right") - 1
    assert (np.diff(shard_of) != 0).sum() == 2  # three non-empty shards, each one run
    assert not np.array_equal(order, datasets.epoch_order(15, seed=4, epoch=3, shuffle="shard", shard_sizes=sizes))
    with pytest.raises(GntkitError, match="shard_sizes"):
        datasets.epoch_order(15, 0, 0, shuffle="shard")
    with pytest.raises(GntkitError, match="add up"):
        datasets.epoch_order(16, 0, 0, shuffle="shard", shard_sizes=sizes)


@pytest.mark.parametrize("n", [1, 2, 7, 30, 31, 100])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_shares_cover_everything_with_equal_counts(n, world):
    order = datasets.epoch_order(n, seed=9, epoch=1)
    pad = [datasets.rank_share(order, r, world, "pad") for r in range(world)]
    assert len({len(p) for p in pad}) == 1 and len(pad[0]) == -(-n // world)
    joined = np.concatenate(pad)
    assert sorted(set(joined.tolist())) == list(range(n))
    np.testing.assert_array_equal(joined, np.resize(order, len(joined)))  # extras are the order's first records
    drop = [datasets.rank_share(order, r, world, "drop") for r in range(world)]
    assert len({len(p) for p in drop}) == 1 and len(drop[0]) == n // world
    joined = np.concatenate(drop)
    assert len(set(joined.tolist())) == len(joined) and (joined == order[:len(joined)]).all()
    none = [datasets.rank_share(order, r, world, "none") for r in range(world)]
    np.testing.assert_array_equal(np.concatenate(none), order)
    assert max(map(len, none)) - min(map(len, none)) <= 1
    for r in range(world):
        assert pad[r].tolist() == expected_share(n, 9, 1, True, r, world)


@pytest.mark.parametrize("n, batch, world", [(50, 4, 1), (50, 4, 3), (23, 5, 2), (9, 10, 2), (64, 8, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_worker_batches_do_not_depend_on_worker_count(n, batch, world, drop_last):
    order = datasets.epoch_order(n, seed=0, epoch=5)
    for rank in range(world):
        single = datasets.batch_plan(order, rank, world, batch_size=batch, drop_last=drop_last)
        share = datasets.rank_share(order, rank, world)
        assert len(single) == datasets.num_batches(len(share), batch, drop_last)
        assert all(len(idx) == batch for _, idx in single[:-1])
        if drop_last:
            assert all(len(idx) == batch for _, idx in single)
        else:
            np.testing.assert_array_equal(np.concatenate([idx for _, idx in single]), share)
        for workers in (2, 3):
            plans = [datasets.batch_plan(order, rank, world, w, workers, batch_size=batch, drop_last=drop_last) for w in range(workers)]
            # a loader takes one batch from each worker in turn
            merged = [plans[j % workers][j // workers] for j in range(sum(map(len, plans)))]
            assert [b for b, _ in merged] == [b for b, _ in single]
            assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(merged, single))
            flat = [datasets.partition(order, rank, world, w, workers, batch_size=batch, drop_last=drop_last) for w in range(workers)]
            assert sum(map(len, flat)) == sum(len(idx) for _, idx in single)
        resumed = datasets.batch_plan(order, rank, world, batch_size=batch, drop_last=drop_last, start_batch=2)
        assert [b for b, _ in resumed] == [b for b, _ in single][2:]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("world", [1, 2, 3])
def test_iter_batches_every_sample_once_per_epoch(sets, truth, fmt, world):
    shards, t = datasets.open(sets[fmt]), truth["train"]
    for shuffle in (True, "shard", False):
        seen = []
        for rank in range(world):
            for workers in (1, 2):
                got = []
                for w in range(workers):
                    got += [identify(t, *b) for b in shards.iter_batches(7, shuffle=shuffle, seed=3, epoch=1, rank=rank,
                                                                          world_size=world, worker=w, num_workers=workers)]
                share = sorted(sum(got, []))
                assert share == sorted(expected_share(TRAIN, 3, 1, shuffle, rank, world, shards.shard_sizes))
            seen += share
        assert sorted(set(seen)) == list(range(TRAIN))
        assert len(seen) == -(-TRAIN // world) * world


def test_partition_checks_arguments():
    order = np.arange(10)
    with pytest.raises(GntkitError, match="rank must be below"):
        datasets.partition(order, 2, 2)
    with pytest.raises(GntkitError, match="worker must be below"):
        datasets.partition(order, 0, 1, worker=1, num_workers=1)
    with pytest.raises(GntkitError, match="even must be"):
        datasets.partition(order, 0, 1, even="wrap")
    with pytest.raises(GntkitError, match="batch_size"):
        datasets.partition(order, 0, 1, batch_size=0)
    with pytest.raises(GntkitError, match="1-D"):
        datasets.rank_share(order.reshape(2, 5), 0, 1)
    assert datasets.rank_share(np.zeros(0, np.int64), 1, 2).shape == (0,)  # an empty split: every rank empty
    with pytest.raises(GntkitError, match="seed"):
        datasets.epoch_order(10, seed=-1, epoch=0)
    with pytest.raises(GntkitError, match="shuffle"):
        datasets.epoch_order(10, 0, 0, shuffle="yes")


# --------------------------------------------------------------------------- errors


def test_not_a_gntkit_folder(tmp_path):
    # The messages are gntkit.shards.manifest's (one loader for every reader).
    with pytest.raises(GntkitError, match="expected a complete gntkit conversion, found no gntkit.json"):
        datasets.open(tmp_path)
    with pytest.raises(GntkitError, match="found nothing there"):
        datasets.open(tmp_path / "missing")
    (tmp_path / "gntkit.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match="expected a gntkit manifest in JSON"):
        datasets.open(tmp_path)
    (tmp_path / "gntkit.json").write_text(json.dumps({"format": "parquet", "splits": {}, "complete": True, "charset": {}}),
                                          encoding="utf-8")
    with pytest.raises(FormatError, match="format one of tfrecord, hdf5, webdataset, lmdb, paddleocr, found 'parquet'"):
        datasets.open(tmp_path)
    with pytest.raises(GntkitError, match="folder path"):
        datasets.open(42)


def test_missing_split_names_the_existing_ones(sets):
    with pytest.raises(GntkitError, match=r"has no split 'val'; it has 'train', 'test'"):
        datasets.open(sets["hdf5"], split="val")


def _copy_with_manifest(source: Path, target: Path, edit) -> Path:
    shutil.copytree(source, target)
    manifest = json.loads((target / "gntkit.json").read_text(encoding="utf-8"))
    edit(manifest, target)
    (target / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def test_incomplete_conversion(sets, tmp_path):
    folder = _copy_with_manifest(sets["tfrecord"], tmp_path / "a", lambda m, _: m.update(complete=False))
    with pytest.raises(GntkitError, match='"complete": true, found false: the conversion did not finish'):
        datasets.open(folder)
    folder = _copy_with_manifest(sets["tfrecord"], tmp_path / "b", lambda m, t: (t / m["splits"]["train"]["shards"][1]["file"]).unlink())
    with pytest.raises(GntkitError, match="incomplete conversion: shard gnt-train.tfrecord-00001-of-00003 listed"):
        datasets.open(folder)
    datasets.open(folder, "test")  # the other split is whole


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_catches_a_damaged_shard(sets, tmp_path, fmt):
    folder = tmp_path / fmt
    shutil.copytree(sets[fmt], folder)
    shards = datasets.open(folder, verify=True)
    target = shards.shards[2].path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    datasets.open(folder)  # not checked unless asked
    with pytest.raises(GntkitError, match=f"{target.name} fails its checksum: gntkit.json says sha256"):
        datasets.open(folder, verify=True)


def test_damaged_tfrecord_record_is_reported(sets, tmp_path):
    folder = tmp_path / "t"
    shutil.copytree(sets["tfrecord"], folder)
    shard = datasets.open(folder).shards[0]
    offsets = np.load(shard.index)
    data = bytearray(shard.path.read_bytes())
    data[offsets[4] + 12:offsets[5] - 4] = b"\x0a" * (offsets[5] - offsets[4] - 16)  # garbage Example
    shard.path.write_bytes(bytes(data))
    shards = datasets.open(folder)
    with pytest.raises(FormatError, match=f"{shard.path.name} at byte {offsets[4]}: expected record 4 to hold"):
        shards.read_batch([3, 4])


def test_bad_indices(sets):
    shards = datasets.open(sets["hdf5"])
    with pytest.raises(GntkitError, match=r"has records 0..79, asked for record 80"):
        shards.get(80)
    with pytest.raises(GntkitError, match="asked for record -1"):
        shards.read_batch([0, -1])
    with pytest.raises(GntkitError, match="1-D integer array"):
        shards.read_batch([0.5])
    with pytest.raises(GntkitError, match="must be an integer"):
        shards.get("3")


# --------------------------------------------------------------------------- kernels vs references


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _example(features: list, packed: bool, extra: bool) -> bytes:
    """Hand-encode a tf.train.Example; entries in the given order, int64 lists packed or not."""
    entries = b""
    for key, kind, values in features:
        if kind == "bytes":
            value = _field(1, b"".join(_field(1, v) for v in values))
        elif packed:
            value = _field(3, _field(1, b"".join(_varint(v % 2**64) for v in values)))
        else:
            value = _field(3, b"".join(_varint(1 << 3) + _varint(v % 2**64) for v in values))
        entry = _field(1, key.encode()) + _field(2, value)
        if extra:
            entry += _varint(3 << 3) + _varint(7)  # an unknown varint field, to be skipped
        entries += _field(1, entry)
    return _field(1, entries)


def _frame(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + b"\0" * 4 + data + b"\0" * 4


def test_example_kernel_matches_reference_parser():
    from numba.typed import List

    rng = np.random.default_rng(11)
    frames, expected = [], []
    for i in range(40):
        image = rng.integers(0, 256, 64, dtype=np.uint8)
        label = int(rng.integers(0, 2**40))
        features = [("image", "bytes", [image.tobytes()]), ("label", "int64", [label]), ("height", "int64", [8]),
                    ("width", "int64", [8]), ("key", "bytes", [f"1001/{i}".encode()]), ("labels", "int64", [-3, 5])]
        order = rng.permutation(len(features))
        data = _example([features[k] for k in order], packed=bool(i % 2), extra=bool(i % 3 == 0))
        parsed = parse_example(data)
        assert parsed["image"] == [image.tobytes()] and parsed["label"] == [label] and parsed["labels"] == [-3, 5]
        frames.append(_frame(data))
        expected.append((image, label))
    buf = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64)
    rows = np.arange(39, -1, -1, dtype=np.int64)
    images = np.zeros((40, 64), np.uint8)
    labels = np.zeros(40, np.int64)
    status = np.full(40, -1, np.int64)
    _kernels.parse_examples(List([buf]), np.zeros(40, np.int64), offsets[:-1], offsets[1:], rows,
                            np.frombuffer(b"image", np.uint8), np.frombuffer(b"label", np.uint8), images, labels, status)
    assert (status == 0).all()
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(images[i], expected[r][0])
        assert labels[i] == expected[r][1]
    # wrong image size, missing label, truncated record, frame length disagreeing with the offsets
    bad = [_example([("image", "bytes", [b"x" * 63]), ("label", "int64", [1])], True, False),
           _example([("image", "bytes", [b"x" * 64])], True, False),
           _example([("image", "bytes", [b"x" * 64]), ("label", "int64", [1])], True, False)[:-3]]
    frames = [_frame(d) for d in bad] + [_frame(bad[0])[:-1]]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64)
    status = np.full(4, -1, np.int64)
    _kernels.parse_examples(List([buf]), np.zeros(4, np.int64), offsets[:-1], offsets[1:], np.arange(4, dtype=np.int64),
                            np.frombuffer(b"image", np.uint8), np.frombuffer(b"label", np.uint8),
                            np.zeros((4, 64), np.uint8), np.zeros(4, np.int64), status)
    assert status.tolist() == [_kernels.BAD_IMAGE, _kernels.NO_LABEL, _kernels.TRUNCATED, _kernels.BAD_FRAME]


def test_example_kernel_checks_lengths_against_the_bytes_there():
    # Lengths a damaged record can carry; the kernel has no bounds checks of its own.
    from numba.typed import List

    label = _field(1, b"label") + _field(2, _field(3, _field(1, _varint(7))))
    # 1. a bytes_list that claims 200 bytes inside a Feature of 14, whose value claims all 64
    #    image bytes with only 10 there: the last entry, so a copy would read past the record.
    overrun = _varint(1 << 3 | 2) + _varint(200) + _varint(1 << 3 | 2) + _varint(64) + b"x" * 10
    image = _field(1, b"image") + _field(2, overrun)
    first = _field(1, _field(1, label) + _field(1, image))
    # 2. an unknown length-delimited field whose length (2**64 - 11) is -11 as a signed
    #    number: skipped as signed, it would move back to its own start, over and over.
    back = _varint(2 << 3 | 2) + _varint(2**64 - 11)
    assert len(back) == 11
    second = back + _example([("image", "bytes", [b"x" * 64]), ("label", "int64", [1])], True, False)
    frames = [_frame(first), _frame(second)]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64)
    status = np.full(2, -1, np.int64)
    _kernels.parse_examples(List([buf]), np.zeros(2, np.int64), offsets[:-1], offsets[1:], np.arange(2, dtype=np.int64),
                            np.frombuffer(b"image", np.uint8), np.frombuffer(b"label", np.uint8),
                            np.zeros((2, 64), np.uint8), np.zeros(2, np.int64), status)
    assert status.tolist() == [_kernels.BAD_IMAGE, _kernels.TRUNCATED]


def _filter_rows(image: np.ndarray, filters: list[int]) -> bytes:
    """PNG-filter an 8-bit grayscale image with the given filter type per row (reference encoder)."""
    h, w = image.shape
    img = image.astype(np.int64)
    out = bytearray()
    for y in range(h):
        ft = filters[y]
        out.append(ft)
        for x in range(w):
            a = img[y, x - 1] if x else 0
            b = img[y - 1, x] if y else 0
            c = img[y - 1, x - 1] if x and y else 0
            if ft == 0:
                pred = 0
            elif ft == 1:
                pred = a
            elif ft == 2:
                pred = b
            elif ft == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((img[y, x] - pred) % 256)
    return bytes(out)


def _png(side: int, filtered: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(filtered)) + chunk(b"IEND", b"")


def test_png_unfilter_matches_pillow_for_every_filter_type():
    from PIL import Image

    rng = np.random.default_rng(5)
    side = 12
    images = rng.integers(0, 256, (6, side, side), dtype=np.uint8)
    raws = []
    for i, image in enumerate(images):
        filters = [(y + i) % 5 for y in range(side)]
        png = _png(side, _filter_rows(image, filters))
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)  # the encoder is right
        raws.append(np.frombuffer(_filter_rows(image, filters), np.uint8))
    out = np.zeros((6, side * side), np.uint8)
    status = np.zeros(6, np.int64)
    _kernels.png_unfilter(np.stack(raws), side, out, status)
    assert (status == 0).all()
    np.testing.assert_array_equal(out.reshape(6, side, side), images)
    raw = np.stack(raws).copy()
    raw[2, 0] = 9  # unknown filter type
    _kernels.png_unfilter(raw, side, out, status)
    assert status[2] == _kernels.NO_PNG


def test_webdataset_reader_handles_unusual_members(tmp_path, sets, truth):
    """Samples with multi-IDAT PNGs, a pax header and odd .cls spacing go through the slow path, still right."""
    from PIL import Image

    folder = tmp_path / "wds"
    shutil.copytree(sets["webdataset"], folder)
    manifest = json.loads((folder / "gntkit.json").read_text(encoding="utf-8"))
    shard = manifest["splits"]["test"]["shards"][0]
    t = truth["test"]
    offsets = [0]
    with tarfile.open(folder / shard["file"], "w", format=tarfile.PAX_FORMAT) as archive:
        for i in range(shard["records"]):
            image = Image.fromarray(t.images[i])
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=0 if i % 2 else 9)
            png = buffer.getvalue()
            if i % 3 == 0:  # split the image data over two IDAT chunks
                png = _png(SIZE, _filter_rows(t.images[i], [1] * SIZE))
                body = zlib.compress(_filter_rows(t.images[i], [1] * SIZE))

                def chunk(kind, data):
                    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

                png = png[:33] + chunk(b"IDAT", body[:10]) + chunk(b"IDAT", body[10:]) + chunk(b"IEND", b"")
            members = [("png", png), ("cls", f" {t.labels[i]}\n".encode()), ("json", b"{}")]
            for ext, data in members:
                info = tarfile.TarInfo(f"{t.keys[i]}.{ext}")
                info.size = len(data)
                if i % 4 == 1 and ext == "png":
                    info.pax_headers = {"comment": "x" * 10}
                archive.addfile(info, io.BytesIO(data))
            offsets.append(archive.fileobj.tell())
    offsets[0] = 0
    np.save(folder / shard["index"], np.array(offsets, np.int64))
    shard["sha256"] = None
    (folder / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    shards = datasets.open(folder, "test")
    bulk = shards._bulk()
    rows = np.arange(shard["records"], dtype=np.int64)
    status = np.zeros(len(rows), np.int64)
    _kernels.locate_png(bulk.bufs, bulk.shard_of, bulk.starts, bulk.ends, rows, SIZE, np.zeros_like(rows), np.zeros_like(rows),
                        np.zeros_like(rows), status)
    assert {_kernels.OK, _kernels.MULTI_IDAT, _kernels.UNUSUAL_TAR} <= set(status.tolist())  # both paths are exercised
    images, labels = shards.read_batch(rows[::-1])
    np.testing.assert_array_equal(images, t.images[:shard["records"]][::-1])
    np.testing.assert_array_equal(labels, t.labels[:shard["records"]][::-1])
