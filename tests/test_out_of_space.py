"""A full, read-only or vanished output folder: every writer stops with one sentence naming the
folder, the shard and how far it got, exit 2, no traceback and no crash (HDF5 stops before h5py
fails); finished shards stay, nothing unfinished loses its .partial name, the journal lists only
what is on disk, and --resume after making room finishes byte-identical to an uninterrupted run.

The real case runs on a small tmpfs (root only, skipped where mounting is refused); a writer whose
file raises ENOSPC at a chosen byte covers the same ground everywhere."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gntkit.errors import GntkitError
from gntkit.shards.digest import shard_size
from gntkit.shards.manifest import OutputWriteError
from gntkit.shards.registry import output_format
from gntkit.tools.synth import write_corpus

FORMATS = ("tfrecord", "webdataset", "hdf5", "lmdb", "paddleocr")
CLI = os.path.join(os.path.dirname(sys.executable), "gntkit")
OPTIONS = ["--charset", "data", "--workers", "2", "--shard-records", "600", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space") / "gnt"
    write_corpus(folder, writers=4, num_classes=150, samples_per_class=2, num_symbols=0, seed=5)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("whole")
    out = {}
    for fmt in FORMATS:
        done = subprocess.run([CLI, "convert", str(corpus), "--to", fmt, "--out", str(root / fmt), *OPTIONS], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        out[fmt] = _shard_digests(root / fmt)
    return out


def _shard_digests(folder: Path) -> dict:
    """Every shard file's sha256; a folder shard's files as `folder/relative path`."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".json", ".md", ".txt"))]
    files += [f for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") for f in p.rglob("*") if f.is_file()]
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


def _check_stopped_cleanly(done, folder: Path, fmt: str = "tfrecord") -> None:
    """Exit 2, one sentence naming the folder, a shard and --resume; the journal lists exactly the finished shards."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {folder}: could not write ") and "--resume" in done.stderr
    journal = json.loads((folder / ".gntkit-journal.json").read_text())
    listed = {e["file"]: e["bytes"] for entries in journal["shards"].values() for e in entries}
    indexes = {e["index"] for entries in journal["shards"].values() for e in entries if e.get("index")}
    on_disk = {p.name: shard_size(p, output_format(fmt)) for p in folder.iterdir()
               if (p.is_dir() if output_format(fmt).folder else p.is_file()) and not p.name.startswith(".")}
    assert {n: s for n, s in on_disk.items() if not n.endswith(".partial") and n not in indexes} == listed


@pytest.fixture()
def small_fs(tmp_path):
    """A 3 MiB tmpfs; yields (mount point, grow) where grow() gives it room."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")

    def remount(option: str):
        subprocess.run(["mount", "-o", f"remount,{option}", str(mount)], check=True)

    try:
        yield mount, remount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("parallel", ["threads", "processes"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_filesystem_stops_cleanly_and_resume_finishes_identically(corpus, uninterrupted, small_fs, fmt, parallel):
    mount, remount = small_fs
    out = mount / fmt
    command = [CLI, "convert", str(corpus), "--to", fmt, "--out", str(out), "--parallel", parallel, *OPTIONS]
    full = subprocess.run(command, capture_output=True, text=True, timeout=300)
    _check_stopped_cleanly(full, out, fmt)
    remount("size=64m")
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _shard_digests(out) == uninterrupted[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_read_only_output_folder_is_one_sentence(corpus, small_fs, fmt):
    mount, remount = small_fs
    (mount / "out").mkdir()
    remount("ro")
    done = subprocess.run([CLI, "convert", str(corpus), "--to", fmt, "--out", str(mount / "out"), *OPTIONS], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Read-only file system" in done.stderr


# Without the free-space check, HDF5's own write fails first (as on a full quota): still one sentence.
NO_ROOM_CHECK = """
import sys
from gntkit.shards import hdf5
hdf5.HDF5Writer._check_room = lambda self, nbytes: None
from gntkit.cli.main import main
sys.argv = ["gntkit", *sys.argv[1:]]
main()
"""


def test_hdf5_failing_inside_h5py_does_not_crash(corpus, uninterrupted, small_fs):
    mount, remount = small_fs
    remount("size=6m")
    out = mount / "h5"
    command = ["convert", str(corpus), "--to", "hdf5", "--out", str(out), *OPTIONS]
    done = subprocess.run([sys.executable, "-c", NO_ROOM_CHECK, *command], capture_output=True, text=True, timeout=300)
    _check_stopped_cleanly(done, out)
    assert "errno" not in done.stderr and "No space left on device" in done.stderr
    remount("size=64m")
    resumed = subprocess.run([CLI, *command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _shard_digests(out) == uninterrupted["hdf5"]


class _FullAfter:
    """A binary file whose writes fail with ENOSPC once `room` bytes have been written in all."""

    budget = 0

    def __init__(self, file):
        self.file = file

    def write(self, data):
        size = memoryview(data).nbytes
        if _FullAfter.budget < size:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _FullAfter.budget -= size
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("parallel", ["threads", "processes"])
@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset"])
def test_enospc_at_a_chosen_byte(corpus, uninterrupted, tmp_path, monkeypatch, fmt, parallel):
    from gntkit.shards import writer
    from gntkit.shards.convert import convert

    real_open = open
    monkeypatch.setattr(writer, "open", lambda path, mode="r", *a, **k: _FullAfter(real_open(path, mode, *a, **k)), raising=False)
    settings = dict(to=fmt, charset="data", workers=2, parallel=parallel, shard_records=600)
    for budget in (0, 1_000_000, 3_000_000):
        _FullAfter.budget = budget
        out = tmp_path / f"{fmt}-{budget}"
        with pytest.raises(OutputWriteError, match=rf"^{out}: could not write .* after [\d,]+ of its records; .* --resume"):
            convert(corpus, out, **settings)
        assert not list(out.glob("*.partial"))
        _FullAfter.budget = 1 << 40
        convert(corpus, out, resume=True, **settings)
        assert _shard_digests(out) == uninterrupted[fmt]


def test_a_vanished_output_folder_is_said(tmp_path):
    from gntkit.shards.tfrecord import TFRecordWriter

    folder = tmp_path / "gone"
    folder.mkdir()
    folder.rmdir()
    with pytest.raises(GntkitError, match=r"gone: could not write x\.tfrecord \(No such file or directory; the folder itself is gone\)"):
        TFRecordWriter(str(folder / "x.tfrecord"), split="all", attrs={})
