"""A new output format is one module (writer + reader) plus one registry entry.

This module is that module for a toy format: records back to back, each a little-endian
header (three UTF-8 lengths, label, tag code, height, width) followed by the key, writer id
and character, then the pixels; the writer records every record's end offset, so the
shards get a `.index.npy`. Registered in gntkit.shards.registry, the format goes through
`convert`, `verify` and gntkit.datasets (ShardSet and the PyTorch adapter) with no other
change, and every label and pixel read back equals the sample stream's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gntkit import datasets
from gntkit.datasets._files import check_records, load_index, readonly
from gntkit.errors import FormatError, GntkitError
from gntkit.samples.batch import SampleBatch
from gntkit.samples.charset import Charset
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import iter_batches
from gntkit.shards.convert import convert
from gntkit.shards.manifest import INDEX_FOLDER, MANIFEST
from gntkit.shards.registry import FORMATS, OutputFormat, output_format, register, unregister
from gntkit.shards.verify import verify
from gntkit.shards.writer import PixelView, ShardWriter
from gntkit.tools.synth import write_corpus

HEADER = np.dtype([("key", "<u4"), ("writer_id", "<u4"), ("character", "<u4"), ("label", "<i8"), ("tag_code", "<u2"),
                   ("height", "<u4"), ("width", "<u4")])
TEXT = ("key", "writer_id", "character")
SIZE = 16


# --------------------------------------------------------------------------- the format's module: writer


class ToyWriter(ShardWriter):
    """Writes the toy layout; no compression."""

    format = "toy"

    def _open(self) -> None:
        self._file = open(self.partial_path, "wb")

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        ends = np.empty(len(batch), np.int64)
        position = self._end_offset
        for i in range(len(batch)):
            texts = [batch.keys[i].encode(), batch.writer_ids[i].encode(), batch.characters[i].encode()]
            header = np.array([(*map(len, texts), batch.labels[i], batch.tag_codes[i], batch.heights[i], batch.widths[i])], HEADER)
            record = header.tobytes() + b"".join(texts) + pixels.image(i).tobytes()
            self._file.write(record)
            position += len(record)
            ends[i] = position
        self._add_offsets(ends)

    def _finish(self) -> tuple[int, None]:
        self._file.close()
        return self._end_offset, None  # the base hashes the finished file

    def _discard(self) -> None:
        self._file.close()


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """What the manifest says about the toy layout."""
    return {"record": f"header {HEADER.descr}, then key, writer_id, character (UTF-8), then height x width uint8 pixels",
            "raw": bool(raw), "shape": None if raw else [image_size, image_size]}


# --------------------------------------------------------------------------- the format's module: readers


def _records(data: np.ndarray, ends: np.ndarray):
    """(header, texts, pixel start) of every record, from the end offsets."""
    start = 0
    for end in ends:
        header = np.frombuffer(data, HEADER, 1, start)[0]
        at, texts = start + HEADER.itemsize, {}
        for name in TEXT:
            texts[name] = bytes(data[at:at + int(header[name])]).decode()
            at += int(header[name])
        yield header, texts, at
        start = int(end)


def read_shard(path, compression: str | None = None):
    """The stock reader: one dict per sample (key, writer_id, character, tag_code, label, image)."""
    data = np.fromfile(path, np.uint8)
    path = Path(path)
    beside = path.with_name(path.name + ".index.npy")  # while the writer's shard is not yet finalised
    offsets = np.load(beside if beside.is_file() else path.parent / INDEX_FOLDER / beside.name)
    for header, texts, at in _records(data, offsets[1:]):
        height, width = int(header["height"]), int(header["width"])
        image = data[at:at + height * width].reshape(height, width)
        yield {**texts, "tag_code": int(header["tag_code"]), "label": int(header["label"]), "image": image}


class ShardReader:
    """Random access to one toy shard for gntkit.datasets: `buf`, pixel `positions`, `labels`."""

    def __init__(self, shard, image_size: int | None, compression: str | None = None):
        self.shard, self.image_size = shard, image_size
        self.buf = readonly(np.fromfile(shard.path, np.uint8))
        ends = load_index(shard, len(self.buf))[1:]
        parsed = list(_records(self.buf, ends))
        check_records(shard, len(parsed))
        self.labels = np.array([int(header["label"]) for header, _, _ in parsed], np.int64)
        self.positions = np.array([at for _, _, at in parsed], np.int64)
        self.shapes = [(int(header["height"]), int(header["width"])) for header, _, _ in parsed]

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Record j: (uint8 image, label)."""
        height, width = self.shapes[j]
        start = int(self.positions[j])
        return np.array(self.buf[start:start + height * width]).reshape(height, width), int(self.labels[j])

    def read(self, local: np.ndarray, out_images: np.ndarray, out_labels: np.ndarray) -> None:
        """Records `local` of this shard into out_images (B, S, S) and out_labels (B,)."""
        for row, j in enumerate(local):
            out_images[row], out_labels[row] = self.get(int(j))


def prepare_bulk(bulk, readers: list) -> None:
    """Nothing to gather ahead: each read asks the shard readers."""


def read_rows(bulk, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """Records `rows` of the bulk record space into images and labels."""
    for out, row in enumerate(rows):
        reader, j = bulk.where(int(row))
        images[out], labels[out] = reader.get(j)


TOY = OutputFormat("toy", "Toy", "toy", ToyWriter, sys.modules[__name__], aliases=("toyrec",), has_index=True)


# --------------------------------------------------------------------------- the tests


@pytest.fixture()
def toy_format():
    register(TOY)
    yield TOY
    unregister(TOY.name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("toy") / "gnt", writers=2, num_classes=6, samples_per_class=2, style="f",
                        num_symbols=2, seed=3)[0].parent


def stream_truth(corpus, folder):
    """The sample stream's images, labels and keys for the converted folder's charset and preprocessing."""
    batches = list(iter_batches(corpus, Charset.load(folder), Preprocess(size=SIZE)))
    return (np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]).astype(np.int64),
            [key for b in batches for key in b.keys])


def test_a_registered_format_converts_verifies_and_reads_back(toy_format, corpus, tmp_path):
    out = tmp_path / "toy"
    manifest = convert(corpus, out, to="toyrec", preprocess=Preprocess(size=SIZE), charset="data", shard_records=7, workers=1)
    assert manifest["format"] == "toy" and manifest["features"]["shape"] == [SIZE, SIZE]
    shards = manifest["splits"]["all"]["shards"]
    assert len(shards) > 1 and all(s["file"].endswith(".toy") and s["index"] for s in shards)
    assert verify(out)["records"] == manifest["splits"]["all"]["num_records"]

    images, labels, keys = stream_truth(corpus, out)
    assert [sample["key"] for shard in shards for sample in read_shard(out / shard["file"])] == keys
    split = datasets.open(out)
    assert split.format == "toy" and len(split) == len(labels)
    read_images, read_labels = split.read_arrays()
    assert np.array_equal(read_images, images) and np.array_equal(read_labels, labels)
    order = np.random.default_rng(0).permutation(len(labels))
    batch_images, batch_labels = split.read_batch(order)
    assert np.array_equal(batch_images, images[order]) and np.array_equal(batch_labels, labels[order])
    streamed_images, streamed_labels = split.read_batch(order, streaming=True)
    assert np.array_equal(streamed_images, images[order]) and np.array_equal(streamed_labels, labels[order])
    for i in (0, len(labels) - 1):
        image, label = split.get(i)
        assert np.array_equal(image, images[i]) and label == labels[i]


def test_the_torch_adapter_reads_a_registered_format(toy_format, corpus, tmp_path):
    torch_adapter = pytest.importorskip("gntkit.datasets.torch")
    out = tmp_path / "toy"
    convert(corpus, out, to="toy", preprocess=Preprocess(size=SIZE), charset="data", shard_records=5, workers=1)
    images, labels, _ = stream_truth(corpus, out)
    seen = []
    for batch_images, batch_labels in torch_adapter.make_loader(out, batch_size=4, shuffle=False):
        seen.append((batch_images.numpy(), batch_labels.numpy()))
    assert np.array_equal(np.concatenate([i for i, _ in seen]), images)
    assert np.array_equal(np.concatenate([b for _, b in seen]), labels)


def test_verify_finds_a_changed_toy_record(toy_format, corpus, tmp_path):
    out = tmp_path / "toy"
    manifest = convert(corpus, out, to="toy", preprocess=Preprocess(size=SIZE), charset="data", workers=1)
    shard = out / manifest["splits"]["all"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(GntkitError, match="expected sha256"):
        verify(out)


def test_registering_twice_or_under_a_taken_alias_is_refused(toy_format):
    with pytest.raises(GntkitError, match="already registered"):
        register(TOY)
    with pytest.raises(GntkitError, match="'h5' already registered"):
        register(OutputFormat("other", "Other", "oth", ToyWriter, sys.modules[__name__], aliases=("h5",)))
    assert output_format("TOYREC") is TOY


def test_an_unregistered_format_is_unknown_everywhere(tmp_path, corpus):
    assert "toy" not in FORMATS
    with pytest.raises(GntkitError, match="Unknown shard format 'toy'"):
        convert(corpus, tmp_path / "toy", to="toy", workers=1)
    with pytest.raises(GntkitError, match="Unknown shard format"):
        ToyWriter(tmp_path / "x.toy", split="train", attrs={})


def test_a_toy_manifest_is_refused_once_the_format_is_gone(toy_format, corpus, tmp_path):
    out = tmp_path / "toy"
    convert(corpus, out, to="toy", preprocess=Preprocess(size=SIZE), charset="data", workers=1)
    unregister("toy")
    with pytest.raises(FormatError, match="format one of"):
        datasets.open(out)
    assert (out / MANIFEST).is_file()
