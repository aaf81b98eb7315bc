"""The layouts text-recognition toolkits read: DGRL text lines and GNT characters converted to
LMDB (deep-text-recognition-benchmark, PARSeq, MMOCR) and PaddleOCR label files, read back as those
toolkits read them (lmdb.open(folder, readonly=True, lock=False), num-samples, image-%09d and
label-%09d decoded with Pillow; plain reads of the label file and the images it names) and compared
pixel for pixel and text for text with the sample stream; verify, ShardSet, the lines loader, the
CLI's --to, byte-identical reruns, and the refusals."""

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from gntkit import datasets  # noqa: E402
from gntkit.datasets.lines import open_lines  # noqa: E402
from gntkit.errors import GntkitError  # noqa: E402
from gntkit.samples.charset import Charset  # noqa: E402
from gntkit.samples.preprocess import Preprocess  # noqa: E402
from gntkit.samples.stream import iter_batches  # noqa: E402
from gntkit.shards.convert import convert  # noqa: E402
from gntkit.shards.digest import sha256_file  # noqa: E402
from gntkit.shards.verify import verify  # noqa: E402
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus  # noqa: E402
from gntkit.tools.synth import write_corpus  # noqa: E402

lmdb = pytest.importorskip("lmdb")

LINES = {"line_height": 24, "max_line_width": 200}
SIZE = 20


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dgrl") / "HWDB2.0Train"
    write_dgrl_corpus(folder, writers=2, pages=2, lines=3, unlabelled=2)
    write_dgrl_corpus(folder, writers=1, pages=1, first_writer=3, bits=1)
    return folder


@pytest.fixture(scope="module")
def characters(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("gnt") / "gnt", writers=2, num_classes=6, samples_per_class=2, style="f",
                        num_symbols=2, seed=5)[0].parent


def stream_truth(sources, folder, preprocess, **options) -> list[tuple[str, str, np.ndarray]]:
    """(key, text, image) of every sample of the stream, in conversion order, for the folder's charset."""
    truth = []
    for batch in iter_batches(sources, Charset.load(folder), preprocess, **options):
        truth += [(batch.keys[i], batch.characters[i], batch.image(i)) for i in range(len(batch))]
    return truth


def lmdb_as_toolkits_read_it(folder: Path, manifest: dict, split: str) -> list[tuple[str, np.ndarray]]:
    """(label, image) of every sample, the way deep-text-recognition-benchmark's LmdbDataset reads them."""
    read = []
    for shard in manifest["splits"][split]["shards"]:
        env = lmdb.open(str(folder / Path(shard["file"]).parent), readonly=True, lock=False, readahead=False, meminit=False)
        with env.begin(write=False) as txn:
            count = int(txn.get(b"num-samples"))
            assert count == shard["records"]
            for index in range(1, count + 1):
                label = txn.get(b"label-%09d" % index).decode("utf-8")
                image = np.asarray(Image.open(io.BytesIO(txn.get(b"image-%09d" % index))))
                read.append((label, image))
        env.close()
    return read


def paddleocr_as_read(folder: Path, manifest: dict, split: str) -> list[tuple[str, np.ndarray]]:
    """(text, image) of every line of a split's label files: `path<TAB>text`, paths relative to the folder."""
    read = []
    for shard in manifest["splits"][split]["shards"]:
        for line in (folder / shard["file"]).read_text(encoding="utf-8").splitlines():
            path, text = line.split("\t")
            assert path.startswith(f"images/{split}/")
            read.append((text, np.asarray(Image.open(folder / path))))
    return read


READ_BACK = {"lmdb": lmdb_as_toolkits_read_it, "paddleocr": paddleocr_as_read}


@pytest.mark.parametrize("fmt", ["lmdb", "paddleocr"])
def test_text_lines_read_back_as_the_toolkits_read_them(pages, tmp_path, fmt):
    out = tmp_path / fmt
    manifest = convert(pages, out, to=fmt, on_unknown="other", workers=1, preprocess=LINES, shard_records=4, hash_sources=False)
    shards = manifest["splits"]["all"]["shards"]
    assert manifest["format"] == fmt and len(shards) == 4 and manifest["features"]["lines"]
    assert verify(out)["records"] == 15
    truth = stream_truth(pages, out, Preprocess(**LINES), on_unknown="other")
    read = READ_BACK[fmt](out, manifest, "all")
    assert len(read) == len(truth) == 15
    for (label, image), (_, text, expected) in zip(read, truth):
        assert label == text and np.array_equal(image, expected) and image.shape[0] == 24
    lines = open_lines(out)
    assert lines.keys == [key for key, _, _ in truth] and lines.texts == [text for _, text, _ in truth]


@pytest.mark.parametrize("fmt", ["lmdb", "paddleocr"])
def test_characters_read_back_and_open_as_a_shardset(characters, tmp_path, fmt):
    out = tmp_path / fmt
    manifest = convert(characters, out, to=fmt, preprocess=Preprocess(size=SIZE), charset="data", split="train=1001,test=1002",
                       shard_records=5, workers=1, hash_sources=False)
    assert verify(out)["splits"] == {"train": 16, "test": 16}
    for split in ("train", "test"):
        truth = stream_truth(characters, out, Preprocess(size=SIZE))
        truth = [t for t in truth if t[0].split("/")[0] in manifest["splits"][split]["writers"]]
        read = READ_BACK[fmt](out, manifest, split)
        assert [label for label, _ in read] == [text for _, text, _ in truth]
        assert all(np.array_equal(image, expected) for (_, image), (_, _, expected) in zip(read, truth))
        shardset = datasets.open(out, split=split)
        images, labels = shardset.read_arrays()
        charset = Charset.load(out)
        assert np.array_equal(images, np.stack([expected for _, _, expected in truth]))
        assert [charset.characters[c] for c in labels.tolist()] == [text for _, text, _ in truth]
        order = np.random.default_rng(0).permutation(len(labels))
        batch_images, batch_labels = shardset.read_batch(order)
        assert np.array_equal(batch_images, images[order]) and np.array_equal(batch_labels, labels[order])
        shardset.close()


@pytest.mark.parametrize("fmt", ["lmdb", "paddleocr"])
def test_a_rerun_writes_the_same_bytes(pages, tmp_path, fmt):
    digests = []
    for run in ("first", "second"):
        manifest = convert(pages, tmp_path / run, to=fmt, on_unknown="other", workers=1, preprocess=LINES, hash_sources=False)
        digests.append([shard["sha256"] for shard in manifest["splits"]["all"]["shards"]])
        assert digests[-1] == [sha256_file(tmp_path / run / s["file"]) for s in manifest["splits"]["all"]["shards"]]
    assert digests[0] == digests[1]
    if fmt == "paddleocr":
        images = sorted(p.relative_to(tmp_path / "first") for p in (tmp_path / "first" / "images").rglob("*.png"))
        assert images and all((tmp_path / "first" / p).read_bytes() == (tmp_path / "second" / p).read_bytes() for p in images)


def test_verify_finds_a_changed_lmdb_shard_and_a_damaged_image(pages, tmp_path):
    manifest = convert(pages, tmp_path / "lmdb", to="lmdb", on_unknown="other", workers=1, preprocess=LINES, hash_sources=False)
    data = tmp_path / "lmdb" / manifest["splits"]["all"]["shards"][0]["file"]
    with lmdb.open(str(data.parent), lock=False) as env, env.begin(write=True) as txn:
        txn.put(b"label-000000001", "改".encode())
    with pytest.raises(GntkitError, match="bytes as the manifest lists|expected sha256"):
        verify(tmp_path / "lmdb")
    manifest = convert(pages, tmp_path / "pp", to="paddleocr", on_unknown="other", workers=1, preprocess=LINES, hash_sources=False)
    image = next((tmp_path / "pp" / "images").rglob("000000002.png"))
    image.write_bytes(image.read_bytes()[:-20])
    with pytest.raises(GntkitError, match="000000002.png: expected a PNG image ending in its IEND chunk"):
        verify(tmp_path / "pp")


@pytest.mark.parametrize("fmt", ["lmdb", "paddleocr"])
def test_strokes_are_refused(fmt, tmp_path):
    corpus = write_corpus(tmp_path / "pot", writers=1, num_classes=3, samples_per_class=1, format="pot")[0].parent
    with pytest.raises(GntkitError, match="not strokes"):
        convert(corpus, tmp_path / "out", to=fmt, strokes=True, workers=1, hash_sources=False)


def test_the_cli_converts_to_both_layouts(pages, tmp_path):
    from gntkit.cli.main import app

    for fmt in ("lmdb", "paddleocr"):
        result = CliRunner().invoke(app, ["convert", str(pages), "--to", fmt, "--out", str(tmp_path / fmt), "--on-unknown", "other",
                                          "--line-height", "24"])
        assert result.exit_code == 0, result.output
        assert CliRunner().invoke(app, ["verify", str(tmp_path / fmt)]).exit_code == 0
    assert (tmp_path / "lmdb" / "hwdb2.0train-all-00000-of-00001.lmdb" / "data.mdb").is_file()
    assert (tmp_path / "paddleocr" / "hwdb2.0train-all-00000-of-00001.txt").is_file()
