"""Damaged and truncated archives (zip, ALZip, zip inside zip, gzip): with --on-error skip every member
before the damage that checks out is kept, what was lost is counted the same way in `inspect` (text and
JSON), the manifest and the summary line, and the run exits 3; with --on-error raise it exits 2 with one
sentence. Archives are built in their real layouts: zipfile, gntkit/tools/fixtures/alz.py, gzip."""

import gzip
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.formats.sources import find_members
from gntkit.samples.inspection import format_inspection, inspect_sources
from gntkit.shards.convert import convert
from gntkit.tools.fixtures.alz import Member, alz_bytes
from gntkit.tools.synth import write_corpus

RECORDS_PER_WRITER = 12  # 4 classes x 3 samples


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def gnt_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("salvage") / "gnt"
    return sorted(write_corpus(folder, writers=3, num_classes=4, samples_per_class=3, style="c", num_symbols=0))


def zip_of(path: Path, files, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for file in files:
            archive.writestr(file.name, file.read_bytes())
    return path


def data_offset(archive: Path, name: str) -> int:
    """Byte offset of a zip member's data (after its local header)."""
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(name)
    head = archive.read_bytes()[info.header_offset:info.header_offset + 30]
    return info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")


def flipped(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x55]) + data[offset + 1:]


def check_everywhere(source: Path, tmp_path: Path, *, kept: int, lost_records: int, unknown: int, words: str) -> dict:
    """inspect (text, JSON, CLI exit codes), convert (manifest, summary) agree on what was kept and lost."""
    report = inspect_sources([source]).to_json()
    assert (report["records"], report["skipped_records"], report["unknown_record_counts"]) == (kept, lost_records, unknown)
    assert words in format_inspection(report)
    assert words in report["lost"]
    raised = invoke("inspect", source)
    assert raised.exit_code == 2 and "Traceback" not in raised.output
    skipped = invoke("inspect", source, "--on-error", "skip", "--json")
    assert skipped.exit_code == 3, skipped.output
    assert json.loads(skipped.output)["skipped_records"] == lost_records

    failed = invoke("convert", source, "--to", "hdf5", "--out", tmp_path / "raise")
    assert failed.exit_code == 2 and "Traceback" not in failed.output and failed.output.count("error:") == 1, failed.output
    done = invoke("convert", source, "--to", "hdf5", "--out", tmp_path / "skip", "--on-error", "skip")
    assert done.exit_code == 3, done.output
    manifest = json.loads((tmp_path / "skip" / "gntkit.json").read_text())
    assert manifest["skipped"]["kept"] == kept
    assert manifest["skipped"]["skipped_records"] == lost_records
    assert manifest["skipped"]["unknown_record_counts"] == unknown
    assert words in manifest["summary"] and words in done.output
    return report


def test_truncated_zip_keeps_the_members_before_the_cut(gnt_files, tmp_path):
    whole = zip_of(tmp_path / "whole.zip", gnt_files)
    cut_at = data_offset(whole, gnt_files[2].name) + 500
    source = tmp_path / "cut.zip"
    source.write_bytes(whole.read_bytes()[:cut_at])
    report = check_everywhere(source, tmp_path, kept=2 * RECORDS_PER_WRITER, lost_records=0, unknown=1,
                              words="an unknown number of records")
    problem = report["problems"][0]
    assert problem["path"] == str(source) and problem["skipped_records"] is None
    assert "1003-c.gnt" in problem["message"] and "truncated" in problem["message"]
    assert [f["records"] for f in report["per_file"]] == [12, 12, 0]


def test_zip_member_with_a_bad_crc_counts_the_records_it_held(gnt_files, tmp_path):
    whole = zip_of(tmp_path / "whole.zip", gnt_files, zipfile.ZIP_STORED)
    source = tmp_path / "crc.zip"
    source.write_bytes(flipped(whole.read_bytes(), data_offset(whole, gnt_files[1].name) + 200))  # inside a bitmap
    report = check_everywhere(source, tmp_path, kept=2 * RECORDS_PER_WRITER, lost_records=RECORDS_PER_WRITER, unknown=0,
                              words="12 damaged record(s)")
    assert "1002-c.gnt" in report["problems"][0]["path"] and "CRC" in report["problems"][0]["message"]


def test_zip_without_its_directory_stops_at_the_first_member_that_does_not_check_out(gnt_files, tmp_path):
    whole = zip_of(tmp_path / "whole.zip", gnt_files, zipfile.ZIP_STORED)
    data = flipped(whole.read_bytes(), data_offset(whole, gnt_files[1].name) + 200)
    directory = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x01\x02") + 1)
    source = tmp_path / "nodir.zip"
    source.write_bytes(data[:data.find(b"PK\x01\x02")] + data[directory:directory + 10])
    members = find_members([source], on_error="skip")
    assert sorted((m.writer_id, m.lost is not None) for m in members) == [("", True), ("1001", False), ("1002", True)]
    check_everywhere(source, tmp_path, kept=RECORDS_PER_WRITER, lost_records=RECORDS_PER_WRITER, unknown=1,
                     words="12 damaged record(s) and an unknown number of records")


def test_zip_with_a_damaged_directory_recovers_every_member(gnt_files, tmp_path):
    whole = zip_of(tmp_path / "whole.zip", gnt_files)
    data = whole.read_bytes()
    source = tmp_path / "baddir.zip"
    source.write_bytes(data[:-22] + b"\x00" * 22)  # the end-of-directory record zeroed
    report = inspect_sources([source]).to_json()
    assert report["records"] == 3 * RECORDS_PER_WRITER and report["skipped_records"] == 0 and len(report["problems"]) == 1
    assert "central directory" in report["problems"][0]["message"] and "no member" in report["problems"][0]["message"]
    assert invoke("inspect", source).exit_code == 2


def alz_of(files, method=2) -> bytes:
    return alz_bytes([Member(f"HWDB1.1trn_gnt/{f.name}", f.read_bytes(), method=method) for f in files])


def test_truncated_alz_keeps_the_members_before_the_cut(gnt_files, tmp_path):
    data = alz_of(gnt_files)
    source = tmp_path / "cut.alz"
    source.write_bytes(data[:len(data) - 2000])
    report = check_everywhere(source, tmp_path, kept=2 * RECORDS_PER_WRITER, lost_records=0, unknown=1,
                              words="an unknown number of records")
    assert "1003-c.gnt" in report["problems"][0]["message"]


def test_alz_member_with_a_bad_crc_counts_the_records_it_held(gnt_files, tmp_path):
    data = alz_of(gnt_files, method=0)
    start = data.find(gnt_files[0].read_bytes()[:64])
    source = tmp_path / "crc.alz"
    source.write_bytes(flipped(data, start + 200))
    check_everywhere(source, tmp_path, kept=2 * RECORDS_PER_WRITER, lost_records=RECORDS_PER_WRITER, unknown=0,
                     words="12 damaged record(s)")


def test_truncated_zip_holding_an_alz_keeps_the_alz_members_before_the_cut(gnt_files, tmp_path):
    # The old HWDB1.1trn_gnt.zip: one ALZip archive inside a zip; a cut download cuts the ALZip too.
    alz = alz_of(gnt_files, method=0)
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("HWDB1.1trn_gnt.alz", alz)
    source = tmp_path / "HWDB1.1trn_gnt.zip"
    source.write_bytes(whole.read_bytes()[:data_offset(whole, "HWDB1.1trn_gnt.alz") + alz.find(gnt_files[1].read_bytes()[:64]) + 1000])
    report = check_everywhere(source, tmp_path, kept=RECORDS_PER_WRITER, lost_records=0, unknown=1,
                              words="an unknown number of records")
    assert "1002-c.gnt" in report["problems"][0]["message"]


def test_truncated_zip_inside_a_zip(gnt_files, tmp_path):
    inner = zip_of(tmp_path / "inner.zip", gnt_files)
    whole = zip_of(tmp_path / "whole.zip", [inner], zipfile.ZIP_STORED)
    source = tmp_path / "outer.zip"
    source.write_bytes(whole.read_bytes()[:data_offset(whole, "inner.zip") + data_offset(inner, gnt_files[2].name) + 300])
    members = find_members([source], on_error="skip")
    assert [(m.writer_id, m.lost is not None) for m in members] == [("1001", False), ("1002", False), ("1003", True)]
    report = check_everywhere(source, tmp_path, kept=2 * RECORDS_PER_WRITER, lost_records=0, unknown=1,
                              words="an unknown number of records")
    assert "outer.zip:inner.zip" in report["problems"][0]["message"]


def test_truncated_and_damaged_gzip(gnt_files, tmp_path):
    packed = gzip.compress(gnt_files[0].read_bytes())
    cut = tmp_path / "cut" / "1001-c.gnt.gz"
    cut.parent.mkdir()
    cut.write_bytes(packed[:len(packed) // 2])
    report = inspect_sources([cut]).to_json()
    assert report["records"] == 0 and report["unknown_record_counts"] == 1 and "an unknown number of records" in report["lost"]
    assert invoke("inspect", cut).exit_code == 2 and invoke("inspect", cut, "--on-error", "skip").exit_code == 3

    folder = tmp_path / "crc"
    folder.mkdir()
    (folder / "1001-c.gnt.gz").write_bytes(packed[:-8] + bytes([packed[-8] ^ 1]) + packed[-7:])  # the CRC-32 trailer
    (folder / "1002-c.gnt").write_bytes(gnt_files[1].read_bytes())
    check_everywhere(folder, tmp_path, kept=RECORDS_PER_WRITER, lost_records=RECORDS_PER_WRITER, unknown=0,
                     words="12 damaged record(s)")


def test_unreadable_dgrl_and_idx_files_say_unknown_records_and_their_bytes(gnt_files, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "1001-c.gnt").write_bytes(gnt_files[0].read_bytes())
    (folder / "1002-P1.dgrl").write_bytes(b"\x00" * 300)
    report = inspect_sources([folder]).to_json()
    assert report["records"] == RECORDS_PER_WRITER and report["unknown_record_counts"] == 1
    assert "an unknown number of records in 300 unreadable bytes" in format_inspection(report)
    damaged = tmp_path / "t10k-images-idx3-ubyte"
    damaged.write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + bytes(2))
    idx = inspect_sources([damaged]).to_json()
    assert idx["records"] == 0 and idx["skipped_records"] + idx["unknown_record_counts"] >= 1


def test_library_convert_reports_the_same_counts(gnt_files, tmp_path):
    whole = zip_of(tmp_path / "whole.zip", gnt_files, zipfile.ZIP_STORED)
    source = tmp_path / "crc.zip"
    source.write_bytes(flipped(whole.read_bytes(), data_offset(whole, gnt_files[2].name) + 200))
    manifest = convert([source], tmp_path / "out", to="webdataset", on_error="skip")
    assert manifest["lost_anything"] and manifest["skipped"]["skipped_records"] == RECORDS_PER_WRITER
    assert manifest["skipped"]["kept"] == 2 * RECORDS_PER_WRITER
