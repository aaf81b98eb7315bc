"""`gntkit convert` and the top-level CLI as a newcomer meets them: the help (presets, flags,
panels), --version, options refused before anything is written, output folders a failed run
leaves behind, --resume of a finished conversion and exit codes."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gntkit
from gntkit.cli.main import app
from gntkit.samples.splits import PRESETS, parse_split
from gntkit.shards.manifest import JOURNAL, MANIFEST
from gntkit.tools.synth import write_corpus

pytestmark = pytest.mark.numba  # conversions and previews run the kernels
runner = CliRunner()
WIDE = {"COLUMNS": "240", "TERMINAL_WIDTH": "240"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def help_text(*command) -> str:
    """A command's --help as plain text: panel borders removed, wrapped lines joined."""
    output = runner.invoke(app, [*command, "--help"], env=WIDE).output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_split_help_names_exactly_the_presets_that_are_accepted():
    text = help_text("convert")
    named = re.search(r"A preset \(([^;]+);", text).group(1).split(", ")
    assert named == list(PRESETS) and "olhwdb1.x" not in text
    for preset in named:
        parse_split(preset)  # raises on a preset the help names but parse_split refuses


@pytest.mark.parametrize("command", [(), ("convert",), ("inspect",), ("preview",), ("demo",), ("verify",), ("charset", "show")])
def test_flags_show_no_value_in_the_help(command):
    text = help_text(*command)
    assert "--help" in text and "<bool>" not in text


@pytest.mark.parametrize("command", [("convert",), ("inspect",), ("preview",), ("verify",), ("demo",), ("charset", "show"), ("predict",)])
def test_usage_lines_name_arguments_in_capitals(command):
    usage = next(line for line in runner.invoke(app, [*command, "--help"], env=WIDE).output.splitlines() if "Usage:" in line)
    arguments = re.findall(r"[{\[]([^\]}]+)[}\]]", usage.split("[OPTIONS]")[1])
    assert arguments and all(name.isupper() for name in arguments), usage


def test_convert_help_groups_its_options_and_names_the_sources_argument():
    output = runner.invoke(app, ["convert", "--help"], env=WIDE).output
    assert "[OPTIONS] {SOURCES}..." in output and "{sources}" not in output
    panels = re.findall(r"╭─ ([^─]+?) ─", output)
    assert panels == ["Arguments", "Options", "Preprocessing", "Splits and charset", "Performance and shards", "Advanced"]
    common = output[output.index("╭─ Options"):output.index("╭─ Preprocessing")]
    assert all(flag in common for flag in ("--to", "--out", "--split", "--charset", "--overwrite", "--resume"))
    assert "--raw" not in common and "--workers" not in common


def test_a_flag_given_a_value_is_named(tmp_path, corpus_c):
    result = invoke("convert", corpus_c, "--raw", "true", "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2 and "take no value" in result.output and "--raw, not --raw true" in result.output
    assert not (tmp_path / "out").exists()


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"gntkit {gntkit.__version__}"


@pytest.mark.parametrize("to, compression, message", [
    ("webdataset", "gzip", "WebDataset shards take no compression, found 'gzip'"),
    ("hdf5", "zstd", "HDF5 shards take lzf or gzip or none, found 'zstd'"),
])
def test_a_bad_option_combination_is_refused_before_the_folder_is_made(tmp_path, corpus_c, to, compression, message):
    result = invoke("convert", corpus_c, "--to", to, "--compression", compression, "--out", tmp_path / "out", "--quiet")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_resume_of_a_finished_conversion_says_so_and_succeeds(tmp_path, corpus_c):
    args = ("convert", corpus_c, "--to", "hdf5", "--out", tmp_path / "out", "--quiet", "--no-hash-sources")
    assert invoke(*args).exit_code == 0
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output and "error" not in result.output


def _broken_copy(corpus, folder):
    """A copy of corpus whose last file is cut short: conversion fails after its first files."""
    shutil.copytree(corpus, folder)
    last = sorted(folder.glob("*.gnt"))[-1]
    last.write_bytes(last.read_bytes()[:-5])
    return last


@pytest.mark.parametrize("again", [(), ("--resume",)])
def test_a_failed_run_that_wrote_no_shard_does_not_block_the_next(tmp_path, corpus_c, again):
    sources, out = tmp_path / "gnt", tmp_path / "out"
    cut = _broken_copy(corpus_c, sources)
    failed = invoke("convert", sources, "--to", "hdf5", "--out", out, "--quiet", "--workers", "1")
    assert failed.exit_code == 2 and "at byte" in failed.output
    assert [p.name for p in out.iterdir()] == [JOURNAL]  # all a failed run leaves: gntkit's own journal, listing no shard
    cut.unlink()  # the input fixed; the same command (or --resume) now runs in that folder
    result = invoke("convert", sources, "--to", "hdf5", "--out", out, "--quiet", "--workers", "1", *again)
    assert result.exit_code == 0, result.output
    assert (out / MANIFEST).is_file() and not (out / JOURNAL).exists()


@pytest.mark.slow
def test_a_run_interrupted_before_its_first_shard_does_not_block_the_next(tmp_path):
    # Ctrl-C (SIGINT to the real command) once the journal is written, while the only shard is being
    # written: the folder keeps nothing but the journal, and the same command then runs in it.
    write_corpus(tmp_path / "gnt", writers=10, num_classes=300, samples_per_class=2)
    gntkit_command = Path(sys.executable).with_name("gntkit")
    command = [str(gntkit_command), "convert", "gnt", "--out", "out", "--quiet", "--workers", "1"]
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "out" / JOURNAL
    deadline = time.monotonic() + 120
    while not journal.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [JOURNAL]
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / MANIFEST).is_file()


def test_a_folder_in_the_way_is_described(tmp_path, corpus_c):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".hidden").write_text("x")
    (out / "notes.txt").write_text("x")
    result = invoke("convert", corpus_c, "--out", out, "--quiet")
    assert result.exit_code == 2 and "it holds 2 entries: .hidden, notes.txt" in result.output
    (out / "notes.txt").unlink()
    (out / JOURNAL).write_text(json.dumps({"settings_key": "x", "shards": {"all": [{"file": "a", "bytes": 1, "records": 1}]}}))
    result = invoke("convert", corpus_c, "--out", out, "--quiet")
    assert result.exit_code == 2 and f"it holds 2 entries: {JOURNAL}, .hidden" in result.output


def test_dropping_samples_outside_the_charset_still_exits_3(tmp_path, corpus_f):
    result = invoke("convert", corpus_f, "--to", "hdf5", "--out", tmp_path / "out", "--quiet", "--no-hash-sources")
    assert result.exit_code == 3 and "24 sample(s) outside the charset" in result.output
