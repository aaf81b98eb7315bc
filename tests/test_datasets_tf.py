"""gntkit.datasets.tf on real `gntkit convert` output: every sample once per epoch with the right label
and pixels for each format and simulated rank count (1, 2, 3), the same batches as the framework-free
plan (and so as PyTorch), tf.distribute.InputContext sharding, seeded epochs, and errors.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import gntkit.datasets as datasets  # noqa: E402
from gntkit.datasets.tf import make_dataset, rank_of  # noqa: E402
from gntkit.errors import GntkitError  # noqa: E402
from test_datasets import FORMATS, SIZE, TRAIN, convert_sets, expected_share, identify, stock_truth  # noqa: E402

BATCH = 7


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return convert_sets(tmp_path_factory.mktemp("datasets_tf"))


@pytest.fixture(scope="module")
def truth(sets):
    return stock_truth(sets["hdf5"], "train")


def run(dataset, truth) -> list[list[int]]:
    batches = []
    for images, labels in dataset.as_numpy_iterator():
        assert images.dtype == np.uint8 and images.shape[1:] == (SIZE, SIZE) and labels.dtype == np.int64
        batches.append(identify(truth, images, labels))
    return batches


def plan(shards, rank, world, epoch=0, seed=0, shuffle=True, drop_last=False):
    return [idx.tolist() for _, idx in shards.batch_plan(BATCH, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                                                          world_size=world, drop_last=drop_last)]


def test_stock_tfrecord_reader_agrees(sets, truth):
    """The TFRecord conversion read with tf.data + parse_single_example equals the HDF5 truth."""
    shards = datasets.open(sets["tfrecord"])
    description = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    records = tf.data.TFRecordDataset([str(s.path) for s in shards.shards]).map(lambda r: tf.io.parse_single_example(r, description))
    images = np.stack([np.frombuffer(x["image"], np.uint8).reshape(SIZE, SIZE) for x in records.as_numpy_iterator()])
    np.testing.assert_array_equal(images, truth.images)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_sample_once_per_epoch_across_ranks(sets, truth, fmt):
    shards = datasets.open(sets[fmt])
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            dataset = make_dataset(sets[fmt], batch_size=BATCH, seed=5, rank=rank, world_size=world, reader="numpy")
            batches = run(dataset, truth)
            assert batches == plan(shards, rank, world, seed=5)  # exactly PyTorch's batches
            seen += sum(batches, [])
        assert sorted(set(seen)) == list(range(TRAIN)) and len(seen) == -(-TRAIN // world) * world


@pytest.mark.parametrize("shuffle", [False, "shard"])
def test_native_tfrecord_reader_gives_the_planned_batches(sets, truth, shuffle):
    shards = datasets.open(sets["tfrecord"])
    for world in (1, 2, 3):
        for rank in range(world):
            dataset = make_dataset(sets["tfrecord"], batch_size=BATCH, shuffle=shuffle, seed=8, epoch=1, rank=rank,
                                   world_size=world, num_parallel_reads=2)
            assert run(dataset, truth) == plan(shards, rank, world, epoch=1, seed=8, shuffle=shuffle)


def test_native_global_shuffle_gives_each_rank_its_samples(sets, truth):
    shards = datasets.open(sets["tfrecord"])
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            dataset = make_dataset(sets["tfrecord"], batch_size=BATCH, seed=5, epoch=3, rank=rank, world_size=world, reader="native")
            batches = run(dataset, truth)
            planned = plan(shards, rank, world, epoch=3, seed=5)
            assert [len(b) for b in batches] == [len(b) for b in planned]
            assert sorted(sum(batches, [])) == sorted(sum(planned, []))  # same samples (padding included)
            assert int(dataset.cardinality()) == len(planned)
            assert run(dataset, truth) == batches  # deterministic
            seen += sum(batches, [])
        assert sorted(set(seen)) == list(range(TRAIN))
    first = run(make_dataset(sets["tfrecord"], batch_size=BATCH, seed=5, epoch=0, reader="native"), truth)
    second = run(make_dataset(sets["tfrecord"], batch_size=BATCH, seed=5, epoch=1, reader="native"), truth)
    assert first != second and sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(TRAIN))


def test_input_context_sets_the_rank(sets, truth):
    context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=1, num_replicas_in_sync=3)
    assert rank_of(context) == (1, 3)
    with_context = run(make_dataset(sets["hdf5"], batch_size=BATCH, seed=2, input_context=context), truth)
    explicit = run(make_dataset(sets["hdf5"], batch_size=BATCH, seed=2, rank=1, world_size=3), truth)
    assert with_context == explicit
    assert sorted(sum(with_context, [])) == sorted(expected_share(TRAIN, 2, 0, True, 1, 3))


def test_several_epochs_and_drop_last(sets, truth):
    shards = datasets.open(sets["webdataset"])
    two = run(make_dataset(sets["webdataset"], batch_size=BATCH, seed=1, num_epochs=2, rank=0, world_size=2, drop_last=True), truth)
    expected = plan(shards, 0, 2, epoch=0, seed=1, drop_last=True) + plan(shards, 0, 2, epoch=1, seed=1, drop_last=True)
    assert two == expected and all(len(b) == BATCH for b in two)
    native = run(make_dataset(sets["tfrecord"], batch_size=BATCH, shuffle=False, num_epochs=2, drop_last=True), truth)
    assert native == plan(shards, 0, 1, shuffle=False, drop_last=True) * 2


@pytest.mark.parametrize("reader", ["native", "numpy"])
def test_start_batch_resumes_mid_epoch(sets, truth, reader):
    full = run(make_dataset(sets["tfrecord"], batch_size=BATCH, shuffle="shard", seed=4, num_epochs=2, reader=reader), truth)
    resumed = run(make_dataset(sets["tfrecord"], batch_size=BATCH, shuffle="shard", seed=4, num_epochs=2, start_batch=5, reader=reader),
                  truth)
    assert resumed == full[5:]


def test_gzip_tfrecord_native(tmp_path, truth):
    folder = convert_sets(tmp_path, formats=["tfrecord"], compression="gzip")["tfrecord"]
    shards = datasets.open(folder)
    assert run(make_dataset(folder, batch_size=BATCH, shuffle="shard", seed=3), truth) == plan(shards, 0, 1, seed=3, shuffle="shard")
    batches = run(make_dataset(folder, batch_size=BATCH, seed=3), truth)
    assert sorted(sum(batches, [])) == list(range(TRAIN))


def test_tensorflow_and_pytorch_see_the_same_samples(sets, truth):
    torch_adapter = pytest.importorskip("gntkit.datasets.torch")
    for world in (1, 2):
        for rank in range(world):
            from_torch = []
            for images, labels in torch_adapter.make_loader(sets["tfrecord"], batch_size=BATCH, seed=9, rank=rank, world_size=world):
                from_torch.append(identify(truth, images.numpy(), labels.numpy()))
            exact = run(make_dataset(sets["tfrecord"], batch_size=BATCH, seed=9, rank=rank, world_size=world, reader="numpy"), truth)
            native = run(make_dataset(sets["tfrecord"], batch_size=BATCH, seed=9, rank=rank, world_size=world), truth)
            assert exact == from_torch
            assert sorted(sum(native, [])) == sorted(sum(from_torch, []))


def test_errors(sets):
    with pytest.raises(GntkitError, match="reader='native' reads TFRecord shards"):
        make_dataset(sets["hdf5"], reader="native")
    with pytest.raises(GntkitError, match="reader must be one of"):
        make_dataset(sets["hdf5"], reader="fast")
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(GntkitError, match="either input_context or rank/world_size"):
        make_dataset(sets["hdf5"], input_context=context, rank=0, world_size=2)
    with pytest.raises(GntkitError, match="tf.distribute.InputContext"):
        make_dataset(sets["hdf5"], input_context=(0, 2))
    with pytest.raises(GntkitError, match="num_epochs"):
        make_dataset(sets["hdf5"], num_epochs=0)
    with pytest.raises(GntkitError, match="has no split 'val'; it has 'train', 'test'"):
        make_dataset(sets["tfrecord"], "val")
