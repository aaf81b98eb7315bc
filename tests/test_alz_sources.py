"""End to end: the old HWDB1.1 train download (a zip holding an ALZip archive of .gnt files) read in
place by `gntkit inspect`, with the same counts as the unpacked files."""

import json
import zipfile

from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.formats.sources import find_members
from gntkit.tools.fixtures.alz import Member, alz_bytes
from gntkit.tools.synth import write_corpus


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_inspect_zip_holding_alz_holding_gnt(tmp_path):
    files = write_corpus(tmp_path / "gnt", writers=3, num_classes=6, samples_per_class=2, style="f", num_symbols=3)
    methods = [2, 0, 1]  # deflate, stored, ALZip's bzip2
    members = [Member("HWDB1.1trn_gnt/", directory=True)] + [
        Member(f"HWDB1.1trn_gnt/{path.name}", path.read_bytes(), method=methods[i % 3]) for i, path in enumerate(sorted(files))]
    outer = tmp_path / "HWDB1.1trn_gnt.zip"
    with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("HWDB1.1trn_gnt.alz", alz_bytes(members))

    found = find_members([outer])
    assert [m.writer_id for m in found] == ["1001", "1002", "1003"]
    assert all(m.archive == str(outer) and m.layers[0] == ("zip", "HWDB1.1trn_gnt.alz") and m.layers[1][0] == "alz" for m in found)

    nested = invoke("inspect", outer, "--json")
    assert nested.exit_code == 0, nested.output
    plain = json.loads(invoke("inspect", tmp_path / "gnt", "--json").output)
    report = json.loads(nested.output)
    assert report["files"] == plain["files"] == 3 and report["problems"] == []
    assert report["records"] == plain["records"] > 0 and report["chinese"] == plain["chinese"]


def test_plain_alz_source_and_split_refusal(tmp_path):
    files = write_corpus(tmp_path / "gnt", writers=2, num_classes=4, samples_per_class=1, style="c", num_symbols=0)
    archive = tmp_path / "HWDB1.1tst_gnt.alz"
    archive.write_bytes(alz_bytes([Member(p.name, p.read_bytes(), method=0) for p in sorted(files)]))
    found = find_members([archive])
    assert [m.writer_id for m in found] == ["1001", "1002"]
    assert found[0].read().tobytes() == sorted(files)[0].read_bytes()
    volume = tmp_path / "split.alz"
    volume.write_bytes(archive.read_bytes()[:200] + b"CLZ\x03" + bytes(12))
    result = invoke("inspect", volume)
    assert result.exit_code == 2 and "first volume of a split" in result.output and "Traceback" not in result.output


def test_members_of_a_zipped_alz_share_one_container(tmp_path, monkeypatch):
    # A container per member would rescan the ALZ directory and re-inflate the outer zip for every
    # member: quadratic in the ~240 members of the real 1.8 GB archive.
    from gntkit.containers.alz import AlzContainer

    files = write_corpus(tmp_path / "gnt", writers=4, num_classes=3, samples_per_class=1, style="c", num_symbols=0)
    outer = tmp_path / "HWDB1.1trn_gnt.zip"
    with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("HWDB1.1trn_gnt.alz", alz_bytes([Member(p.name, p.read_bytes(), method=2) for p in sorted(files)]))
    found = find_members([outer])
    opened = []
    original = AlzContainer.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AlzContainer, "__init__", counting_init)
    for member, path in zip(found, sorted(files)):
        assert member.read().tobytes() == path.read_bytes()
    assert len(opened) == 1
