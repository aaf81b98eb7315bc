"""POT reader: numba kernels against the plain-Python reference, rendering, every bad input, fuzzing."""

import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import pot, sniff_format
from gntkit.formats.gnt import encode_records as encode_gnt
from gntkit.tools.fixtures.pot import sample_strokes, write_pot_corpus, writer_samples
from gntkit.tools.reference.pot import read_records, render

pytestmark = pytest.mark.numba


def as_buffer(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def generated(seed: int, count: int = 12):
    codes = [0xB0A1 + 3 * i for i in range(count)]
    return writer_samples(1000 + seed, codes, samples_per_class=1, seed=seed)


def assert_matches_reference(pot_file, data: bytes):
    records, _, reason = read_records(data)
    assert reason is None
    index = pot_file.index
    assert len(pot_file) == len(records)
    assert index.offsets.tolist() == [r[0] for r in records]
    assert index.tag_codes.tolist() == [r[1] for r in records]
    assert index.stroke_counts.tolist() == [len(r[2]) for r in records]
    assert index.point_counts.tolist() == [sum(map(len, r[2])) for r in records]
    for box, (_, _, strokes) in zip(index.boxes.tolist(), records):
        xs = [x for s in strokes for x, _ in s]
        ys = [y for s in strokes for _, y in s]
        assert box == [min(xs), min(ys), max(xs), max(ys)]
    extras = pot_file.strokes()
    for i, (_, _, strokes) in enumerate(records):
        points = extras["points"][extras["points_offsets"][i]:extras["points_offsets"][i + 1]]
        lengths = extras["stroke_lengths"][extras["stroke_lengths_offsets"][i]:extras["stroke_lengths_offsets"][i + 1]]
        assert points.tolist() == [list(p) for s in strokes for p in s]
        assert lengths.tolist() == [len(s) for s in strokes]


@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_reference_on_generated_files(seed):
    order, samples = generated(seed)
    data = pot.encode_records(order, samples)
    assert_matches_reference(pot.open_file(as_buffer(data), "gen.pot"), data)
    # several strokes per sample, and single-point strokes among them
    assert any(len(s) > 3 for s in samples)


def test_single_point_strokes_and_the_documented_layout():
    samples = [[np.array([[10, 20]])], [np.array([[0, 0]]), np.array([[5, 5]]), np.array([[9, 1], [9, 2]])]]
    data = pot.encode_records([0xB0A1, 0xD7F9], samples)
    # uint16 size, GB code low byte first, two zero bytes, uint16 strokes, int16 points and markers
    assert data[:20] == struct.pack("<HBBHH", 20, 0xA1, 0xB0, 0, 1) + struct.pack("<hhhhhh", 10, 20, -1, 0, -1, -1)
    pot_file = pot.open_file(as_buffer(data), "dots.pot")
    assert_matches_reference(pot_file, data)
    assert pot_file.index.tag_codes.tolist() == [0xB0A1, 0xD7F9]
    # a lone point renders as a dot of the pen's width
    bitmap = pot_file.bitmap(0, pen_width=3.0)
    assert bitmap.shape == (1 + 2 * pot.pad_for(3.0),) * 2 and bitmap.min() == 0 and (bitmap < 255).sum() >= 5


@pytest.mark.parametrize("pen_width", [1.0, 2.5, 4.0])
def test_render_kernel_matches_reference(pen_width):
    rng = np.random.default_rng(int(pen_width * 10))
    codes = [0xB0A1, 0xB0C5, 0xC1AC]
    # small characters (about 60 tablet units) keep the pure-Python renderer quick
    samples = [sample_strokes(code, rng, 60.0, 0.1, np.array([700.0, 6700.0])) + [np.array([[730, 6730]])] for code in codes]
    pot_file = pot.open_file(as_buffer(pot.encode_records(codes, samples)), "r.pot")
    pixels, offsets, heights, widths = pot_file.render(pen_width=pen_width)
    serial = pot_file.render(pen_width=pen_width, serial=True)
    assert np.array_equal(serial[0], pixels)
    for i, strokes in enumerate(samples):
        expected = np.array(render([[tuple(p) for p in s.tolist()] for s in strokes], pen_width), np.uint8)
        image = pixels[offsets[i]:offsets[i + 1]].reshape(heights[i], widths[i])
        assert image.shape == expected.shape
        assert np.array_equal(image, expected)
        assert image[0].min() == 255 and image[:, -1].min() == 255  # the pad leaves a clean border


def test_gather_and_index_sizes_agree_and_pen_width_changes_only_rendering():
    order, samples = generated(5)
    pot_file = pot.open_file(as_buffer(pot.encode_records(order, samples)), "g.pot")
    pixels, offsets = pot_file.gather(np.array([3, 0, 3]))
    sizes = (pot_file.index.widths.astype(np.int64) * pot_file.index.heights)[[3, 0, 3]]
    assert np.diff(offsets).tolist() == sizes.tolist()
    thin = pot_file.render(np.array([0]), pen_width=1.0)[0]
    thick = pot_file.render(np.array([0]), pen_width=6.0)[0]
    assert (thick < 128).sum() > 2 * (thin < 128).sum()
    with pytest.raises(GntkitError, match="pen_width"):
        pot_file.render(pen_width=0.1)
    with pytest.raises(IndexError):
        pot_file.gather(np.array([len(pot_file)]))


def test_preprocess_renders_at_the_chosen_pen_width():
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.transform import preprocess_chosen

    order, samples = generated(6, count=4)
    pot_file = pot.open_file(as_buffer(pot.encode_records(order, samples)), "p.pot")
    chosen = np.arange(4)
    thin = preprocess_chosen(pot_file, chosen, Preprocess(size=32, pen_width=1.0))
    thick = preprocess_chosen(pot_file, chosen, Preprocess(size=32, pen_width=8.0))
    assert thin.shape == (4, 32, 32) and thin.dtype == np.uint8
    # inverted: ink bright on 0; a wider pen covers more of the canvas
    assert (thick > 128).sum() > (thin > 128).sum()


# --------------------------------------------------------------------------- bad input
def valid_file(count=4):
    order, samples = generated(9, count)
    data = pot.encode_records(order, samples)
    starts = [r[0] for r in read_records(data)[0]] + [len(data)]
    return bytearray(data), starts


def _set16(data, pos, value, fmt="<H"):
    data[pos:pos + 2] = struct.pack(fmt, value)


def _first_pen_up(data, start):
    p = start + 8
    while struct.unpack_from("<hh", data, p) != (-1, 0):
        p += 4
    return p


DAMAGES = {
    "truncated header": (lambda d, s: d[:s[1] + 5], "8-byte record header", "truncated"),
    "truncated record": (lambda d, s: d[:s[2] - 6], "bytes for the record", "truncated"),
    "bad size": (lambda d, s: _set16(d, s[1], 21) or d, "8 more than a multiple of 4", "sample size 21"),
    "size too large": (lambda d, s: _set16(d, s[1], s[2] - s[1] + 4) or d, "end marker (-1, -1) as the last point", "size mismatch"),
    "size too small": (lambda d, s: _set16(d, s[1], s[2] - s[1] - 4) or d, "end marker (-1, -1) at byte", "("),
    "bad tag": (lambda d, s: d.__setitem__(s[1] + 4, 7) or d, "bytes 3 and 4 are zero", "0x07"),
    "zero strokes": (lambda d, s: _set16(d, s[1] + 6, 0) or d, "stroke count of at least 1", "0 strokes"),
    "impossible count": (lambda d, s: _set16(d, s[1] + 6, 60000) or d, "strokes in a", "stroke count of 60000"),
    "count mismatch": (lambda d, s: _set16(d, s[1] + 6, struct.unpack_from("<H", d, s[1] + 6)[0] - 1) or d,
                       "pen-up markers (-1, 0), as the stroke count says", ""),
    "negative point": (lambda d, s: _set16(d, s[1] + 8, -5, "<h") or d, "coordinates of at least 0", "(-5,"),
    "empty stroke": (lambda d, s: d[:s[1] + 8] + struct.pack("<hh", -1, 0) + d[s[1] + 12:],
                     "at least one point before each pen-up", "empty stroke"),
    "absurd extent": (lambda d, s: _set16(d, s[1] + 8, 30000, "<h") or d, "tablet units across", "units"),
    "unterminated": (lambda d, s: d[:s[2] - 8] + struct.pack("<hh", 5, 5) + d[s[2] - 4:],
                     "pen-up marker (-1, 0) before the end marker", "after the last pen-up"),
    "merged strokes": (lambda d, s: d[:_first_pen_up(d, s[1])] + struct.pack("<hh", 5, 5) + d[_first_pen_up(d, s[1]) + 4:],
                       "pen-up markers (-1, 0), as the stroke count says", ""),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_bad_records_raise_with_file_offset_expected_found(name):
    damage, expected, found = DAMAGES[name]
    data, starts = valid_file()
    damaged = bytes(damage(bytearray(data), starts))
    reference = read_records(damaged, pot.max_extent_for(pot.DEFAULT_MAX_SIDE))
    with pytest.raises(FormatError) as info:
        pot.open_file(as_buffer(damaged), "bad.pot")
    assert info.value.offset == starts[1] == reference[1], name
    assert reference[2] is not None
    assert expected in info.value.expected and found in info.value.found, str(info.value)
    assert str(info.value).startswith(f"bad.pot at byte {starts[1]}: expected ")


def test_skip_keeps_every_good_record_and_counts_the_damage():
    data, starts = valid_file(6)
    _set16(data, starts[2] + 6, 0)  # record 2: zero strokes
    data[starts[4] + 4] = 9  # record 4: bad tag
    pot_file = pot.open_file(as_buffer(bytes(data)), "skip.pot", on_error="skip")
    assert pot_file.index.offsets.tolist() == [starts[i] for i in (0, 1, 3, 5)]
    assert pot_file.index.record_numbers.tolist() == [0, 1, 3, 5]
    assert pot_file.index.skipped_records == 2
    assert [p.offset for p in pot_file.index.problems] == [starts[2], starts[4]]
    assert pot_file.index.skipped_bytes == (starts[3] - starts[2]) + (starts[5] - starts[4])


def test_skip_truncated_tail():
    data, starts = valid_file(3)
    pot_file = pot.open_file(as_buffer(bytes(data[:-3])), "tail.pot", on_error="skip")
    assert len(pot_file) == 2 and pot_file.index.skipped_bytes == len(data) - 3 - starts[2]


@pytest.mark.parametrize("content, found", [
    (encode_gnt([0xB0A1], [np.full((8, 8), 255, np.uint8)]), "a GNT file (CASIA offline isolated characters, HWDB1.x), not a POT file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image, not a POT file"),
    (b"PK\x03\x04" + bytes(40), "a zip archive, not a POT file"),
])
def test_files_that_are_not_pot_are_named(content, found):
    with pytest.raises(FormatError) as info:
        pot.open_file(as_buffer(content), "1001.pot")
    assert info.value.offset == 0 and info.value.found == found


def test_empty_file_and_bad_arguments():
    with pytest.raises(FormatError, match="empty file"):
        pot.open_file(np.zeros(0, np.uint8), "e.pot")
    data = as_buffer(bytes(valid_file(1)[0]))
    with pytest.raises(GntkitError, match="on_error"):
        pot.open_file(data, on_error="ignore")
    with pytest.raises(GntkitError, match="max_side"):
        pot.open_file(data, max_side=0)
    with pytest.raises(GntkitError, match="uint8"):
        pot.open_file(b"abc")
    with pytest.raises(GntkitError, match="at least one stroke"):
        pot.encode_records([1], [[]])


def test_sniffing_tells_pot_from_gnt():
    data = bytes(valid_file(2)[0])
    gnt = encode_gnt([0xB0A1, 0x2100], [np.full((5, 7), 255, np.uint8)] * 2)
    assert pot.sniff(data[:64], len(data)) and sniff_format(data[:64], len(data)) is pot
    assert not pot.sniff(gnt[:64], len(gnt)) and sniff_format(gnt[:64], len(gnt)).NAME == "gnt"
    assert not pot.sniff(data[:64], 10)  # the record cannot fit


def test_sources_recognise_pot_by_content_and_name_a_gnt_under_a_pot_name(tmp_path):
    from gntkit.formats.sources import find_members

    data = bytes(valid_file(2)[0])
    (tmp_path / "1007.bin").write_bytes(data)
    member = find_members(tmp_path / "1007.bin")[0]
    assert member.format == "pot"
    (tmp_path / "1008.pot").write_bytes(encode_gnt([0xB0A1], [np.full((8, 8), 255, np.uint8)]))
    with pytest.raises(FormatError, match=r"a POT file, as its name says.*a GNT file"):
        find_members(tmp_path / "1008.pot")
    # inside a folder, files are matched by name and the POT reader names the content
    from gntkit.samples.stream import open_member

    folder_member = [m for m in find_members(tmp_path) if m.writer_id == "1008"][0]
    with pytest.raises(FormatError, match="a GNT file .*not a POT file"):
        open_member(folder_member)


def test_damaged_zip_member_is_skipped_whole_and_counted(tmp_path):
    from gntkit.samples.charset import builtin
    from gntkit.samples.stream import StreamReport, iter_batches

    paths = write_pot_corpus(tmp_path / "src", writers=2, num_classes=5)
    zip_path = tmp_path / "Pot1.1Test.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, arcname=path.name)
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo("1002.pot")
    data_start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[data_start + 10] ^= 0xFF  # damage the second member's compressed data
    zip_path.write_bytes(bytes(raw))
    report = StreamReport()
    batches = list(iter_batches(zip_path, builtin("gb2312-1"), None, on_error="skip", report=report))
    assert {w for b in batches for w in b.writer_ids} == {"1001"}
    # Its deflate stream is damaged: the member's bytes cannot be read, so its records cannot be counted.
    assert sum(len(b) for b in batches) == 5 and len(report.problems) == 1
    assert "1002.pot" in report.problems[0].path and report.problems[0].records_unknown
    with pytest.raises(FormatError, match="1002.pot"):
        list(iter_batches(zip_path, builtin("gb2312-1"), None))


# --------------------------------------------------------------------------- fuzzing
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutations_never_crash_hang_or_read_out_of_bounds(data):
    seed = data.draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 5))
    samples = [sample_strokes(0xB0A1 + i, rng, 40.0, 0.0, np.array([100.0, 200.0])) for i in range(count)]
    raw = bytearray(pot.encode_records([0xB0A1 + i for i in range(count)], samples))
    for _ in range(data.draw(st.integers(0, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw)))
        raw[cut:cut] = bytes(data.draw(st.lists(st.integers(0, 255), max_size=12)))
    raw = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    records, stop, reason = read_records(raw, pot.max_extent_for(pot.DEFAULT_MAX_SIDE))
    buf = as_buffer(raw)
    if reason is None and raw:
        pot_file = pot.open_file(buf, "fuzz.pot")
        assert pot_file.index.offsets.tolist() == [r[0] for r in records]
        assert pot_file.index.tag_codes.tolist() == [r[1] for r in records]
    else:
        with pytest.raises(FormatError) as info:
            pot.open_file(buf, "fuzz.pot")
        assert info.value.offset == (stop if raw else 0)
    if raw:
        skipped = pot.open_file(buf, "fuzz.pot", on_error="skip")
        assert ((skipped.index.offsets + skipped.index.sizes) <= len(raw)).all()
        assert skipped.index.offsets[:len(records)].tolist() == [r[0] for r in records]
        for offset in skipped.index.offsets.tolist():  # every kept record is one the reference accepts
            record = raw[offset:offset + struct.unpack_from("<H", raw, offset)[0]]
            assert read_records(record, pot.max_extent_for(pot.DEFAULT_MAX_SIDE))[2] is None
        pixels, offsets = skipped.gather()
        assert offsets[-1] == len(pixels)
        extras = skipped.strokes()
        assert extras["points_offsets"][-1] == len(extras["points"]) == extras["stroke_lengths"].sum()


def test_inspect_reports_strokes_and_points_per_sample(tmp_path):
    from gntkit.samples.inspection import format_inspection, inspect_sources

    write_pot_corpus(tmp_path, writers=2, num_classes=4)
    inspection = inspect_sources(tmp_path)
    report = inspection.to_json()
    files = [pot.open_file(np.fromfile(p, np.uint8), str(p)) for p in sorted(tmp_path.glob("*.pot"))]
    strokes = np.concatenate([f.index.stroke_counts for f in files])
    points = np.concatenate([f.index.point_counts for f in files])
    assert report["records"] == 8 and report["formats"] == {"pot": 2}
    assert report["strokes_per_sample"] == {"min": int(strokes.min()), "median": float(np.median(strokes)), "max": int(strokes.max())}
    assert report["points_per_sample"]["max"] == int(points.max())
    text = format_inspection(report)
    assert f"strokes    per sample: min {strokes.min()}" in text


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=80), size=st.integers(0, 1 << 20))
def test_sniff_never_raises_on_any_bytes(head, size):
    assert pot.sniff(head, size) in (True, False)
