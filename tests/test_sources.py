"""Sources: files, folders, zips read in place; writer ids; ordering; damaged members."""

import zipfile

import numpy as np
import pytest

from gntkit.errors import FormatError, GntkitError
from gntkit.formats.gnt import GntFile
from gntkit.formats.sources import find_members, writer_id_from_name
from gntkit.tools.synth import write_corpus


@pytest.mark.parametrize("name, writer", [
    ("1001-c.gnt", "1001"), ("001-f.gnt", "001"), ("006-t.gnt", "006"), ("C001-f-f.gnt", "C001"),
    ("dir/1240-c.GNT", "1240"), ("weird name.v2.gnt", "weird_name_v2"),
])
def test_writer_ids_from_file_names(name, writer):
    assert writer_id_from_name(name) == writer


def test_folder_members_sorted_by_writer_number(tmp_path):
    write_corpus(tmp_path / "a", writers=2, first_writer=9, samples_per_class=1, num_classes=2)
    write_corpus(tmp_path / "b", writers=2, first_writer=100, samples_per_class=1, num_classes=2)
    members = find_members([tmp_path / "b", tmp_path / "a"])
    assert [m.writer_id for m in members] == ["9", "10", "100", "101"]


def test_zip_members_read_as_streams_equal_the_files(tmp_path, corpus_c, corpus_zip):
    plain = find_members(corpus_c)
    zipped = find_members(corpus_zip)
    assert [m.writer_id for m in zipped] == [m.writer_id for m in plain]
    for a, b in zip(plain, zipped):
        assert b.archive == str(corpus_zip) and b.name == f"{corpus_zip}:{b.inner}"
        assert np.array_equal(a.read(), b.read())
    # A folder holding the zip finds its members too.
    assert [m.name for m in find_members(corpus_zip.parent)] == [m.name for m in zipped]


def test_duplicate_writer_is_an_error(corpus_c, corpus_zip):
    with pytest.raises(GntkitError, match="Writer id 1001 appears twice"):
        find_members([corpus_c, corpus_zip])


def test_damaged_zip_member_is_named(tmp_path, corpus_c):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        z.write(corpus_c / "1001-c.gnt", "1001-c.gnt")
    raw = bytearray(archive.read_bytes())
    raw[200] ^= 0xFF  # inside the stored member's data: CRC no longer matches
    archive.write_bytes(bytes(raw))
    (member,) = find_members(archive)
    with pytest.raises(FormatError, match=r"bad\.zip:1001-c\.gnt: expected a zip member whose data matches its stored CRC-32"):
        member.read()


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing", "found nothing at that path"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "found none"),
    (lambda p: (p / "x.png").write_bytes(b"\x89PNG") and p / "x.png", "found a .png file"),
    (lambda p: (p / "x.alz").write_bytes(b"ALZ\x01") and p / "x.alz", "ALZip"),
])
def test_bad_sources(tmp_path, setup, message):
    with pytest.raises(GntkitError, match=message):
        find_members(setup(tmp_path))


def test_damaged_alz_inside_a_zip_is_named_with_its_offset(tmp_path):
    # The ALZip inside the old HWDB1.1 zip is read in place now (tests/test_alz_sources.py);
    # a damaged one is named through both layers, with the offset of the damage.
    archive = tmp_path / "HWDB1.1trn_gnt.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("HWDB1.1trn_gnt.alz", b"ALZ\x01" + bytes(20))
    with pytest.raises(FormatError, match=r"HWDB1\.1trn_gnt\.zip:HWDB1\.1trn_gnt\.alz at byte 8: expected an ALZip record"):
        find_members(archive)


def test_not_a_zip_named_zip(tmp_path):
    fake = tmp_path / "Gnt1.1Test.zip"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(FormatError, match="not a readable zip archive"):
        find_members(fake)


def test_member_bytes_decode(corpus_f):
    members = find_members(corpus_f)
    gnt = GntFile(members[0].read(), members[0].name)
    assert len(gnt) == (8 + 6) * 2
