"""Shards at URLs, against real servers on 127.0.0.1: Python's http.server serving converted folders,
and moto's S3 server for s3:// through s3fs. gntkit.datasets.open(URL), both adapters, verify,
upload_folder and `convert --out s3://...`; the cache fetches each shard once, checks its sha256
before use, stays inside its size limit, and a rank fetches only the shards its batches touch."""

from __future__ import annotations

import functools
import http.server as http_server
import json
import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gntkit.datasets as datasets
from gntkit.errors import GntkitError
from test_datasets import FORMATS, TRAIN, convert_sets, stock_truth

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")


class _Handler(http_server.SimpleHTTPRequestHandler):
    """Serves the fixture's root folder and records every GET path."""

    def __init__(self, *args, requests, **kwargs):
        self.requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet test output
        pass


class HttpServer:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) serving `root`; `requests` lists the paths asked for."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        handler = functools.partial(_Handler, directory=str(root), requests=self.requests)
        self.server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fetched(self, name: str) -> int:
        """How many GETs asked for a path ending in `/name`."""
        return sum(path.endswith("/" + name) for path in self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    return convert_sets(tmp_path_factory.mktemp("remote-sets"))


@pytest.fixture(scope="module")
def truth(sets):
    return {split: stock_truth(sets["hdf5"], split) for split in ("train", "test")}


@pytest.fixture()
def http(sets, tmp_path):
    root = tmp_path / "www"
    for fmt in FORMATS:
        shutil.copytree(sets[fmt], root / "data" / fmt)
    server = HttpServer(root)
    yield server
    server.close()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "gntkit.json").read_text(encoding="utf-8"))


def _cached_shards(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "objects").rglob("*") if p.is_file() and not p.name.endswith(".npy"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_open_url_reads_every_record(http, truth, tmp_path, fmt):
    url = f"{http.url}/data/{fmt}"
    shards = datasets.open(url, cache_dir=tmp_path / "cache")
    assert shards.url == url and shards.format == fmt and len(shards) == TRAIN
    assert shards.charset.characters == datasets.open(http.root / "data" / fmt).charset.characters
    order = np.random.default_rng(1).permutation(TRAIN)
    images, labels = shards.read_batch(order)
    np.testing.assert_array_equal(images, truth["train"].images[order])
    np.testing.assert_array_equal(labels, truth["train"].labels[order])
    assert shards.get(5)[1] == truth["train"].labels[5]
    images, labels = datasets.open(url, "test", cache_dir=tmp_path / "cache").read_arrays()
    np.testing.assert_array_equal(images, truth["test"].images)
    # Each shard came over the network once, whatever the number of reads.
    for item in _manifest(http.root / "data" / fmt)["splits"]["train"]["shards"]:
        assert http.fetched(item["file"]) == 1


def test_a_rank_fetches_only_the_shards_it_reads(http, truth, tmp_path):
    url = f"{http.url}/data/tfrecord"
    shards = datasets.open(url, cache_dir=tmp_path / "cache")
    files = [item["file"] for item in _manifest(http.root / "data" / "tfrecord")["splits"]["train"]["shards"]]
    assert [s.records for s in shards.shards] == [30, 30, 20]
    seen = []
    for _, labels in shards.iter_batches(8, shuffle=False, rank=0, world_size=2):  # records 0..39: shards 0 and 1
        seen += labels.tolist()
    assert seen == truth["train"].labels[:40].tolist()
    assert [http.fetched(name) for name in files] == [1, 1, 0]
    assert len(_cached_shards(tmp_path / "cache")) == 2
    rank1 = pickle.loads(pickle.dumps(shards))  # as a data-loader worker gets it
    images, _ = rank1.read_batch(np.arange(60, 80))
    np.testing.assert_array_equal(images, truth["train"].images[60:80])
    assert [http.fetched(name) for name in files] == [1, 1, 1]


def test_a_shard_that_fails_its_checksum_is_not_used(http, truth, tmp_path):
    folder = http.root / "data" / "webdataset"
    item = _manifest(folder)["splits"]["train"]["shards"][1]
    data = bytearray((folder / item["file"]).read_bytes())
    data[700] ^= 0x01  # same size, other bytes
    (folder / item["file"]).write_bytes(bytes(data))
    shards = datasets.open(f"{http.url}/data/webdataset", cache_dir=tmp_path / "cache")
    images, _ = shards.read_batch(np.arange(0, 30))  # shard 0 is fine
    np.testing.assert_array_equal(images, truth["train"].images[:30])
    message = f"{item['file']} fails its checksum: gntkit.json says sha256 {item['sha256']}, the fetched file has"
    with pytest.raises(GntkitError, match=message):
        shards.read_batch([31])
    assert len(_cached_shards(tmp_path / "cache")) == 1  # the damaged copy was not kept
    assert not list((tmp_path / "cache").rglob("*.partial-*"))


def test_streaming_prefetches_the_next_shard_of_the_plan_only(http, truth, tmp_path):
    folder = http.root / "data" / "tfrecord"
    items = _manifest(folder)["splits"]["train"]["shards"]
    shards = datasets.open(f"{http.url}/data/tfrecord", cache_dir=tmp_path / "cache")
    batches = shards.iter_batches(10, shuffle=False, streaming=True, rank=0, world_size=2)  # records 0..39
    labels = [next(batches)[1]]  # batch 0 needs shard 0 only; shard 1 starts downloading now
    deadline = time.monotonic() + 30
    while not shards.shards[1].path.is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shards.shards[1].path.is_file(), "shard 1 was not prefetched while batch 0 was read"
    labels += [y for _, y in batches]
    assert np.concatenate(labels).tolist() == truth["train"].labels[:40].tolist()
    assert [http.fetched(item["file"]) for item in items] == [1, 1, 0]  # shard 1 came ahead of need, shard 2 never
    # A prefetched shard that fails its checksum fails the read that needs it, with the same sentence.
    data = bytearray((folder / items[2]["file"]).read_bytes())
    data[100] ^= 0x01
    (folder / items[2]["file"]).write_bytes(bytes(data))
    batches = shards.iter_batches(10, shuffle=False, streaming=True)
    for _ in range(6):  # records 0..59: shards 0 and 1 (cached), shard 2 prefetched meanwhile
        next(batches)
    with pytest.raises(GntkitError, match=f"{items[2]['file']} fails its checksum"):
        next(batches)


def test_the_cache_stays_inside_its_limit(http, truth, tmp_path):
    folder = http.root / "data" / "hdf5"
    sizes = [item["bytes"] for item in _manifest(folder)["splits"]["train"]["shards"]]
    limit = max(sizes) + min(sizes) // 2  # room for one shard, not two
    cache = tmp_path / "cache"
    shards = datasets.open(f"{http.url}/data/hdf5", cache_dir=cache, cache_limit=limit)
    for k, shard in enumerate(shards.shards):
        images, labels = shards.read_range(shard.start, shard.start + shard.records)
        np.testing.assert_array_equal(images, truth["train"].images[shard.start:shard.start + shard.records])
        held = sum(p.stat().st_size for p in (cache / "objects").rglob("*") if p.is_file())
        assert held <= limit, f"after shard {k} the cache holds {held} bytes, over its limit of {limit}"
    assert len(_cached_shards(cache)) == 1
    first = shards.shards[0].path.name.split("-", 1)[1]
    before = http.fetched(first)
    fresh = datasets.open(f"{http.url}/data/hdf5", cache_dir=cache, cache_limit=limit)
    np.testing.assert_array_equal(fresh.read_batch([0, 1])[0], truth["train"].images[:2])
    assert http.fetched(first) == before + 1  # evicted, so fetched again


def test_bad_urls_and_options(http, tmp_path):
    with pytest.raises(GntkitError, match="expected a complete gntkit conversion's manifest, found no file there"):
        datasets.open(f"{http.url}/data/nothing", cache_dir=tmp_path)
    with pytest.raises(GntkitError, match="cache_limit must be a positive number of bytes, found 0"):
        datasets.open(f"{http.url}/data/hdf5", cache_dir=tmp_path, cache_limit=0)
    with pytest.raises(GntkitError, match="are for URLs; a local folder is read in place"):
        datasets.open(http.root / "data" / "hdf5", cache_dir=tmp_path)
    with pytest.raises(GntkitError, match="has no split 'val'; it has 'train', 'test'"):
        datasets.open(f"{http.url}/data/hdf5", "val", cache_dir=tmp_path)


def test_verify_a_url_and_the_cli(http, sets, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.shards.verify import verify

    monkeypatch.setenv("GNTKIT_CACHE_DIR", str(tmp_path / "cache"))
    assert verify(f"{http.url}/data/tfrecord") == verify(sets["tfrecord"])
    result = CliRunner().invoke(app, ["verify", f"{http.url}/data/webdataset", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"{TRAIN + 40:,} records" in result.output
    assert not list((tmp_path / "cache").glob("gntkit-mirror-*"))  # the temporary copy is gone
    item = _manifest(http.root / "data" / "hdf5")["splits"]["test"]["shards"][0]
    (http.root / "data" / "hdf5" / item["file"]).write_bytes(b"\0" * item["bytes"])
    result = CliRunner().invoke(app, ["verify", f"{http.url}/data/hdf5", "--quiet"])
    assert result.exit_code == 2 and f"{item['file']}: expected sha256 {item['sha256']}" in result.output


def test_torch_adapter_reads_a_url(http, truth, tmp_path):
    torch_adapter = pytest.importorskip("gntkit.datasets.torch")
    shards = datasets.open(f"{http.url}/data/webdataset", cache_dir=tmp_path / "cache")
    loader = torch_adapter.make_loader(shards, batch_size=16, shuffle=True, seed=3, num_workers=2)  # two processes share the cache
    delivered = [(images.numpy(), labels.numpy()) for images, labels in loader]
    order = np.concatenate([idx for _, idx in shards.batch_plan(16, shuffle=True, seed=3)])
    np.testing.assert_array_equal(np.concatenate([i for i, _ in delivered]), truth["train"].images[order])
    test_set = torch_adapter.ShardDataset(shards, "test")  # another split of the same URL
    assert test_set.shards.url == shards.url and len(test_set) == 40
    assert test_set[3][1] == truth["test"].labels[3]


def test_tf_adapter_reads_a_url(http, truth, tmp_path, monkeypatch):
    tf_adapter = pytest.importorskip("gntkit.datasets.tf")
    monkeypatch.setenv("GNTKIT_CACHE_DIR", str(tmp_path / "cache"))
    for reader in ("numpy", "native"):
        dataset = tf_adapter.make_dataset(f"{http.url}/data/tfrecord", batch_size=16, shuffle=False, reader=reader, rank=1, world_size=2)
        labels = np.concatenate([batch[1].numpy() for batch in dataset])
        assert labels.tolist() == truth["train"].labels[40:].tolist()
    files = [item["file"] for item in _manifest(http.root / "data" / "tfrecord")["splits"]["train"]["shards"]]
    assert [http.fetched(name) for name in files] == [0, 1, 1]  # rank 1 reads records 40..79


# --------------------------------------------------------------------------- S3 (moto's server)


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    import boto3  # moto brings it
    import fsspec

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket="gntkit-test")
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    yield {"endpoint": endpoint, "options": options, "fs": fs}
    server.stop()


@pytest.fixture()
def s3_env(s3, monkeypatch, tmp_path):
    """Credentials and endpoint in the environment, as a CLI user on S3-compatible storage sets them."""
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("AWS_ENDPOINT_URL", s3["endpoint"]), ("GNTKIT_CACHE_DIR", str(tmp_path / "cache"))):
        monkeypatch.setenv(key, value)
    return s3


@pytest.mark.parametrize("fmt", FORMATS)
def test_upload_folder_then_read_from_s3(s3, sets, truth, tmp_path, fmt):
    from gntkit.shards.remote import upload_folder

    url = f"s3://gntkit-test/upload/{fmt}"
    uploaded = upload_folder(sets[fmt], url, storage_options=s3["options"])
    assert uploaded[-1] == "gntkit.json"
    assert set(uploaded) == {p.relative_to(sets[fmt]).as_posix() for p in sets[fmt].rglob("*") if p.is_file()}
    first_shard = _manifest(sets[fmt])["splits"]["train"]["shards"][0]["file"]
    assert uploaded[0] == first_shard or uploaded.index(first_shard) < uploaded.index("charset.json")
    shards = datasets.open(url, cache_dir=tmp_path / "cache", storage_options=s3["options"])
    images, labels = shards.read_arrays()
    np.testing.assert_array_equal(images, truth["train"].images)
    np.testing.assert_array_equal(labels, truth["train"].labels)


def test_upload_refuses_an_incomplete_conversion(s3, sets, tmp_path):
    from gntkit.shards.remote import upload_folder

    folder = tmp_path / "half"
    shutil.copytree(sets["hdf5"], folder)
    (folder / _manifest(folder)["splits"]["train"]["shards"][0]["file"]).unlink()
    with pytest.raises(GntkitError, match="incomplete conversion: shard .* is missing"):
        upload_folder(folder, "s3://gntkit-test/half", storage_options=s3["options"])
    assert not s3["fs"].exists("gntkit-test/half/gntkit.json")


def test_convert_out_s3_then_verify_and_open(s3_env, truth, tmp_path):
    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.shards.convert import convert

    url = "s3://gntkit-test/convert/webdataset"
    convert_sets(tmp_path / "local", formats=())  # the corpus only
    convert(tmp_path / "local" / "gnt", url, to="webdataset", split="train=1001-1002,test=1003",
            preprocess=__import__("gntkit.samples.preprocess", fromlist=["Preprocess"]).Preprocess(size=16), shard_records=30, workers=1)
    result = CliRunner().invoke(app, ["verify", url, "--quiet"])
    assert result.exit_code == 0, result.output
    images, labels = datasets.open(url).read_arrays()
    np.testing.assert_array_equal(images, truth["train"].images)
    np.testing.assert_array_equal(labels, truth["train"].labels)


@pytest.mark.slow
def test_evaluate_a_url(http, tmp_path):
    pytest.importorskip("torch")
    from typer.testing import CliRunner

    from gntkit import training
    from gntkit.cli.main import app
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    write_corpus(tmp_path / "gnt", writers=3, num_classes=10, samples_per_class=2, seed=4)
    folder = http.root / "data" / "eval"  # served as soon as it is written
    convert([tmp_path / "gnt"], folder, to="hdf5", split="train=1001-1002,test=1003", charset="data",
            preprocess=Preprocess(size=32), workers=1)
    run = tmp_path / "run"
    training.train(folder, run, framework="torch", model="cnn2", epochs=1, batch_size=16, quiet=True)
    local = training.evaluate(run, folder, split="test")
    result = CliRunner().invoke(app, ["evaluate", str(run), f"{http.url}/data/eval", "--split", "test", "--json"],
                                env={"GNTKIT_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    remote = json.loads(result.output[result.output.index("{"):])
    assert remote["samples"] == local["samples"] == 20 and remote["data_dir"] == f"{http.url}/data/eval"
    for key in ("top1_accuracy", "topk_accuracy", "per_class"):
        assert remote[key] == local[key]
