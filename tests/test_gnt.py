"""GNT decoder: numba kernels against the plain-Python reference, every bad input, fuzzing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gntkit.errors import FormatError, GntkitError
from gntkit.formats.gnt import HEADER_DTYPE, GntFile, encode_records, index_gnt
from gntkit.tools.reference.gnt import read_records


def random_records(rng, count, max_side=40):
    tag_codes = rng.integers(0, 0x10000, size=count).tolist()
    bitmaps = [rng.integers(0, 256, size=(int(rng.integers(1, max_side)), int(rng.integers(1, max_side))), dtype=np.uint8)
               for _ in range(count)]
    return tag_codes, bitmaps


def as_buffer(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def assert_matches_reference(gnt: GntFile, data: bytes):
    records, _, reason = read_records(data)
    assert reason is None
    assert len(gnt) == len(records)
    for i, (offset, tag_code, width, height, bitmap) in enumerate(records):
        assert gnt.index.offsets[i] == offset
        assert gnt.index.tag_codes[i] == tag_code
        assert (gnt.index.widths[i], gnt.index.heights[i]) == (width, height)
        assert gnt.bitmap(i).tobytes() == bitmap
    pixels, pixel_offsets = gnt.gather()
    assert pixels.tobytes() == b"".join(r[4] for r in records)
    assert pixel_offsets[-1] == len(pixels)


@pytest.mark.parametrize("seed", range(5))
def test_kernel_matches_reference_on_random_records(seed):
    rng = np.random.default_rng(seed)
    data = encode_records(*random_records(rng, int(rng.integers(1, 60))))
    assert_matches_reference(GntFile(as_buffer(data), "random.gnt"), data)


def test_edge_case_records():
    tag_codes = [0xB0A1, 0x2100, 0x0000, 0xFFFF, 0xD7F9]
    bitmaps = [np.zeros((1, 1), np.uint8), np.full((78, 12), 7, np.uint8), np.arange(300, dtype=np.uint8).reshape(1, 300) % 251,
               np.full((300, 1), 255, np.uint8), np.full((4096, 1), 3, np.uint8)]
    data = encode_records(tag_codes, bitmaps)
    gnt = GntFile(as_buffer(data), "edge.gnt")
    assert_matches_reference(gnt, data)
    assert gnt.index.tag_codes.tolist() == tag_codes
    # Header fields follow the documented layout: tag high byte first.
    header = np.frombuffer(data[:10], HEADER_DTYPE)[0]
    assert data[4:6] == b"\xb0\xa1" and header["tag_code"] == 0xB0A1 and header["size"] == 11


def test_gather_subset_and_views_share_memory():
    rng = np.random.default_rng(7)
    tag_codes, bitmaps = random_records(rng, 20)
    gnt = GntFile(as_buffer(encode_records(tag_codes, bitmaps)), "x.gnt")
    chosen = np.array([19, 0, 5, 5])
    pixels, offsets = gnt.gather(chosen)
    for j, i in enumerate(chosen):
        assert pixels[offsets[j]:offsets[j + 1]].tobytes() == bitmaps[i].tobytes()
    assert np.shares_memory(gnt.bitmap(3), gnt.buf)
    with pytest.raises(IndexError):
        gnt.gather(np.array([20]))


def valid_file(seed=0, count=6):
    rng = np.random.default_rng(seed)
    tag_codes = [0xB0A1 + i for i in range(count)]
    bitmaps = [np.full((int(rng.integers(5, 30)), int(rng.integers(5, 30))), 255, np.uint8) for _ in range(count)]
    for b in bitmaps:
        b[1, 1] = 0
    return tag_codes, bitmaps, encode_records(tag_codes, bitmaps)


def record_starts(bitmaps):
    return np.cumsum([0] + [10 + b.size for b in bitmaps]).tolist()


@pytest.mark.parametrize("damage, expected, found", [
    ("truncated_record", "bytes for the record", "truncated"),
    ("truncated_header", "a 10-byte record header", "truncated"),
    ("size_mismatch", "sample size 10 + width*height", "sample size"),
    ("zero_width", "width and height of at least 1", "width 0"),
    ("absurd", "width and height of at most 4096", "width 60000"),
])
def test_bad_records_raise_with_file_offset_expected_found(damage, expected, found):
    tag_codes, bitmaps, data = valid_file()
    data = bytearray(data)
    starts = record_starts(bitmaps)
    bad = starts[3]
    if damage == "truncated_record":
        data = data[:starts[-1] - 5]
        bad = starts[-2]
    elif damage == "truncated_header":
        data = data + b"\x01\x02\x03"
        bad = starts[-1]
    elif damage == "size_mismatch":
        data[bad:bad + 4] = (int.from_bytes(data[bad:bad + 4], "little") + 1).to_bytes(4, "little")
    elif damage == "zero_width":
        data[bad + 6:bad + 8] = b"\x00\x00"
    elif damage == "absurd":
        data[bad + 6:bad + 8] = (60000).to_bytes(2, "little")
    with pytest.raises(FormatError) as info:
        GntFile(as_buffer(bytes(data)), "w/1001-c.gnt")
    err = info.value
    assert err.path == "w/1001-c.gnt" and err.offset == bad
    assert expected in err.expected and found in err.found
    message = str(err)
    assert message.startswith(f"w/1001-c.gnt at byte {bad}: expected ") and message.count("\n") == 0
    # The reference reader stops at the same place.
    assert read_records(bytes(data))[1] == bad


@pytest.mark.parametrize("content, found", [
    (b"", "an empty file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "a PNG image"),
    (b"PK\x03\x04" + bytes(100), "a zip archive"),
])
def test_files_that_are_not_gnt(content, found):
    with pytest.raises(FormatError) as info:
        GntFile(as_buffer(content), "fake.gnt")
    assert found in str(info.value) and info.value.offset == 0


def test_random_bytes_are_rejected():
    data = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8)
    with pytest.raises(FormatError):
        GntFile(data, "noise.gnt")


def test_skip_keeps_every_good_record_and_counts_the_damage():
    tag_codes, bitmaps, data = valid_file(count=8)
    starts = record_starts(bitmaps)
    data = bytearray(data)
    data[starts[3] + 6:starts[3] + 8] = b"\x00\x00"  # record 3 damaged
    gnt = GntFile(as_buffer(bytes(data)), "f.gnt", on_error="skip")
    assert gnt.index.tag_codes.tolist() == tag_codes[:3] + tag_codes[4:]
    assert gnt.index.record_numbers.tolist() == [0, 1, 2, 4, 5, 6, 7]
    (problem,) = gnt.index.problems
    assert problem.offset == starts[3] and problem.skipped_bytes == starts[4] - starts[3]
    assert gnt.index.skipped_records == 1
    for i, original in zip(range(len(gnt)), bitmaps[:3] + bitmaps[4:]):
        assert np.array_equal(gnt.bitmap(i), original)


def test_skip_truncated_tail_counts_bytes():
    tag_codes, bitmaps, data = valid_file(count=5)
    cut = data[:-7]
    gnt = GntFile(as_buffer(cut), "t.gnt", on_error="skip")
    assert len(gnt) == 4
    assert gnt.index.skipped_bytes == len(cut) - record_starts(bitmaps)[4]


def test_bad_arguments():
    with pytest.raises(GntkitError):
        index_gnt(b"abc")
    with pytest.raises(GntkitError):
        index_gnt(np.zeros(20, np.uint8), on_error="ignore")
    with pytest.raises(GntkitError):
        encode_records([1], [np.zeros((2, 2), np.float32)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_truncations_and_mutations_never_read_out_of_bounds(data):
    seed = data.draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    tag_codes, bitmaps = random_records(rng, int(rng.integers(1, 8)), max_side=12)
    raw = bytearray(encode_records(tag_codes, bitmaps))
    for _ in range(data.draw(st.integers(0, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    raw = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    records, stop, reason = read_records(raw)
    buf = as_buffer(raw)
    if reason is None and raw:
        gnt = GntFile(buf, "fuzz.gnt")
        assert [(int(o), int(t)) for o, t in zip(gnt.index.offsets, gnt.index.tag_codes)] == [(r[0], r[1]) for r in records]
    else:
        with pytest.raises(FormatError) as info:
            GntFile(buf, "fuzz.gnt")
        assert info.value.offset == (stop if raw else 0)
    if raw:
        skipped = GntFile(buf, "fuzz.gnt", on_error="skip")
        ends = skipped.index.offsets + 10 + skipped.index.pixel_counts
        assert (ends <= len(raw)).all()
        # The records before the first damage are always kept.
        assert skipped.index.offsets[:len(records)].tolist() == [r[0] for r in records]
        pixels, offsets = skipped.gather()
        assert offsets[-1] == len(pixels)


def test_mapped_file_and_gather_into_buffer(corpus_c):
    from gntkit.formats.sources import find_members

    member = find_members(corpus_c)[0]
    mapped, copied = member.read(), member.read(map_file=False)
    assert not mapped.flags.writeable and np.array_equal(mapped, copied)
    a, b = GntFile(mapped, member.name), GntFile(copied, member.name)
    assert np.array_equal(a.index.offsets, b.index.offsets)
    views = a.bitmaps()
    assert len(views) == len(a) and all(np.array_equal(v, b.bitmap(i)) for i, v in enumerate(views))
    buffer = np.full(10**6, 7, np.uint8)
    pixels, offsets = a.gather(out=buffer)
    assert np.shares_memory(pixels, buffer) and np.array_equal(pixels, b.gather()[0])
    with pytest.raises(GntkitError, match="at least"):
        a.gather(out=np.empty(10, np.uint8))
