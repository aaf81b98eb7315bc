"""POT through the one sample stream: rendered samples mixed with GNT in one conversion, every
writer, verify and the adapters."""

import numpy as np
import pytest

from gntkit.formats import pot
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import preprocess_chosen
from gntkit.tools.fixtures.pot import write_pot_corpus
from gntkit.tools.synth import write_corpus

pytestmark = pytest.mark.numba


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One folder: GNT writers 1001-1002 and POT writers 1003-1004, the same 6 classes."""
    folder = tmp_path_factory.mktemp("mixed") / "src"
    write_corpus(folder, writers=2, num_classes=6, samples_per_class=1, seed=3)
    write_pot_corpus(folder, writers=2, first_writer=1003, num_classes=6, seed=3)
    return folder


def test_stream_renders_pot_beside_gnt_with_writer_ids_and_labels(mixed):
    from gntkit.samples.charset import builtin
    from gntkit.samples.stream import StreamReport, iter_batches

    report = StreamReport()
    charset = builtin("gb2312-1")
    batches = list(iter_batches(mixed, charset, Preprocess(size=32, pen_width=2.0), report=report))
    assert [b.writer_ids[0] for b in batches] == ["1001", "1002", "1003", "1004"]
    assert report.records == report.kept == 24 and not report.lost_anything
    for batch in batches[2:]:
        assert batch.images.shape == (6, 32, 32) and batch.images.max() > 200 and np.median(batch.images) == 0  # inverted, like GNT
        assert sorted(batch.characters) == sorted(batches[0].characters)  # same classes, same charset
        assert batch.meta["points_offsets"][-1] == len(batch.meta["points"])
        # the images are the record file's own rendering at that pen width
        member_file = pot.open_file(np.fromfile(mixed / f"{batch.writer_ids[0]}.pot", np.uint8), "x.pot")
        assert np.array_equal(batch.images, preprocess_chosen(member_file, np.arange(6), Preprocess(size=32, pen_width=2.0)))
    raw = list(iter_batches(mixed / "1003.pot", charset, Preprocess(raw=True)))[0]
    assert raw.raw and raw.pixels.min() == 0 and raw.pixels.max() == 255


@pytest.mark.parametrize("to", ["tfrecord", "hdf5", "webdataset"])
def test_convert_mixes_gnt_and_pot_and_verifies(mixed, tmp_path, to):
    from gntkit.shards.convert import convert
    from gntkit.shards.verify import verify

    out = tmp_path / to
    manifest = convert(mixed, out, to=to, preprocess=Preprocess(size=32, pen_width=2.0), split="train=1001-1003,test=1004",
                       workers=1, hash_sources=False)
    assert manifest["splits"]["train"]["num_records"] == 18 and manifest["splits"]["test"]["num_records"] == 6
    assert manifest["preprocess"]["pen_width"] == 2.0
    assert verify(out)["records"] == 24


def test_adapters_read_rendered_pot_shards(mixed, tmp_path):
    from gntkit.datasets import open as open_shards
    from gntkit.shards.convert import convert

    out = tmp_path / "h5"
    convert(mixed, out, to="hdf5", preprocess=Preprocess(size=32), workers=1, hash_sources=False)
    shards = open_shards(out)
    images, labels = shards.read_arrays()
    assert images.shape == (24, 32, 32) and len(set(labels.tolist())) == 6
    torch_module = pytest.importorskip("torch")
    from gntkit.datasets.torch import make_loader

    batch = next(iter(make_loader(out, batch_size=8, shuffle=False)))
    assert isinstance(batch[0], torch_module.Tensor) and batch[0].shape[0] == 8
    pytest.importorskip("tensorflow")
    from gntkit.datasets.tf import make_dataset

    images_tf, labels_tf = next(iter(make_dataset(out, batch_size=8, shuffle=False)))
    assert images_tf.shape[0] == 8 and labels_tf.numpy().tolist() == labels[:8].tolist()


def test_cli_convert_pen_width_strokes_inspect_preview(mixed, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from gntkit.shards.manifest import load_manifest

    pots = tmp_path / "pots"
    pots.mkdir()
    for name in ("1003.pot", "1004.pot"):
        (pots / name).write_bytes((mixed / name).read_bytes())
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(pots)])
    assert result.exit_code == 0 and "strokes    per sample" in result.output and "points     per sample" in result.output
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(pots), "--to", "hdf5", "--out", str(out), "--size", "32", "--pen-width", "2.5",
                                 "--strokes", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = load_manifest(out)
    assert manifest["preprocess"]["pen_width"] == 2.5 and "strokes" in manifest["features"]
    assert runner.invoke(app, ["verify", str(out), "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["convert", str(mixed), "--to", "hdf5", "--out", str(tmp_path / "no"), "--strokes", "--quiet"])
    assert result.exit_code == 2 and "--strokes needs online sources" in result.output
    result = runner.invoke(app, ["preview", str(pots), "--out", str(tmp_path / "p.png"), "--count", "8"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 0


def test_raw_mode_refuses_a_pen_width_instead_of_ignoring_it():
    from gntkit.errors import GntkitError

    with pytest.raises(GntkitError, match="pen_width must be None"):
        Preprocess(raw=True, pen_width=2.0)


def test_stream_skip_counts_damaged_pot_records(tmp_path):
    from gntkit.samples.charset import builtin
    from gntkit.samples.stream import StreamReport, iter_batches

    path = write_pot_corpus(tmp_path, writers=1, num_classes=6)[0]
    data = bytearray(path.read_bytes())
    second = int.from_bytes(data[:2], "little")
    data[second + 4] = 1  # record 1: a non-zero tag byte
    path.write_bytes(bytes(data))
    report = StreamReport()
    batches = list(iter_batches(tmp_path, builtin("gb2312-1"), Preprocess(size=32), on_error="skip", report=report))
    assert sum(len(b) for b in batches) == 5 and report.skipped_records == 1 and report.lost_anything
    assert [k.split("/")[1] for k in batches[0].keys] == ["0", "2", "3", "4", "5"]
    assert "1001.pot at byte" in report.problems[0].message()


@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_parallel_streams_give_the_serial_batches(mixed, parallel):
    from gntkit.samples.charset import builtin
    from gntkit.samples.stream import iter_batches

    def collect(**options):
        batches = list(iter_batches(mixed, builtin("gb2312-1"), Preprocess(size=32), batch_size=4, **options))
        return [(b.keys, b.images.tobytes(), {k: np.asarray(v).tobytes() for k, v in b.meta.items()}) for b in batches]

    assert collect(workers=2, parallel=parallel) == collect(workers=1)


def test_same_writer_offline_and_online_mix_with_their_own_keys(tmp_path):
    # HWDB1.1 1001-c.gnt and OLHWDB1.1 1001.pot are the same person: one conversion takes both,
    # the writer stays in one split, and the POT samples' keys are kept apart from the GNT ones.
    from gntkit.errors import GntkitError
    from gntkit.formats.sources import find_members
    from gntkit.shards.convert import convert
    from gntkit.shards.verify import verify

    folder = tmp_path / "src"
    write_corpus(folder, writers=2, num_classes=4, samples_per_class=1, seed=5)
    write_pot_corpus(folder, writers=2, first_writer=1001, num_classes=4, seed=5)
    members = find_members(folder)
    assert [(m.writer_id, m.format, m.key_base) for m in members] == [
        ("1001", "gnt", "1001"), ("1001", "pot", "1001.pot"), ("1002", "gnt", "1002"), ("1002", "pot", "1002.pot")]
    manifest = convert(folder, tmp_path / "out", to="webdataset", split="train=1001,test=1002", workers=2, hash_sources=False)
    assert manifest["splits"]["train"]["num_records"] == manifest["splits"]["test"]["num_records"] == 8
    assert manifest["splits"]["train"]["writers"] == ["1001"]
    assert verify(tmp_path / "out")["records"] == 16  # verify refuses repeated keys
    write_pot_corpus(tmp_path / "again", writers=1, first_writer=1001, num_classes=4, seed=5)
    with pytest.raises(GntkitError, match="Writer id 1001 appears twice"):
        find_members([folder, tmp_path / "again"])
