"""Raw strokes (--strokes): through the stream into all three writers, back with the stock
readers, verify, and the padded-batch loader in numpy, PyTorch and TensorFlow."""

import io

import numpy as np
import pytest

from gntkit.errors import GntkitError
from gntkit.samples.charset import builtin
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import iter_batches
from gntkit.samples.strokes import check_strokes, pad_strokes
from gntkit.tools.fixtures.pot import write_pot_corpus
from gntkit.tools.reference.pot import read_records
from gntkit.tools.synth import write_corpus

pytestmark = pytest.mark.numba

FORMATS = ["tfrecord", "hdf5", "webdataset"]


@pytest.fixture(scope="module")
def pot_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pot") / "src"
    write_pot_corpus(folder, writers=3, num_classes=5, seed=4)
    return folder


def reference_strokes(folder) -> dict:
    """key -> (points, stroke lengths) from the plain-Python reader."""
    out = {}
    for path in sorted(folder.glob("*.pot")):
        records, _, reason = read_records(path.read_bytes())
        assert reason is None
        for number, (_, _, strokes) in enumerate(records):
            out[f"{path.stem}/{number}"] = ([list(p) for s in strokes for p in s], [len(s) for s in strokes])
    return out


@pytest.mark.parametrize("to", FORMATS)
@pytest.mark.parametrize("raw", [False, True])
def test_writers_round_trip_strokes(pot_folder, tmp_path, to, raw):
    from gntkit.shards.registry import get_format_module, get_writer_class

    preprocess = Preprocess(raw=True) if raw else Preprocess(size=32)
    batches = list(iter_batches(pot_folder, builtin("gb2312-1"), preprocess, batch_size=4))
    path = tmp_path / f"shard.{to}"
    attrs = {"charset": builtin("gb2312-1").to_json(), "preprocess": preprocess.to_json(), "strokes": True}
    with get_writer_class(to)(str(path), split="train", attrs=attrs) as writer:
        for batch in batches:
            writer.write(batch)
    samples = list(get_format_module(to).read_shard(path))
    expected = reference_strokes(pot_folder)
    assert [s["key"] for s in samples] == [k for b in batches for k in b.keys] and len(samples) == len(expected) == 15
    images = [b.image(i) for b in batches for i in range(len(b))]
    for sample, image in zip(samples, images):
        points, lengths = expected[sample["key"]]
        assert sample["points"].dtype == np.int16 and sample["points"].tolist() == points
        assert sample["stroke_lengths"].dtype == np.int16 and sample["stroke_lengths"].tolist() == lengths
        assert np.array_equal(sample["image"], image)


def test_writers_without_strokes_ignore_meta_and_keep_their_spec(pot_folder, tmp_path):
    from gntkit.shards.registry import get_format_module, get_writer_class

    batch = next(iter_batches(pot_folder, builtin("gb2312-1"), Preprocess(size=32)))
    attrs = {"charset": builtin("gb2312-1").to_json(), "preprocess": Preprocess(size=32).to_json()}
    for to in FORMATS:
        module = get_format_module(to)
        assert module.feature_spec(False, 32) == module.feature_spec(False, 32, strokes=False)
        assert "strokes" in module.feature_spec(False, 32, strokes=True) and "strokes" not in module.feature_spec(False, 32)
        path = tmp_path / f"plain.{to}"
        with get_writer_class(to)(str(path), split="train", attrs=attrs) as writer:
            writer.write(batch)
        assert all("points" not in s for s in module.read_shard(path))


def test_webdataset_npy_members_are_what_np_save_writes(pot_folder, tmp_path):
    import tarfile

    from gntkit.shards.webdataset import WebDatasetWriter

    batch = next(iter_batches(pot_folder, builtin("gb2312-1"), Preprocess(size=32)))
    path = tmp_path / "s.tar"
    with WebDatasetWriter(str(path), split="train", attrs={"strokes": True}) as writer:
        writer.write(batch)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names[:5] == [f"{batch.keys[0]}{s}" for s in (".png", ".cls", ".json", ".points.npy", ".stroke_lengths.npy")]
        member = tar.extractfile(names[3]).read()
    stream = io.BytesIO()
    meta = batch.meta
    np.save(stream, meta["points"][meta["points_offsets"][0]:meta["points_offsets"][1]], allow_pickle=False)
    assert member == stream.getvalue()


def test_strokes_refused_for_sources_without_them(tmp_path, pot_folder):
    from gntkit.shards.convert import convert
    from gntkit.shards.hdf5 import HDF5Writer

    gnt = tmp_path / "gnt"
    write_corpus(gnt, writers=1, first_writer=2001, num_classes=3, samples_per_class=1)
    batch = next(iter_batches(gnt, builtin("gb2312-1"), Preprocess(size=32)))
    attrs = {"charset": {}, "preprocess": {}, "strokes": True}
    with pytest.raises(GntkitError, match="expected raw strokes"):
        with HDF5Writer(str(tmp_path / "x.h5"), split="train", attrs=attrs) as writer:
            writer.write(batch)
    with pytest.raises(GntkitError, match=r"--strokes needs online sources with strokes \(POT\), found GNT"):
        convert([gnt, pot_folder], tmp_path / "out", to="hdf5", strokes=True, workers=1, hash_sources=False)


def test_check_strokes_catches_inconsistent_meta():
    meta = {"points": np.zeros((3, 2), np.int16), "points_offsets": np.array([0, 1, 3]),
            "stroke_lengths": np.array([1, 2], np.int16), "stroke_lengths_offsets": np.array([0, 1, 2])}
    assert check_strokes(meta, 2, "b")["points"].shape == (3, 2)
    with pytest.raises(GntkitError, match="sample 1 has 2 points but its 1 stroke"):
        check_strokes({**meta, "stroke_lengths": np.array([1, 1], np.int16)}, 2, "b")
    with pytest.raises(GntkitError, match="at least one point"):
        check_strokes({**meta, "stroke_lengths": np.array([0, 3], np.int16)}, 2, "b")
    with pytest.raises(GntkitError, match="int16"):
        check_strokes({**meta, "points": np.zeros((3, 2), np.int32)}, 2, "b")
    with pytest.raises(GntkitError, match="sample 1"):  # a sample with no stroke
        check_strokes({**meta, "stroke_lengths_offsets": np.array([0, 2, 2]), "points_offsets": np.array([0, 3, 3])}, 2, "b")


def test_pad_strokes_marks_pen_ups():
    points, lengths = pad_strokes([(np.array([[1, 2], [3, 4], [5, 6]], np.int16), np.array([2, 1], np.int16)),
                                   (np.array([[7, 8]], np.int16), np.array([1], np.int16))])
    assert points.shape == (2, 3, 3) and lengths.tolist() == [3, 1]
    assert points[0].tolist() == [[1, 2, 0], [3, 4, 1], [5, 6, 1]] and points[1].tolist() == [[7, 8, 1], [0, 0, 0], [0, 0, 0]]
    cut, cut_lengths = pad_strokes([(np.array([[1, 2], [3, 4], [5, 6]], np.int16), np.array([3], np.int16))], max_points=2)
    assert cut.shape == (1, 2, 3) and cut_lengths.tolist() == [2] and cut[0, :, 2].tolist() == [0, 0]


@pytest.mark.parametrize("to", FORMATS)
def test_convert_with_strokes_verifies_and_loads(pot_folder, tmp_path, to):
    from gntkit.datasets.strokes import open_strokes
    from gntkit.shards.convert import convert
    from gntkit.shards.verify import verify

    out = tmp_path / to
    manifest = convert(pot_folder, out, to=to, preprocess=Preprocess(size=32), strokes=True, workers=1, hash_sources=False)
    assert "strokes" in manifest["features"]
    assert verify(out)["records"] == 15
    strokes = open_strokes(out)
    expected = reference_strokes(pot_folder)
    assert len(strokes) == 15 and sorted(strokes.keys) == sorted(expected)
    for i, key in enumerate(strokes.keys):
        points, lengths = strokes.sample(i)
        assert (points.tolist(), lengths.tolist()) == expected[key]
    batches = list(strokes.batches(4, seed=1))
    assert [len(b[1]) for b in batches] == [4, 4, 4, 3]
    assert sorted(int(label) for b in batches for label in b[2]) == sorted(strokes.labels.tolist())
    # the image readers skip the stroke members / features / datasets
    from gntkit.datasets import open as open_shards

    images, labels = open_shards(out).read_arrays()
    assert images.shape == (15, 32, 32) and labels.tolist() == strokes.labels.tolist()


def test_open_strokes_refuses_a_conversion_without_strokes(pot_folder, tmp_path):
    from gntkit.datasets.strokes import open_strokes
    from gntkit.shards.convert import convert

    convert(pot_folder, tmp_path / "plain", to="hdf5", preprocess=Preprocess(size=32), workers=1, hash_sources=False)
    with pytest.raises(GntkitError, match="without"):
        open_strokes(tmp_path / "plain")


def test_verify_finds_damaged_strokes(pot_folder, tmp_path):
    h5py = pytest.importorskip("h5py")
    from gntkit.shards.convert import convert
    from gntkit.shards.verify import verify

    out = tmp_path / "h5"
    manifest = convert(pot_folder, out, to="hdf5", preprocess=Preprocess(size=32), strokes=True, workers=1, hash_sources=False)
    shard = out / manifest["splits"]["all"]["shards"][0]["file"]
    with h5py.File(shard, "r+") as f:
        f["stroke_lengths"][0] = f["stroke_lengths"][0] + 1
    manifest["splits"]["all"]["shards"][0]["sha256"] = None
    from gntkit.shards.digest import sha256_file

    manifest["splits"]["all"]["shards"][0]["sha256"] = sha256_file(shard)
    manifest["splits"]["all"]["shards"][0]["bytes"] = shard.stat().st_size
    import json

    (out / "gntkit.json").write_text(json.dumps(manifest))
    with pytest.raises(GntkitError, match="stroke lengths of at least 1 adding up"):
        verify(out)


def test_frameworks_get_padded_batches(pot_folder, tmp_path):
    from gntkit.datasets.strokes import open_strokes, tf_dataset, torch_batches
    from gntkit.shards.convert import convert

    out = tmp_path / "h5"
    convert(pot_folder, out, to="hdf5", preprocess=Preprocess(size=32), strokes=True, workers=1, hash_sources=False)
    strokes = open_strokes(out)
    reference = list(strokes.batches(6, seed=2, normalize=True))
    torch = pytest.importorskip("torch")
    for (points, lengths, labels), (p, n, y) in zip(torch_batches(strokes, 6, seed=2, normalize=True), reference):
        assert points.dtype == torch.float32 and np.array_equal(points.numpy(), p) and lengths.tolist() == n.tolist()
        assert labels.tolist() == y.tolist() and 0.0 <= float(points[..., :2].min()) and float(points[..., :2].max()) <= 1.0
        packed = torch.nn.utils.rnn.pack_padded_sequence(points, lengths, batch_first=True, enforce_sorted=False)
        assert packed.data.shape == (int(lengths.sum()), 3)
    pytest.importorskip("tensorflow")
    for (points, lengths, labels), (p, n, y) in zip(tf_dataset(strokes, 6, seed=2, normalize=True), reference):
        assert np.array_equal(points.numpy(), p) and lengths.numpy().tolist() == n.tolist() and labels.numpy().tolist() == y.tolist()
