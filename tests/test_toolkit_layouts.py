"""The layouts text-recognition toolkits read: `--to lmdb` (deep-text-recognition-benchmark, PARSeq,
MMOCR) and `--to paddleocr` (PaddleOCR's recognition label file), for text lines and single characters.

Each output is read back the way the toolkit reads it (the lmdb package with the toolkits' open
arguments and PIL; the label file split at the tab and joined to data_dir) and compared with the
sample stream; and the rules every output format keeps hold for shards that are folders: byte-identical
runs, verify's checksums of what is written (a changed, added or removed file is caught; LMDB's
lock.mdb is not a change), resume after an interruption, a partial output that never looks complete,
hostile shard names refused, URLs and gntkit.datasets.open refused in one sentence, and the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gntkit.errors import FormatError, GntkitError, OutputExistsError
from gntkit.shards.convert import convert
from gntkit.shards.manifest import check_manifest, load_manifest, shard_name
from gntkit.shards.output import SplitOutput
from gntkit.shards.verify import verify
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus
from gntkit.tools.synth import write_corpus

FORMATS = ["lmdb", "paddleocr"]
LINES = {"line_height": 24, "max_line_width": 200}
# What deep-text-recognition-benchmark, PARSeq and MMOCR pass to lmdb.open.
TOOLKIT_OPEN = {"readonly": True, "lock": False, "readahead": False, "meminit": False}


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dgrl") / "HWDB2.0Train"
    write_dgrl_corpus(folder, writers=2, pages=2, lines=3, unlabelled=2)
    write_dgrl_corpus(folder, writers=1, pages=1, first_writer=3, bits=1)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gnt") / "gnt"
    write_corpus(folder, writers=3, num_classes=8, samples_per_class=2, num_symbols=2, seed=4)
    return folder


@pytest.fixture(scope="module")
def line_outputs(pages, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("lines")
    return {fmt: convert(pages, out / fmt, to=fmt, on_unknown="other", workers=1, preprocess=LINES, shard_records=4, hash_sources=False)
            | {"folder": out / fmt} for fmt in FORMATS}


def expected_lines(pages, folder) -> list[tuple[str, str, np.ndarray]]:
    """(key, text, image) of every line, from the sample stream."""
    from gntkit.samples.charset import Charset
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.stream import Source

    source = Source(pages, Charset.load(Path(folder) / "charset.json"), Preprocess(**LINES), on_unknown="other")
    return [(b.keys[i], b.meta["text"][i], b.image(i)) for b in source.batches() for i in range(len(b))]


def shard_folders(manifest: dict, split: str = "all") -> list[Path]:
    return [manifest["folder"] / s["file"] for s in manifest["splits"][split]["shards"]]


def pil_gray(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("L"))


# --------------------------------------------------------------------------- read back as the toolkits read
def test_lmdb_reads_back_exactly_as_the_toolkits_read_it(pages, line_outputs):
    lmdb = pytest.importorskip("lmdb")
    manifest = line_outputs["lmdb"]
    got = []
    for folder in shard_folders(manifest):
        assert folder.is_dir() and folder.suffix == ".lmdb" and sorted(os.listdir(folder)) == ["data.mdb"]  # no lock file
        env = lmdb.open(str(folder), **TOOLKIT_OPEN)
        with env.begin(write=False) as txn:
            count = int(txn.get(b"num-samples"))
            for index in range(1, count + 1):  # the toolkits count from 1
                label = txn.get(b"label-%09d" % index).decode("utf-8")
                meta = json.loads(txn.get(b"meta-%09d" % index))
                got.append((meta["key"], label, pil_gray(txn.get(b"image-%09d" % index))))
            assert txn.get(b"image-%09d" % (count + 1)) is None and txn.get(b"image-%09d" % 0) is None
        env.close()
    want = expected_lines(pages, manifest["folder"])
    assert len(got) == len(want) == 15 and [s["records"] for s in manifest["splits"]["all"]["shards"]] == [4, 4, 4, 3]
    for (key, text, image), (want_key, want_text, want_image) in zip(got, want):
        assert (key, text) == (want_key, want_text)
        np.testing.assert_array_equal(image, want_image)
        assert image.shape[0] == 24


def test_paddleocr_reads_back_exactly_as_simpledataset_reads_it(pages, line_outputs):
    manifest = line_outputs["paddleocr"]
    got = []
    for data_dir in shard_folders(manifest):
        assert sorted(os.listdir(data_dir)) == ["gntkit-meta.jsonl", "images", "label.txt"]
        with open(data_dir / "label.txt", "rb") as f:
            lines = f.readlines()
        metas = (data_dir / "gntkit-meta.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(os.listdir(data_dir / "images")) == len(lines) == len(metas)
        for line, meta in zip(lines, metas):
            # PaddleOCR's SimpleDataSet: decode, strip the line break, split at the tab, join the path to data_dir.
            substr = line.decode("utf-8").strip("\n").split("\t")
            assert len(substr) == 2
            file_name, label = substr
            image = pil_gray(open(os.path.join(data_dir, file_name), "rb").read())
            got.append((json.loads(meta)["key"], label, image))
    want = expected_lines(pages, manifest["folder"])
    assert len(got) == len(want) == 15
    for (key, text, image), (want_key, want_text, want_image) in zip(got, want):
        assert (key, text) == (want_key, want_text)
        np.testing.assert_array_equal(image, want_image)


@pytest.mark.parametrize("fmt", FORMATS)
def test_line_outputs_verify_and_load_as_ctc_batches(pages, line_outputs, fmt):
    from gntkit.datasets.lines import open_lines

    manifest = line_outputs[fmt]
    assert verify(manifest["folder"]) == {"splits": {"all": 15}, "shards": 4, "records": 15}
    assert manifest["features"]["lines"] and manifest["features"]["format"] == fmt
    lines = open_lines(manifest["folder"])
    want = expected_lines(pages, manifest["folder"])
    assert lines.keys == [w[0] for w in want] and lines.texts == [w[1] for w in want]
    np.testing.assert_array_equal(lines.images[5], want[5][2])
    images, widths, labels, lengths = next(lines.batches(4, shuffle=False))
    assert images.shape[:2] == (4, 24) and lengths.tolist() == [len(t) for t in lines.texts[:4]]
    card = (manifest["folder"] / "README.md").read_text(encoding="utf-8")
    assert "## Loading" in card and shard_name("hwdb2.0train", "all", fmt, 0, 4) in card


@pytest.mark.parametrize("fmt", FORMATS)
def test_single_characters_use_the_same_layout_with_the_character_as_label(corpus, tmp_path, fmt):
    import gntkit.datasets

    out = tmp_path / fmt
    manifest = convert(corpus, out, to=fmt, charset="data", workers=1, hash_sources=False)
    assert verify(out)["records"] == manifest["splits"]["all"]["num_records"] == manifest["stats"]["samples_written"] > 0
    module = pytest.importorskip("gntkit.shards." + fmt)
    samples = [s for shard in manifest["splits"]["all"]["shards"] for s in module.read_shard(out / shard["file"])]
    characters = json.loads((out / "charset.json").read_text(encoding="utf-8"))["characters"]
    assert all(s["character"] == characters[s["label"]] and s["image"].shape == (64, 64) for s in samples)
    assert len({s["key"] for s in samples}) == len(samples) == manifest["stats"]["samples_written"]
    title = {"lmdb": "LMDB", "paddleocr": "PaddleOCR"}[fmt]
    with pytest.raises(GntkitError, match=rf"{title} output is a layout for other toolkits: expected a format that gntkit.datasets reads"):
        gntkit.datasets.open(out)


# --------------------------------------------------------------------------- the rules every output format keeps
@pytest.mark.parametrize("fmt", FORMATS)
def test_folder_shards_are_byte_identical_run_to_run(pages, line_outputs, tmp_path, fmt):
    again = convert(pages, tmp_path / "again", to=fmt, on_unknown="other", workers=2, preprocess=LINES, shard_records=4, hash_sources=False)
    first = line_outputs[fmt]["splits"]["all"]["shards"]
    assert [(s["sha256"], s["bytes"]) for s in again["splits"]["all"]["shards"]] == [(s["sha256"], s["bytes"]) for s in first]
    for a, b in zip(shard_folders(line_outputs[fmt]), shard_folders(again | {"folder": tmp_path / "again"})):
        for name in sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_checks_what_is_written_in_a_folder_shard(line_outputs, tmp_path, fmt):
    out = tmp_path / fmt
    shutil.copytree(line_outputs[fmt]["folder"], out)
    shard = out / line_outputs[fmt]["splits"]["all"]["shards"][1]["file"]
    if fmt == "lmdb":  # a reader that opens the shard with a lock adds lock.mdb: not a change of the shard
        lmdb = pytest.importorskip("lmdb")
        lmdb.open(str(shard), readonly=True).close()
        assert (shard / "lock.mdb").is_file()
    assert verify(out)["records"] == 15
    data = shard / ("data.mdb" if fmt == "lmdb" else "images/000000002.png")
    original = data.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0xFF
    data.write_bytes(bytes(changed))
    with pytest.raises(GntkitError, match=rf"{shard}: expected sha256 .* \(the shard changed after conversion\)"):
        verify(out, decode=False)
    data.write_bytes(original)
    (shard / "notes.txt").write_text("x")
    with pytest.raises(GntkitError, match=rf"{shard}: expected \d+ bytes as the manifest lists, found \d+"):
        verify(out)
    (shard / "notes.txt").unlink()
    (shard / "link").symlink_to(out / "gntkit.json")  # a shard never points outside itself
    with pytest.raises(GntkitError, match=r"expected plain files in the shard folder .*, found a link or special file"):
        verify(out)
    (shard / "link").unlink()
    os.replace(data, shard / "moved")  # same bytes, another name
    with pytest.raises(GntkitError, match="expected sha256"):
        verify(out)
    shutil.rmtree(shard)
    with pytest.raises(GntkitError, match=rf"{shard}: expected shard of split 'all' with 4 records, found no folder"):
        verify(out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_after_an_interruption_keeps_finished_folders_and_finishes_identically(pages, line_outputs, tmp_path, monkeypatch, fmt):
    out = tmp_path / "out"
    original_close = SplitOutput._close
    calls = {"n": 0}

    def interrupted_close(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original_close(self)

    settings = dict(to=fmt, on_unknown="other", workers=1, preprocess=LINES, shard_records=4, hash_sources=False)
    monkeypatch.setattr(SplitOutput, "_close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        convert(pages, out, **settings)
    monkeypatch.undo()
    # A partial output never looks complete: no manifest, no final names, no unfinished folder.
    assert not (out / "gntkit.json").exists() and (out / ".gntkit-journal.json").is_file()
    assert not list(out.glob("*-of-*")) and not list(out.glob("*.partial"))
    finished = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert finished == [shard_name("hwdb2.0train", "all", fmt, i) for i in range(2)]
    with pytest.raises(GntkitError, match="interrupted conversion"):
        load_manifest(out)
    with pytest.raises(OutputExistsError, match="--resume"):
        convert(pages, out, **settings)
    (out / (shard_name("hwdb2.0train", "all", fmt, 2) + ".partial")).mkdir()  # what a killed writer leaves
    (out / (shard_name("hwdb2.0train", "all", fmt, 2) + ".partial" + "/data")).write_bytes(b"half")
    stamp = (out / finished[0]).stat().st_mtime_ns
    resumed = convert(pages, out, resume=True, **settings)
    assert [s["sha256"] for s in resumed["splits"]["all"]["shards"]] == [s["sha256"] for s in line_outputs[fmt]["splits"]["all"]["shards"]]
    assert (out / shard_name("hwdb2.0train", "all", fmt, 0, 4)).stat().st_mtime_ns == stamp  # kept, not rewritten
    assert not list(out.glob("*.partial")) and verify(out)["records"] == 15


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_journal_whose_folder_shard_changed_is_not_resumed(pages, tmp_path, monkeypatch, fmt):
    out = tmp_path / "out"
    original_close = SplitOutput._close
    calls = {"n": 0}

    def interrupted_close(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original_close(self)

    settings = dict(to=fmt, on_unknown="other", workers=1, preprocess=LINES, shard_records=4, hash_sources=False)
    monkeypatch.setattr(SplitOutput, "_close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        convert(pages, out, **settings)
    monkeypatch.undo()
    (out / shard_name("hwdb2.0train", "all", fmt, 0) / "extra").write_bytes(b"12345")
    with pytest.raises(GntkitError, match=r"the journal lists this finished shard \(\d+ bytes\) but found \d+ bytes"):
        convert(pages, out, resume=True, **settings)
    shutil.rmtree(out / shard_name("hwdb2.0train", "all", fmt, 0))
    with pytest.raises(GntkitError, match="but found no folder"):
        convert(pages, out, resume=True, **settings)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["../x.lmdb", "/etc", "a/b", "..", "x\\y", "C:x"])
def test_hostile_shard_names_are_refused_for_folder_formats(line_outputs, fmt, name):
    manifest = json.loads((line_outputs[fmt]["folder"] / "gntkit.json").read_text(encoding="utf-8"))
    manifest["splits"]["all"]["shards"][0]["file"] = name
    with pytest.raises(FormatError, match="a plain file name"):
        check_manifest(manifest, "gntkit.json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_urls_are_refused_for_folder_shards(line_outputs, tmp_path, fmt):
    pytest.importorskip("fsspec")
    import gntkit.datasets

    url = line_outputs[fmt]["folder"].resolve().as_uri()  # file://...: fsspec's local filesystem
    for read in (lambda: gntkit.datasets.open(url, cache_dir=tmp_path / "cache"), lambda: verify(url)):
        with pytest.raises(GntkitError, match=r"expected a conversion whose shards are single files to read from a URL, found "
                                              r".* shards, which are folders: copy the folder to local disk"):
            read()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_conversion_to_a_url_uploads_every_file_of_the_folder_shards(pages, line_outputs, tmp_path, fmt):
    pytest.importorskip("fsspec")
    target = tmp_path / "bucket" / fmt
    target.mkdir(parents=True)  # an object store has no folders; fsspec's local filesystem wants the top one
    convert(pages, target.as_uri(), to=fmt, on_unknown="other", workers=1, preprocess=LINES, shard_records=4, hash_sources=False)
    assert verify(target) == verify(line_outputs[fmt]["folder"])  # the uploaded copy, read locally
    assert [s["sha256"] for s in load_manifest(target)["splits"]["all"]["shards"]] == \
        [s["sha256"] for s in line_outputs[fmt]["splits"]["all"]["shards"]]


def test_the_cli_converts_dgrl_pages_to_both_layouts(pages, tmp_path):
    from typer.testing import CliRunner

    from gntkit.cli.main import app

    runner = CliRunner()
    for fmt in FORMATS:
        out = tmp_path / fmt
        done = runner.invoke(app, ["convert", str(pages), "--to", fmt, "--out", str(out), "--line-height", "24",
                                   "--on-unknown", "other", "--workers", "1", "--quiet"])
        assert done.exit_code == 0, done.output
        assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
        assert load_manifest(out)["format"] == fmt
        shown = runner.invoke(app, ["preview", str(out), "--out", str(tmp_path / f"{fmt}.png"), "--count", "6"])
        assert shown.exit_code == 0 and "6 samples" in shown.output
    assert convert(pages, tmp_path / "alias", to="PPOCR", on_unknown="other", workers=1, hash_sources=False)["format"] == "paddleocr"


@pytest.mark.parametrize("fmt", FORMATS)
def test_strokes_are_refused_before_a_byte_is_written(tmp_path, fmt):
    from gntkit.shards.registry import get_writer_class

    with pytest.raises(GntkitError, match=r"shards hold images and labels, found a conversion with --strokes"):
        get_writer_class(fmt)(str(tmp_path / "s"), split="train", attrs={"strokes": True})
    assert os.listdir(tmp_path) == []


def test_paddleocr_refuses_a_text_its_label_file_cannot_hold(tmp_path):
    from gntkit.samples.batch import SampleBatch
    from gntkit.shards.paddleocr import PaddleOCRWriter, read_shard

    def batch(characters):
        n = len(characters)
        return SampleBatch(keys=[f"1001/{i}" for i in range(n)], writer_ids=["1001"] * n, tag_codes=np.full(n, 0x4100, np.uint16),
                           labels=np.arange(n, dtype=np.int64), characters=characters, heights=np.full(n, 4), widths=np.full(n, 4),
                           images=np.arange(n * 16, dtype=np.uint8).reshape(n, 4, 4))

    with PaddleOCRWriter(str(tmp_path / "s.paddleocr"), split="train", attrs={}) as writer:
        writer.write(batch(["A", "啊"]))
        for bad in ("\t", "\n", "\r"):
            with pytest.raises(GntkitError, match=r"record 1 \(key '1001/1'\) has a text with a tab or line break"):
                writer.write(batch(["B", bad]))
        assert writer.records == 2  # the refused batches left nothing behind
    samples = list(read_shard(tmp_path / "s.paddleocr"))
    assert [s["character"] for s in samples] == ["A", "啊"] and samples[1]["image"].tolist() == np.arange(16, 32).reshape(4, 4).tolist()
    label_file = tmp_path / "s.paddleocr" / "label.txt"
    for hostile in ("../gntkit.json", "/etc/passwd", "images/../../x.png", "images/a/b.png", "images/.."):
        label_file.write_text(f"images/000000001.png\tA\n{hostile}\t啊\n", encoding="utf-8")
        with pytest.raises(GntkitError, match=r"label.txt line 2: expected an image path images/<file name> inside the shard"):
            list(read_shard(tmp_path / "s.paddleocr"))
