"""A new image source format is one module plus one registry line: a toy format defined here, in
the test, registered with gntkit.formats.register_format, converts to all three shard formats,
and the stock readers (tf.data, h5py, webdataset) give back every pixel and label."""

import sys
import types

import numpy as np
import pytest

from gntkit import formats
from gntkit.errors import FormatError
from gntkit.formats.base import DEFAULT_MAX_SIDE, BitmapFile, BitmapIndex, Problem, check_buffer, check_options
from gntkit.samples.charset import decode_tag
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert, default_name

# The toy layout: the magic "TOYF", then records back to back: tag code (2 bytes, big-endian,
# GB2312 as in GNT), height (1 byte), width (1 byte), height*width pixels (255 = background).
MAGIC = b"TOYF"


def _index(buf, path, on_error):
    """Every whole record's offset, code and size; a record cut short is damage (raise or skip the rest)."""
    rows, problems, pos = [], [], len(MAGIC)
    while pos < len(buf):
        if pos + 4 > len(buf) or pos + 4 + int(buf[pos + 2]) * int(buf[pos + 3]) > len(buf):
            expected, found = "a whole toy record", f"{len(buf) - pos} bytes (truncated)"
            if on_error == "raise":
                raise FormatError(path, pos, expected, found)
            problems.append(Problem(path, pos, expected, found, skipped_bytes=len(buf) - pos, skipped_records=1))
            break
        height, width = int(buf[pos + 2]), int(buf[pos + 3])
        rows.append((pos, int(buf[pos]) << 8 | int(buf[pos + 1]), width, height, len(rows)))
        pos += 4 + height * width
    table = np.array(rows, np.int64).reshape(-1, 5)
    return BitmapIndex(table[:, 0].copy(), table[:, 1].astype(np.uint16), table[:, 2].astype(np.int32), table[:, 3].astype(np.int32),
                       table[:, 4].copy(), problems)


class ToyFile(BitmapFile):
    PIXELS_AFTER = 4

    def __init__(self, buf, path="<bytes>", on_error="raise", max_side=DEFAULT_MAX_SIDE):
        check_options(on_error, max_side)
        self.buf = check_buffer(buf, "toy bytes")
        self.path = str(path)
        if bytes(self.buf[:4]) != MAGIC:
            raise FormatError(self.path, 0, 'the magic "TOYF"', repr(bytes(self.buf[:4])))
        self.index = _index(self.buf, self.path, on_error)


def _toy_module():
    """The whole format: what gntkit.formats asks of a format module, and nothing more."""
    module = types.ModuleType("toy_format_for_tests")
    module.NAME = "toy"
    module.DESCRIPTION = "a toy bitmap format"
    module.DEFAULT_CHARSET = "data"
    module.SUFFIX = ".toy"
    module.matches_name = lambda name: name.lower().endswith(".toy")
    module.sniff = lambda head, size: head.startswith(MAGIC)
    module.writer_id = lambda name: formats.writer_id_from_stem(name.replace("\\", "/").rsplit("/", 1)[-1][:-4])
    module.open_file = ToyFile
    return module


def encode(codes, bitmaps) -> bytes:
    """The bytes of a toy file holding these bitmaps."""
    chunks = [MAGIC]
    for code, bitmap in zip(codes, bitmaps, strict=True):
        chunks.append(bytes([code >> 8, code & 0xFF, *bitmap.shape]) + bitmap.tobytes())
    return b"".join(chunks)


@pytest.fixture
def toy_source(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "toy_format_for_tests", _toy_module())
    formats.register_format("toy", "toy_format_for_tests")
    rng = np.random.default_rng(21)
    codes = [0xB0A2, 0xB0A1, 0xB0A3, 0xB0A1, 0xB0A2, 0xB0A3, 0xB0A1]
    bitmaps = [rng.integers(0, 256, (int(rng.integers(1, 40)), int(rng.integers(1, 40))), dtype=np.uint8) for _ in codes]
    path = tmp_path / "src" / "7001-c.toy"
    path.parent.mkdir()
    path.write_bytes(encode(codes, bitmaps))
    yield path, codes, bitmaps
    del formats.FORMATS["toy"]  # the registration ends with the test


def _read_tfrecord(shards):
    tf = pytest.importorskip("tensorflow")
    description = {"image": tf.io.FixedLenFeature([], tf.string), "height": tf.io.FixedLenFeature([], tf.int64),
                   "width": tf.io.FixedLenFeature([], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)}
    out = []
    for record in tf.data.TFRecordDataset([str(p) for p in shards]):
        example = tf.io.parse_single_example(record, description)
        shape = (int(example["height"]), int(example["width"]))
        out.append((np.frombuffer(example["image"].numpy(), np.uint8).reshape(shape), int(example["label"])))
    return out


def _read_hdf5(shards):
    h5py = pytest.importorskip("h5py")
    out = []
    for shard in shards:
        with h5py.File(shard, "r") as f:
            pixels, offsets = f["pixels"][:], f["pixel_offsets"][:]
            for i, (height, width, label) in enumerate(zip(f["heights"][:], f["widths"][:], f["labels"][:])):
                out.append((pixels[offsets[i]:offsets[i + 1]].reshape(height, width), int(label)))
    return out


def _read_webdataset(shards):
    wds = pytest.importorskip("webdataset")
    urls = [str(p) for p in shards]
    return [(np.asarray(sample["png"]), int(sample["cls"])) for sample in wds.WebDataset(urls, shardshuffle=False).decode("l8")]


@pytest.mark.parametrize("to,read", [("tfrecord", _read_tfrecord), ("hdf5", _read_hdf5), ("webdataset", _read_webdataset)])
def test_a_toy_format_converts_to_every_shard_format(tmp_path, toy_source, to, read):
    path, codes, bitmaps = toy_source
    assert formats.format_by_name(path.name).NAME == "toy" and formats.sniff_format(path.read_bytes()[:64], 4).NAME == "toy"
    assert default_name([path]) == "7001_c"  # the registered suffix is stripped like the built-in ones
    manifest = convert(path.parent, tmp_path / to, to=to, preprocess=Preprocess(raw=True), workers=1)
    classes = sorted(set(codes))  # charset "data": the codes found, in code order
    assert manifest["source_formats"] == ["toy"] and manifest["charset"]["num_classes"] == len(classes)
    assert (tmp_path / to / "charset.txt").read_text(encoding="utf-8").split() == [decode_tag(c) for c in classes]
    found = read([tmp_path / to / shard["file"] for shard in manifest["splits"]["all"]["shards"]])
    assert len(found) == len(bitmaps)
    for (image, label), bitmap, code in zip(found, bitmaps, codes):
        np.testing.assert_array_equal(image, bitmap)
        assert label == classes.index(code)


def test_a_toy_format_reports_damage_like_the_built_in_ones(tmp_path, toy_source):
    path, codes, bitmaps = toy_source
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FormatError, match="7001-c.toy at byte"):
        convert(path, tmp_path / "raise", to="tfrecord", preprocess=Preprocess(raw=True), workers=1)
    manifest = convert(path, tmp_path / "skip", to="tfrecord", preprocess=Preprocess(raw=True), workers=1, on_error="skip")
    assert manifest["lost_anything"] and manifest["skipped"]["skipped_records"] == 1
    assert manifest["stats"]["samples_written"] == len(bitmaps) - 1
