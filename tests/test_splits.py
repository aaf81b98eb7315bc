"""Split presets: every preset on the writer ids and archive names of the real CASIA downloads."""

from dataclasses import dataclass

import pytest

from gntkit.errors import GntkitError
from gntkit.samples.splits import PRESETS, SplitPlan, parse_split, split_from_name


@dataclass(frozen=True)
class FakeMember:
    """The attributes SplitPlan.assign reads from a sources member."""

    writer_id: str
    name: str
    source: str
    archive: str | None


def zipped(archive: str, writers, suffix="-f.gnt"):
    return [FakeMember(w, f"{archive}:{w}{suffix}", archive, archive) for w in writers]


def numbers(first, last, width=3):
    return [f"{n:0{width}d}" for n in range(first, last + 1)]


def test_every_preset_is_documented_and_parses():
    for name in PRESETS:
        plan = parse_split(name)
        assert isinstance(plan, SplitPlan) and plan.spec == name


@pytest.mark.parametrize("preset", ["hwdb1.1", "olhwdb1.1"])
def test_hwdb11_ranges(preset):
    assignment = parse_split(preset).assign(numbers(1001, 1300, 4))
    assert sum(s == "train" for s in assignment.values()) == 240
    assert sum(s == "test" for s in assignment.values()) == 60
    assert assignment["1240"] == "train" and assignment["1241"] == "test"
    with pytest.raises(GntkitError, match="Writer 1301 falls in no split"):
        parse_split(preset).assign(["1301"])


def test_bare_writer_ids_still_work_as_before():
    plan = parse_split("train=1-5+8,test=6-7", val_fraction=0.0)
    assert plan.assign(["1", "6", "8"]) == {"1": "train", "6": "test", "8": "train"}
    assert parse_split("all").assign(["3", "1"]) == {"1": "all", "3": "all"}
    assert plan.to_json() == {"spec": "train=1-5+8,test=6-7", "ranges": {"train": [[1, 5], [8, 8]], "test": [[6, 7]]},
                              "val_fraction": 0.0, "seed": 0}


@pytest.mark.parametrize("name, expected", [
    ("/data/Gnt1.1TrainPart1.zip", "train"), ("Gnt1.0Test.zip", "test"), ("HWDB1.1trn_gnt.zip", "train"),
    ("HWDB1.1tst_gnt.zip", "test"), ("HWDB2.2Train.zip", "train"), ("Pot1.2Test.zip", "test"),
    ("competition-gnt.zip", None), ("train_test.zip", None), ("/home/tests/Gnt1.1.zip", None),
])
def test_split_from_name(name, expected):
    assert split_from_name(name) == expected


def test_archive_preset_members_from_the_downloads():
    members = (zipped("/d/Gnt1.1TrainPart1.zip", numbers(1001, 1120, 4)) + zipped("/d/Gnt1.1TrainPart2.zip", numbers(1121, 1240, 4))
               + zipped("/d/Gnt1.1Test.zip", numbers(1241, 1300, 4)))
    assignment = parse_split("archive").assign(members)
    assert assignment == {m.writer_id: ("test" if "Test" in m.archive else "train") for m in members}
    # The old downloads: the train zip holds an .alz (archive = the outer zip), the test zip .gnt files.
    old = zipped("/d/HWDB1.1trn_gnt.zip", ["1001"], "-c.gnt") + zipped("/d/HWDB1.1tst_gnt.zip", ["1241"], "-c.gnt")
    assert parse_split("archive").assign(old) == {"1001": "train", "1241": "test"}


def test_archive_preset_plain_files_use_their_folder():
    members = [FakeMember("1001", "/d/Gnt1.1Train/1001-f.gnt", "/d/Gnt1.1Train", None),
               FakeMember("1241", "/d/HWDB1.1tst_gnt/1241-c.gnt", "/d/HWDB1.1tst_gnt/1241-c.gnt", None)]
    assert parse_split("archive").assign(members) == {"1001": "train", "1241": "test"}


def test_archive_preset_refuses_what_it_cannot_place():
    with pytest.raises(GntkitError, match="bare writer ids"):
        parse_split("archive").assign(["1001"])
    with pytest.raises(GntkitError, match=r"competition-gnt\.zip \(neither\)"):
        parse_split("archive").assign(zipped("/d/competition-gnt.zip", ["C001"]))
    mixed = zipped("/d/HWDB2.0Train.zip", ["001-P16"], ".dgrl") + zipped("/d/HWDB2.0Test.zip", ["001-P16"], ".dgrl")
    with pytest.raises(GntkitError, match="all alike"):
        parse_split("hwdb2.x").assign(mixed)


def test_hwdb10_by_archive_within_writers_1_to_420():
    # Seen in the real downloads: 001-f.gnt in Gnt1.0TrainPart1.zip, 006-t.gnt and 121-t.gnt in Gnt1.0Test.zip.
    members = (zipped("/d/Gnt1.0TrainPart1.zip", ["001"]) + zipped("/d/Gnt1.0Test.zip", ["006", "121"], "-t.gnt")
               + zipped("/d/Gnt1.0TrainPart3.zip", ["420"]))
    assert parse_split("hwdb1.0").assign(members) == {"001": "train", "006": "test", "121": "test", "420": "train"}
    with pytest.raises(GntkitError, match="not one of the HWDB1.0 writers"):
        parse_split("hwdb1.0").assign(zipped("/d/Gnt1.1Test.zip", ["1241"]))
    pot = [FakeMember("121", "/d/Pot1.0Test/121.pot", "/d/Pot1.0Test", None)]
    assert parse_split("olhwdb1.0").assign(pot) == {"121": "test"}


@pytest.mark.parametrize("preset", ["hwdb1.2", "olhwdb1.2"])
def test_hwdb12_by_archive(preset):
    members = zipped("/d/Gnt1.2TrainPart1.zip", ["501", "502"]) + zipped("/d/Gnt1.2Test.zip", ["800"])
    assert parse_split(preset).assign(members) == {"501": "train", "502": "train", "800": "test"}


def test_competition_is_all_test():
    plan = parse_split("competition")
    assert plan.names == ["test"]
    assert set(plan.assign([f"C{n:03d}" for n in range(1, 61)]).values()) == {"test"}
    with pytest.raises(GntkitError, match="no train split"):
        parse_split("competition", val_fraction=0.1)


def test_icdar2013_standard_setup():
    members = (zipped("/d/Gnt1.0TrainPart1.zip", numbers(1, 3)) + zipped("/d/Gnt1.0Test.zip", ["006"], "-t.gnt")
               + zipped("/d/Gnt1.1TrainPart1.zip", ["1001"]) + zipped("/d/Gnt1.1Test.zip", ["1300"])
               + zipped("/d/competition-gnt.zip", ["C001", "C060"], "-f-f.gnt"))
    plan = parse_split("icdar2013")
    assignment = plan.assign(members)
    assert plan.names == ["train", "test"]
    assert [w for w, s in assignment.items() if s == "test"] == ["C001", "C060"]
    assert sorted(w for w, s in assignment.items() if s == "train") == ["001", "002", "003", "006", "1001", "1300"]
    # Bare ids work too: the competition writers carry a C prefix.
    assert parse_split("icdar2013").assign(["C007", "0420"]) == {"C007": "test", "0420": "train"}
    with pytest.raises(GntkitError, match="not one of the HWDB1.0 or HWDB1.1 writers"):
        plan.assign(zipped("/d/Gnt1.2Test.zip", ["501"]))
    assert "HWDB1.0 + HWDB1.1" in plan.to_json()["rule"]


def test_val_fraction_with_rule_presets():
    members = zipped("/d/Gnt1.1TrainPart1.zip", numbers(1001, 1010, 4)) + zipped("/d/Gnt1.1Test.zip", ["1241"])
    plan = parse_split("archive", val_fraction=0.2, seed=3)
    assignment = plan.assign(members)
    assert plan.names == ["train", "test", "val"]
    assert sum(s == "val" for s in assignment.values()) == 2 and assignment["1241"] == "test"
    assert assignment == parse_split("archive", val_fraction=0.2, seed=3).assign(members)


def test_bad_input():
    with pytest.raises(GntkitError, match="expected 'all', a preset"):
        parse_split("hwdb9")
    with pytest.raises(GntkitError, match="writer ids or members"):
        parse_split("all").assign("1001")
    with pytest.raises(GntkitError, match="str .writer_id"):
        parse_split("all").assign([42])
    with pytest.raises(GntkitError, match="preset name or ranges"):
        parse_split(None)


def test_icdar2013_setup_in_one_command(tmp_path):
    """The documented command on miniature downloads: HWDB1.0 and HWDB1.1 zips train, the competition zip tests,
    and gb2312-1 drops (and counts) the symbols and the classes outside level 1."""
    import json
    import zipfile

    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.samples.charset import builtin
    from gntkit.tools.synth import symbol_codes, write_gnt, writer_records

    level1 = builtin("gb2312-1").tag_codes[:3]
    outside = [0xD8A1]  # GB2312 level 2: HWDB1.0 holds 126 such classes
    downloads = {"Gnt1.0TrainPart1.zip": ["001"], "Gnt1.0Test.zip": ["006"], "Gnt1.1TrainPart1.zip": ["1001"],
                 "Gnt1.1Test.zip": ["1241"], "competition-gnt.zip": ["C001", "C002"]}
    sources = []
    for archive_name, writers in downloads.items():
        folder = tmp_path / archive_name[:-4]
        folder.mkdir()
        with zipfile.ZipFile(tmp_path / archive_name, "w") as archive:
            for writer in writers:
                number = int(writer.lstrip("C")) + (5000 if writer.startswith("C") else 0)
                codes, bitmaps = writer_records(number, list(level1) + outside + symbol_codes(1), 1)
                path = write_gnt(folder / f"{writer}-f.gnt", codes, bitmaps)
                archive.write(path, path.name)
        sources.append(tmp_path / archive_name)
    out = tmp_path / "icdar2013-tfrecord"
    result = CliRunner().invoke(app, ["convert", *map(str, sources), "--split", "icdar2013", "--charset", "gb2312-1",
                                      "--to", "tfrecord", "--out", str(out), "--quiet"])
    # Exit code 3: samples were dropped, here by design (the symbols and the level-2 class), and counted.
    assert result.exit_code == 3, result.output
    assert "dropped 12 sample(s) outside the charset" in result.output
    manifest = json.loads((out / "gntkit.json").read_text(encoding="utf-8"))
    assert manifest["splits"]["train"]["writers"] == ["001", "006", "1001", "1241"]
    assert manifest["splits"]["test"]["writers"] == ["C001", "C002"]
    assert manifest["splits"]["train"]["num_records"] == 4 * 3 and manifest["splits"]["test"]["num_records"] == 2 * 3
