"""IDX sources (MNIST, Fashion-MNIST, EMNIST): the reader against a plain reference, bad input,
EMNIST transposition and mapping, the gzip container, charsets of class names, mutation fuzzing."""

from __future__ import annotations

import gzip
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import idx
from gntkit.formats.sources import find_members
from gntkit.samples.charset import Charset, builtin, resolve
from gntkit.samples.preprocess import Preprocess, keeps_images
from gntkit.samples.stream import open_source
from gntkit.samples.transform import preprocess_batch, preprocess_chosen
from gntkit.tools.fixtures.idx import idx_bytes, make_digits, write_emnist, write_mnist
from gntkit.tools.reference.idx import read_idx, read_pair

# The fixtures and the resizing paths run the preprocessing kernels: also run with NUMBA_DISABLE_JIT=1.
pytestmark = pytest.mark.numba

KEEP = Preprocess(**idx.PREPROCESS_DEFAULTS)


def _all_images(source) -> tuple[np.ndarray, np.ndarray, list[str]]:
    batches = list(source.batches())
    return (np.concatenate([b.images for b in batches]), np.concatenate([b.labels for b in batches]),
            [k for b in batches for k in b.keys])


@pytest.mark.parametrize("gz", [False, True])
def test_reader_matches_plain_reference(tmp_path, gz):
    info = write_mnist(tmp_path / "mnist", gz=gz, train_count=40, test_count=15)
    source = open_source(tmp_path / "mnist", charset=None, preprocess=KEEP)
    assert source.charset == builtin("mnist") and len(source) == 55
    images, labels, keys = _all_images(source)
    suffix = ".gz" if gz else ""
    expected = [read_pair(tmp_path / "mnist" / f"{w}-images-idx3-ubyte{suffix}", tmp_path / "mnist" / f"{w}-labels-idx1-ubyte{suffix}")
                for w in ("t10k", "train")]  # writer "test" sorts before "train"
    np.testing.assert_array_equal(images, np.concatenate([e[0] for e in expected]))
    np.testing.assert_array_equal(labels, np.concatenate([e[1] for e in expected]).astype(np.int64))
    assert keys[:2] == ["test/0", "test/1"] and keys[15] == "train/0"
    np.testing.assert_array_equal(expected[1][0], info["train"][0])


def test_raw_bitmaps_use_gntkit_convention(tmp_path):
    write_mnist(tmp_path, train_count=12, test_count=10)
    batch = next(open_source(tmp_path, charset="mnist").batches())
    stored = read_idx((tmp_path / "t10k-images-idx3-ubyte").read_bytes())
    assert batch.raw and list(batch.heights) == [28] * 10
    np.testing.assert_array_equal(batch.pixels.reshape(10, 28, 28), 255 - stored)


def test_fast_path_equals_kernel(tmp_path):
    write_mnist(tmp_path, train_count=12, test_count=10)
    record_file = idx.open_file(np.fromfile(tmp_path / "t10k-images-idx3-ubyte", np.uint8), str(tmp_path / "t10k-images-idx3-ubyte"),
                                companions=tuple(find_members(tmp_path)[0].companions))
    chosen = np.arange(10)
    pixels, offsets = record_file.gather(chosen)
    for keep in (KEEP, Preprocess(size=28, margin=0, crop=False, invert=False), Preprocess(size=28, margin=0, crop=False, pad=True)):
        assert keeps_images(keep, 28, 28)
        kernel = preprocess_batch(pixels, offsets, np.full(10, 28, np.int32), np.full(10, 28, np.int32), keep)
        np.testing.assert_array_equal(preprocess_chosen(record_file, chosen, keep), kernel)
    assert not keeps_images(Preprocess(size=32, margin=0, crop=False), 28, 28)
    resized = preprocess_chosen(record_file, chosen, Preprocess(size=32, margin=0, crop=False))
    assert resized.shape == (10, 32, 32)


def test_sources_named_directly_in_folders_zips_and_gz(tmp_path):
    write_mnist(tmp_path / "plain", train_count=12, test_count=10)
    write_mnist(tmp_path / "gz", gz=True, train_count=12, test_count=10)
    # Named directly: the labels file is found beside it.
    assert len(open_source(tmp_path / "plain" / "train-images-idx3-ubyte", charset="mnist")) == 12
    assert len(open_source(tmp_path / "gz" / "t10k-images-idx3-ubyte.gz", charset="mnist")) == 10
    # A zip of the .gz files (as some mirrors ship them), in a subfolder.
    archive = tmp_path / "mnist.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (tmp_path / "gz").iterdir():
            z.write(path, f"mnist/{path.name}")
    members = find_members(archive)
    assert [m.writer_id for m in members] == ["test", "train"]
    assert members[1].layers == (("zip", "mnist/train-images-idx3-ubyte.gz"), ("gzip", "train-images-idx3-ubyte"))
    images, _, _ = _all_images(open_source(archive, charset=None, preprocess=KEEP))
    reference, _, _ = _all_images(open_source(tmp_path / "plain", charset=None, preprocess=KEEP))
    np.testing.assert_array_equal(images, reference)


def test_split_of_and_writer_ids():
    assert idx.writer_id("t10k-images-idx3-ubyte") == "test" and idx.writer_id("train-images.idx3-ubyte") == "train"
    assert idx.writer_id("emnist-balanced-test-images-idx3-ubyte") == "balanced-test"
    assert idx.parse_name("train-images-idx1-ubyte") is None  # images with one dimension: not MNIST's name
    assert idx.matches_name("emnist-letters-mapping.txt") and not idx.matches_name("mapping.txt")


def test_split_of_members_and_the_files_preset(tmp_path):
    from gntkit.formats.gnt import encode_records
    from gntkit.samples.splits import parse_split

    write_mnist(tmp_path / "mnist", gz=True, train_count=12, test_count=10)
    members = find_members(tmp_path / "mnist")
    assert {m.writer_id: idx.split_of(m) for m in members} == {"test": "test", "train": "train"}
    plan = parse_split("files")
    assert plan.names == ["train", "test"] and plan.assign(iter(members)) == {"test": "test", "train": "train"}
    assert parse_split("files", val_fraction=0.0).to_json()["rule"].startswith("train / test from each file's own name")
    with pytest.raises(GntkitError, match="pass the members"):
        plan.assign(["train"])
    (tmp_path / "1001-c.gnt").write_bytes(encode_records([0xB0A1], [np.zeros((2, 2), np.uint8)]))
    with pytest.raises(GntkitError, match=r"1001-c\.gnt: --split 'files' needs a format whose file names say the split"):
        plan.assign(find_members(tmp_path / "1001-c.gnt"))


# ---- bad input ---------------------------------------------------------------------------------------


def _pair(tmp_path, images: bytes, labels: bytes):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    return tmp_path


def _open(tmp_path, on_error="raise"):
    buf = np.fromfile(tmp_path / "train-images-idx3-ubyte", np.uint8)
    labels = np.fromfile(tmp_path / "train-labels-idx1-ubyte", np.uint8)
    return idx.IdxFile(buf, labels, str(tmp_path / "train-images-idx3-ubyte"), str(tmp_path / "train-labels-idx1-ubyte"), on_error=on_error)


IMAGES = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
LABELS = np.array([0, 1, 2, 3, 4], np.uint8)


@pytest.mark.parametrize("mutate, offset, words", [
    (lambda b: b"\x01\x00" + b[2:], 0, "magic bytes 00 00"),
    (lambda b: b[:2] + b"\x0d" + b[3:], 2, "element type 0x0D (float32)"),
    (lambda b: b[:3] + b"\x02" + b[4:], 3, "3 dimension(s)"),
    (lambda b: b[:10], 4, "truncated"),
    (lambda b: b[:4] + struct.pack(">I", 0) + b[8:], 4, "a count of 0"),
    (lambda b: b[:8] + struct.pack(">I", 0) + b[12:], 8, "rows 0"),
])
def test_bad_headers(tmp_path, mutate, offset, words):
    _pair(tmp_path, mutate(idx_bytes(IMAGES)), idx_bytes(LABELS))
    for on_error in ("raise", "skip"):
        with pytest.raises(FormatError, match="train-images-idx3-ubyte") as caught:
            _open(tmp_path, on_error)
        assert caught.value.offset == offset and words in str(caught.value)


def test_dimensions_that_overflow(tmp_path):
    data = idx_bytes(IMAGES)
    huge = data[:4] + struct.pack(">III", 0xFFFFFFFF, 4, 4) + data[16:]
    _pair(tmp_path, huge, idx_bytes(LABELS))
    with pytest.raises(FormatError, match=r"68719476720 bytes of data for dimensions 4294967295 x 4 x 4.*only 80 bytes"):
        _open(tmp_path)
    # With skip: the five whole images are kept; the rest of the claimed count is reported, as is the
    # count mismatch with the labels file.
    record_file = _open(tmp_path, "skip")
    assert len(record_file) == 5 and record_file.index.skipped_records == 0xFFFFFFFF - 5
    assert [p.path.rsplit("-", 2)[-2] for p in record_file.index.problems] == ["idx3", "idx1"]  # truncation, then the count
    side = idx_bytes(IMAGES)[:8] + struct.pack(">II", 0xFFFFFFFF, 0xFFFFFFFF) + idx_bytes(IMAGES)[16:]
    _pair(tmp_path, side, idx_bytes(LABELS))
    with pytest.raises(FormatError, match="image sides of 1 to 4096 pixels.*rows 4294967295"):
        _open(tmp_path, "skip")


def test_truncated_data_raise_and_skip(tmp_path):
    data = idx_bytes(IMAGES)
    _pair(tmp_path, data[:-20], idx_bytes(LABELS))  # image 4 cut after 12 of its 16 bytes... and image 3 whole
    with pytest.raises(FormatError) as caught:
        _open(tmp_path)
    assert caught.value.offset == 16 + 3 * 16 and "only 60 bytes after the header (truncated)" in str(caught.value)
    record_file = _open(tmp_path, "skip")
    assert len(record_file) == 3
    (problem,) = record_file.index.problems  # the counts in the headers agree: no count problem
    assert problem.skipped_records == 2 and problem.skipped_bytes == 12
    np.testing.assert_array_equal(record_file.images(), IMAGES[:3])


def test_extra_bytes(tmp_path):
    _pair(tmp_path, idx_bytes(IMAGES) + b"junk", idx_bytes(LABELS))
    with pytest.raises(FormatError, match="4 more bytes") as caught:
        _open(tmp_path)
    assert caught.value.offset == 16 + 80
    assert len(_open(tmp_path, "skip")) == 5 and _open(tmp_path, "skip").index.skipped_bytes == 4


def test_count_mismatch(tmp_path):
    _pair(tmp_path, idx_bytes(IMAGES), idx_bytes(LABELS[:4]))
    with pytest.raises(FormatError, match=r"train-labels-idx1-ubyte at byte 4: expected 5 labels, one per image of .*found a count of 4"):
        _open(tmp_path)
    record_file = _open(tmp_path, "skip")
    assert len(record_file) == 4 and record_file.index.skipped_records == 1
    # Through the stream: counted in the report, not lost silently.
    source = open_source(tmp_path, charset="mnist", on_error="skip")
    list(source.batches())
    assert source.report.skipped_records == 1 and source.report.kept == 4


def test_labels_outside_the_charset(tmp_path):
    _pair(tmp_path, idx_bytes(IMAGES), idx_bytes(np.array([0, 1, 12, 3, 4], np.uint8)))
    with pytest.raises(GntkitError, match="train-images-idx3-ubyte record 2 .*expected a character in charset 'mnist'"):
        open_source(tmp_path, charset="mnist", on_unknown="error")
    source = open_source(tmp_path, charset="mnist")
    assert len(source) == 4


def test_missing_labels_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(IMAGES))
    with pytest.raises(GntkitError, match="expected its labels file .*found none"):
        find_members(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(LABELS))
    with pytest.raises(GntkitError, match="expected the images file of this labels file"):
        find_members(tmp_path)


def test_damaged_gzip(tmp_path):
    write_mnist(tmp_path, gz=True, train_count=12, test_count=10)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(FormatError, match=r"train-images-idx3-ubyte\.gz.*expected valid (gzip|deflate) data"):
        open_source(tmp_path, charset="mnist")
    path.write_bytes(good[:-30])
    cut = len(good) - 30
    with pytest.raises(FormatError, match=rf"train-images-idx3-ubyte\.gz at byte {cut}: expected a complete gzip stream.*truncated"):
        open_source(tmp_path, charset="mnist")
    # With skip, the damaged member is counted whole and the other split still converts.
    source = open_source(tmp_path, charset="mnist", on_error="skip")
    list(source.batches())
    # Cut short, its records cannot be counted: an unknown number in the bytes up to the cut.
    assert source.report.kept == 10 and len(source.report.problems) == 1
    problem = source.report.problems[0]
    assert problem.records_unknown and problem.skipped_bytes == cut


def test_gzip_size_from_isize(tmp_path):
    write_mnist(tmp_path, gz=True, train_count=12, test_count=10)
    members = {m.writer_id: m for m in find_members(tmp_path)}
    assert members["train"].size == 16 + 12 * 784
    assert members["train"].companions[0].size == 8 + 12


def test_gnt_inside_gzip(tmp_path):
    from gntkit.formats.gnt import encode_records

    data = encode_records([0xB0A1, 0xB0A2], [np.full((3, 4), 7, np.uint8), np.full((2, 2), 9, np.uint8)])
    (tmp_path / "1001-c.gnt.gz").write_bytes(gzip.compress(data))
    source = open_source(tmp_path / "1001-c.gnt.gz", charset="gb2312-1")
    assert len(source) == 2 and [s.key for s in source] == ["1001/0", "1001/1"]


# ---- EMNIST and Fashion-MNIST ------------------------------------------------------------------------


def test_emnist_transposed_and_mapped(tmp_path):
    info = write_emnist(tmp_path / "gzip", count=30, classes=5)
    source = open_source(tmp_path / "gzip", charset=None, preprocess=KEEP)
    assert source.charset.name == "emnist-letters"
    assert source.charset.characters == ["A/a", "B/b", "C/c", "D/d", "E/e"]
    assert list(source.charset.tag_codes) == [1, 2, 3, 4, 5]
    images, labels, keys = _all_images(source)
    np.testing.assert_array_equal(images, info["upright"])  # transposed back: upright
    assert not np.array_equal(images, info["upright"].transpose(0, 2, 1))
    assert (images[:, :, :7] == 0).all()  # the blank band is on the left, where it was drawn
    np.testing.assert_array_equal(labels, info["labels"].astype(np.int64) - 1)  # label 1 -> class 0
    assert keys[0] == "letters-train/0"
    batch = next(source.batches())
    assert batch.characters[:2] == ["A/a", "B/b"]


def test_emnist_mapping_errors(tmp_path):
    write_emnist(tmp_path, count=10, classes=5)
    (tmp_path / "emnist-letters-mapping.txt").write_text("1 65 97\n2 x\n")
    with pytest.raises(FormatError, match=r"emnist-letters-mapping\.txt at byte 8: expected line 2: a label and character code"):
        open_source(tmp_path, charset=None)
    (tmp_path / "emnist-letters-mapping.txt").unlink()
    with pytest.raises(GntkitError, match="expected emnist-letters-mapping.txt"):
        find_members(tmp_path)


def test_fashion_by_folder_name_and_by_charset(tmp_path):
    write_mnist(tmp_path / "data" / "fashion", train_count=12, test_count=10)
    source = open_source(tmp_path / "data" / "fashion", charset=None)
    assert source.charset.name == "fashion-mnist" and source.charset.characters[0] == "T-shirt/top"
    write_mnist(tmp_path / "plain", train_count=12, test_count=10)
    assert open_source(tmp_path / "plain", charset=None).charset.name == "mnist"
    source = open_source(tmp_path / "plain", charset="fashion-mnist")
    assert next(iter(source)).character == "T-shirt/top"
    with pytest.raises(GntkitError, match="mix data sets"):
        idx.native_charset(find_members(tmp_path / "plain") + [m.__class__(**{**m.__dict__, "writer_id": "x"})
                                                                 for m in find_members(tmp_path / "data" / "fashion")])


def test_charsets_of_class_names_round_trip(tmp_path):
    fashion = builtin("fashion-mnist")
    fashion.save(tmp_path)
    assert Charset.load(tmp_path) == fashion  # charset.json
    from_text = Charset.load(tmp_path / "charset.txt")  # names: tag code = line - 1, as IDX labels
    assert from_text.characters == fashion.characters and list(from_text.tag_codes) == list(range(10))
    assert resolve("mnist").characters == [str(d) for d in range(10)]
    with pytest.raises(Exception, match="without line breaks"):
        Charset("bad", [0], ["a\nb"], "x")


# ---- mutation fuzzing ----------------------------------------------------------------------------------

_IMAGES_FILE = idx_bytes(make_digits(6, seed=5)[0])
_LABELS_FILE = idx_bytes(np.arange(6, dtype=np.uint8))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_files(data):
    """Mutated bytes: the reader either reads records that lie inside the file, or raises one FormatError."""
    which = data.draw(st.sampled_from(["images", "labels"]))
    blob = bytearray(_IMAGES_FILE if which == "images" else _LABELS_FILE)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[position] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del blob[position:position + data.draw(st.integers(1, 64))]
        else:
            blob[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    images = np.frombuffer(bytes(blob) if which == "images" else _IMAGES_FILE, np.uint8)
    labels = np.frombuffer(bytes(blob) if which == "labels" else _LABELS_FILE, np.uint8)
    on_error = data.draw(st.sampled_from(["raise", "skip"]))
    try:
        record_file = idx.IdxFile(images, labels, "fuzz-images", "fuzz-labels", on_error=on_error)
    except FormatError as exc:
        assert str(exc).startswith("fuzz-") and "expected" in str(exc)
        return
    count = len(record_file)
    assert count <= 6 or which == "images"
    end = record_file.header.data_offset + count * record_file.rows * record_file.cols
    assert end <= len(images)
    pixels, offsets = record_file.gather()
    assert len(pixels) == offsets[-1] == count * record_file.rows * record_file.cols


def test_inspect_counts_classes_of_the_native_charset(tmp_path):
    from gntkit.samples.inspection import format_inspection, inspect_sources

    _pair(tmp_path, idx_bytes(IMAGES), idx_bytes(np.array([0, 1, 12, 3, 3], np.uint8)))
    report = inspect_sources(tmp_path).to_json()
    assert report["charset"] == "mnist" and report["classes"] == 3 and report["records"] == 5
    assert report["unknown_codes"] == {"0x000C": 1}
    assert "in 3 classes of charset mnist" in format_inspection(report)
    assert "tag codes outside charset mnist: 0x000C x1" in format_inspection(report)


_GZ_FILE = gzip.compress(_IMAGES_FILE, mtime=0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_gzip(data):
    """A mutated .gz: the container gives the member's bytes or one FormatError naming the file, nothing else."""
    import io

    from gntkit.containers.gzip import GzipContainer

    blob = bytearray(_GZ_FILE)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(blob) - 1))
        if data.draw(st.booleans()):
            blob[position] = data.draw(st.integers(0, 255))
        else:
            del blob[position:position + data.draw(st.integers(1, 32))]
    container = GzipContainer(lambda: io.BufferedReader(io.BytesIO(bytes(blob))), "fuzz.gz")
    try:
        out = container.read("fuzz")
    except FormatError as exc:
        assert str(exc).startswith("fuzz.gz") and "expected" in str(exc)
        return
    assert isinstance(out, bytes)


def test_cli_refuses_bad_idx_in_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from gntkit.cli.main import app

    data = idx_bytes(IMAGES)
    _pair(tmp_path, data[:2] + b"\x0d" + data[3:], idx_bytes(LABELS))  # float32 elements
    result = CliRunner().invoke(app, ["convert", str(tmp_path), "--split", "all", "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "train-images-idx3-ubyte at byte 2: expected element type 0x08 (unsigned byte)" in result.output
    assert "found element type 0x0D (float32), which gntkit does not read" in result.output
