"""Each ecosystem's own one-liner opens gntkit's output: `tfds.builder_from_directory` on TFRecord,
`datasets.load_dataset` on WebDataset (also streaming), with every record checked against the
sample stream the conversion consumed; the dataset card; folders in the older layout (manifest
as dataset_info.json, record indexes beside the shards) still open in gntkit's readers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gntkit.datasets as datasets
from gntkit.errors import GntkitError
from gntkit.samples.charset import Charset
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import iter_batches
from gntkit.shards.card import dataset_card
from gntkit.shards.convert import convert
from gntkit.shards.manifest import INDEX_FOLDER, LEGACY_MANIFEST, MANIFEST, load_manifest
from gntkit.shards.tfds_info import RAW_IMAGE_CLASS, RAW_IMAGE_DICT_CLASS, class_names, loader_split_names, write_tfds_metadata
from gntkit.shards.verify import verify
from gntkit.tools.synth import write_corpus

SPLIT = "train=1001-1002,test=1003"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("eco") / "src"
    write_corpus(src, writers=3, num_classes=8, samples_per_class=2, style="f", num_symbols=3)
    return src


def _convert(corpus: Path, out: Path, fmt: str, **options) -> Path:
    convert(corpus, out, to=fmt, split=SPLIT, charset="data", shard_records=9, workers=1, **options)
    return out


@pytest.fixture(scope="module")
def folders(corpus, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eco-out")
    return {fmt: _convert(corpus, root / fmt, fmt) for fmt in ("tfrecord", "webdataset", "hdf5")}


def _stream(corpus: Path, folder: Path) -> dict[str, dict[str, tuple[int, np.ndarray]]]:
    """split -> key -> (label, image) straight from the sample stream, split by writer as the conversion did."""
    manifest = load_manifest(folder)
    writers = {w: split for split, entry in manifest["splits"].items() for w in entry["writers"]}
    charset = Charset.load(folder)
    out: dict[str, dict] = {split: {} for split in manifest["splits"]}
    for batch in iter_batches(corpus, charset, Preprocess.from_json(manifest["preprocess"])):
        for i, key in enumerate(batch.keys):
            out[writers[key.split("/")[0]]][key] = (int(batch.labels[i]), batch.image(i).copy())
    return out


def _check_against_stream(expected: dict, records, what: str) -> None:
    seen = set()
    for key, label, image in records:
        assert key not in seen, f"{what}: {key} read twice"
        seen.add(key)
        want_label, want_image = expected[key]
        assert label == want_label, f"{what}: {key} has label {label}, the stream {want_label}"
        np.testing.assert_array_equal(image, want_image, err_msg=f"{what}: {key}")
    assert seen == set(expected), f"{what}: read {len(seen)} of {len(expected)} records"


# --------------------------------------------------------------------------- TensorFlow Datasets


def test_tfds_builder_from_directory_reads_every_record(corpus, folders):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = folders["tfrecord"]
    manifest, expected = load_manifest(folder), _stream(corpus, folder)
    builder = tfds.builder_from_directory(folder)
    assert set(builder.info.splits) == set(manifest["splits"])
    for split, entry in manifest["splits"].items():
        assert builder.info.splits[split].shard_lengths == [item["records"] for item in entry["shards"]]
        assert builder.info.splits[split].num_examples == entry["num_records"]
    features = builder.info.features
    assert set(features) == {"image", "height", "width", "label", "tag_code", "character", "writer_id", "key"}
    assert features["image"].shape == (64, 64, 1) and features["image"].np_dtype == np.uint8
    assert isinstance(features["image"], tfds.features.Image)
    assert features["label"].names == class_names(Charset.load(folder).characters)
    assert builder.info.supervised_keys == ("image", "label") and "Liu" in builder.info.citation
    for split in manifest["splits"]:
        records = []
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            key = ex["key"].decode()
            assert features["label"].int2str(ex["label"]) == ex["character"].decode()
            records.append((key, int(ex["label"]), ex["image"][:, :, 0]))
        _check_against_stream(expected[split], records, f"tfds {split}")


# tfds.show_examples in a process that imports tensorflow_datasets alone: TFDS itself must import
# gntkit's image features from the names in features.json. It saves what the figure drew.
_SHOW_EXAMPLES = """
import sys
import matplotlib
matplotlib.use("Agg")
import numpy as np
import tensorflow_datasets as tfds
folder, split, out = sys.argv[1:]
builder = tfds.builder_from_directory(folder)
ds = builder.as_dataset(split=split)
fig = tfds.show_examples(ds, builder.info, rows=2, cols=3)
keys = [ex["key"].decode() for ex in tfds.as_numpy(ds.take(6))]
drawn = {f"drawn{i}": np.asarray(ax.images[0].get_array()) for i, ax in enumerate(fig.axes)}
np.savez(out, keys=np.array(keys), titles=np.array([ax.get_xlabel() for ax in fig.axes]), figure=type(fig).__name__,
         gntkit_imported=any(name.startswith("gntkit") for name in sys.modules), **drawn)
"""


@pytest.mark.parametrize("raw", [False, True], ids=["fixed-size", "raw"])
def test_tfds_show_examples_draws_images_with_class_names(corpus, folders, tmp_path, raw):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("matplotlib")
    folder = _convert(corpus, tmp_path / "raw", "tfrecord", preprocess=Preprocess(raw=True)) if raw else folders["tfrecord"]
    expected, names = _stream(corpus, folder)["train"], class_names(Charset.load(folder).characters)
    out = tmp_path / "shown.npz"
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", _SHOW_EXAMPLES, str(folder), "train", str(out)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    shown = np.load(out)
    assert str(shown["figure"]) == "Figure" and len(shown["titles"]) == 6 == len(set(shown["keys"]))
    assert bool(shown["gntkit_imported"])  # by TFDS, from features.json
    for i, (key, title) in enumerate(zip(shown["keys"], shown["titles"])):
        label, image = expected[str(key)]
        assert title == f"{names[label]} ({label})", f"{key}: drawn as {title!r}"
        np.testing.assert_array_equal(shown[f"drawn{i}"], image, err_msg=f"{key}: the drawn pixels")


def test_tfds_metadata_written_again_gives_an_older_folder_the_image_feature(folders, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = tmp_path / "older"
    shutil.copytree(folders["tfrecord"], folder)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "tfds.show_examples(ds, builder.info)" in card and RAW_IMAGE_CLASS in card
    features = json.loads((folder / "features.json").read_text(encoding="utf-8"))
    features["featuresDict"]["features"]["image"] = {  # how a folder described its images as a Tensor
        "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"dtype": "uint8", "encoding": "bytes", "shape": {"dimensions": ["64", "64"]}}}
    (folder / "features.json").write_text(json.dumps(features), encoding="utf-8")
    assert tfds.builder_from_directory(folder).info.features["image"].shape == (64, 64)
    write_tfds_metadata(folder, load_manifest(folder), Charset.load(folder).characters)  # as docs/datasets.md says
    image = tfds.builder_from_directory(folder).info.features["image"]
    assert isinstance(image, tfds.features.Image) and image.shape == (64, 64, 1)


def test_raw_image_feature_reads_and_writes_the_stored_bytes(corpus, folders):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_datasets")
    from gntkit.datasets.tfds_image import RawImage, RawImageDict

    assert RAW_IMAGE_CLASS == f"{RawImage.__module__}.{RawImage.__qualname__}"
    assert RAW_IMAGE_DICT_CLASS == f"{RawImageDict.__module__}.{RawImageDict.__qualname__}"
    folder = folders["tfrecord"]
    expected = _stream(corpus, folder)["test"]
    feature = RawImage(shape=(64, 64, 1))
    shard = sorted(folder.glob("*-test.tfrecord-*"))[0]
    for record in tf.data.TFRecordDataset(str(shard)).take(4):  # TensorFlow's plain reader
        example = tf.train.Example.FromString(record.numpy()).features.feature
        stored, key = example["image"].bytes_list.value[0], example["key"].bytes_list.value[0].decode()
        image = expected[key][1]
        assert feature.encode_example(image) == stored == feature.encode_example(image[:, :, None])
        np.testing.assert_array_equal(feature.decode_example_np(stored), image[:, :, None])
        np.testing.assert_array_equal(feature.decode_example(tf.constant(stored)).numpy(), image[:, :, None])
    with pytest.raises(GntkitError, match="found 4095"):
        feature.decode_example_np(stored[:-1])
    with pytest.raises(GntkitError, match=r"found uint8 array of shape \(64, 63\)"):
        feature.encode_example(image[:, :63])
    for shape in ((None, 64, 1), (64, 64, 3), (64, 64), (0, 64, 1)):
        with pytest.raises(GntkitError, match="expected a shape"):
            RawImage(shape=shape)
    with pytest.raises(GntkitError, match="encoding format 'png'"):
        RawImage(shape=(64, 64, 1), encoding_format="png")
    varying = RawImage(shape=(None, None, 1))
    assert varying.encode_example(image[:, :63]) == image[:, :63].tobytes()
    np.testing.assert_array_equal(varying.decode_example_np(stored), image.ravel())  # RawImageDict shapes it
    with pytest.raises(GntkitError, match="variable-size RawImage"):
        RawImageDict({"image": feature, "height": np.int64, "width": np.int64})
    with pytest.raises(GntkitError, match="variable-size RawImage"):
        RawImageDict({"image": varying})


def test_tfds_variable_size_images_take_each_records_height_and_width(corpus, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = _convert(corpus, tmp_path / "raw", "tfrecord", preprocess=Preprocess(raw=True))
    expected = _stream(corpus, folder)
    builder = tfds.builder_from_directory(folder)
    assert builder.info.features["image"].shape == (None, None, 1)
    assert isinstance(builder.info.features["image"], tfds.features.Image)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "tfds.show_examples(ds, builder.info)" in card and RAW_IMAGE_CLASS in card
    for split in expected:
        records = []
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            assert ex["image"].shape == (ex["height"], ex["width"], 1)
            records.append((ex["key"].decode(), int(ex["label"]), ex["image"][:, :, 0]))
        _check_against_stream(expected[split], records, f"tfds raw {split}")
    skipped = next(iter(builder.as_dataset(split="test", decoders={"image": tfds.decode.SkipDecoding()})))
    assert skipped["image"].dtype == "string"  # a decoder that keeps the bytes gets them unshaped


def _tfds_records(ds) -> list[tuple[str, int, np.ndarray]]:
    import tensorflow_datasets as tfds
    return [(ex["key"].decode(), int(ex["label"]), ex["image"][:, :, 0]) for ex in tfds.as_numpy(ds)]


def test_tfds_reads_the_split_all_as_train_with_the_plain_one_liners(corpus, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = tmp_path / "all"
    convert(corpus, folder, to="tfrecord", charset="data", shard_records=9, workers=1)  # no --split: one split, all
    manifest, expected = load_manifest(folder), _stream(corpus, folder)["all"]
    assert list(manifest["splits"]) == ["all"]  # gntkit's name, shard names and readers keep `all`
    files = [item["file"] for item in manifest["splits"]["all"]["shards"]]
    assert all(name.startswith(f"{manifest['name']}-all.tfrecord-") for name in files) and len(files) > 1
    assert sorted(p.name for p in folder.glob("*.tfrecord-*")) == sorted(files)
    gntkit_records = datasets.open(folder, split="all")
    assert len(gntkit_records) == len(expected)
    builder = tfds.builder_from_directory(folder)
    assert list(builder.info.splits) == ["train"] and builder.info.splits["train"].num_examples == len(expected)
    assert builder.info.splits["train"].shard_lengths == [item["records"] for item in manifest["splits"]["all"]["shards"]]
    assert "split all is the TFDS split train" in builder.info.description
    every = builder.as_dataset()
    assert list(every) == ["train"]
    _check_against_stream(expected, _tfds_records(every["train"]), "tfds as_dataset()")
    _check_against_stream(expected, _tfds_records(builder.as_dataset(split="train")), "tfds split train")
    _check_against_stream(expected, _tfds_records(builder.as_dataset(split="all")), "tfds split all (every split)")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "builder.as_dataset(split='train')" in card and "gntkit's split `all` is their `train`" in card
    assert "split='all'" in card  # gntkit.datasets.open's name for it


def test_tfds_metadata_written_again_renames_an_older_folders_split_all(corpus, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = tmp_path / "older-all"
    convert(corpus, folder, to="tfrecord", charset="data", shard_records=9, workers=1)
    info = json.loads((folder / LEGACY_MANIFEST).read_text(encoding="utf-8"))
    for split in info["splits"]:  # how a folder declared the split to TFDS by gntkit's name
        split.update(name="all", filepathTemplate=f"{info['name']}-{{SPLIT}}.{{FILEFORMAT}}-{{SHARD_X_OF_Y}}")
    (folder / LEGACY_MANIFEST).write_text(json.dumps(info), encoding="utf-8")
    expected = _stream(corpus, folder)["all"]
    older = tfds.builder_from_directory(folder)
    assert list(older.info.splits) == ["all"]
    _check_against_stream(expected, _tfds_records(older.as_dataset(split=tfds.core.ReadInstruction("all"))), "tfds older all")
    write_tfds_metadata(folder, load_manifest(folder), Charset.load(folder).characters)  # as docs/datasets.md says
    builder = tfds.builder_from_directory(folder)
    assert list(builder.info.splits) == ["train"]
    _check_against_stream(expected, _tfds_records(builder.as_dataset(split="train")), "tfds rewritten")


@pytest.mark.parametrize(("splits", "expected"), [
    (["train", "test"], ["train", "test"]),
    (["all"], ["train"]),
    (["all", "val"], ["train", "val"]),
    (["all", "train", "all_writers"], ["all_writers_", "train", "all_writers"]),
])
def test_loader_split_names_rename_all_to_a_free_name(splits, expected):
    assert list(loader_split_names({"splits": dict.fromkeys(splits)}).values()) == expected
    with pytest.raises(GntkitError, match="'splits' maps split names"):
        loader_split_names({"name": "x"})


def test_tfds_reads_splits_all_and_train_side_by_side(corpus, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    folder = tmp_path / "both"
    convert(corpus, folder, to="tfrecord", split="all=1001,train=1002-1003", charset="data", shard_records=9, workers=1)
    expected = _stream(corpus, folder)
    builder = tfds.builder_from_directory(folder)
    assert set(builder.info.splits) == {"all_writers", "train"}
    _check_against_stream(expected["all"], _tfds_records(builder.as_dataset(split="all_writers")), "tfds all_writers")
    _check_against_stream(expected["train"], _tfds_records(builder.as_dataset(split="train")), "tfds train beside all")


def test_tfds_metadata_only_for_uncompressed_tfrecord(corpus, folders, tmp_path):
    gz = _convert(corpus, tmp_path / "gz", "tfrecord", compression="gzip")
    assert not (gz / LEGACY_MANIFEST).exists() and not (gz / "features.json").exists()
    assert "GZIP" in (gz / "README.md").read_text(encoding="utf-8")
    assert not (folders["webdataset"] / LEGACY_MANIFEST).exists()


def test_class_names_keep_characters_and_name_white_space_by_code_point():
    assert class_names(["啊", "0", "\u3000", "T-shirt/top"]) == ["啊", "0", "U+3000", "T-shirt/top"]


# --------------------------------------------------------------------------- Hugging Face datasets


def _hf_records(dataset):
    for row in dataset:
        image = np.asarray(row["png"])
        assert row["json"]["label"] == row["cls"] and row["json"]["key"] == row["__key__"]
        yield row["__key__"], int(row["cls"]), image


def test_load_dataset_reads_every_sample_with_class_labels(corpus, folders, tmp_path, monkeypatch):
    hf = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = folders["webdataset"]
    expected = _stream(corpus, folder)
    loaded = hf.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == set(expected)
    names = class_names(Charset.load(folder).characters)
    for split, part in loaded.items():
        assert isinstance(part.features["png"], hf.Image) and isinstance(part.features["cls"], hf.ClassLabel)
        assert part.features["cls"].names == names
        assert all(names[row["cls"]] == row["json"]["character"] for row in part)
        _check_against_stream(expected[split], _hf_records(part), f"load_dataset {split}")
    streamed = hf.load_dataset(str(folder), streaming=True)
    _check_against_stream(expected["test"], _hf_records(streamed["test"]), "load_dataset streaming")


def test_load_dataset_reads_the_split_all_as_train(corpus, tmp_path, monkeypatch):
    hf = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "all-webdataset"
    convert(corpus, folder, to="webdataset", charset="data", shard_records=9, workers=1)  # no --split: one split, all
    manifest, expected = load_manifest(folder), _stream(corpus, folder)["all"]
    assert list(manifest["splits"]) == ["all"]
    assert all(item["file"].startswith(f"{manifest['name']}-all-") for item in manifest["splits"]["all"]["shards"])
    loaded = hf.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"))
    assert list(loaded) == ["train"]
    _check_against_stream(expected, _hf_records(loaded["train"]), "load_dataset split all as train")
    streamed = hf.load_dataset(str(folder), streaming=True)
    _check_against_stream(expected, _hf_records(streamed["train"]), "load_dataset streaming split all as train")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "ds['train'].features" in card and "gntkit's split `all` is their `train`" in card


def test_card_front_matter_reads_as_the_hub_reads_it(folders):
    hub = pytest.importorskip("huggingface_hub")
    hf = pytest.importorskip("datasets")
    card = hub.DatasetCard.load(folders["webdataset"] / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "unknown"
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "src-train-*.tar"},
                                                                         {"split": "test", "path": "src-test-*.tar"}]}]
    features = hf.Features._from_yaml_list(data["dataset_info"]["features"])
    assert features["cls"].names == class_names(Charset.load(folders["webdataset"]).characters)
    assert "Online and Offline {Chinese} Handwriting Databases" in card.text and "Liu, Cheng-Lin" in card.text
    for fmt in ("tfrecord", "hdf5"):
        other = hub.DatasetCard.load(folders[fmt] / "README.md")
        assert "configs" not in other.data.to_dict() and "Citation" in other.text


def test_card_quotes_names_yaml_would_misread():
    yaml = pytest.importorskip("yaml")
    manifest = {"name": "x: y", "format": "webdataset", "gntkit_version": "0", "summary": "s", "source_formats": ["idx"],
                "charset": {"name": "c", "order": "o", "num_classes": 4}, "features": {},
                "splits": {"train": {"num_records": 1, "shards": [{"file": "f", "records": 1}]}}}
    names = ["'", "#", "\u200b", "yes"]
    front = dataset_card(manifest, names).split("---\n")[1]
    data = yaml.safe_load(front)
    assert list(data["dataset_info"]["features"][1]["dtype"]["class_label"]["names"].values()) == names
    assert data["pretty_name"] == "x: y"


# --------------------------------------------------------------------------- layout


def test_sidecar_files_out_of_the_shards_way(folders):
    for fmt in ("tfrecord", "webdataset"):
        manifest = json.loads((folders[fmt] / MANIFEST).read_text(encoding="utf-8"))
        indexes = [item["index"] for entry in manifest["splits"].values() for item in entry["shards"]]
        assert indexes and all(i.startswith(INDEX_FOLDER + "/") and (folders[fmt] / i).is_file() for i in indexes)
        assert not list(folders[fmt].glob("*.npy"))


def _old_layout(folder: Path, target: Path) -> Path:
    """A copy of a conversion as older gntkit wrote it: the manifest as dataset_info.json, indexes beside the shards."""
    shutil.copytree(folder, target)
    manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["splits"].values():
        for item in entry["shards"]:
            if item.get("index"):
                os.replace(target / item["index"], target / Path(item["index"]).name)
                item["index"] = Path(item["index"]).name
    for name in (MANIFEST, "README.md", "features.json", "label.labels.txt", LEGACY_MANIFEST):
        (target / name).unlink(missing_ok=True)
    if (target / INDEX_FOLDER).exists():
        (target / INDEX_FOLDER).rmdir()
    (target / LEGACY_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return target


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset", "hdf5"])
def test_old_layout_still_opens_and_verifies(corpus, folders, tmp_path, fmt):
    old = _old_layout(folders[fmt], tmp_path / "old")
    expected = _stream(corpus, old)
    for split in ("train", "test"):
        shards = datasets.open(old, split=split, verify=True)
        assert any(s.index is not None for s in shards.shards) == (fmt != "hdf5")
        images, labels = shards.read_arrays()  # in shard order, which is the stream's order
        _check_against_stream(expected[split], zip(expected[split], labels.tolist(), images), f"old {fmt} {split}")
    report = verify(old)
    assert report["splits"] == {split: len(records) for split, records in expected.items()}


def test_tfds_metadata_file_is_not_taken_for_a_manifest(folders, tmp_path):
    # A TFRecord folder whose gntkit.json is gone holds only TFDS's dataset_info.json: not a gntkit manifest.
    copy = tmp_path / "copy"
    shutil.copytree(folders["tfrecord"], copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(GntkitError, match="found no gntkit.json"):
        datasets.open(copy)



def test_old_layout_is_replaced_resumed_and_previewed_like_a_new_one(corpus, folders, tmp_path):
    from gntkit.shards.convert import convert
    from gntkit.shards.output import ConversionComplete
    from gntkit.tools.preview import preview

    old = _old_layout(folders["hdf5"], tmp_path / "old")
    with pytest.raises(ConversionComplete, match="already complete"):
        convert(corpus, old, to="hdf5", charset="data", resume=True)
    assert preview(old, tmp_path / "grid.png", count=4)["samples"] == 4
    convert(corpus, old, to="hdf5", charset="data", overwrite=True)  # an older gntkit output: replaced
    assert (old / MANIFEST).is_file() and not (old / LEGACY_MANIFEST).exists()
