"""Text-line datasets end to end: DGRL pages converted to every shard format and verified,
read back with each format's stock reader against the stream, the lines loader in numpy, PyTorch
and TensorFlow (the same batches; CTC loss from both frameworks agrees on the same scores), a
tiny CTC model that learns the fixture lines, verify catching a text that disagrees with its
labels, and the CLI (convert --line-height, inspect, preview, exit codes)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gntkit.errors import GntkitError  # noqa: E402
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus  # noqa: E402

FORMATS = ["hdf5", "webdataset", "tfrecord", "lmdb", "paddleocr"]
EPOCHS = 25  # of the tiny CTC model below


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dgrl") / "HWDB2.0Train"
    write_dgrl_corpus(folder, writers=2, pages=2, lines=3, unlabelled=2)
    write_dgrl_corpus(folder, writers=1, pages=1, first_writer=3, bits=1)
    return folder


@pytest.fixture(scope="module")
def converted(pages, tmp_path_factory):
    from gntkit.shards.convert import convert

    out = tmp_path_factory.mktemp("converted")
    return {fmt: convert(pages, out / fmt, to=fmt, on_unknown="other", workers=1, preprocess={"line_height": 24, "max_line_width": 200},
                         hash_sources=False) | {"folder": out / fmt} for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_conversion_round_trips_through_the_stock_readers(pages, converted, fmt):
    from gntkit.samples.preprocess import Preprocess
    from gntkit.samples.stream import Source
    from gntkit.shards.registry import get_format_module
    from gntkit.shards.verify import verify

    manifest = converted[fmt]
    folder = manifest["folder"]
    assert verify(folder)["records"] == 15
    assert manifest["features"]["lines"] and manifest["features"]["image"]["line_height"] == 24
    assert manifest["preprocess"]["line_height"] == 24 and manifest["skipped"]["other_samples"] == 4
    source = Source(pages, manifest_charset(folder), Preprocess(line_height=24, max_line_width=200), on_unknown="other")
    expected = [(b, i) for b in source.batches() for i in range(len(b))]
    shards = [folder / s["file"] for s in manifest["splits"]["all"]["shards"]]
    samples = [s for shard in shards for s in get_format_module(fmt).read_shard(shard, compression=None)]
    assert len(samples) == len(expected) == 15
    counts = np.zeros(manifest["charset"]["num_classes"], np.int64)
    for sample, (batch, i) in zip(samples, expected):
        offsets = batch.meta["label_sequence_offsets"]
        sequence = batch.meta["label_sequence"][offsets[i]:offsets[i + 1]]
        assert sample["key"] == batch.keys[i] and sample["text"] == batch.meta["text"][i] == sample["character"]
        assert sample["label_sequence"].tolist() == sequence.tolist() and sample["label"] == -1
        assert np.array_equal(sample["image"], batch.image(i)) and sample["image"].shape[0] == 24
        np.add.at(counts, sequence, 1)
    assert counts.tolist() == manifest["splits"]["all"]["class_counts"]


def manifest_charset(folder):
    from gntkit.samples.charset import Charset

    return Charset.load(Path(folder) / "charset.json")


def test_tfds_reads_and_draws_text_lines_at_their_own_widths(pages, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("matplotlib")
    import matplotlib

    from gntkit.shards.convert import convert
    from gntkit.shards.registry import get_format_module

    matplotlib.use("Agg")
    folder = tmp_path / "tfds-lines"
    manifest = convert(pages, folder, to="tfrecord", split="train=001-002,test=003", on_unknown="other", workers=1,
                       preprocess={"line_height": 24, "max_line_width": 200}, hash_sources=False)
    builder = tfds.builder_from_directory(folder)
    assert builder.info.features["image"].shape == (None, None, 1)
    for split, entry in manifest["splits"].items():
        stored = {s["key"]: s for item in entry["shards"] for s in get_format_module("tfrecord").read_shard(folder / item["file"])}
        read = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert sorted(ex["key"].decode() for ex in read) == sorted(stored) and len(read) == entry["num_records"]
        for ex in read:
            sample = stored[ex["key"].decode()]
            assert ex["text"].decode() == sample["text"] and ex["label_sequence"].tolist() == sample["label_sequence"].tolist()
            assert np.array_equal(ex["image"][:, :, 0], sample["image"]) and ex["image"].shape[0] == 24
    widths = {int(ex["width"]) for ex in tfds.as_numpy(builder.as_dataset(split="test"))}
    fig = tfds.show_examples(builder.as_dataset(split="test"), builder.info, rows=1, cols=3)
    assert len(fig.axes) == 3 and {ax.images[0].get_array().shape[1] for ax in fig.axes} <= widths
    matplotlib.pyplot.close(fig)


def test_verify_refuses_a_text_that_disagrees_with_its_labels(pages, tmp_path):
    from gntkit.shards import hdf5
    from gntkit.shards.convert import convert
    from gntkit.shards.verify import verify

    out = tmp_path / "h5"
    manifest = convert(pages, out, to="hdf5", on_unknown="other", workers=1, hash_sources=False)
    shard = out / manifest["splits"]["all"]["shards"][0]["file"]
    h5py = pytest.importorskip("h5py")
    with h5py.File(shard, "r+") as f:
        f["text"][1] = "X" + f["text"].asstr()[1][1:]
    entry = manifest["splits"]["all"]["shards"][0]
    from gntkit.shards.digest import sha256_file

    entry["sha256"], entry["bytes"] = sha256_file(shard), shard.stat().st_size
    (out / "gntkit.json").write_text(json.dumps(manifest))
    with pytest.raises(GntkitError, match=r"record 1 .*expected the text .* that its label sequence spells, found 'X"):
        verify(out)
    assert hdf5.feature_spec(True, None, lines=True)["lines"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_lines_loader_gives_ctc_ready_batches(converted, fmt):
    from gntkit.datasets.lines import open_lines

    lines = open_lines(converted[fmt]["folder"])
    assert len(lines) == 15 and lines.blank == converted[fmt]["charset"]["num_classes"]
    images, widths, labels, lengths = next(lines.batches(4, shuffle=False))
    assert images.shape[:2] == (4, 24) and images.shape[2] == widths.max()
    for b in range(4):
        assert np.array_equal(images[b, :, :widths[b]], lines.images[b]) and not images[b, :, widths[b]:].any()
        assert labels[b, :lengths[b]].tolist() == lines.sequence(b).tolist()
        assert "".join(manifest_charset(converted[fmt]["folder"]).characters[c] for c in lines.sequence(b)) == lines.texts[b]


def test_ctc_loss_in_both_frameworks_agrees(converted):
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from gntkit.datasets.lines import open_lines, tf_dataset, torch_batches

    lines = open_lines(converted["webdataset"]["folder"])
    torch_batch = next(torch_batches(lines, 5, seed=3))
    tf_batch = next(iter(tf_dataset(lines, 5, seed=3)))
    images, widths, labels, lengths = torch_batch
    assert np.allclose(images.numpy()[:, 0], tf_batch[0].numpy()[..., 0]) and np.array_equal(labels.numpy(), tf_batch[2].numpy())
    assert images.shape[1] == 1 and tf_batch[0].shape[-1] == 1
    frames = (widths // 4).clamp(min=int(lengths.max()) * 2 + 1)
    steps = int(frames.max())
    scores = np.random.default_rng(0).normal(size=(len(widths), steps, lines.blank + 1)).astype(np.float32)
    log_probs = torch.from_numpy(scores).log_softmax(-1).transpose(0, 1)
    torch_loss = torch.nn.functional.ctc_loss(log_probs, labels, frames, lengths, blank=lines.blank, reduction="none")
    tf_loss = tf.nn.ctc_loss(tf_batch[2], tf.constant(scores), tf_batch[3], tf.constant(frames.numpy()), logits_time_major=False,
                             blank_index=lines.blank)
    assert torch.isfinite(torch_loss).all()
    assert np.allclose(torch_loss.numpy(), tf_loss.numpy(), rtol=1e-4)


def test_a_tiny_ctc_model_learns_the_fixture_lines(converted):
    torch = pytest.importorskip("torch")
    from gntkit.datasets.lines import open_lines, torch_batches

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only contend on the shared CI cores
    lines = open_lines(converted["hdf5"]["folder"])
    classes = lines.blank + 1
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d((2, 1)),
        torch.nn.Conv2d(16, 32, (6, 3), padding=(0, 1)), torch.nn.ReLU(), torch.nn.Conv2d(32, classes, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def epoch_loss(epoch, train):
        total = 0.0
        for images, widths, labels, lengths in torch_batches(lines, 5, seed=1, epoch=epoch):
            scores = model(images).squeeze(2)  # (B, C, W/2)
            log_probs = scores.permute(2, 0, 1).log_softmax(-1)
            loss = torch.nn.functional.ctc_loss(log_probs, labels, widths // 2, lengths, blank=lines.blank, zero_infinity=True)
            if train:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total += float(loss.detach())
        return total

    with torch.no_grad():
        before = epoch_loss(0, False)
    try:
        for epoch in range(EPOCHS):
            epoch_loss(epoch, True)
        with torch.no_grad():
            after = epoch_loss(0, False)
    finally:
        torch.set_num_threads(threads)
    assert after < 0.3 * before, (before, after)


def test_open_lines_refuses_a_character_dataset(tmp_path):
    from gntkit.datasets.lines import open_lines
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    write_corpus(tmp_path / "gnt", writers=1, num_classes=3)
    convert(tmp_path / "gnt", tmp_path / "out", to="hdf5", workers=1, hash_sources=False)
    with pytest.raises(GntkitError, match="expected a conversion of text lines"):
        open_lines(tmp_path / "out")


def test_mixing_lines_and_characters_is_refused(pages, tmp_path):
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    write_corpus(tmp_path / "gnt", writers=1, num_classes=3)
    with pytest.raises(GntkitError, match="Text lines .* and single characters cannot share one dataset"):
        convert([pages, tmp_path / "gnt"], tmp_path / "out", to="hdf5", workers=1)


def test_cli_convert_inspect_preview_and_exit_codes(pages, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["convert", str(pages), "--to", "hdf5", "--out", str(tmp_path / "out"), "--line-height", "32",
                                 "--max-line-width", "150", "--quiet", "--no-hash-sources"])
    # Lines holding characters the pages leave unlabelled (0xFFFF) are dropped as documented and
    # counted; an expected drop, so exit 0 (damage or characters outside the charset exit 3).
    assert result.exit_code == 0, result.output
    assert "dropped 4 sample(s)" in result.output
    manifest = json.loads((tmp_path / "out" / "gntkit.json").read_text())
    assert manifest["preprocess"]["max_line_width"] == 150 and manifest["skipped"]["dropped_samples"] == 4
    assert runner.invoke(app, ["verify", str(tmp_path / "out")]).exit_code == 0
    result = runner.invoke(app, ["inspect", str(pages)])
    assert result.exit_code == 0 and "5 pages, 15 lines" in result.output and "0xFFFF x4" in result.output
    result = runner.invoke(app, ["preview", str(tmp_path / "out"), "--out", str(tmp_path / "p.png"), "--count", "4"])
    assert result.exit_code == 0 and (tmp_path / "p.png").is_file()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "009-P01.dgrl").write_bytes((pages / "001-P02.dgrl").read_bytes()[:-9])
    result = runner.invoke(app, ["convert", str(broken), "--out", str(tmp_path / "b"), "--quiet"])
    assert result.exit_code == 2 and "009-P01.dgrl at byte" in result.output and "truncated" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["convert", str(broken), "--out", str(tmp_path / "b"), "--quiet", "--on-error", "skip", "--overwrite"])
    assert result.exit_code == 3 and "skipped 1 damaged record" in result.output


def test_image_loaders_and_trainer_refuse_line_datasets_in_one_sentence(converted, tmp_path):
    # Labels of text lines are sequences: the one-class-per-image loaders say where line datasets
    # are read instead of failing on label -1, and gntkit train with an image model names the line model.
    from typer.testing import CliRunner

    from gntkit.cli.main import app
    from gntkit.datasets import open as open_shards

    folder = converted["hdf5"]["folder"]
    with pytest.raises(GntkitError, match="holds text lines .* gntkit.datasets.lines.open_lines"):
        open_shards(folder)
    result = CliRunner().invoke(app, ["train", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1", "--train-split", "all"])
    assert result.exit_code == 2 and "--model crnn" in result.output and "Traceback" not in result.output
