"""The dataset card (`README.md`) every output folder carries: YAML front matter that the
Hugging Face Hub and `datasets.load_dataset` read, then a short description for people.

WebDataset folders get a `configs` entry whose `data_files` name each split's shards
and a `dataset_info` whose features say what the stock `webdataset` loader of `datasets`
cannot infer: the `cls` member is a `ClassLabel` named by the charset's characters.
`datasets.load_dataset(folder)` (and the same folder pushed to the Hub unchanged) then
gives one split per gntkit split with columns `png` (an `Image`), `cls`, `json` (the
per-sample fields), `__key__` and `__url__`. TFRecord and HDF5 folders get a card without
`configs` (no `datasets` loader reads gntkit's TFRecord or HDF5 layouts): its text names
the loaders that do.

The YAML is written by hand (PyYAML is not a dependency): every scalar that is not a
plain number or identifier is a double-quoted JSON string, which YAML reads unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from gntkit.shards.manifest import INDEX_FOLDER
from gntkit.shards.registry import output_format
from gntkit.shards.tfds_info import (
    CASIA_CITATION,
    CASIA_HOMEPAGE,
    LABEL_NAMES,
    RAW_IMAGE_CLASS,
    cites_casia,
    class_names,
    has_tfds_metadata,
    loader_split_names,
)

CARD = "README.md"

# The seven fields of every sample's .json member (gntkit.shards.webdataset) and their types.
_JSON_FIELDS = {"character": "string", "height": "int64", "key": "string", "label": "int64", "tag_code": "int64", "width": "int64",
                "writer_id": "string"}


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax; escapes for what is not printable)."""
    return json.dumps(text, ensure_ascii=not text.isprintable())


def _class_label(names: list[str], indent: str) -> list[str]:
    return [f"{indent}class_label:", f"{indent}  names:", *(f"{indent}    '{i}': {_q(n)}" for i, n in enumerate(names))]


def _webdataset_features(manifest: dict, names: list[str]) -> list[str]:
    """`dataset_info.features` lines of a WebDataset folder: columns in the order the loader yields them."""
    spec = manifest["features"]
    lines = ["  - name: png", "    dtype: image", "  - name: cls", "    dtype:", *_class_label(names, "      "), "  - name: json",
             "    struct:"]
    for field, dtype in _JSON_FIELDS.items():
        lines += [f"    - name: {field}", f"      dtype: {dtype}"]
    if "strokes" in spec:
        lines += ["  - name: points.npy", "    sequence:", "      sequence: int16",
                  "  - name: stroke_lengths.npy", "    sequence: int16"]
    if "lines" in spec:
        lines += ["  - name: txt", "    dtype: string", "  - name: labels.npy", "    sequence:", *_class_label(names, "      ")]
    return lines + ["  - name: __key__", "    dtype: string", "  - name: __url__", "    dtype: string"]


def _front_matter(manifest: dict, names: list[str]) -> list[str]:
    """The YAML between the `---` lines."""
    lines = ["---", "# The licence is yours to state: the terms under which you may share this data (CASIA's databases are",
             "# licensed for research by their publisher). Replace `unknown` with a Hub licence id, or `other`.",
             "license: unknown", f"pretty_name: {_q(manifest['name'])}", "task_categories:", "- image-classification",
             "tags:", "- handwriting", "- gntkit", f"- {manifest['format']}"]
    if manifest["format"] != "webdataset":
        return lines + ["---"]
    lines += ["configs:", "- config_name: default", "  data_files:"]
    for split, loader_name in loader_split_names(manifest).items():  # `datasets` reserves `all` as TFDS does
        pattern = f"{manifest['name']}-{split}-*.tar"
        lines += [f"  - split: {_q(loader_name)}", f"    path: {_q(pattern)}"]
    # No `splits` under dataset_info: its num_bytes would be the Arrow size, which only `datasets` knows.
    return lines + ["dataset_info:", "  features:", *_webdataset_features(manifest, names), "---"]


def _how_to_load(manifest: dict, folder_name: str) -> list[str]:
    """The card's "Loading" section: the one-liners that open this format."""
    fmt, first = manifest["format"], next(iter(manifest["splits"]))
    own = getattr(output_format(fmt).writer_module(), "card_loading", None)  # a layout for other toolkits says how they read it
    if own is not None:
        return ["## Loading", "", *own(manifest, folder_name)]
    loader_names = loader_split_names(manifest)
    renamed = "".join(f"TFDS and `datasets` reserve the split name `all` (every split): gntkit's split `{split}` is their "
                      f"`{name}`, the same files. " for split, name in loader_names.items() if split != name)
    lines = ["## Loading", "", "With gntkit (every format, PyTorch and TensorFlow):", "", "```python", "import gntkit",
             f"shards = gntkit.datasets.open({folder_name!r}, split={first!r})", "```", ""]
    if fmt == "webdataset":
        lines += ["With Hugging Face `datasets` (this folder, or the Hub repository it is pushed to):", "", "```python",
                  "from datasets import load_dataset", f"ds = load_dataset({folder_name!r})  # streaming=True works too",
                  f"ds[{loader_names[first]!r}].features[\"cls\"].int2str(0)  # the character of class 0", "```", "",
                  f"{renamed}Columns: `png` (the image), `cls` (the class, a `ClassLabel` named by the characters), `json` "
                  "(key, writer_id, tag_code, character, label, height, width), `__key__`, `__url__`. "
                  "The stock `webdataset` package reads the `.tar` shards too."]
    elif has_tfds_metadata(manifest):
        lines += ["With TensorFlow Datasets (`dataset_info.json`, `features.json` and `label.labels.txt` are its metadata):", "",
                  "```python", "import tensorflow_datasets as tfds", f"builder = tfds.builder_from_directory({folder_name!r})",
                  f"ds = builder.as_dataset(split={loader_names[first]!r})",
                  "tfds.show_examples(ds, builder.info)  # a grid titled by character", "```", "",
                  f"{renamed}`image` holds the raw uint8 pixels; `features.json` declares it as gntkit's TFDS `Image` feature "
                  f"(`{RAW_IMAGE_CLASS}`), which decodes them to (height, width, 1) images: TFDS imports it by that name, so "
                  "gntkit must be installed where TFDS reads the folder (the script need not import it). "
                  f"`label` is a `ClassLabel` whose names are the characters ({LABEL_NAMES}). "
                  "`datasets.load_dataset` has no loader for TFRecord."]
    elif fmt == "tfrecord":
        lines += ["The shards are gzip-compressed TFRecord: read them with `tf.data.TFRecordDataset(files, compression_type=\"GZIP\")` "
                  "(TensorFlow Datasets reads uncompressed TFRecord only). `datasets.load_dataset` has no loader for TFRecord."]
    else:
        lines += ["With h5py: each `.h5` shard holds one dataset per field (see `gntkit.json`). `datasets.load_dataset` does "
                  "not read this layout: use gntkit or h5py."]
    return lines


def dataset_card(manifest: dict, characters: list[str], folder_name: str = "OUT") -> str:
    """The dataset card of a finished conversion: YAML front matter, description, loading, citation.

    Args:
        manifest: the conversion's manifest (gntkit's schema).
        characters: the charset's class names, class id order.
        folder_name: how the card's code examples name the folder.
    """
    names = class_names(characters)
    charset = manifest["charset"]
    indexed = any(item.get("index") for entry in manifest["splits"].values() for item in entry["shards"])
    index_note = f" The record index files (byte offsets of each record, for gntkit's readers) are in `{INDEX_FOLDER}/`." if indexed else ""
    body = ["", f"# {manifest['name']}", "",
            f"Handwriting samples converted by gntkit {manifest['gntkit_version']} to {manifest['format']} shards. "
            f"{manifest['summary']}", "",
            "| split | samples | shards |", "|---|---:|---:|",
            *(f"| {split} | {entry['num_records']:,} | {len(entry['shards'])} |" for split, entry in manifest["splits"].items()), "",
            f"Classes: {charset['num_classes']:,} (charset `{charset['name']}`: {charset['order']}); class id = line number "
            "(from 0) of `charset.txt`. `gntkit.json` records the sources, their digests, the preprocessing and every shard's "
            f"sha256.{index_note}", "",
            *_how_to_load(manifest, folder_name), "", "## Citation", ""]
    if cites_casia(manifest):
        body += [f"The samples come from the CASIA handwriting databases ({CASIA_HOMEPAGE}). Cite:", "", "```bibtex",
                 CASIA_CITATION, "```"]
    else:
        body += ["Cite the publication of the database these samples come from."]
    return "\n".join(_front_matter(manifest, names) + body) + "\n"


def write_card(folder: str | Path, manifest: dict, characters: list[str]) -> str:
    """Write `README.md`, the dataset card, into a finished output folder; returns its file name.

    The card's examples name the folder by the dataset's name, not by where it was written, so
    the same conversion gives the same bytes in any folder."""
    path = Path(folder) / CARD
    partial = path.with_name(CARD + ".partial")
    partial.write_text(dataset_card(manifest, characters, manifest["name"]), encoding="utf-8")
    partial.replace(path)
    return CARD
