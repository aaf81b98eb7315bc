"""CLI through typer's CliRunner: inspect, charset, synth; errors are one sentence, exit 2."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_inspect_text_and_json(corpus_f):
    result = invoke("inspect", corpus_f)
    assert result.exit_code == 0, result.output
    assert "records    56 in 14 classes" in result.output and "symbols  24 records, 6 classes" in result.output
    report = json.loads(invoke("inspect", corpus_f, "--json").output)
    assert report["files"] == 2 and report["writers"] == 2 and report["records"] == 56
    assert report["chinese"] == {"records": 32, "classes": 8} and report["problems"] == []
    assert report["width"]["min"] <= report["width"]["median"] <= report["width"]["max"]


def test_inspect_zip(corpus_zip):
    report = json.loads(invoke("inspect", corpus_zip, "--json").output)
    assert report["files"] == 3 and report["records"] == 72


def test_inspect_reports_every_problem(tmp_path, corpus_c):
    folder = tmp_path / "gnt"
    shutil.copytree(corpus_c, folder)
    (folder / "1002-c.gnt").write_bytes((folder / "1002-c.gnt").read_bytes()[:-3])
    (folder / "1009-c.gnt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    result = invoke("inspect", folder)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "1002-c.gnt at byte" in result.output and "a PNG image, not a GNT file" in result.output
    skipped = invoke("inspect", folder, "--on-error", "skip", "--json")
    assert skipped.exit_code == 3
    report = json.loads(skipped.stdout)
    assert len(report["problems"]) == 2 and report["skipped_bytes"] > 0


@pytest.mark.parametrize("args, message", [
    (("inspect", "/nonexistent/x.gnt"), "found nothing at that path"),
    (("charset", "show", "gb9999"), "Unknown built-in charset"),
])
def test_errors_are_one_sentence_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_charset_commands(tmp_path):
    listing = invoke("charset", "list")
    assert listing.exit_code == 0 and "gb2312-1" in listing.output and "3755" in listing.output
    shown = invoke("charset", "show", "gb2312-1", "--limit", "2")
    assert "0  0xB0A1  啊" in shown.output
    exported = invoke("charset", "export", "gb2312", tmp_path / "cs")
    assert exported.exit_code == 0
    assert len((tmp_path / "cs" / "charset.txt").read_text(encoding="utf-8").splitlines()) == 6763
    again = invoke("charset", "export", "gb2312", tmp_path / "cs")
    assert again.exit_code == 2 and "already exists" in again.output


def test_synth_then_inspect(tmp_path):
    result = invoke("synth", tmp_path / "s", "--writers", "2", "--style", "f", "--zip", "Gnt1.1Test.zip")
    assert result.exit_code == 0, result.output
    report = json.loads(invoke("inspect", tmp_path / "s" / "Gnt1.1Test.zip", "--json").output)
    assert report["files"] == 2 and report["symbols"]["classes"] == 10
    assert invoke("synth", tmp_path / "s").exit_code == 2


def test_every_command_has_help():
    for command in ("inspect", "charset", "synth"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.slow
def test_demo_and_preview(tmp_path):
    result = invoke("demo", tmp_path / "demo", "--workers", "1")
    assert result.exit_code == 0, result.output
    for to in ("tfrecord", "hdf5", "webdataset"):
        assert f"verified {to}" in result.output
    assert (tmp_path / "demo" / "preview.png").is_file()
    from PIL import Image

    grid = Image.open(tmp_path / "demo" / "preview.png")
    assert grid.width >= 8 * 72
    shards = invoke("preview", tmp_path / "demo" / "sample-hdf5", "--out", tmp_path / "p.png", "--count", "10", "--split", "test")
    assert shards.exit_code == 0 and "10 samples" in shards.output
    bad = invoke("preview", tmp_path / "demo" / "sample-hdf5", "--out", tmp_path / "p.jpg")
    assert bad.exit_code == 2 and ".png" in bad.output
    again = invoke("demo", tmp_path / "demo")
    assert again.exit_code == 2 and "not empty" in again.output


def test_a_bug_in_gntkit_exits_1_and_says_so(tmp_path, corpus_c, monkeypatch):
    # Not bad input: an internal error (here a kernel wrapper that raises what no check expects)
    # says it is a bug in gntkit, exits 1 (never 2, which means "your input"), and hides the
    # traceback unless GNTKIT_DEBUG asks for it.
    import gntkit.samples.stream

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(gntkit.samples.stream, "survey_codes", broken)
    result = CliRunner().invoke(app, ["convert", str(corpus_c), "--out", str(tmp_path / "out"), "--charset", "data"])
    assert result.exit_code == 1
    assert "a bug in gntkit" in result.output and "ZeroDivisionError" in result.output and "Traceback" not in result.output
    monkeypatch.setenv("GNTKIT_DEBUG", "1")
    result = CliRunner().invoke(app, ["convert", str(corpus_c), "--out", str(tmp_path / "out2"), "--charset", "data"])
    assert isinstance(result.exception, ZeroDivisionError)


def test_damaged_resume_journal_is_one_sentence(tmp_path, corpus_c):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gnt-all-00000.tar").write_bytes(b"x")
    for damaged, found in ((b'{"settings_key": "k", "shards": {', "a syntax error"), (b'{"shards": [1]}', "a damaged one")):
        (out / ".gntkit-journal.json").write_bytes(damaged)
        result = CliRunner().invoke(app, ["convert", str(corpus_c), "--out", str(out), "--resume"])
        assert result.exit_code == 2, result.output
        assert ".gntkit-journal.json" in result.output and found in result.output and "Traceback" not in result.output
