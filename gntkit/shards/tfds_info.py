"""TensorFlow Datasets metadata for TFRecord output: `dataset_info.json`, `features.json` and
`label.labels.txt`, so that `tfds.builder_from_directory(folder)` opens a conversion.

The files follow what TFDS writes for a prepared dataset (`DatasetInfo` and `Feature`
protos as JSON, tensorflow_datasets/core/dataset_info.py and features/) and are written
with the json module: TensorFlow is not needed to write them.

How gntkit's Example features are described:

- `image` holds raw uint8 pixels, not PNG, which TFDS's own `Image` feature cannot decode.
  It is declared as gntkit's `Image` subclass (`RAW_IMAGE_CLASS`, gntkit.datasets.tfds_image),
  which decodes the pixels to (height, width, 1) uint8 images, so `tfds.show_examples` draws
  them: shape (S, S, 1) for fixed-size output. Variable-size images (raw bitmaps, text lines)
  have no size one feature can state, and a feature decodes its own bytes only, so there the
  FeaturesDict is gntkit's subclass (`RAW_IMAGE_DICT_CLASS`), which shapes each image with its
  record's `height` and `width`. TFDS imports both classes by name, so gntkit must be
  installed where TFDS reads the folder.
- `label` is a `ClassLabel` whose names (`label.labels.txt`) are the charset's characters
  (text lines: the class ids of `label_sequence`, a plain int64 `label` of -1).
- strings are `Text`; `points` and `stroke_lengths` are int16 tensors stored as bytes.

TFDS reserves the split name `all` (the union of every split): gntkit's split `all` (a
conversion without --split) is declared to TFDS as `train` (`loader_split_names`, which the
dataset card's Hugging Face configs use too: `datasets` reserves `all` as well), and its
`filepathTemplate` names the shards' own files, `NAME-all.tfrecord-...`.

TFDS reads uncompressed TFRecord only: gzip output gets no TFDS metadata.
"""

from __future__ import annotations

from pathlib import Path

from gntkit.errors import GntkitError
from gntkit.shards.manifest import LEGACY_MANIFEST, write_json_atomic

TFDS_INFO = LEGACY_MANIFEST  # TFDS's file name, which TFDS alone reads in new folders
TFDS_FEATURES = "features.json"
LABEL_NAMES = "label.labels.txt"
#: the dataset version TFDS requires (x.y.z); it names the layout, not gntkit's release
TFDS_VERSION = "1.0.0"

_FEATURES = "tensorflow_datasets.core.features."
#: gntkit's TFDS features of raw-pixel images, imported by TFDS from features.json (names that
#: folders keep: moving a class needs an alias, FeatureConnector.ALIASES)
RAW_IMAGE_CLASS = "gntkit.datasets.tfds_image.RawImage"
RAW_IMAGE_DICT_CLASS = "gntkit.datasets.tfds_image.RawImageDict"
_CASIA_FORMATS = {"gnt", "pot", "dgrl"}

CASIA_CITATION = """@inproceedings{liu2011casia,
  title     = {{CASIA} Online and Offline {Chinese} Handwriting Databases},
  author    = {Liu, Cheng-Lin and Yin, Fei and Wang, Da-Han and Wang, Qiu-Feng},
  booktitle = {2011 International Conference on Document Analysis and Recognition (ICDAR)},
  pages     = {37--41},
  year      = {2011},
  doi       = {10.1109/ICDAR.2011.17}
}"""
CASIA_HOMEPAGE = "https://nlpr.ia.ac.cn/databases/handwriting/Home.html"


def class_names(characters: list[str]) -> list[str]:
    """Class names for the ecosystems' label features: each class's character, except that
    a class whose name has leading or trailing white space (U+3000, the ideographic space,
    is one of GB2312's symbols) is named by its code point, `U+3000`: TFDS strips white
    space from every line of a names file, which would lose or merge such names."""
    return [name if name == name.strip() else "+".join(f"U+{ord(c):04X}" for c in name) for name in characters]


def cites_casia(manifest: dict) -> bool:
    """Whether the conversion read CASIA files (gnt, pot, dgrl), whose publication the metadata cites."""
    return bool(_CASIA_FORMATS & set(manifest.get("source_formats", ())))


def image_size(manifest: dict) -> tuple[int, int]:
    """(S, S) for fixed-size images; (-1, -1) where each record has its own `height` and `width`
    (raw bitmaps, text lines)."""
    spec = manifest["features"]
    shape = spec["image"].get("shape")
    return tuple(shape) if shape and not spec.get("lines") else (-1, -1)


def _tensor(dtype: str, shape=(), encoding: str = "none") -> dict:
    dims = {"dimensions": [str(d) for d in shape]} if shape else {}
    return {"pythonClassName": _FEATURES + "tensor_feature.Tensor", "tensor": {"dtype": dtype, "encoding": encoding, "shape": dims}}


def _feature(name: str, dtype: str, manifest: dict) -> dict:
    """The TFDS Feature (as JSON) of one Example feature of gntkit's feature spec."""
    spec = manifest["features"]
    if name == "image":
        return {"pythonClassName": RAW_IMAGE_CLASS,
                "image": {"shape": {"dimensions": [str(d) for d in (*image_size(manifest), 1)]}, "dtype": "uint8"}}
    if name == "label" and "lines" not in spec:
        return {"pythonClassName": _FEATURES + "class_label_feature.ClassLabel",
                "classLabel": {"numClasses": str(manifest["charset"]["num_classes"])}}
    if name == "points":
        return _tensor("int16", (-1, 2), "bytes")
    if name == "stroke_lengths":
        return _tensor("int16", (-1,), "bytes")
    if dtype == "string":
        return {"pythonClassName": _FEATURES + "text_feature.Text", "text": {}}
    if dtype == "int64":
        return _tensor("int64")
    if dtype == "int64_list":
        return {"pythonClassName": _FEATURES + "sequence_feature.Sequence", "sequence": {"feature": _tensor("int64"), "length": "-1"}}
    raise GntkitError(f"feature {name!r} of the manifest: expected dtype string, int64 or int64_list, found {dtype!r}.")


def features_json(manifest: dict) -> dict:
    """TFDS's `features.json`: a FeaturesDict of every Example feature the manifest lists."""
    features = {item["name"]: _feature(item["name"], item["dtype"], manifest) for item in manifest["features"]["features"]}
    top = _FEATURES + "features_dict.FeaturesDict" if image_size(manifest)[0] > 0 else RAW_IMAGE_DICT_CLASS
    return {"pythonClassName": top, "featuresDict": {"features": dict(sorted(features.items()))}}


def loader_split_names(manifest: dict) -> dict[str, str]:
    """gntkit split name -> the name the stock loaders (TFDS, Hugging Face `datasets`) know it by:
    the same name, except `all`, which both reserve for the union of every split and which
    becomes `train` (or, where the conversion has a `train` split too, `all_writers`, then with
    more underscores until the name is free).

    Raises:
        GntkitError: a manifest without a mapping of splits.
    """
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        found = f"keys {sorted(manifest)}" if isinstance(manifest, dict) else type(manifest).__name__
        raise GntkitError(f"manifest: expected a dict whose 'splits' maps split names to splits, found {found}.")
    names = list(manifest["splits"])
    if "all" not in names:
        return {split: split for split in names}
    free = "train" if "train" not in names else "all_writers"
    while free in names:
        free += "_"
    return {split: free if split == "all" else split for split in names}


def dataset_info_json(manifest: dict) -> dict:
    """TFDS's `dataset_info.json` (the DatasetInfo proto as JSON): name, version, splits with
    their shard lengths and bytes, the shard file names, description and citation."""
    name, renamed = manifest["name"], loader_split_names(manifest)
    # The template names each split's files literally: a split TFDS knows by another name keeps its files.
    splits = [{"name": tfds_name, "filepathTemplate": f"{name}-{split}.{{FILEFORMAT}}-{{SHARD_X_OF_Y}}",
               "shardLengths": [str(item["records"]) for item in manifest["splits"][split]["shards"]],
               "numBytes": str(sum(item.get("bytes") or 0 for item in manifest["splits"][split]["shards"]))}
              for split, tfds_name in renamed.items()]
    aliases = "".join(f" gntkit's split {split} is the TFDS split {tfds}." for split, tfds in renamed.items() if split != tfds)
    info = {
        "name": name,
        "version": TFDS_VERSION,
        "description": (f"{manifest['summary']} Converted by gntkit {manifest['gntkit_version']} "
                        f"(charset {manifest['charset']['name']}, {manifest['charset']['num_classes']} classes); "
                        f"gntkit.json holds the full manifest.{aliases}"),
        "fileFormat": "tfrecord",
        "moduleName": "gntkit",
        "splits": splits,
    }
    if "lines" not in manifest["features"]:
        info["supervisedKeys"] = {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}}
    if cites_casia(manifest):
        info["citation"] = CASIA_CITATION
        info["location"] = {"urls": [CASIA_HOMEPAGE]}
    return info


def has_tfds_metadata(manifest: dict) -> bool:
    """Whether a conversion gets TFDS metadata: uncompressed TFRecord output (TFDS reads no gzip)."""
    return manifest["format"] == "tfrecord" and not manifest.get("compression")


def write_tfds_metadata(folder: str | Path, manifest: dict, characters: list[str]) -> list[str]:
    """Write TFDS's metadata files for a finished TFRecord conversion (nothing for other formats or gzip).

    Args:
        folder: the output folder, holding the shards the manifest lists.
        manifest: the conversion's manifest (gntkit's schema).
        characters: the charset's class names, class id order.

    Returns:
        The file names written.
    """
    if not has_tfds_metadata(manifest):
        return []
    folder = Path(folder)
    written = [TFDS_FEATURES, TFDS_INFO]
    if "lines" not in manifest["features"]:
        partial = folder / (LABEL_NAMES + ".partial")
        partial.write_text("\n".join(class_names(characters)) + "\n", encoding="utf-8")
        partial.replace(folder / LABEL_NAMES)
        written.insert(0, LABEL_NAMES)
    write_json_atomic(folder / TFDS_FEATURES, features_json(manifest))
    write_json_atomic(folder / TFDS_INFO, dataset_info_json(manifest))
    return written
