"""gntkit.datasets.torch on real `gntkit convert` output: every sample once per epoch with the right
label and pixels, for each format, DataLoader worker count (0, 1, 2) and simulated rank count
(1, 2, 3); seeded, epoch-dependent order independent of the worker count; resume mid-epoch;
the map-style dataset, the GPU-resident loader (on the CPU here) and the device helpers.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import gntkit.datasets as datasets  # noqa: E402
from gntkit.datasets.torch import (  # noqa: E402
    EpochSampler,
    GpuResidentLoader,
    ShardDataset,
    ShardStream,
    default_rank,
    make_loader,
    random_affine,
    to_float,
)
from gntkit.errors import GntkitError  # noqa: E402
from test_datasets import FORMATS, SIZE, TRAIN, convert_sets, expected_share, identify, stock_truth  # noqa: E402

BATCH = 7


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    return convert_sets(tmp_path_factory.mktemp("datasets_torch"))


@pytest.fixture(scope="module")
def truth(sets):
    return stock_truth(sets["hdf5"], "train")


def run_epoch(loader, truth) -> list[list[int]]:
    """Record indices of each batch the loader yields, checking labels and tensor types."""
    batches = []
    for images, labels in loader:
        assert isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.shape[1:] == (SIZE, SIZE)
        assert labels.dtype == torch.int64 and len(labels) == len(images) <= BATCH
        batches.append(identify(truth, images.numpy(), labels.numpy()))
    return batches


def plan(shards, rank, world, epoch=0, seed=0, shuffle=True, start_batch=0):
    return [idx.tolist() for _, idx in shards.batch_plan(BATCH, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank,
                                                          world_size=world, start_batch=start_batch)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_every_sample_once_per_epoch_across_ranks_and_workers(sets, truth, fmt, workers):
    shards = datasets.open(sets[fmt])
    for world in (1, 2, 3):
        seen = []
        for rank in range(world):
            loader = make_loader(sets[fmt], batch_size=BATCH, seed=5, num_workers=workers, rank=rank, world_size=world)
            batches = run_epoch(loader, truth)
            # exactly the documented batches: independent of the worker count
            assert batches == plan(shards, rank, world, seed=5)
            assert len(batches) == len(loader) == -(-(-(-TRAIN // world)) // BATCH)  # noqa: B002 - two ceiling divisions, not a `--`
            assert sorted(sum(batches, [])) == sorted(expected_share(TRAIN, 5, 0, True, rank, world))
            assert loader.epoch == 1 and loader.batch == 0  # a completed pass advances the epoch
            seen += sum(batches, [])
        assert sorted(set(seen)) == list(range(TRAIN)) and len(seen) == -(-TRAIN // world) * world


def test_order_is_seeded_and_changes_with_the_epoch(sets, truth):
    first = make_loader(sets["hdf5"], batch_size=BATCH, seed=1)
    second = make_loader(sets["hdf5"], batch_size=BATCH, seed=1)
    epoch0 = run_epoch(first, truth)
    assert epoch0 == run_epoch(second, truth)
    epoch1 = run_epoch(first, truth)  # epoch advanced by itself
    assert epoch1 != epoch0 and sorted(sum(epoch1, [])) == list(range(TRAIN))
    first.set_epoch(0)
    assert run_epoch(first, truth) == epoch0
    other_seed = make_loader(sets["hdf5"], batch_size=BATCH, seed=2)
    assert run_epoch(other_seed, truth) != epoch0
    unshuffled = run_epoch(make_loader(sets["tfrecord"], batch_size=BATCH, shuffle=False), truth)
    assert sum(unshuffled, []) == list(range(TRAIN))


@pytest.mark.parametrize("fmt, workers", [("tfrecord", 0), ("webdataset", 0), ("hdf5", 2)])
def test_resume_mid_epoch(sets, truth, fmt, workers):
    full = run_epoch(make_loader(sets[fmt], batch_size=BATCH, seed=4, rank=1, world_size=2), truth)
    loader = make_loader(sets[fmt], batch_size=BATCH, seed=4, rank=1, world_size=2, num_workers=workers)
    taken = []
    for images, labels in loader:
        taken.append(identify(truth, images.numpy(), labels.numpy()))
        if len(taken) == 3:
            break
    state = loader.state_dict()
    assert state["epoch"] == 0 and state["batch"] == 3
    resumed = make_loader(sets[fmt], batch_size=BATCH, seed=4, rank=1, world_size=2, num_workers=workers)
    resumed.load_state_dict(state)
    rest = run_epoch(resumed, truth)
    assert taken + rest == full
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["batch"] == 0
    # iterating an interrupted loader again also continues where it stopped
    assert run_epoch(loader, truth) == full[3:]


def test_resume_checks_the_state(sets):
    loader = make_loader(sets["hdf5"], batch_size=BATCH, seed=4)
    state = loader.state_dict()
    with pytest.raises(GntkitError, match="Cannot resume: the saved loader state has batch_size=7, this loader has batch_size=8"):
        make_loader(sets["hdf5"], batch_size=8, seed=4).load_state_dict(state)
    with pytest.raises(GntkitError, match="seed=4, this loader has seed=5"):
        make_loader(sets["hdf5"], batch_size=BATCH, seed=5).load_state_dict(state)
    with pytest.raises(GntkitError, match="an epoch of this loader has 12 batches"):
        loader.load_state_dict({**state, "batch": 13})
    with pytest.raises(GntkitError, match="needs a dict"):
        loader.load_state_dict({"epoch": 1})


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_shard_order(sets, truth, fmt):
    shards = datasets.open(sets[fmt])
    for world in (1, 3):
        seen = []
        for rank in range(world):
            loader = make_loader(sets[fmt], batch_size=BATCH, shuffle="shard", seed=2, rank=rank, world_size=world, streaming=True)
            batches = run_epoch(loader, truth)
            assert batches == plan(shards, rank, world, seed=2, shuffle="shard")
            seen += sum(batches, [])
        assert sorted(set(seen)) == list(range(TRAIN))


def test_map_style_dataset_with_epoch_sampler(sets, truth):
    dataset = ShardDataset(sets["webdataset"])
    assert len(dataset) == TRAIN
    image, label = dataset[41]
    assert image.dtype == torch.uint8 and torch.equal(image, torch.from_numpy(truth.images[41])) and label == truth.labels[41]
    shards = datasets.open(sets["webdataset"])
    for world in (1, 2):
        for rank in range(world):
            sampler = EpochSampler(dataset, seed=3, rank=rank, world_size=world)
            sampler.set_epoch(2)
            loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=sampler)
            assert len(sampler) == -(-TRAIN // world)
            assert run_epoch(loader, truth) == plan(shards, rank, world, epoch=2, seed=3)
    with pytest.raises(GntkitError, match="even must be"):
        EpochSampler(10, even="wrap")


def test_gpu_resident_loader_matches_make_loader(sets, truth):
    resident = GpuResidentLoader(sets["tfrecord"], batch_size=BATCH, seed=6, device="cpu", rank=2, world_size=3)
    assert resident.images.shape == (TRAIN, SIZE, SIZE) and resident.images.dtype == torch.uint8
    streamed = make_loader(sets["tfrecord"], batch_size=BATCH, seed=6, rank=2, world_size=3)
    for _epoch in range(2):
        assert run_epoch(resident, truth) == run_epoch(streamed, truth)
    assert resident.epoch == 2
    resident.set_epoch(0)
    head = []
    for images, labels in resident:
        head.append(identify(truth, images.numpy(), labels.numpy()))
        if len(head) == 2:
            break
    again = GpuResidentLoader(sets["tfrecord"], batch_size=BATCH, seed=6, device="cpu", rank=2, world_size=3)
    again.load_state_dict(resident.state_dict())
    streamed.set_epoch(0)
    assert head + run_epoch(again, truth) == run_epoch(streamed, truth)


def test_rank_defaults_follow_torch_distributed(sets, monkeypatch):
    assert default_rank() == (0, 1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    loader = make_loader(sets["hdf5"], batch_size=BATCH)
    assert (loader.rank, loader.world_size) == (1, 3) and len(loader) == 4
    monkeypatch.undo()
    with pytest.raises(GntkitError, match="Give both rank and world_size"):
        default_rank(rank=1)
    with pytest.raises(GntkitError, match="rank must be below world_size=2"):
        make_loader(sets["hdf5"], rank=2, world_size=2)


def test_loader_arguments_are_checked(sets, tmp_path):
    with pytest.raises(GntkitError, match="batch_size must be an integer >= 1"):
        make_loader(sets["hdf5"], batch_size=0)
    with pytest.raises(GntkitError, match="num_workers"):
        make_loader(sets["hdf5"], num_workers=-1)
    with pytest.raises(GntkitError, match="shuffle must be"):
        make_loader(sets["hdf5"], shuffle="random")
    with pytest.raises(GntkitError, match="has no split 'val'"):
        make_loader(sets["hdf5"], "val")
    with pytest.raises(GntkitError, match="expected a complete gntkit conversion"):
        ShardStream(tmp_path)


def test_drop_last_and_device(sets, truth):
    loader = make_loader(sets["hdf5"], batch_size=BATCH, drop_last=True, device="cpu", rank=0, world_size=2)
    batches = run_epoch(loader, truth)
    assert len(batches) == len(loader) == 40 // BATCH and all(len(b) == BATCH for b in batches)


def test_to_float_and_random_affine():
    images = torch.zeros((4, SIZE, SIZE), dtype=torch.uint8)
    images[:, 4:12, 6:10] = 255
    x = to_float(images)
    assert x.shape == (4, 1, SIZE, SIZE) and x.dtype == torch.float32 and x.max() == 1.0 and x.min() == 0.0
    normalised = to_float(images, mean=0.5, std=0.5)
    assert normalised.min() == -1.0 and normalised.max() == 1.0
    same = random_affine(x, rotate=0, scale=(1.0, 1.0), shear=0, translate=0)
    assert torch.allclose(same, x, atol=1e-5)  # the identity transform changes nothing
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = random_affine(x, generator=g1), random_affine(x, generator=g2)
    assert torch.equal(a, b) and not torch.allclose(a, x) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1.0
    assert not torch.allclose(a[0], a[1])  # one transform per image
    filled = random_affine(torch.ones_like(x), fill=1.0, translate=0.5, generator=g1)
    assert torch.allclose(filled, torch.ones_like(x), atol=1e-5)  # outside pixels take the fill value
    with pytest.raises(GntkitError, match="uint8 tensor"):
        to_float(x)
    with pytest.raises(GntkitError, match="float images"):
        random_affine(images)
    with pytest.raises(GntkitError, match="std must be positive"):
        to_float(images, std=0)


def test_persistent_workers_follow_the_epoch_and_restart_after_an_interrupted_pass(sets, truth):
    shards = datasets.open(sets["hdf5"])
    loader = make_loader(sets["hdf5"], batch_size=BATCH, seed=2, num_workers=2, rank=1, world_size=2)
    first = run_epoch(loader, truth)
    workers = loader._loader
    assert workers is not None
    assert first == plan(shards, 1, 2, epoch=0, seed=2)
    assert run_epoch(loader, truth) == plan(shards, 1, 2, epoch=1, seed=2)  # the same workers, told the new epoch
    assert loader._loader is workers
    loader.set_epoch(5)
    head = []
    for images, labels in loader:  # an interrupted pass: batches in flight are dropped with its workers
        head.append(identify(truth, images.numpy(), labels.numpy()))
        if len(head) == 2:
            break
    assert loader._loader is None
    assert head + run_epoch(loader, truth) == plan(shards, 1, 2, epoch=5, seed=2)
    assert loader.num_samples() == len(sum(plan(shards, 1, 2, seed=2), []))
    no_persistence = make_loader(sets["hdf5"], batch_size=BATCH, seed=2, num_workers=1, persistent_workers=False)
    run_epoch(no_persistence, truth)
    assert no_persistence._loader is None


def test_gpu_resident_loader_can_hold_only_its_ranks_share(sets, truth):
    world = 3
    seen = []
    for rank in range(world):
        resident = GpuResidentLoader(sets["tfrecord"], batch_size=BATCH, seed=6, device="cpu", rank=rank, world_size=world,
                                     hold="rank")
        share = -(-TRAIN // world)
        assert resident.images.shape == (share, SIZE, SIZE) and resident.num_samples() == share
        epochs = [run_epoch(resident, truth) for _ in range(2)]
        assert epochs[0] != epochs[1] and sorted(sum(epochs[0], [])) == sorted(sum(epochs[1], []))
        assert len(epochs[0]) == len(resident) == len(make_loader(sets["tfrecord"], batch_size=BATCH, rank=rank,
                                                                  world_size=world))
        seen += sum(epochs[0], [])
    assert sorted(set(seen)) == list(range(TRAIN))  # the shares cover the split; padding repeats a few
    one = GpuResidentLoader(sets["tfrecord"], batch_size=BATCH, seed=6, device="cpu", hold="rank")
    whole = GpuResidentLoader(sets["tfrecord"], batch_size=BATCH, seed=6, device="cpu")
    assert run_epoch(one, truth) == run_epoch(whole, truth)  # one rank: both modes give the same batches
    with pytest.raises(GntkitError, match="hold must be one of split, rank"):
        GpuResidentLoader(sets["tfrecord"], device="cpu", hold="all")
