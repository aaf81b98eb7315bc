"""gntkit.datasets split by job: the format table's reader modules, the adapters' public imports and
their one-sentence hint when the framework is missing, folders with the old shard names, and the
stock tools (webdataset's brace patterns, Hugging Face `datasets`) reading gntkit's WebDataset output."""

from __future__ import annotations

import ast
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
from gntkit.shards.registry import FORMATS, output_format
from test_datasets import TRAIN, convert_sets, stock_truth

ROOT = Path(__file__).resolve().parents[1]
LOADABLE = sorted(name for name, fmt in FORMATS.items() if fmt.loadable)  # the formats gntkit.datasets reads


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    return convert_sets(tmp_path_factory.mktemp("layout"))


@pytest.fixture(scope="module")
def truth(sets):
    return {split: stock_truth(sets["hdf5"], split) for split in ("train", "test")}


@pytest.mark.parametrize("fmt", LOADABLE)
def test_format_table_names_the_reader_module(fmt):
    module = output_format(fmt).reader_module()
    assert module.__name__ == f"gntkit.datasets.{fmt}"
    assert all(callable(getattr(module, name)) for name in ("ShardReader", "prepare_bulk", "read_rows"))


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - set(LOADABLE)))
def test_a_format_without_a_reader_module_says_what_reads_it(fmt):
    with pytest.raises(GntkitError, match=r"expected a format that gntkit.datasets reads \(tfrecord, hdf5, webdataset\).*open_lines"):
        output_format(fmt).reader_module()


@pytest.mark.parametrize("adapter", ["torch", "tf"])
def test_adapters_import_public_names_only(adapter):
    tree = ast.parse((ROOT / "gntkit" / "datasets" / f"{adapter}.py").read_text(encoding="utf-8"))
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gntkit")
                for alias in node.names]
    assert imported and not [name for name in imported if name.startswith("_")]
    assert all(name in datasets.__all__ for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "gntkit.datasets"
               for name in (a.name for a in node.names))


def test_importing_the_readers_and_remote_loads_no_heavy_package():
    code = ("import sys, gntkit.datasets, gntkit.datasets.tfrecord, gntkit.datasets.hdf5, gntkit.datasets.webdataset, "
            "gntkit.shards.remote; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'h5py', 'webdataset', 'fsspec', 'aiohttp', 's3fs') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


# A meta-path finder that makes `import torch` / `import tensorflow` fail as if it were not installed.
_BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
try:
    import gntkit.datasets.{adapter}
except Exception as exc:
    print(type(exc).__name__ + ': ' + str(exc))
else:
    print('imported')
"""


@pytest.mark.parametrize("adapter, blocked, extra", [("torch", "torch", "torch"), ("tf", "tensorflow", "tensorflow")])
def test_adapter_without_its_framework_gives_one_sentence(adapter, blocked, extra):
    code = _BLOCK.format(blocked=blocked, adapter=adapter)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("MissingDependencyError: "), line
    assert f"needs the '{blocked}' package, which is not installed: run `pip install 'gntkit[{extra}]'`" in line
    assert line.count(". ") == 0 and line.endswith(".") and "\n" not in line


# --------------------------------------------------------------------------- old shard names


def _old_name(manifest: dict, split: str, fmt: str, k: int, total: int) -> str:
    """The shard name gntkit wrote before conventional names: `name-split.ext-00000-of-00002`."""
    return f"{manifest['name']}-{split}.{output_format(fmt).extension}-{k:05d}-of-{total:05d}"


@pytest.mark.parametrize("fmt", LOADABLE)
def test_folders_with_old_shard_names_still_open(sets, truth, tmp_path, fmt):
    folder = tmp_path / fmt
    shutil.copytree(sets[fmt], folder)
    manifest = json.loads((folder / "gntkit.json").read_text(encoding="utf-8"))
    renamed = 0
    for split, entry in manifest["splits"].items():
        entry.pop("pattern", None)  # folders written before conventional names had no brace pattern
        total = len(entry["shards"])
        for k, item in enumerate(entry["shards"]):
            old = _old_name(manifest, split, fmt, k, total)
            renamed += old != item["file"]
            os.replace(folder / item["file"], folder / old)
            if item.get("index"):
                os.replace(folder / item["index"], folder / f"{old}.index.npy")
                item["index"] = f"{old}.index.npy"
            item["file"] = old
    (folder / "gntkit.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert (folder / f"gnt-train.{output_format(fmt).extension}-00002-of-00003").is_file()
    shards = datasets.open(folder, verify=True)
    assert len(shards) == TRAIN
    images, labels = shards.read_arrays()
    np.testing.assert_array_equal(images, truth["train"].images)
    np.testing.assert_array_equal(labels, truth["train"].labels)
    order = np.random.default_rng(3).permutation(TRAIN)
    images, labels = shards.read_batch(order)
    np.testing.assert_array_equal(images, truth["train"].images[order])
    assert shards.get(7)[1] == truth["train"].labels[7]


# --------------------------------------------------------------------------- stock tools on gntkit's WebDataset output


def test_stock_webdataset_reads_the_manifest_brace_pattern(sets, truth):
    webdataset = pytest.importorskip("webdataset")
    folder = sets["webdataset"]
    for split in ("train", "test"):
        entry = json.loads((folder / "gntkit.json").read_text(encoding="utf-8"))["splits"][split]
        assert entry["pattern"].endswith(".tar") and "{" in entry["pattern"]
        stream = webdataset.WebDataset(str(folder / entry["pattern"]), shardshuffle=False, empty_check=True)
        samples = list(stream.decode("l8").to_tuple("__key__", "png", "cls"))
        assert [key for key, _, _ in samples] == truth[split].keys
        np.testing.assert_array_equal(np.stack([image for _, image, _ in samples]), truth[split].images)
        assert [label for _, _, label in samples] == truth[split].labels.tolist()


def test_hugging_face_datasets_reads_webdataset_output(sets, truth, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # no network: the packaged webdataset builder only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf_datasets = pytest.importorskip("datasets")
    folder = sets["webdataset"]
    files = {split: str(folder / f"gnt-{split}-*.tar") for split in ("train", "test")}  # a plain *.tar glob finds the shards
    loaded = hf_datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    for split in ("train", "test"):
        rows = loaded[split]
        assert rows.num_rows == len(truth[split])
        assert rows["__key__"] == truth[split].keys
        assert rows["cls"] == truth[split].labels.tolist()
        assert [meta["label"] for meta in rows["json"]] == truth[split].labels.tolist()
        np.testing.assert_array_equal(np.stack([np.asarray(image) for image in rows["png"]]), truth[split].images)
