"""Fuzzing the shard readers on mutated bytes: the TFRecord Example parser, the tar member
locator and the PNG decoder (numba kernels in gntkit.kernels.shards and their wrappers in
gntkit.datasets), over real shards that gntkit's writers produced.

A damaged shard must give records or one GntkitError / FormatError: no other exception, no
hang (pytest's timeout), no read out of bounds. With NUMBA_DISABLE_JIT=1 (this module is
marked numba in conftest.py) an out-of-bounds read in a kernel raises IndexError and fails the
test; with the JIT on it may crash the process, which fails the run too.
"""

import io
import json
import shutil
import struct
import tarfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gntkit.datasets as datasets
from gntkit.errors import GntkitError
from gntkit.kernels import shards as kernels
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.tools.synth import write_corpus

SIZE = 8
RECORDS = 4


class Shards(dict):
    """The pristine conversions, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"Shards({sorted(self)})"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """{format: (folder, shard file name, shard bytes, structural byte positions, records)} of one
    TFRecord and one WebDataset conversion: 4 records of 8x8 in one shard each."""
    root = tmp_path_factory.mktemp("shard_fuzz")
    write_corpus(root / "gnt", writers=1, num_classes=RECORDS, samples_per_class=1, seed=3)
    result = Shards()
    for fmt in ("tfrecord", "webdataset"):
        folder = root / fmt
        convert(root / "gnt", folder, to=fmt, preprocess=Preprocess(size=SIZE), workers=1)
        manifest = json.loads((folder / "gntkit.json").read_text(encoding="utf-8"))
        (shard,) = manifest["splits"]["all"]["shards"]
        data = (folder / shard["file"]).read_bytes()
        records = datasets.open(folder)
        try:
            truth = records.read_batch(np.arange(len(records)))
        finally:
            records.close()
        result[fmt] = (folder, shard["file"], data, structural_positions(fmt, folder / shard["file"], data), truth)
    return result


def structural_positions(fmt: str, path, data: bytes) -> list[int]:
    """Byte positions where a mutation reaches the readers' length and type logic."""
    positions = []
    if fmt == "tfrecord":
        pos = 0
        while pos < len(data):
            length = int.from_bytes(data[pos:pos + 8], "little")
            positions += range(pos, pos + 12)  # frame length and its CRC
            positions += range(pos + 12, min(pos + 12 + 48, pos + 12 + length))  # Example, Features, first map entry
            pos += 16 + length
    else:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                positions += range(member.offset, member.offset + 100, 7)  # name, its dot
                positions += range(member.offset + 124, member.offset + 136)  # octal size
                positions.append(member.offset + 156)  # type flag
                if member.name.endswith(".png"):
                    # IHDR length, type, width, height, depth, colour; IDAT length and type
                    positions += range(member.offset_data + 8, member.offset_data + 41)
                elif member.name.endswith(".cls"):
                    positions += range(member.offset_data, member.offset_data + member.size)
    return [p for p in positions if p < len(data)]


def draw_edits(data, size: int, positions: list[int]) -> tuple[list[tuple[int, int]], int]:
    """1-6 (position, byte) overwrites, half at structural positions, and a length to cut the shard to."""
    edits = []
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        if data.draw(st.booleans()):
            position = data.draw(st.sampled_from(positions), label="structural position")
        else:
            position = data.draw(st.integers(0, size - 1), label="position")
        edits.append((position, data.draw(st.sampled_from([0, 0x30, 0x37, 0x39, 0x7F, 0x80, 0xFF]) | st.integers(0, 255), label="byte")))
    cut = data.draw(st.integers(0, size), label="cut") if data.draw(st.integers(0, 4)) == 0 else size
    return edits, cut


def mutate(shard: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    raw = bytearray(shard)
    for position, value in edits:
        raw[position] = value
    return bytes(raw[:cut])


def read_everything(folder) -> None:
    """Open the split and read every record in bulk and one by one (the kernels and the slow paths)."""
    records = datasets.open(folder)
    try:
        images, labels = records.read_batch(np.arange(len(records)))
        assert images.shape == (len(records), SIZE, SIZE) and labels.shape == (len(records),)
        for i in range(len(records)):
            image, label = records.get(i)
            assert image.dtype == np.uint8 and isinstance(int(label), int)
    finally:
        records.close()


def check_mutation(pristine, tmp_path, fmt: str, raw: bytes) -> None:
    folder, name, _, _, _ = pristine[fmt]
    work = tmp_path / fmt
    if not work.exists():
        shutil.copytree(folder, work)
    (work / name).write_bytes(raw)
    try:
        read_everything(work)
    except GntkitError:
        pass  # one clear error is the expected outcome for many mutations


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset"])
def test_pristine_shards_read_back(pristine, tmp_path, fmt):
    """The unmutated shard reads without error, in bulk and one by one, to the same records."""
    folder, _, _, _, (images, labels) = pristine[fmt]
    records = datasets.open(folder)
    try:
        assert len(records) == RECORDS
        for i in range(RECORDS):
            image, label = records.get(i)
            assert np.array_equal(image, images[i]) and label == labels[i]
    finally:
        records.close()
    assert len(set(labels.tolist())) == RECORDS and images.max() > images.min()


def samples_of(path) -> tuple[np.ndarray, list[tarfile.TarInfo]]:
    """Sample start offsets (plus the archive's end) and the members of a WebDataset shard."""
    with tarfile.open(path) as archive:
        members = archive.getmembers()
    starts = [m.offset for m in members if m.name.endswith(".png")]
    last = members[-1]
    return np.array(starts + [last.offset_data + -(-last.size // 512) * 512], np.int64), members


@pytest.mark.parametrize("digits", [b"77777777777", b"00000100000"])
def test_locate_png_stops_at_a_member_running_past_its_sample(pristine, digits):
    """A .cls size field damaged to 8 GiB (or to run just past the sample) in the shard's last
    sample: the kernel used to read the member's bytes past the sample and the buffer (IndexError
    with NUMBA_DISABLE_JIT=1, a wild read compiled); now the sample goes to the slow path."""
    from numba.typed import List

    folder, name, shard, _, (_, labels) = pristine["webdataset"]
    starts, members = samples_of(folder / name)
    cls = [m for m in members if m.name.endswith(".cls")][-1]
    raw = bytearray(shard)
    raw[cls.offset + 124:cls.offset + 135] = digits
    buf = np.frombuffer(bytes(raw), np.uint8)
    rows = np.arange(RECORDS, dtype=np.int64)
    idat_starts, idat_lens, found, status = (np.zeros(RECORDS, np.int64) for _ in range(4))
    kernels.locate_png(List([buf]), np.zeros(RECORDS, np.int64), starts[:-1], starts[1:], rows, SIZE,
                       idat_starts, idat_lens, found, status)
    assert status.tolist() == [kernels.OK] * (RECORDS - 1) + [kernels.UNUSUAL_TAR]
    assert found[:-1].tolist() == labels[:-1].tolist()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_tfrecord_example_parser(pristine, tmp_path, data):
    _, _, shard, positions, _ = pristine["tfrecord"]
    check_mutation(pristine, tmp_path, "tfrecord", mutate(shard, *draw_edits(data, len(shard), positions)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_tar_member_locator_kernel(pristine, data):
    """The WebDataset fast path as gntkit.datasets runs it (locate_png, zlib, png_unfilter) on a
    mutated shard: every read stays inside its sample (each sample is its own buffer here, so a
    read past it is out of bounds), an OK sample's IDAT lies inside it, and what inflates to the
    right size unfilters."""
    from numba.typed import List

    folder, name, shard, positions, _ = pristine["webdataset"]
    starts, _ = samples_of(folder / name)
    raw_shard = mutate(shard, *draw_edits(data, len(shard), positions))
    count = int(np.searchsorted(starts[1:], len(raw_shard), side="right"))  # samples the index still fits
    bufs = List([np.frombuffer(raw_shard[starts[i]:starts[i + 1]], np.uint8) for i in range(count)] or
                [np.zeros(0, np.uint8)])
    rows = np.arange(count, dtype=np.int64)
    ends = (starts[1:count + 1] - starts[:count]).astype(np.int64)
    idat_starts, idat_lens, labels, status = (np.zeros(count, np.int64) for _ in range(4))
    kernels.locate_png(bufs, rows, np.zeros(count, np.int64), ends, rows, SIZE, idat_starts, idat_lens, labels, status)
    raw = np.zeros((count, SIZE * (SIZE + 1)), np.uint8)
    for i in np.flatnonzero(status == kernels.OK).tolist():
        assert 512 <= idat_starts[i] and idat_starts[i] + idat_lens[i] <= ends[i]
        try:
            inflated = zlib.decompress(bufs[i][idat_starts[i]:idat_starts[i] + idat_lens[i]].tobytes())
        except zlib.error:
            inflated = b""
        if len(inflated) == raw.shape[1]:
            raw[i] = np.frombuffer(inflated, np.uint8)
        else:
            status[i] = kernels.NO_PNG
    kernels.png_unfilter(raw, SIZE, np.zeros((count, SIZE * SIZE), np.uint8), status)
    assert set(status.tolist()) <= {kernels.OK, kernels.UNUSUAL_TAR, kernels.NO_PNG, kernels.MULTI_IDAT, kernels.NO_CLS}


@settings(max_examples=150, deadline=None)
@given(side=st.integers(1, 9), count=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
       filters=st.lists(st.sampled_from([0, 1, 2, 3, 4]) | st.integers(0, 255), min_size=36, max_size=36))
def test_fuzz_png_unfilter_against_pillow(side, count, seed, filters):
    """Random filtered scanlines with any filter type byte: the kernel equals pillow's decoding of
    the same PNG, and flags (NO_PNG) exactly the images with a filter type above 4."""
    from PIL import Image

    raw = np.random.default_rng(seed).integers(0, 256, size=(count, side, side + 1), dtype=np.uint8)
    raw[:, :, 0] = np.resize(np.array(filters, np.uint8), (count, side))
    out = np.zeros((count, side * side), np.uint8)
    status = np.zeros(count, np.int64)
    kernels.png_unfilter(raw.reshape(count, -1), side, out, status)
    for i in range(count):
        if (raw[i, :, 0] > 4).any():
            assert status[i] == kernels.NO_PNG
            continue
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        idat = b"IDAT" + zlib.compress(raw[i].tobytes())
        png = b"".join((b"\x89PNG\r\n\x1a\n", struct.pack(">I", 13), ihdr, struct.pack(">I", zlib.crc32(ihdr)),
                        struct.pack(">I", len(idat) - 4), idat, struct.pack(">I", zlib.crc32(idat)),
                        struct.pack(">I", 0), b"IEND", struct.pack(">I", zlib.crc32(b"IEND"))))
        with Image.open(io.BytesIO(png)) as image:
            assert status[i] == kernels.OK and np.array_equal(out[i].reshape(side, side), np.asarray(image))


@settings(max_examples=120, deadline=None, derandomize=True, report_multiple_bugs=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_webdataset_reader(pristine, tmp_path, data):
    _, _, shard, positions, _ = pristine["webdataset"]
    check_mutation(pristine, tmp_path, "webdataset", mutate(shard, *draw_edits(data, len(shard), positions)))
