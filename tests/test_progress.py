"""gntkit.progress: plain lines off a terminal, a live rich bar on one, silence when disabled."""

import io
import re
import time

import pytest
from rich.console import Console

from gntkit import progress as progress_module
from gntkit.errors import GntkitError
from gntkit.progress import ProgressBar, format_status

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_format_status_known_total():
    line = format_status(50, 100, 10.0, "samples", {"loss": 0.312345, "samples": 12000})
    assert line == "50/100 samples   50.0%  5.00 samples/s  ETA 0:00:10  loss=0.3123  samples=12,000"


def test_format_status_unknown_total_and_bytes():
    line = format_status(2_500_000, None, 2.0, "bytes", {})
    assert line == "2.5 MB  1.2 MB/s  elapsed 0:00:02"
    assert "%" not in line and "ETA" not in line


def test_short_plain_run_writes_one_final_line():
    stream = io.StringIO()
    with ProgressBar(1000, description="convert", stream=stream) as bar:
        for i in range(10):
            bar.update(100, samples=(i + 1) * 7)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("convert: 1,000/1,000 samples  100.0%  ")
    assert "samples/s" in lines[0] and lines[0].endswith("samples=70")
    assert not ANSI.search(stream.getvalue())


def test_plain_lines_are_throttled(monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL", 0.05)
    stream = io.StringIO()
    with ProgressBar(200, unit="shards", stream=stream) as bar:
        for _ in range(200):
            bar.update(1)
            time.sleep(0.002)
    lines = stream.getvalue().splitlines()
    # About 0.4 s of updates at one line per 0.05 s, plus the final line; never one per update.
    assert 3 <= len(lines) <= 20
    assert all("ETA" in line for line in lines[:-1])
    assert lines[-1].startswith("200/200 shards  100.0%") and "elapsed" in lines[-1]


def test_completed_replaces_the_count():
    stream = io.StringIO()
    with ProgressBar(10, stream=stream) as bar:
        bar.update(3)
        bar.update(completed=8)
        bar.update(1)
    assert stream.getvalue().startswith("9/10 samples   90.0%")


def test_disabled_prints_nothing():
    for stream in (io.StringIO(), Console(file=io.StringIO(), force_terminal=True)):
        with ProgressBar(100, stream=stream, enabled=False) as bar:
            bar.update(50, loss=1.0)
        text = stream.getvalue() if isinstance(stream, io.StringIO) else stream.file.getvalue()
        assert text == ""


def test_terminal_draws_a_live_bar():
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, width=140)
    with ProgressBar(400, description="verify", unit="records", stream=console) as bar:
        for _ in range(4):
            bar.update(100, loss=0.25)
    raw = file.getvalue()
    assert ANSI.search(raw), "a terminal gets rich's control codes"
    text = ANSI.sub("", raw)
    assert "━" in text and "verify" in text
    final = text.replace("\r", "\n").strip().splitlines()[-1]
    assert "400/400 records  100.0%" in final and "records/s" in final and final.rstrip().endswith("loss=0.25")


def test_default_stream_is_stderr(capsys):
    with ProgressBar(None, description="inspect", unit="members") as bar:
        bar.update(3)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("inspect: 3 members  ")


def test_close_twice_writes_once_and_update_after_close_fails():
    stream = io.StringIO()
    bar = ProgressBar(5, stream=stream)
    bar.update(5)
    bar.close()
    bar.close()
    assert len(stream.getvalue().splitlines()) == 1
    with pytest.raises(GntkitError, match="already closed"):
        bar.update(1)


@pytest.mark.parametrize("total", [-1, float("nan"), float("inf"), "10", True])
def test_bad_total(total):
    with pytest.raises(GntkitError, match="expected total to be a finite number"):
        ProgressBar(total, stream=io.StringIO())


def test_bad_updates():
    bar = ProgressBar(10, stream=io.StringIO())
    with pytest.raises(GntkitError, match="expected advance"):
        bar.update(-1)
    with pytest.raises(GntkitError, match="expected completed"):
        bar.update(completed=float("nan"))
    with pytest.raises(GntkitError, match="expected unit"):
        ProgressBar(10, unit="", stream=io.StringIO())


def test_delay_hides_short_runs_only():
    for console in (False, True):
        file = io.StringIO()
        stream = Console(file=file, force_terminal=True) if console else file
        with ProgressBar(10, stream=stream, delay=60.0) as bar:
            bar.update(10)
        assert file.getvalue() == ""
    stream = io.StringIO()
    with ProgressBar(10, stream=stream, delay=0.05) as bar:
        bar.update(4)
        time.sleep(0.06)
        bar.update(6)
    assert stream.getvalue().startswith("10/10 samples  100.0%")
    with pytest.raises(GntkitError, match="expected delay"):
        ProgressBar(10, stream=io.StringIO(), delay=-1)


def test_inspect_and_verify_report_progress(tmp_path, corpus_c, capsys, monkeypatch):
    from gntkit.samples import inspection
    from gntkit.shards import verify
    from gntkit.shards.convert import convert

    monkeypatch.setattr(inspection, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(verify, "PROGRESS_DELAY", 0.0)
    report = inspection.inspect_sources(corpus_c, progress=True)
    assert capsys.readouterr().err.startswith("inspect: ")
    inspection.inspect_sources(corpus_c, progress=False)
    assert capsys.readouterr().err == ""
    out = tmp_path / "o"
    convert(corpus_c, out, to="webdataset", charset="gb2312-1", shard_records=30)
    capsys.readouterr()
    summary = verify.verify(out, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert summary["records"] == report.records == 72
    assert len(err) == 1 and err[0].startswith("verify: 72/72 records  100.0%")
    assert err[0].endswith(f"shards={summary['shards']}/{summary['shards']}") and summary["shards"] == 3
    verify.verify(out, progress=False)
    assert capsys.readouterr().err == ""


def test_a_plain_line_is_not_repeated_on_close(monkeypatch):
    # Off a terminal, the line an update drew for the final state is not written again by close().
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL", 0.0)
    stream = io.StringIO()
    with ProgressBar(3, unit="shards", stream=stream) as bar:
        for _ in range(3):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("3/3 shards  100.0%")


def test_verify_prints_its_final_progress_line_once(tmp_path, corpus_c, monkeypatch):
    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.shards import verify

    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL", 0.0)
    monkeypatch.setattr(verify, "PROGRESS_DELAY", 0.0)
    runner = CliRunner()
    out = tmp_path / "o"
    assert runner.invoke(app, ["convert", str(corpus_c), "--out", str(out), "--shard-records", "30", "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("verify: ")]
    assert [line.split("  ")[0] for line in lines] == ["verify: 30/72 records", "verify: 60/72 records", "verify: 72/72 records"]
