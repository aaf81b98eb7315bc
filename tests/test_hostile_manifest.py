"""Names in a manifest are data, not paths: a shard, index or charset name that is not a plain
file name (a folder, '..', an absolute path, NUL) is refused with one sentence before any path is
built, for a local folder, a folder served by http.server and one in a real S3 server (moto) whose
keys hold `../`. Nothing is read from the server or written outside the folder and the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gntkit.datasets as datasets
from gntkit.cli.main import app
from gntkit.errors import FormatError
from gntkit.shards.manifest import check_file_name, is_plain_name
from test_datasets import convert_sets
from test_datasets_remote import HttpServer, s3  # noqa: F401 - s3 is a fixture

# (where in the manifest, hostile value)
HOSTILE = [
    ("file", "x/../../../../tmp/f.h5"),
    ("file", "../outside.h5"),
    ("file", "/etc/passwd"),
    ("file", ".."),
    ("file", "a\0b.h5"),
    ("file", "sub\\..\\..\\f.h5"),
    ("index", "../../outside.index.npy"),
    ("index", ".gntkit-index/../../outside.npy"),
    ("sha256", "../../../" + "0" * 55),
    ("charset", "../../charset.json"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return convert_sets(tmp_path_factory.mktemp("hostile"), formats=("tfrecord",))["tfrecord"]


def _hostile_copy(folder: Path, target: Path, field: str, value: str) -> Path:
    shutil.copytree(folder, target)
    manifest = json.loads((target / "gntkit.json").read_text(encoding="utf-8"))
    shard = manifest["splits"]["train"]["shards"][0]
    if field == "charset":
        manifest["charset"]["json"] = value
    else:
        shard[field] = value
    (target / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def _files(root: Path) -> set:
    return {p for p in root.rglob("*") if p.is_file()}


def test_plain_names_and_the_index_folder_form():
    for good in ("hwdb-train.tfrecord-00000-of-00002", "charset.json", "a..b.h5"):
        assert is_plain_name(good) and check_file_name(good, "m.json", "a name") == good
    assert check_file_name(".gntkit-index/x.index.npy", "m.json", "an index", index=True) == ".gntkit-index/x.index.npy"
    for bad in ("", ".", "..", "a/b", "a\\b", "/abs", "C:x", "x\0", ".gntkit-index/x.npy", None, 3):
        assert not is_plain_name(bad) or bad == ".gntkit-index/x.npy"
        with pytest.raises(FormatError, match="plain file name"):
            check_file_name(bad, "m.json", "a name")
    for bad in (".gntkit-index/../x", ".gntkit-index/", ".gntkit-index/a/b"):
        with pytest.raises(FormatError, match="plain file name or .gntkit-index"):
            check_file_name(bad, "m.json", "an index", index=True)


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_a_local_folder_with_a_hostile_name_is_refused(folder, tmp_path, field, value):
    hostile = _hostile_copy(folder, tmp_path / "set", field, value)
    before = _files(tmp_path)
    with pytest.raises(FormatError, match="expected .*(plain file name|64 hexadecimal)"):
        datasets.open(hostile)
    result = CliRunner().invoke(app, ["verify", str(hostile), "--quiet"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and "Traceback" not in result.output
    assert _files(tmp_path) == before


@pytest.mark.parametrize(("field", "value"), HOSTILE[:3] + HOSTILE[6:])
def test_a_served_folder_with_a_hostile_name_reads_and_writes_nothing_else(folder, tmp_path, field, value):
    root = tmp_path / "www"
    _hostile_copy(folder, root / "data" / "set", field, value)
    (root / "outside.h5").write_bytes(b"never to be read")
    server = HttpServer(root)
    try:
        before = _files(tmp_path)
        with pytest.raises(FormatError, match="expected"):
            datasets.open(f"{server.url}/data/set", cache_dir=tmp_path / "cache")
    finally:
        server.close()
    assert server.requests == ["/data/set/gntkit.json"]  # the manifest, and nothing it names
    assert {p for p in _files(tmp_path) - before if tmp_path / "cache" not in p.parents} == set()


@pytest.mark.parametrize(("field", "value"), [HOSTILE[1], HOSTILE[6], HOSTILE[8], HOSTILE[9]])
def test_an_s3_folder_with_dotdot_keys_is_refused(s3, folder, tmp_path, field, value):  # noqa: F811 - the fixture
    hostile = _hostile_copy(folder, tmp_path / "set", field, value)
    prefix = f"gntkit-test/hostile-{field}"
    for path in hostile.rglob("*"):
        if path.is_file():
            s3["fs"].put_file(str(path), f"{prefix}/{path.relative_to(hostile).as_posix()}")
    # The object the hostile name points at exists: S3 keys may hold `../` literally.
    s3["fs"].pipe_file(f"{prefix}/{value.replace(chr(0), '')}", b"never to be read")
    cache = tmp_path / "cache"
    before = _files(tmp_path)
    with pytest.raises(FormatError, match="expected"):
        datasets.open(f"s3://{prefix}", cache_dir=cache, storage_options=s3["options"])
    created = _files(tmp_path) - before
    assert all(cache in p.parents for p in created)
    assert not any(p.read_bytes() == b"never to be read" for p in created)
