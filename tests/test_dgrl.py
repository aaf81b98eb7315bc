"""DGRL (HWDB2.x text pages): gntkit's reader against the plain-Python reference on generated
pages in the real layout (8- and 1-bit, 0xFFFF and ASCII labels), bad input of every kind,
skip counting, other formats under a .dgrl name, damaged zip members, mutation fuzzing, and
the line path of the sample stream (on_unknown drop / other / error)."""

import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from gntkit.errors import CharsetError, FormatError  # noqa: E402
from gntkit.formats import dgrl, sniff_format  # noqa: E402
from gntkit.formats.gnt import encode_records as encode_gnt  # noqa: E402
from gntkit.samples.charset import Charset, decode_tag  # noqa: E402
from gntkit.tools.fixtures.dgrl import ASCII_CODES, class_codes, page_bytes, write_dgrl_corpus, write_page  # noqa: E402
from gntkit.tools.reference.dgrl import read_dgrl  # noqa: E402


def as_buffer(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), np.uint8)


def fixture_charset() -> Charset:
    codes = sorted(class_codes())
    return Charset("fixture", codes, [decode_tag(c) for c in codes], "code order")


def assert_same_as_reference(data: bytes, page: dgrl.DgrlFile) -> None:
    reference = read_dgrl(data)
    assert page.index.header.bits_per_pixel == reference["bits"]
    assert (page.index.header.page_height, page.index.header.page_width) == reference["page"]
    assert page.index.header.illustration == reference["illustration"]
    assert len(page) == len(reference["lines"])
    for i, line in enumerate(reference["lines"]):
        assert page.index.codes_of(i).tolist() == line["codes"]
        assert (int(page.index.tops[i]), int(page.index.lefts[i])) == (line["top"], line["left"])
        assert page.bitmap(i).tolist() == line["pixels"]


@pytest.mark.parametrize("bits", [8, 1])
def test_reader_matches_reference_on_generated_pages(bits):
    data = page_bytes(3, 7, bits=bits, lines=4, unlabelled=3)
    page = dgrl.open_file(as_buffer(data), "003-P07.dgrl")
    assert_same_as_reference(data, page)
    codes = page.index.label_codes.tolist()
    assert codes.count(dgrl.UNLABELLED) == 3 and set(ASCII_CODES) & set(codes)
    pixels, offsets = page.gather()
    assert offsets[-1] == len(pixels) == int((page.index.heights.astype(np.int64) * page.index.widths).sum())


def test_one_bit_pages_hold_the_eight_bit_lines_thresholded():
    eight = dgrl.open_file(as_buffer(page_bytes(1, 1, bits=8)), "a.dgrl")
    one = dgrl.open_file(as_buffer(page_bytes(1, 1, bits=1)), "b.dgrl")
    for i in range(len(eight)):
        assert np.array_equal(one.bitmap(i), np.where(eight.bitmap(i) < 128, 0, 255))
    assert one.index.header.bits_per_pixel == 1 and len(one.buf) < len(eight.buf)


def test_unpack_bits_order_padding_and_polarity():
    # 10 pixels a row: 2 bytes a row, MSB first, bit 1 = ink (0)
    packed = np.array([0b10000000, 0b01000000, 0b00000001, 0b10000000], np.uint8)
    image = dgrl.unpack_bits(packed, 2, 10)
    assert image.tolist() == [[0] + [255] * 8 + [0], [255] * 7 + [0, 0, 255]]


def test_names_sniffing_and_member_ids(tmp_path):
    data = page_bytes(1, 16)
    assert sniff_format(data[:64], len(data)).NAME == "dgrl"
    assert dgrl.writer_id("HWDB2.0Train/001-P16.dgrl") == "001"
    assert dgrl.member_key("HWDB2.0Train/001-P16.dgrl") == "001-P16"
    assert dgrl.writer_and_page("x/001-P16.dgrl") == ("001", "16")
    from gntkit.formats.sources import find_members

    write_dgrl_corpus(tmp_path, writers=2, pages=2)
    members = find_members(tmp_path)
    assert [m.writer_id for m in members] == ["001", "001", "002", "002"]
    assert [m.key_base for m in members] == ["001-P01", "001-P02", "002-P01", "002-P02"]
    assert {m.format for m in members} == {"dgrl"}


def test_sources_name_a_gnt_under_a_dgrl_name(tmp_path):
    from gntkit.formats.sources import find_members
    from gntkit.samples.stream import open_member

    (tmp_path / "001-P01.dgrl").write_bytes(encode_gnt([0xB0A1], [np.full((8, 8), 255, np.uint8)]))
    with pytest.raises(FormatError, match=r"a DGRL file, as its name says.*a GNT file"):
        find_members(tmp_path / "001-P01.dgrl")
    member = find_members(tmp_path)[0]
    with pytest.raises(FormatError, match=r"at byte 0: .*a GNT file .*not a DGRL file"):
        open_member(member)


def test_a_pot_or_zip_under_a_dgrl_name_is_named():
    from gntkit.formats.pot import encode_records

    pot = encode_records([0xB0A1], [[np.array([[10, 10], [20, 20]])]])
    with pytest.raises(FormatError, match="a POT file .*not a DGRL file"):
        dgrl.open_file(as_buffer(pot), "x.dgrl")
    with pytest.raises(FormatError, match="a zip archive, not a DGRL file"):
        dgrl.open_file(as_buffer(b"PK\x03\x04" + bytes(60)), "x.dgrl")
    with pytest.raises(FormatError, match="an empty file"):
        dgrl.open_file(np.zeros(0, np.uint8), "x.dgrl")


def _line_starts(data: bytes) -> list[int]:
    page = dgrl.open_file(as_buffer(data), "x.dgrl")
    return page.index.offsets.tolist()


def _set(data: bytes, offset: int, fmt: str, value) -> bytes:
    raw = bytearray(data)
    struct.pack_into(fmt, raw, offset, value)
    return bytes(raw)


def _damaged():
    data = page_bytes(2, 1, lines=3)
    header = struct.unpack_from("<I", data, 0)[0]
    starts = _line_starts(data)
    second = starts[1]
    chars = struct.unpack_from("<i", data, second)[0]
    box = second + 4 + 2 * chars
    return data, header, second, box, {
        "truncated": (data[:-5], second and None, "truncated"),
        "trailing bytes": (data + b"\0\0\0", len(data), r"3 more bytes \(size mismatch\)"),
        "impossible line count": (_set(data, header + 8, "<i", 10**6), header + 8, "impossible count"),
        "zero lines": (_set(data, header + 8, "<i", 0), header + 8, "line count 0"),
        "impossible character count": (_set(data, second, "<i", 10**8), second, "character count 100000000"),
        "negative character count": (_set(data, second, "<i", -1), second, "character count -1"),
        "line taller than the page": (_set(data, box + 8, "<i", 10**5), second, "height 100000"),
        "zero width": (_set(data, box + 12, "<i", 0), second, "width 0"),
        "format code": (_set(data, 4, "4s", b"GNT\0"), 4, "GNT"),
        "code type": (_set(data, header - 24, "4s", b"UTF8"), header - 24, "UTF8"),
        "code length": (_set(data, header - 4, "<h", 4), header - 4, "code length 4"),
        "bits per pixel": (_set(data, header - 2, "<h", 4), header - 2, "4 bits per pixel"),
        "header size": (_set(data, 0, "<I", 10**7), 0, "header size 10000000"),
        "page size": (_set(data, header, "<i", -5), header, "height -5"),
    }


@pytest.mark.parametrize("kind", list(_damaged()[4]))
def test_bad_pages_raise_naming_file_offset_expected_found(kind):
    data, *_, cases = _damaged()
    raw, offset, found = cases[kind]
    with pytest.raises(FormatError) as info:
        dgrl.open_file(as_buffer(raw), "001-P01.dgrl")
    message = str(info.value)
    assert message.startswith("001-P01.dgrl at byte ") and "expected " in message and message.count(".") >= 1
    if offset is not None:
        assert info.value.offset == offset
    if found:
        assert __import__("re").search(found, info.value.found), info.value.found
    with pytest.raises((ValueError, struct.error, IndexError)):
        read_dgrl(raw)


def test_skip_keeps_the_lines_before_the_damage_and_counts_the_rest():
    data, header, second, box, cases = _damaged()
    page = dgrl.open_file(as_buffer(cases["impossible character count"][0]), "x.dgrl", on_error="skip")
    assert len(page) == 1 and page.index.skipped_records == 2
    assert page.index.problems[0].offset == second and page.index.skipped_bytes == len(data) - second
    trailing = dgrl.open_file(as_buffer(cases["trailing bytes"][0]), "x.dgrl", on_error="skip")
    assert len(trailing) == 3 and trailing.index.skipped_bytes == 3 and trailing.index.skipped_records == 0
    with pytest.raises(FormatError, match="format code"):  # no header, nothing to keep: the member is skipped by the stream
        dgrl.open_file(as_buffer(cases["code type"][0][:0] + b"\x40\0\0\0DGRX" + data[8:]), "x.dgrl", on_error="skip")


def test_stream_skip_counts_damaged_pages_and_lines(tmp_path):
    from gntkit.samples.stream import StreamReport, iter_batches

    paths = write_dgrl_corpus(tmp_path, writers=3, pages=1, lines=3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:-7])  # the last line of 002-P01 truncated
    paths[2].write_bytes(b"DGR" + data[3:40])  # 003-P01: no header at all
    report = StreamReport()
    batches = list(iter_batches(tmp_path, fixture_charset(), None, on_error="skip", report=report))
    assert sum(len(b) for b in batches) == 3 + 2
    # The truncated line counts as one record; the page with no header holds an unknown number.
    assert report.skipped_records == 1 and len(report.problems) == 2 and report.lost_anything
    assert [p.records_unknown for p in report.problems] == [False, True]
    assert "an unknown number of records in 40 bytes" in report.problems[1].found
    with pytest.raises(FormatError, match="002-P01.dgrl"):
        list(iter_batches(tmp_path, fixture_charset(), None))


def test_damaged_zip_member_is_skipped_whole_and_counted(tmp_path):
    from gntkit.samples.stream import StreamReport, iter_batches

    paths = write_dgrl_corpus(tmp_path / "src", writers=2, pages=1)
    zip_path = tmp_path / "HWDB2.0Test.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, arcname="HWDB2.0Test/" + path.name)
    raw = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo("HWDB2.0Test/002-P01.dgrl")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 10] ^= 0xFF
    zip_path.write_bytes(bytes(raw))
    report = StreamReport()
    batches = list(iter_batches(zip_path, fixture_charset(), None, on_error="skip", report=report))
    # Its deflate stream is damaged: the member's bytes cannot be read, so its records cannot be counted.
    assert {w for b in batches for w in b.writer_ids} == {"001"} and len(report.problems) == 1
    assert "002-P01.dgrl" in report.problems[0].path and report.problems[0].records_unknown
    assert "an unknown number of records" in report.summary()
    with pytest.raises(FormatError, match="002-P01.dgrl"):
        list(iter_batches(zip_path, fixture_charset(), None))


# --------------------------------------------------------------------------- the line stream
def test_line_batches_carry_sequences_text_and_unique_keys(tmp_path):
    from gntkit.samples.stream import StreamReport, iter_batches

    write_dgrl_corpus(tmp_path, writers=2, pages=2, lines=3)
    charset = fixture_charset()
    batches = list(iter_batches(tmp_path, charset, None, report=StreamReport()))
    keys = [k for b in batches for k in b.keys]
    assert len(keys) == len(set(keys)) == 12 and keys[:3] == ["001-P01/0", "001-P01/1", "001-P01/2"]
    for batch in batches:
        meta = batch.meta
        assert (batch.labels == -1).all() and set(meta["writer"]) <= {"001", "002"}
        for i in range(len(batch)):
            ids = meta["label_sequence"][meta["label_sequence_offsets"][i]:meta["label_sequence_offsets"][i + 1]]
            codes = meta["label_codes"][meta["label_codes_offsets"][i]:meta["label_codes_offsets"][i + 1]]
            assert ids.tolist() == charset.classes_of_codes(codes).tolist()
            assert meta["text"][i] == batch.characters[i] == "".join(decode_tag(int(c)) for c in codes)
            assert batch.image(i).shape == (batch.heights[i], batch.widths[i])


@pytest.mark.parametrize("on_unknown", ["drop", "other", "error"])
def test_unlabelled_characters_drop_mark_or_raise(tmp_path, on_unknown):
    from gntkit.samples.stream import StreamReport, iter_batches

    write_page(tmp_path, 1, 1, lines=3, unlabelled=2)  # lines 0 and 1 hold one 0xFFFF each
    charset = fixture_charset().with_other() if on_unknown == "other" else fixture_charset()
    report = StreamReport()
    stream = iter_batches(tmp_path, charset, None, on_unknown=on_unknown, report=report)
    if on_unknown == "error":
        with pytest.raises(CharsetError, match=r"001-P01.dgrl line 0 character 1 at byte \d+: .*unknown 0xFFFF"):
            list(stream)
        return
    batches = list(stream)
    assert report.unknown_codes == {0xFFFF: 2}
    if on_unknown == "drop":
        assert [k for b in batches for k in b.keys] == ["001-P01/2"] and report.dropped == 2 and report.lost_anything
    else:
        batch = batches[0]
        assert len(batch) == 3 and report.other == 2 and report.dropped == 0
        sequence = batch.meta["label_sequence"][:batch.meta["label_sequence_offsets"][1]]
        assert sequence[1] == len(charset) - 1 and batch.meta["text"][0][1] == "\ufffd"


def test_preprocessed_lines_have_the_line_height_and_capped_width(tmp_path):
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.stream import iter_batches

    write_page(tmp_path, 1, 1, lines=3, glyph_height=40)
    settings = Preprocess(line_height=20, max_line_width=120)
    batch = next(iter_batches(tmp_path, fixture_charset(), settings))
    raw = next(iter_batches(tmp_path, fixture_charset(), None))
    assert (batch.heights == 20).all()
    expected = np.minimum(120, np.floor(raw.widths * 20 / raw.heights + 0.5)).astype(int)
    assert batch.widths.tolist() == expected.tolist()
    assert batch.image(0).max() > 200 and np.median(batch.image(0)) < 30  # inverted: bright ink on 0


def test_open_source_counts_lines(tmp_path):
    from gntkit.samples.stream import Source

    write_dgrl_corpus(tmp_path, writers=1, pages=2, lines=3, unlabelled=1)
    source = Source(tmp_path, fixture_charset())
    samples = list(source)
    assert len(source) == 5 == len(samples)
    charset = fixture_charset()
    for sample in samples:
        assert sample.label == -1 and "".join(charset.characters[c] for c in sample.label_sequence) == sample.character
    assert len(Source(tmp_path, fixture_charset().with_other(), on_unknown="other")) == 6
    assert len(Source(tmp_path, "data")) == 5  # the default for DGRL: every decodable code


def test_inspect_stats_reports_pages_lines_characters():
    page = dgrl.open_file(as_buffer(page_bytes(1, 1, lines=4)), "x.dgrl")
    stats = page.inspect_stats()
    assert stats["lines_per_page"].tolist() == [4]
    assert stats["characters_per_line"].sum() == len(page.index.label_codes)


# --------------------------------------------------------------------------- fuzzing
_SEED_PAGES = {bits: page_bytes(1, 1, bits=bits, lines=2, glyph_height=10) for bits in (8, 1)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutations_never_crash_or_read_out_of_bounds(data):
    raw = bytearray(_SEED_PAGES[data.draw(st.sampled_from([8, 1]))])
    for _ in range(data.draw(st.integers(0, 6))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw)))
        raw[cut:cut] = bytes(data.draw(st.lists(st.integers(0, 255), max_size=12)))
    raw = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    try:
        reference = read_dgrl(raw)
    except (ValueError, struct.error, IndexError):
        reference = None
    if reference is not None:
        assert_same_as_reference(raw, dgrl.open_file(as_buffer(raw), "fuzz.dgrl"))
    else:
        with pytest.raises(FormatError):
            dgrl.open_file(as_buffer(raw), "fuzz.dgrl")
    try:
        page = dgrl.open_file(as_buffer(raw), "fuzz.dgrl", on_error="skip")
    except FormatError:
        return  # a damaged header: nothing can be read
    ends = page.index.bitmap_offsets + [dgrl.bitmap_bytes(h, w, page.index.header.bits_per_pixel)
                                        for h, w in zip(page.index.heights.tolist(), page.index.widths.tolist())]
    assert (ends <= len(raw)).all()
    pixels, offsets = page.gather()
    assert offsets[-1] == len(pixels)
    assert page.batch_extras(np.arange(len(page)))["label_codes_offsets"][-1] == len(page.index.label_codes)
