"""convert: round trips through every format with the stock readers, manifest, splits,
determinism across workers, resume after an interrupted run, verify catching damage, CLI."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from gntkit.cli.main import app
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.samples.charset import builtin
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert
from gntkit.shards.manifest import shard_name
from gntkit.shards.output import SplitOutput
from gntkit.shards.registry import get_format_module
from gntkit.shards.verify import verify
from gntkit.tools.reference import preprocess as naive_preprocess
from gntkit.tools.reference.gnt import read_records

FORMATS = ["tfrecord", "hdf5", "webdataset", "lmdb", "paddleocr"]
runner = CliRunner()


def reference_samples(folder):
    """key -> (tag_code, bitmap) from the plain-Python reader."""
    samples = {}
    for path in sorted(folder.glob("*.gnt")):
        writer = path.name.split("-")[0]
        records, _, reason = read_records(path.read_bytes())
        assert reason is None
        for number, (_, code, w, h, bitmap) in enumerate(records):
            samples[f"{writer}/{number}"] = (code, np.frombuffer(bitmap, np.uint8).reshape(h, w))
    return samples


def read_all(out_dir, manifest, split):
    module = get_format_module(manifest["format"])
    samples = []
    for shard in manifest["splits"][split]["shards"]:
        samples.extend(module.read_shard(out_dir / shard["file"], compression=manifest["compression"]))
    return samples


@pytest.mark.parametrize("to", FORMATS)
def test_raw_round_trip_is_pixel_and_label_exact(tmp_path, corpus_f, to):
    out = tmp_path / "out"
    manifest = convert(corpus_f, out, to=to, charset="data", preprocess=Preprocess(raw=True), shard_records=9, workers=1)
    reference = reference_samples(corpus_f)
    samples = read_all(out, manifest, "all")
    assert [s["key"] for s in samples] == list(reference)  # global order: writer, then record
    charset = builtin("gb2312")  # decoding cross-check only
    lines = (out / "charset.txt").read_text(encoding="utf-8").split("\n")[:-1]
    for sample in samples:
        code, bitmap = reference[sample["key"]]
        assert np.array_equal(sample["image"], bitmap)
        assert sample["tag_code"] == code and lines[sample["label"]] == sample["character"]
        assert sample["character"] == (chr(code >> 8) if code & 0xFF == 0 else bytes((code >> 8, code & 0xFF)).decode("gb2312"))
    assert len(charset) == 6763
    assert manifest["splits"]["all"]["num_records"] == len(reference) == 56
    assert [s["records"] for s in manifest["splits"]["all"]["shards"]] == [9] * 6 + [2]
    # Names stock tools recognise: .tar / .h5 last, TFRecord in the TFDS style; LMDB and PaddleOCR shards are folders.
    assert manifest["splits"]["all"]["shards"][0]["file"] == {"tfrecord": "gnt-all.tfrecord-00000-of-00007",
                                                              "hdf5": "gnt-all-00000-of-00007.h5",
                                                              "webdataset": "gnt-all-00000-of-00007.tar",
                                                              "lmdb": "gnt-all-00000-of-00007.lmdb",
                                                              "paddleocr": "gnt-all-00000-of-00007.paddleocr"}[to]
    assert verify(out)["records"] == 56


@pytest.mark.parametrize("to", FORMATS)
def test_preprocessed_images_match_numpy_reference(tmp_path, corpus_c, to):
    settings = Preprocess(size=32)
    out = tmp_path / "out"
    manifest = convert(corpus_c, out, to=to, preprocess=settings, workers=1)
    reference = reference_samples(corpus_c)
    charset = builtin("gb2312-1")
    samples = read_all(out, manifest, "all")
    assert len(samples) == len(reference) == 72
    for sample in samples:
        code, bitmap = reference[sample["key"]]
        expected = naive_preprocess.preprocess(bitmap, settings)
        assert sample["image"].shape == (32, 32)
        assert np.abs(sample["image"].astype(int) - expected.astype(int)).max() <= 1
        assert sample["label"] == charset.class_of(sample["character"]) and sample["tag_code"] == code
    assert manifest["preprocess"]["size"] == 32 and manifest["features"]


def test_tfrecord_parses_with_manifest_feature_spec(tmp_path, corpus_c):
    import tensorflow as tf

    from gntkit.shards.tfrecord import tf_feature_description

    out = tmp_path / "out"
    manifest = convert(corpus_c, out, to="tfrecord", workers=1, compression="gzip")
    files = [str(out / s["file"]) for s in manifest["splits"]["all"]["shards"]]
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100)
    parsed = next(iter(dataset.map(lambda r: tf.io.parse_example(r, tf_feature_description(manifest["features"])))))
    images = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), [-1, 64, 64]).numpy()
    assert images.shape == (72, 64, 64) and images.max() > 100 and images[:, 0, 0].max() == 0
    labels = parsed["label"].numpy()
    lines = (out / "charset.txt").read_text(encoding="utf-8").split("\n")
    assert [lines[label] for label in labels] == [c.decode() for c in parsed["character"].numpy()]


def test_manifest_contents(tmp_path, corpus_zip):
    out = tmp_path / "out"
    manifest = convert(corpus_zip, out, to="hdf5", split="train=1001-1002,test=1003", workers=1, command="gntkit convert x")
    on_disk = json.loads((out / "gntkit.json").read_text(encoding="utf-8"))
    assert on_disk == manifest and manifest["complete"] is True and manifest["command"] == "gntkit convert x"
    assert manifest["splits"]["train"]["num_records"] == 48 and manifest["splits"]["test"]["num_records"] == 24
    assert manifest["splits"]["train"]["writers"] == ["1001", "1002"]
    assert sum(manifest["splits"]["test"]["class_counts"]) == 24 and len(manifest["splits"]["test"]["class_counts"]) == 3755
    (source,) = manifest["sources"]
    assert source["kind"] == "zip" and len(source["sha256"]) == 64 and len(source["md5"]) == 32
    assert [f["writer_id"] for f in source["files"]] == ["1001", "1002", "1003"] and all(len(f["sha256"]) == 64 for f in source["files"])
    assert manifest["charset"]["num_classes"] == 3755 and manifest["charset"]["order"].startswith("GB code order")
    assert manifest["skipped"]["dropped_samples"] == 0
    assert not (out / ".gntkit-journal.json").exists()


def test_val_fraction_and_other_class(tmp_path, corpus_f):
    manifest = convert(corpus_f, tmp_path / "o", to="tfrecord", on_unknown="other", val_fraction=0.5, workers=1)
    assert set(manifest["splits"]) == {"all", "val"}
    assert manifest["charset"]["num_classes"] == 3756 and manifest["charset"]["has_other"]
    assert manifest["skipped"]["other_samples"] == 24
    assert verify(tmp_path / "o")["records"] == 56


@pytest.mark.slow
@pytest.mark.parametrize("to", FORMATS)
def test_output_identical_whatever_the_worker_count(tmp_path, corpus_c, to):
    one = convert(corpus_c, tmp_path / "one", to=to, shard_records=20, workers=1)

    def digests(m):
        return [(s["file"], s["sha256"]) for s in m["splits"]["all"]["shards"]]

    assert len(digests(one)) == 4
    for workers, parallel in [(2, "threads"), (3, "threads"), (2, "processes")]:
        other = convert(corpus_c, tmp_path / f"{parallel}{workers}", to=to, shard_records=20, workers=workers, parallel=parallel)
        assert digests(other) == digests(one), (workers, parallel)
        assert other["stats"]["parallel"] == parallel


@pytest.mark.parametrize("to", FORMATS)
def test_resume_after_interrupted_run(tmp_path, corpus_c, monkeypatch, to):
    out = tmp_path / "out"
    original_close = SplitOutput._close
    calls = {"n": 0}

    def interrupted_close(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original_close(self)

    monkeypatch.setattr(SplitOutput, "_close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        convert(corpus_c, out, to=to, shard_records=10, workers=1)
    monkeypatch.setattr(SplitOutput, "_close", original_close)
    # The partial output never looks complete.
    assert not (out / "gntkit.json").exists() and (out / ".gntkit-journal.json").exists()
    assert not list(out.glob("*-of-*")) and not list(out.glob("*.partial"))
    finished = sorted(p for p in out.iterdir() if not p.name.startswith(".") and not p.name.endswith(".npy"))
    assert len(finished) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    with pytest.raises(GntkitError, match="interrupted conversion"):
        verify(out)
    with pytest.raises(OutputExistsError, match="--resume"):
        convert(corpus_c, out, to=to, shard_records=10, workers=1)
    with pytest.raises(GntkitError, match="other sources or settings"):
        convert(corpus_c, out, to=to, shard_records=11, workers=1, resume=True)
    resumed = convert(corpus_c, out, to=to, shard_records=10, workers=1, resume=True)
    fresh = convert(corpus_c, tmp_path / "fresh", to=to, shard_records=10, workers=1)
    assert [s["sha256"] for s in resumed["splits"]["all"]["shards"]] == [s["sha256"] for s in fresh["splits"]["all"]["shards"]]
    assert resumed["splits"]["all"]["class_counts"] == fresh["splits"]["all"]["class_counts"]
    for i, name in enumerate(sorted(stamps)):  # finished shards were kept, not rewritten
        assert name == shard_name("gnt", "all", to, i)
        assert (out / shard_name("gnt", "all", to, i, 8)).stat().st_mtime_ns == stamps[name]
    assert verify(out)["records"] == 72


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_verify_catches_damage(tmp_path, corpus_c, damage):
    out = tmp_path / "out"
    manifest = convert(corpus_c, out, to="tfrecord", shard_records=30, workers=1)
    shard = out / manifest["splits"]["all"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(data))
        match = "expected sha256"
    elif damage == "truncate":
        shard.write_bytes(bytes(data[:-10]))
        match = "bytes as the manifest lists"
    else:
        shard.unlink()
        match = "found no file"
    with pytest.raises(GntkitError, match=match) as info:
        verify(out)
    assert shard.name in str(info.value)
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 2 and shard.name in result.output and "Traceback" not in result.output


def test_verify_decodes_records_with_stock_reader(tmp_path, corpus_c):
    """A shard whose bytes were rewritten consistently (checksums updated) still fails on content."""
    import hashlib

    out = tmp_path / "out"
    manifest = convert(corpus_c, out, to="tfrecord", shard_records=30, workers=1)
    entry = manifest["splits"]["all"]["shards"][0]
    shard = out / entry["file"]
    shard.write_bytes(shard.read_bytes()[:-50] + bytes(50))  # same size, damaged last record
    entry["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (out / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(GntkitError, match=entry["file"]):
        verify(out)


def test_existing_output_and_overwrite(tmp_path, corpus_c):
    out = tmp_path / "out"
    convert(corpus_c, out, to="tfrecord", workers=1)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(corpus_c, out, to="tfrecord", workers=1)
    convert(corpus_c, out, to="tfrecord", workers=1, overwrite=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match="not a gntkit output"):
        convert(corpus_c, foreign, to="tfrecord", workers=1, overwrite=True)
    assert (foreign / "thesis.tex").exists()


def test_skipped_records_are_in_the_manifest(tmp_path, corpus_c):
    folder = tmp_path / "gnt"
    shutil.copytree(corpus_c, folder)
    (folder / "1003-c.gnt").write_bytes((folder / "1003-c.gnt").read_bytes()[:-20])
    with pytest.raises(GntkitError, match="1003-c.gnt at byte"):
        convert(folder, tmp_path / "a", to="tfrecord", workers=1)
    manifest = convert(folder, tmp_path / "b", to="tfrecord", workers=1, on_error="skip")
    assert manifest["skipped"]["skipped_records"] == 1 and manifest["skipped"]["problems"][0]["path"].endswith("1003-c.gnt")
    assert manifest["splits"]["all"]["num_records"] == 71


@pytest.mark.slow
def test_cli_convert_end_to_end(tmp_path, corpus_f, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["convert", str(corpus_f), "--to", "webdataset", "--size", "48", "--quiet"])
    # Symbols are outside gb2312-1: dropped, counted, exit code 3.
    assert result.exit_code == 3, result.output
    assert "24 sample(s) outside the charset" in result.output
    out = tmp_path / "gnt-webdataset"
    assert (out / "gntkit.json").is_file()
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    again = runner.invoke(app, ["convert", str(corpus_f), "--to", "webdataset", "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    ok = runner.invoke(app, ["convert", str(corpus_f), "--out", str(tmp_path / "h"), "--to", "hdf5", "--charset", "data", "--raw",
                             "--quiet"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["convert", str(corpus_f), "--out", str(tmp_path / "x"), "--size", "3"])
    assert bad.exit_code == 2 and "size" in bad.output and "Traceback" not in bad.output


def test_without_source_hashes(tmp_path, corpus_c):
    manifest = convert(corpus_c, tmp_path / "o", to="tfrecord", workers=1, hash_sources=False)
    assert manifest["stats"]["sources_hashed"] is False
    assert all(f["sha256"] is None for f in manifest["sources"][0]["files"])
    assert manifest["stats"]["peak_rss_mb"]["main"] > 0
    assert verify(tmp_path / "o")["records"] == 72


def test_script_without_main_guard(tmp_path, corpus_c):
    # Neither threads nor worker processes import the caller's main module: a script without
    # `if __name__ == "__main__":` converts with both, to the same bytes.
    import subprocess
    import sys

    def run(parallel, out):
        script = tmp_path / f"convert_{parallel}.py"
        script.write_text("from gntkit.shards.convert import convert\n"
                          f"convert({str(corpus_c)!r}, {str(tmp_path / out)!r}, workers=2, parallel={parallel!r})\n")
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)

    threads = run("threads", "t")
    assert threads.returncode == 0, threads.stderr
    assert verify(tmp_path / "t")["records"] > 0
    processes = run("processes", "p")
    assert processes.returncode == 0 and processes.stderr == "", processes.stderr
    for shard in (tmp_path / "t").glob("*.tfrecord*"):
        assert (tmp_path / "p" / shard.name).read_bytes() == shard.read_bytes()


def test_split_without_writers_is_left_out(tmp_path, corpus_c):
    manifest = convert(corpus_c, tmp_path / "o", to="tfrecord", split="hwdb1.1", workers=1)
    assert list(manifest["splits"]) == ["train"] and manifest["split"]["empty"] == ["test"]
    assert "left out: test" in manifest["summary"]
    from gntkit.samples.charset import Charset

    symbols_only = Charset("symbols", [0x2100], ["!"], "test")  # a -c corpus has no symbols
    with pytest.raises(GntkitError, match="no sample was kept"):
        convert(corpus_c, tmp_path / "p", to="tfrecord", workers=1, charset=symbols_only)
    assert not (tmp_path / "p" / "gntkit.json").exists()


def test_manifest_digests_equal_hashlib(tmp_path):
    # Several source files and shards, hashed side by side on threads.
    from gntkit.tools.synth import write_corpus

    files_wanted = 8
    source = tmp_path / "gnt"
    write_corpus(source, writers=files_wanted, num_classes=6, samples_per_class=2, seed=7)
    manifest = convert(source, tmp_path / "o", to="tfrecord", shard_records=7, workers=2)
    files = manifest["sources"][0]["files"]
    assert len(files) == files_wanted
    for f in files:
        assert f["sha256"] == hashlib.sha256((source / f["name"]).read_bytes()).hexdigest()
    shards = manifest["splits"]["all"]["shards"]
    assert len(shards) >= files_wanted
    for shard in shards:
        assert shard["sha256"] == hashlib.sha256((tmp_path / "o" / shard["file"]).read_bytes()).hexdigest()
