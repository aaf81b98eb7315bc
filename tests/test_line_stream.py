"""Streaming text-line loader end to end: `gntkit synth --format dgrl` pages converted to every shard
format and read back line for line by `open_line_stream` (against the in-memory `open_lines`);
every line exactly once per epoch across ranks, the order fixed by seed, epoch and rank, width
buckets that pad less than the plain shuffle buffer, memory held to the pool (tracemalloc, beside
open_lines), the same batches from a real HTTP server on 127.0.0.1, the PyTorch and TensorFlow
adapters, a tiny CTC model that learns the synthetic lines through the stream, and bad input
refused with one sentence."""

from __future__ import annotations

import hashlib
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from gntkit.cli.main import app  # noqa: E402
from gntkit.datasets.line_stream import open_line_stream  # noqa: E402
from gntkit.datasets.lines import open_lines, tf_dataset, torch_batches  # noqa: E402
from gntkit.errors import GntkitError  # noqa: E402

FORMATS = ["hdf5", "webdataset", "tfrecord"]
WRITERS, PAGES, LINES = 3, 2, 6
TOTAL = WRITERS * PAGES * LINES
SHARD_RECORDS = 7  # several shards, split across pools and ranks mid-shard
pytestmark = pytest.mark.numba  # convert runs the kernels


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth-dgrl") / "pages"
    result = CliRunner().invoke(app, ["synth", str(out), "--format", "dgrl", "--writers", str(WRITERS), "--pages", str(PAGES),
                                      "--lines", str(LINES), "--classes", "12", "--style", "f", "--symbols", "3", "--seed", "4"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def converted(pages, tmp_path_factory) -> dict[str, Path]:
    from gntkit.shards.convert import convert

    root = tmp_path_factory.mktemp("line-stream")
    for fmt in FORMATS:
        convert(pages, root / fmt, to=fmt, workers=1, preprocess={"line_height": 24, "max_line_width": 600},
                shard_records=SHARD_RECORDS, hash_sources=False)
    return {fmt: root / fmt for fmt in FORMATS}


def line_id(image: np.ndarray, labels) -> str:
    """A line's identity: its pixels and its label sequence."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + np.asarray(labels, np.int64).tobytes()).hexdigest()


def batch_ids(batches) -> list[str]:
    ids = []
    for images, widths, labels, lengths in batches:
        assert images.dtype == np.uint8 and widths.dtype == labels.dtype == lengths.dtype == np.int64
        assert images.shape[2] == widths.max() and labels.shape[1] == max(int(lengths.max()), 1)
        ids += [line_id(images[b, :, :widths[b]], labels[b, :lengths[b]]) for b in range(len(widths))]
    return ids


def memory_ids(folder) -> Counter:
    lines = open_lines(folder)
    return Counter(line_id(lines.images[i], lines.sequence(i)) for i in range(len(lines)))


def test_synth_writes_dgrl_pages_in_the_real_layout(pages, tmp_path):
    from gntkit.samples.inspection import inspect_sources
    from gntkit.tools.synth_pages import write_pages

    names = sorted(p.name for p in pages.iterdir())
    assert names == [f"{w}-P{p:02d}.dgrl" for w in range(1001, 1001 + WRITERS) for p in range(1, PAGES + 1)]
    report = inspect_sources(pages).to_json()
    assert report["formats"] == {"dgrl": WRITERS * PAGES} and report["text_pages"]["lines"] == TOTAL and report["problems"] == []
    assert report["writers"] == WRITERS and report["classes"] == 15 and report["unknown_codes"] == {}
    again = write_pages(tmp_path / "again", writers=WRITERS, first_writer=1001, pages=PAGES, lines=LINES, num_classes=12, style="f",
                        num_symbols=3, seed=4)
    assert [p.read_bytes() for p in again] == [(pages / p.name).read_bytes() for p in again]  # deterministic by seed
    other = write_pages(tmp_path / "other", writers=1, first_writer=1001, pages=1, lines=LINES, num_classes=12, seed=5)
    assert other[0].read_bytes() != (pages / other[0].name).read_bytes()
    refused = CliRunner().invoke(app, ["synth", str(tmp_path / "bad"), "--format", "dgrl", "--pages", "0"])
    assert refused.exit_code == 2 and "pages must be an integer from 1 to 99, found 0" in refused.output
    assert "Traceback" not in refused.output


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_reads_every_converted_line_back(converted, fmt):
    stream = open_line_stream(converted[fmt], buffer_lines=8)
    expected = memory_ids(converted[fmt])
    assert len(stream) == TOTAL == sum(expected.values()) and len(stream.shards) == -(-TOTAL // SHARD_RECORDS)
    assert stream.height == 24 and stream.pad_value == 0 and stream.blank == stream.num_classes == open_lines(converted[fmt]).num_classes
    assert Counter(batch_ids(stream.batches(5, seed=2))) == expected
    assert Counter(batch_ids(stream.batches(4, shuffle=False))) == expected


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_every_line_once_per_epoch_across_ranks(converted, world_size):
    stream = open_line_stream(converted["hdf5"], buffer_lines=6)
    expected = memory_ids(converted["hdf5"])
    for epoch in (0, 1):
        seen = []
        for rank in range(world_size):
            batches = list(stream.batches(4, seed=3, epoch=epoch, rank=rank, world_size=world_size))
            assert len(batches) == stream.num_batches(4, rank=rank, world_size=world_size)
            assert all(len(b[1]) == 4 for b in batches[:-1])  # only the last batch is short
            seen += batch_ids(batches)
            dropped = list(stream.batches(4, seed=3, epoch=epoch, rank=rank, world_size=world_size, drop_last=True))
            assert all(len(b[1]) == 4 for b in dropped) and len(dropped) == stream.num_batches(4, rank=rank, world_size=world_size,
                                                                                                drop_last=True)
        assert Counter(seen) == expected


def test_order_follows_seed_epoch_and_rank(converted):
    stream = open_line_stream(converted["webdataset"], buffer_lines=10)

    def order(**options):
        return batch_ids(stream.batches(3, **options))

    assert order(seed=1, epoch=2) == order(seed=1, epoch=2)
    assert order(seed=1, epoch=2) != order(seed=1, epoch=3) != order(seed=2, epoch=3)
    assert order(seed=1, rank=0, world_size=2) != order(seed=1, rank=1, world_size=2)
    assert order(shuffle=False) == order(shuffle=False, seed=9, epoch=4)  # file order: no seed in it
    reads = stream.rank_slice(seed=1, epoch=0, rank=1, world_size=3)
    assert sum(take for _, _, take in reads) == TOTAL // 3 and len({k for k, _, _ in reads}) < len(stream.shards)


def padding_fraction(batches) -> float:
    padded = used = 0
    for images, widths, _, _ in batches:
        padded += images.shape[0] * images.shape[2]
        used += int(widths.sum())
    return 1 - used / padded


def test_width_buckets_pad_less_than_a_shuffle_buffer(converted):
    bucketed = open_line_stream(converted["hdf5"], buffer_lines=TOTAL)
    plain = open_line_stream(converted["hdf5"], buffer_lines=TOTAL, bucket=False)
    assert Counter(batch_ids(plain.batches(4, seed=5))) == Counter(batch_ids(bucketed.batches(4, seed=5)))
    with_buckets = padding_fraction(bucketed.batches(4, seed=5))
    assert with_buckets < padding_fraction(plain.batches(4, seed=5)) / 2
    for images, widths, _, _ in bucketed.batches(4, seed=5):
        for b in range(len(widths)):  # padded right with the background
            assert not images[b, :, widths[b]:].any()


@pytest.mark.parametrize(("block", "block_bytes"), [(4096, 1), (3, 16 << 20), (2, 30_000)])
def test_hdf5_reader_blocks_bounded_by_bytes_give_the_same_lines(converted, block, block_bytes):
    from gntkit.shards.hdf5 import read_shard

    lines = 0
    for shard in sorted(converted["hdf5"].glob("*.h5")):
        whole = list(read_shard(shard))
        parts = list(read_shard(shard, block=block, block_bytes=block_bytes))
        assert [s["key"] for s in parts] == [s["key"] for s in whole]
        lines += len(whole)
        for a, b in zip(parts, whole):
            assert np.array_equal(a["image"], b["image"]) and a["label_sequence"].tolist() == b["label_sequence"].tolist()
    assert lines == TOTAL


def test_hdf5_read_blocks_stop_at_block_bytes():
    from gntkit.shards.hdf5 import _block_bounds

    offsets = np.array([0, 10, 25, 100, 101, 500])  # records of 10, 15, 75, 1 and 399 pixel bytes
    assert _block_bounds(offsets, 5, 4096, 30) == [0, 2, 3, 4, 5]  # a record over 30 bytes is a block alone
    assert _block_bounds(offsets, 5, 1, 1000) == [0, 1, 2, 3, 4, 5]
    assert _block_bounds(offsets, 5, 4096, 1000) == [0, 5]
    assert _block_bounds(None, 5, 2, 0) == [0, 2, 4, 5] and _block_bounds(None, 0, 2, 0) == [0]


def test_memory_holds_the_pool_not_the_split(tmp_path):
    from gntkit.shards.convert import convert
    from gntkit.tools.synth_pages import write_pages

    write_pages(tmp_path / "pages", writers=4, pages=3, lines=10, num_classes=12, glyph_height=32, seed=1)
    folder = tmp_path / "lines"
    convert(tmp_path / "pages", folder, to="hdf5", workers=1, preprocess={"line_height": 32}, shard_records=5, hash_sources=False)
    split_bytes = sum(image.nbytes for image in open_lines(folder).images)
    stream = open_line_stream(folder, buffer_lines=4)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = sum(len(widths) for _, widths, _, _ in stream.batches(2, seed=0))
        stream_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        lines = open_lines(folder)
        count_memory = sum(len(widths) for _, widths, _, _ in lines.batches(2, seed=0))
        memory_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == count_memory == 120
    # The stream holds a pool of 4-5 lines, a batch and one 5-line read block: under a quarter of the split.
    assert memory_peak > split_bytes and stream_peak < split_bytes / 4, (stream_peak, memory_peak, split_bytes)


def test_stream_from_a_url_matches_the_local_folder(converted, tmp_path):
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    import shutil

    from test_datasets_remote import HttpServer

    shutil.copytree(converted["tfrecord"], tmp_path / "www" / "lines")
    server = HttpServer(tmp_path / "www")
    try:
        url = f"{server.url}/lines"
        remote = open_line_stream(url, buffer_lines=8, cache_dir=tmp_path / "cache")
        local = open_line_stream(converted["tfrecord"], buffer_lines=8)
        assert remote.url == url and len(remote) == TOTAL
        reads = remote.rank_slice(seed=1, rank=0, world_size=2)
        assert batch_ids(remote.batches(4, seed=1, rank=0, world_size=2)) == batch_ids(local.batches(4, seed=1, rank=0, world_size=2))
        names = [local.shards[k].path.name for k in range(len(local.shards))]
        touched = {names[k] for k, _, _ in reads}
        assert {n for n in names if server.fetched(n)} == touched  # rank 0 fetched only its own shards
        assert batch_ids(remote.batches(4, seed=1, epoch=1)) == batch_ids(local.batches(4, seed=1, epoch=1))
        assert all(server.fetched(n) == 1 for n in names)  # each shard came over the network once
    finally:
        server.close()


def test_torch_and_tf_adapters_take_the_stream(converted):
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    stream = open_line_stream(converted["hdf5"], buffer_lines=8)
    expected = list(stream.batches(4, seed=6, epoch=1, rank=1, world_size=2))
    from_torch = list(torch_batches(stream, 4, seed=6, epoch=1, rank=1, world_size=2))
    from_tf = list(tf_dataset(stream, 4, seed=6, epoch=1, rank=1, world_size=2).as_numpy_iterator())
    assert len(expected) == len(from_torch) == len(from_tf) > 1
    for (images, widths, labels, lengths), t, f in zip(expected, from_torch, from_tf):
        assert isinstance(t[0], torch.Tensor) and t[0].shape == (len(widths), 1, 24, images.shape[2])
        np.testing.assert_array_equal(t[0].squeeze(1).numpy(), images / np.float32(255.0))
        np.testing.assert_array_equal(f[0][..., 0], images / np.float32(255.0))
        for k, column in enumerate((widths, labels, lengths), 1):
            np.testing.assert_array_equal(t[k].numpy(), column)
            np.testing.assert_array_equal(f[k], column)
    assert tf.executing_eagerly()


def test_a_tiny_ctc_model_learns_synthetic_lines_from_the_stream(converted):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only contend on the shared CI cores
    stream = open_line_stream(converted["hdf5"], buffer_lines=12)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d((2, 1)),
        torch.nn.Conv2d(16, 32, (6, 3), padding=(0, 1)), torch.nn.ReLU(), torch.nn.Conv2d(32, stream.blank + 1, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def epoch_loss(epoch, train):
        total = 0.0
        for images, widths, labels, lengths in torch_batches(stream, 6, seed=1, epoch=epoch):
            log_probs = model(images).squeeze(2).permute(2, 0, 1).log_softmax(-1)  # (W/2, B, C)
            loss = torch.nn.functional.ctc_loss(log_probs, labels, widths // 2, lengths, blank=stream.blank, zero_infinity=True)
            if train:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total += float(loss.detach())
        return total

    try:
        with torch.no_grad():
            before = epoch_loss(0, False)
        for epoch in range(25):
            epoch_loss(epoch, True)
        with torch.no_grad():
            after = epoch_loss(0, False)
    finally:
        torch.set_num_threads(threads)
    assert after < 0.3 * before, (before, after)


def test_bad_input_is_refused_with_one_sentence(converted, corpus_c, tmp_path):
    from gntkit.shards.convert import convert

    convert(corpus_c, tmp_path / "chars", to="hdf5", workers=1, hash_sources=False)
    with pytest.raises(GntkitError, match="expected a conversion of text lines .* found one of single characters"):
        open_line_stream(tmp_path / "chars")
    with pytest.raises(GntkitError, match="buffer_lines must be an integer >= 1, found 0"):
        open_line_stream(converted["hdf5"], buffer_lines=0)
    with pytest.raises(GntkitError, match="cache_dir, cache_limit and storage_options are for URLs"):
        open_line_stream(converted["hdf5"], cache_dir=tmp_path)
    with pytest.raises(GntkitError, match="split"):
        open_line_stream(converted["hdf5"], "test")
    stream = open_line_stream(converted["hdf5"])
    with pytest.raises(GntkitError, match="rank must be below world_size=2, found 2"):
        next(stream.batches(2, rank=2, world_size=2))
    with pytest.raises(GntkitError, match="batch_size must be an integer >= 1, found 0"):
        next(stream.batches(0))
    with pytest.raises(GntkitError, match="seed must be an integer >= 0"):
        next(stream.batches(2, seed=-1))
