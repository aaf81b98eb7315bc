"""Shard writers: CRC32C against a bitwise reference, and TFRecord / HDF5 / WebDataset shards
read back with the stock readers (tf.data, h5py, webdataset), pixel- and label-exact.

Batches are built by hand: seeded random images, Chinese characters and ASCII symbols,
keys like "1001/0", in fixed-size (64x64) and raw (variable-size) modes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.kernels import crc32c as crc_kernels
from gntkit.samples.batch import SampleBatch
from gntkit.shards import tfrecord
from gntkit.shards.digest import shard_size
from gntkit.shards.registry import FORMATS, get_format_module, get_writer_class, output_format
from gntkit.shards.writer import utf8_column
from gntkit.tools.reference import crc32c as naive_crc32c

ATTRS = {"gntkit_version": "0.1.0", "charset": {"name": "test", "classes": ["啊", "!"]}, "preprocess": {"size": 64, "raw": False}}
CHARACTERS = ["啊", "!", "阿", "A", "座", "?", "𠀀", "é"]


def make_batch(n: int, *, seed: int, start: int = 0, writer: str = "1001", raw: bool = False, size: int = 64) -> SampleBatch:
    """n samples with keys f"{writer}/{start+i}"; fixed size x size images or raw variable sizes."""
    rng = np.random.default_rng(seed)
    characters = [CHARACTERS[i % len(CHARACTERS)] for i in range(start, start + n)]
    tag_codes = np.array([0xB0A1, 0x2100, 0xB0A2, 0x4100, 0xD7F9, 0x3F00, 0x8140, 0x8141], np.uint16)
    fields = dict(
        keys=[f"{writer}/{i}" for i in range(start, start + n)],
        writer_ids=[writer] * n,
        tag_codes=tag_codes[np.arange(start, start + n) % len(tag_codes)],
        labels=rng.integers(0, 3755, n).astype(np.int64),
        characters=characters,
    )
    if raw:
        heights = rng.integers(1, 90, n)
        widths = rng.integers(1, 90, n)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(heights * widths, out=offsets[1:])
        return SampleBatch(**fields, heights=heights, widths=widths,
                           pixels=rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8), pixel_offsets=offsets)
    return SampleBatch(**fields, heights=np.full(n, size), widths=np.full(n, size),
                       images=rng.integers(0, 256, (n, size, size), dtype=np.uint8))


def expected_samples(*batches):
    for batch in batches:
        for i in range(len(batch)):
            yield {"key": batch.keys[i], "writer_id": batch.writer_ids[i], "character": batch.characters[i],
                   "tag_code": int(batch.tag_codes[i]), "label": int(batch.labels[i]), "image": batch.image(i)}


def assert_same_samples(got, batches):
    want = list(expected_samples(*batches))
    got = list(got)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: g[k] for k in w if k != "image"} == {k: w[k] for k in w if k != "image"}
        assert g["image"].dtype == np.uint8 and g["image"].shape == w["image"].shape
        np.testing.assert_array_equal(g["image"], w["image"])


def write_shard(fmt, path, batches, compression=None):
    cls = get_writer_class(fmt)
    with cls(str(path), split="train", attrs=ATTRS, compression=compression) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.close()


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --------------------------------------------------------------------------- CRC32C
def test_crc32c_known_vector():
    assert naive_crc32c.crc32c(b"123456789") == 0xE3069283
    assert crc_kernels.crc32c(b"123456789") == 0xE3069283
    assert crc_kernels.crc32c(b"") == 0
    # RFC 3720 B.4: 32 bytes of zeros, of 0xFF
    assert crc_kernels.crc32c(bytes(32)) == 0x8A9136AA
    assert crc_kernels.crc32c(b"\xff" * 32) == 0x62A8AB43


def test_crc32c_matches_bitwise_reference_on_random_input():
    rng = np.random.default_rng(0)
    for length in list(range(0, 20)) + [63, 64, 65, 1000, 4099]:
        data = rng.integers(0, 256, length + 3, dtype=np.uint8)
        for start in (0, 3):  # also unaligned starts
            chunk = data[start:start + length]
            want = naive_crc32c.crc32c(chunk.tobytes())
            assert crc_kernels.crc32c(chunk) == want
            assert crc_kernels.crc32c_update_table(0, data, start, start + length) == want
            assert crc_kernels.crc32c_update(0, data, start, start + length) == want
    data = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
    assert crc_kernels.crc32c(data[200:], crc_kernels.crc32c(data[:200])) == naive_crc32c.crc32c(data)


def test_masked_crc_matches_reference_and_inverts():
    rng = np.random.default_rng(1)
    for crc in [0, 1, 0xFFFFFFFF, 0xE3069283] + [int(v) for v in rng.integers(0, 2**32, 50, dtype=np.uint64)]:
        assert crc_kernels.mask_crc(crc) == naive_crc32c.mask(crc)
        assert crc_kernels.unmask_crc(crc_kernels.mask_crc(crc)) == crc
    assert crc_kernels.masked_crc32c(b"123456789") == naive_crc32c.mask(0xE3069283)


def test_crc32c_batch_and_its_checks():
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, 3000, dtype=np.uint8)
    offsets = np.array([0, 0, 7, 100, 1024, 2999, 3000])
    got = crc_kernels.crc32c_batch(data, offsets)
    assert got.dtype == np.uint32
    assert got.tolist() == [naive_crc32c.crc32c(data[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])]
    for bad in ([0, 3001], [5, 3], [-1, 4], [[0, 1]]):
        with pytest.raises(ValueError):
            crc_kernels.crc32c_batch(data, np.array(bad))
    with pytest.raises(ValueError):
        crc_kernels.crc32c(b"x", crc=2**32)


# --------------------------------------------------------------------------- TFRecord framing
def test_frame_records_frames_every_record():
    records = [b"", b"x", bytes(range(256)) * 3]
    frames, offsets = tfrecord.frame_records(records)
    assert frames.dtype == np.uint8 and offsets.tolist() == [0, 16, 33, 33 + 16 + 768]
    assert parse_frames(frames.tobytes()) == records
    frames, offsets = tfrecord.frame_records([])
    assert frames.size == 0 and offsets.tolist() == [0]


def test_example_features_go_out_in_key_order_when_a_key_prefixes_another():
    # TensorFlow's deterministic serialization sorts keys as strings ("label" before "label_sequence");
    # every length here is below 128, so each is one varint byte.
    def field(tag: int, payload: bytes) -> bytes:
        return bytes([tag, len(payload)]) + payload

    def entry(name: str, feature: bytes) -> bytes:
        return field(0x0A, field(0x0A, name.encode()) + field(0x12, feature))

    minus_one = b"\xff" * 9 + b"\x01"
    want = field(0x0A, entry("label", field(0x1A, field(0x0A, minus_one))) + entry("label_sequence", field(0x1A, b""))
                 + entry("text", field(0x0A, field(0x0A, b"ab"))))
    data = tfrecord._example(tfrecord.example_class(), {"text": b"ab", "label_sequence": [], "label": [-1]})
    assert data == want


# --------------------------------------------------------------------------- shared pieces
def test_registry_and_lazy_imports():
    assert set(FORMATS) == {"tfrecord", "hdf5", "webdataset", "lmdb", "paddleocr"}
    assert [output_format(name).extension for name in ("tfrecord", "h5", "wds")] == ["tfrecord", "h5", "tar"]
    assert [get_writer_class(name).format for name in FORMATS] == list(FORMATS)
    assert get_writer_class("H5") is get_writer_class("hdf5")
    with pytest.raises(GntkitError, match="Unknown shard format"):
        get_writer_class("parquet")
    code = ("import sys, gntkit.shards.writer, gntkit.shards.tfrecord, gntkit.shards.hdf5, gntkit.shards.webdataset, gntkit.shards.lmdb, "
            "gntkit.shards.paddleocr; print(sorted(m for m in ('tensorflow', 'torch', 'h5py', 'webdataset', 'lmdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_utf8_column_matches_per_string_encoding():
    strings = ["啊", "!", "", "1001/0", "𠀀x", "é", "C001", "ab啊cd"]
    data, offsets = utf8_column(strings, "keys")
    assert [data[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:])] == strings
    data, offsets = utf8_column(["a", "bc"], "keys")
    assert data == b"abc" and offsets.tolist() == [0, 1, 3]
    with pytest.raises(GntkitError, match=r"keys\[1\] must be a str"):
        utf8_column(["a", b"b"], "keys")
    with pytest.raises(GntkitError, match="not valid Unicode"):
        utf8_column(["\ud800"], "keys")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_feature_spec_is_json(fmt):
    module = get_format_module(fmt)
    for raw, size in ((False, 64), (True, None)):
        spec = module.feature_spec(raw, size)
        assert json.loads(json.dumps(spec)) == spec
        assert spec["image"]["raw"] is raw
        assert spec["image"]["shape"] == (None if raw else [64, 64])
    with pytest.raises(GntkitError, match="positive image_size"):
        module.feature_spec(False, None)


# --------------------------------------------------------------------------- TFRecord
def parse_frames(data: bytes):
    """Split a TFRecord file into Example payloads, checking every length and CRC with the reference."""
    pos, payloads = 0, []
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        assert length_crc == naive_crc32c.mask(naive_crc32c.crc32c(data[pos:pos + 8]))
        payload = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", data, pos + 12 + length)
        assert data_crc == naive_crc32c.mask(naive_crc32c.crc32c(payload))
        payloads.append(payload)
        pos += 16 + length
    assert pos == len(data)
    return payloads


def reference_example(sample) -> bytes:
    """The same Example built and serialized by protobuf (deterministic: sorted map keys)."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    feature = example.features.feature
    image = sample["image"]
    feature["image"].bytes_list.value.append(image.tobytes())
    for name, value in (("height", image.shape[0]), ("width", image.shape[1]), ("label", sample["label"]),
                        ("tag_code", sample["tag_code"])):
        feature[name].int64_list.value.append(int(value))
    for name in ("character", "writer_id", "key"):
        feature[name].bytes_list.value.append(sample[name].encode("utf-8"))
    return example.SerializeToString(deterministic=True)


def test_tfrecord_examples_equal_protobuf_serialization():
    pytest.importorskip("tensorflow")
    from gntkit.shards.tfrecord import serialize_batch

    batch = make_batch(6, seed=3, raw=True)
    # Varint edge cases: 0, 127/128 boundaries, large and negative int64.
    batch.labels[:] = [0, 127, 128, 2**40, -1, -(2**63)]
    frames, offsets = serialize_batch(batch)
    payloads = parse_frames(frames.tobytes())
    assert offsets.tolist() == np.cumsum([0] + [16 + len(p) for p in payloads]).tolist()
    for payload, sample in zip(payloads, expected_samples(batch)):
        assert payload == reference_example(sample)


@pytest.mark.parametrize("raw", [False, True])
def test_tfrecord_round_trip_with_tensorflow(tmp_path, raw):
    pytest.importorskip("tensorflow")
    from gntkit.shards.tfrecord import read_shard

    batches = [make_batch(12, seed=4, raw=raw), make_batch(9, seed=5, start=12, raw=raw), make_batch(0, seed=6, raw=raw)]
    path = tmp_path / "hw-train.tfrecord-00000-of-00001"
    info = write_shard("tfrecord", path, batches)
    assert info["records"] == 21 and info["bytes"] == path.stat().st_size and info["sha256"] == sha256(path)
    assert info["index"] == path.name + ".index.npy"
    assert_same_samples(read_shard(path), batches)
    # The index: record i's frame parses alone from its slice.
    offsets = np.load(tmp_path / info["index"])
    data = path.read_bytes()
    assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(data) and len(offsets) == 22
    from tensorflow.core.example import example_pb2

    for i, sample in enumerate(expected_samples(*batches)):
        (payload,) = parse_frames(data[offsets[i]:offsets[i + 1]])
        example = example_pb2.Example.FromString(payload)
        assert example.features.feature["key"].bytes_list.value[0].decode() == sample["key"]


def test_tfrecord_spec_parses_with_tf_io(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from gntkit.shards.tfrecord import feature_spec, tf_feature_description

    batch = make_batch(5, seed=7)
    path = tmp_path / "s.tfrecord"
    write_shard("tfrecord", path, [batch])
    description = tf_feature_description(feature_spec(False, 64))
    assert set(description) == {"image", "height", "width", "label", "tag_code", "character", "writer_id", "key"}
    records = next(iter(tf.data.TFRecordDataset(str(path)).batch(5)))
    parsed = tf.io.parse_example(records, description)
    images = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), [-1, 64, 64]).numpy()
    np.testing.assert_array_equal(images, batch.images)
    assert parsed["character"].numpy()[0].decode() == "啊"


def test_tfrecord_gzip_round_trip_and_determinism(tmp_path):
    pytest.importorskip("tensorflow")
    import gzip

    from gntkit.shards.tfrecord import read_shard

    batches = [make_batch(10, seed=8), make_batch(4, seed=9, start=10)]
    a = write_shard("tfrecord", tmp_path / "a.tfrecord", batches, compression="gzip")
    b = write_shard("tfrecord", tmp_path / "b.tfrecord", batches, compression="GZIP")
    assert a["index"] is None and not (tmp_path / "a.tfrecord.index.npy").exists()
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "b.tfrecord").read_bytes()
    assert a["sha256"] == b["sha256"] == sha256(tmp_path / "a.tfrecord")
    assert a["bytes"] == (tmp_path / "a.tfrecord").stat().st_size
    plain = write_shard("tfrecord", tmp_path / "p.tfrecord", batches)
    assert gzip.decompress((tmp_path / "a.tfrecord").read_bytes()) == (tmp_path / "p.tfrecord").read_bytes()
    assert plain["bytes"] > a["bytes"] * 0  # both written
    assert_same_samples(read_shard(tmp_path / "a.tfrecord", compression="gzip"), batches)


def test_tfrecord_deterministic_bytes(tmp_path):
    batches = [make_batch(7, seed=10, raw=True), make_batch(3, seed=11, start=7, raw=True)]
    a = write_shard("tfrecord", tmp_path / "a.tfrecord", batches)
    b = write_shard("tfrecord", tmp_path / "b.tfrecord", batches)
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "b.tfrecord").read_bytes()
    assert a["sha256"] == b["sha256"]
    np.testing.assert_array_equal(np.load(tmp_path / a["index"]), np.load(tmp_path / b["index"]))
    # Records are framed exactly as TFRecord requires (checked with the bitwise CRC).
    assert len(parse_frames((tmp_path / "a.tfrecord").read_bytes())) == 10


# --------------------------------------------------------------------------- HDF5
@pytest.mark.parametrize("raw,compression", [(False, None), (True, None), (False, "lzf"), (True, "gzip")])
def test_hdf5_round_trip_and_layout(tmp_path, raw, compression):
    h5py = pytest.importorskip("h5py")
    from gntkit.shards.hdf5 import read_shard

    batches = [make_batch(11, seed=12, raw=raw), make_batch(6, seed=13, start=11, raw=raw)]
    path = tmp_path / "s.h5"
    info = write_shard("hdf5", path, batches, compression=compression)
    assert info == {"records": 17, "bytes": path.stat().st_size, "sha256": sha256(path), "index": None}
    assert_same_samples(read_shard(path, compression=compression), batches)
    with h5py.File(path, "r") as f:
        assert f.attrs["num_records"] == 17 and f.attrs["split"] == "train" and f.attrs["gntkit_version"] == "0.1.0"
        assert json.loads(f.attrs["charset"]) == ATTRS["charset"]
        assert json.loads(f.attrs["preprocess"]) == ATTRS["preprocess"]
        if raw:
            assert f["pixels"].dtype == np.uint8 and f["pixel_offsets"].dtype == np.int64
            assert f["pixel_offsets"].shape == (18,) and f["pixel_offsets"][0] == 0
            assert f["pixel_offsets"][-1] == f["pixels"].shape[0]
        else:
            assert f["images"].shape == (17, 64, 64) and f["images"].dtype == np.uint8
            assert f["images"].chunks[1:] == (64, 64)
        for name, dtype in (("heights", np.int32), ("widths", np.int32), ("labels", np.int64), ("tag_codes", np.uint16)):
            assert f[name].dtype == dtype and f[name].shape == (17,)
        for name in ("writer_ids", "keys", "characters"):
            assert h5py.check_string_dtype(f[name].dtype).encoding == "utf-8"
        assert f["characters"].asstr()[0] == "啊" and f["keys"].asstr()[1] == "1001/1"
        main = f["pixels" if raw else "images"]
        assert main.compression == compression and main.chunks is not None


@pytest.mark.parametrize("compression", [None, "lzf"])
def test_hdf5_batches_across_chunk_boundaries(tmp_path, monkeypatch, compression):
    # 5 images a chunk: batches that end inside a chunk, fill one exactly, or stay inside one
    # (uncompressed chunks are written with write_direct_chunk, the last partial one by h5py).
    h5py = pytest.importorskip("h5py")
    import gntkit.shards.hdf5
    from gntkit.shards.hdf5 import read_shard

    monkeypatch.setattr(gntkit.shards.hdf5, "IMAGE_CHUNK_BYTES", 5 * 64 * 64)
    sizes, start, batches = [3, 7, 5, 1, 1, 11, 4], 0, []
    for i, n in enumerate(sizes):
        batches.append(make_batch(n, seed=40 + i, start=start))
        start += n
    path = tmp_path / "c.h5"
    info = write_shard("hdf5", path, batches, compression=compression)
    assert info["records"] == sum(sizes) == 32  # the last chunk holds 2
    with h5py.File(path, "r") as f:
        assert f["images"].chunks == (5, 64, 64)
        np.testing.assert_array_equal(f["images"][:], np.concatenate([b.images for b in batches]))
    assert_same_samples(read_shard(path), batches)


def test_hdf5_empty_shard_and_missing_attrs(tmp_path):
    pytest.importorskip("h5py")
    from gntkit.shards.hdf5 import HDF5Writer, read_shard

    info = write_shard("hdf5", tmp_path / "e.h5", [])
    assert info["records"] == 0 and list(read_shard(tmp_path / "e.h5")) == []
    with pytest.raises(GntkitError, match="charset"):
        HDF5Writer(str(tmp_path / "x.h5"), split="train", attrs={})
    assert not (tmp_path / "x.h5.partial").exists()


# --------------------------------------------------------------------------- WebDataset
@pytest.mark.parametrize("raw", [False, True])
def test_webdataset_round_trip_with_webdataset(tmp_path, raw):
    pytest.importorskip("webdataset")
    from gntkit.shards.webdataset import read_shard

    batches = [make_batch(10, seed=14, raw=raw), make_batch(5, seed=15, start=10, raw=raw, writer="C001")]
    batches[1].writer_ids[:] = ["C001"] * 5
    path = tmp_path / "hw-train.tar-00000-of-00001"
    info = write_shard("webdataset", path, batches)
    assert info["records"] == 15 and info["bytes"] == path.stat().st_size and info["sha256"] == sha256(path)
    assert_same_samples(read_shard(path), batches)


def test_webdataset_members_index_and_tarfile_equality(tmp_path):
    from PIL import Image

    batches = [make_batch(6, seed=16), make_batch(4, seed=17, start=6)]
    path = tmp_path / "s.tar"
    info = write_shard("webdataset", path, batches)
    data = path.read_bytes()
    samples = list(expected_samples(*batches))
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [f"{s['key']}.{e}" for s in samples for e in ("png", "cls", "json")]
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o444)
        contents = [tar.extractfile(m).read() for m in members]
        # The same members written by tarfile (USTAR) give the same bytes, end padding included.
        again = io.BytesIO()
        with tarfile.open(fileobj=again, mode="w", format=tarfile.USTAR_FORMAT) as out:
            for m, content in zip(members, contents):
                out.addfile(m, io.BytesIO(content))
        assert again.getvalue() == data
    for i, sample in enumerate(samples):
        png, cls, meta = contents[3 * i:3 * i + 3]
        image = Image.open(io.BytesIO(png))
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), sample["image"])
        assert cls == str(sample["label"]).encode()
        assert json.loads(meta) == {"key": sample["key"], "writer_id": sample["writer_id"], "tag_code": sample["tag_code"],
                                    "character": sample["character"], "label": sample["label"], "height": 64, "width": 64}
        assert meta.decode("utf-8") == json.dumps(json.loads(meta), sort_keys=True, ensure_ascii=False)
    assert "啊".encode() in contents[2]  # ensure_ascii=False: UTF-8, not \u escapes
    offsets = np.load(tmp_path / info["index"])
    assert len(offsets) == 11 and offsets[0] == 0
    for i, sample in enumerate(samples):
        with tarfile.open(fileobj=io.BytesIO(data[offsets[i]:offsets[i + 1]] + bytes(1024))) as one:
            assert one.getnames() == [f"{sample['key']}.{e}" for e in ("png", "cls", "json")]
    assert not any(data[offsets[-1]:])  # only the end-of-archive zeros follow the last sample


def test_png_encoder_is_lossless():
    from PIL import Image

    from gntkit.shards.webdataset import encode_png

    rng = np.random.default_rng(31)
    for shape in ((1, 1), (12, 78), (64, 64), (3, 200)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        png = encode_png(image)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        pos, chunks = 8, []
        while pos < len(png):  # every chunk's CRC-32 covers its type and data
            (length,) = struct.unpack_from(">I", png, pos)
            kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
            assert struct.unpack_from(">I", png, pos + 8 + length)[0] == zlib.crc32(kind + data)
            chunks.append(kind)
            pos += 12 + length
        assert chunks == [b"IHDR", b"IDAT", b"IEND"]
        decoded = Image.open(io.BytesIO(png))
        decoded.load()
        assert decoded.mode == "L" and decoded.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(decoded), image)
    with pytest.raises(GntkitError, match="both sides"):
        encode_png(np.zeros((0, 5), np.uint8))


def test_webdataset_deterministic_and_tar_header_equals_tarfile(tmp_path):
    from gntkit.shards.webdataset import tar_header

    batches = [make_batch(5, seed=18, raw=True)]
    a = write_shard("webdataset", tmp_path / "a.tar", batches)
    b = write_shard("webdataset", tmp_path / "b.tar", batches)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes() and a["sha256"] == b["sha256"]
    for name, size in (("1001/0.png", 0), ("啊/12.json", 12345), ("x" * 100, 8**11 - 1)):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o444, 0, 0, "", ""
        assert tar_header(name.encode(), size) == info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


# --------------------------------------------------------------------------- lifecycle and bad input
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_partial_file_then_rename(tmp_path, fmt):
    if output_format(fmt).requires:
        pytest.importorskip(output_format(fmt).requires)
    path = tmp_path / "s.out"
    cls = get_writer_class(fmt)
    writer = cls(str(path), split="train", attrs=ATTRS)
    writer.write(make_batch(3, seed=19))
    assert (tmp_path / "s.out.partial").exists() and not path.exists()
    info = writer.close()
    assert path.exists() and not (tmp_path / "s.out.partial").exists()
    assert writer.close() == info  # idempotent
    with pytest.raises(GntkitError, match="closed"):
        writer.write(make_batch(1, seed=20))
    with pytest.raises(OutputExistsError, match="already exists"):
        cls(str(path), split="train", attrs=ATTRS)
    assert shard_size(path, output_format(fmt)) == info["bytes"]  # untouched (a folder shard: the sum of its files)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_exception_removes_partial(tmp_path, fmt):
    if output_format(fmt).requires:
        pytest.importorskip(output_format(fmt).requires)
    path = tmp_path / "s.out"
    with pytest.raises(RuntimeError):
        with get_writer_class(fmt)(str(path), split="train", attrs=ATTRS) as writer:
            writer.write(make_batch(3, seed=21))
            raise RuntimeError("stream failed")
    assert os.listdir(tmp_path) == []
    writer = get_writer_class(fmt)(str(path), split="train", attrs=ATTRS)
    writer.write(make_batch(2, seed=22))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_existing_index_is_not_overwritten(tmp_path):
    (tmp_path / "s.tfrecord.index.npy").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        get_writer_class("tfrecord")(str(tmp_path / "s.tfrecord"), split="train", attrs=ATTRS)


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset"])
def test_bad_input_is_refused(tmp_path, fmt):
    cls = get_writer_class(fmt)
    with pytest.raises(GntkitError, match="compression"):
        cls(str(tmp_path / "c"), split="train", attrs=ATTRS, compression="zstd")
    with pytest.raises(GntkitError, match="split"):
        cls(str(tmp_path / "c"), split="", attrs=ATTRS)
    with cls(str(tmp_path / "s"), split="train", attrs=ATTRS) as writer:
        writer.write(make_batch(2, seed=23))
        with pytest.raises(GntkitError, match="SampleBatch"):
            writer.write({"keys": []})
        with pytest.raises(GntkitError, match="fixed-size images like the earlier batches, found raw"):
            writer.write(make_batch(2, seed=24, start=2, raw=True))
        with pytest.raises(GntkitError, match="64x64 like the earlier batches, found 32x32"):
            writer.write(make_batch(2, seed=25, start=2, size=32))
        bad = make_batch(2, seed=26, start=2)
        bad.heights[1] = 63
        with pytest.raises(GntkitError, match="record 1 has height x width 63x64"):
            writer.write(bad)
        bad = make_batch(2, seed=27, start=2)
        bad.tag_codes = np.array([1, 70000])
        with pytest.raises(GntkitError, match="tag_codes"):
            writer.write(bad)
        bad = make_batch(2, seed=28, start=2)
        bad.keys[0] = 7
        with pytest.raises(GntkitError, match="str"):
            writer.write(bad)
        assert writer.records == 2
    with cls(str(tmp_path / "r"), split="train", attrs=ATTRS) as writer:
        bad = make_batch(3, seed=29, raw=True)
        bad.pixel_offsets[2] += 1
        with pytest.raises(GntkitError, match="pixel bytes, expected height\\*width"):
            writer.write(bad)
        bad = make_batch(3, seed=29, raw=True)
        bad.pixels = bad.pixels[:-1]
        with pytest.raises(GntkitError, match="must lie within"):
            writer.write(bad)


def test_webdataset_refuses_unusable_keys_and_empty_images(tmp_path):
    cls = get_writer_class("webdataset")
    with cls(str(tmp_path / "s.tar"), split="train", attrs=ATTRS) as writer:
        bad = make_batch(2, seed=30)
        bad.keys[1] = "1001/1.5"
        with pytest.raises(GntkitError, match="cannot name tar members"):
            writer.write(bad)
        bad = make_batch(2, seed=30)
        bad.keys[1] = bad.keys[0]
        with pytest.raises(GntkitError, match="repeats a key"):
            writer.write(bad)
        empty = SampleBatch(keys=["1001/0"], writer_ids=["1001"], tag_codes=np.array([0xB0A1], np.uint16), labels=np.array([0]),
                            characters=["啊"], heights=np.array([0]), widths=np.array([5]), pixels=np.zeros(0, np.uint8),
                            pixel_offsets=np.array([0, 0]))
        with pytest.raises(GntkitError, match="empty image"):
            writer.write(empty)


@pytest.mark.slow
def test_many_batches_all_formats_agree(tmp_path):
    """A larger shard (2,000 records over uneven batches) reads back identically in every format."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("h5py")
    pytest.importorskip("webdataset")
    pytest.importorskip("lmdb")
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("pure-Python kernels: covered by the small round trips")
    sizes = [1, 511, 512, 976]
    batches, start = [], 0
    for seed, n in enumerate(sizes):
        batches.append(make_batch(n, seed=100 + seed, start=start))
        start += n
    for fmt in sorted(FORMATS):
        path = tmp_path / f"s.{fmt}"
        info = write_shard(fmt, path, batches)
        assert info["records"] == 2000
        assert_same_samples(get_format_module(fmt).read_shard(path), batches)
