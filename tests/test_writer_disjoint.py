"""One person, one writer: a DGRL page's writer is the number in its name, so every split
(ranges, 'all', --val-fraction) keeps all of a writer's pages on one side; sample keys stay
unique across a writer's pages; inspect and the manifest count people. Mixed GNT + POT
sources of the same writers are split alike."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gntkit.samples.inspection import inspect_sources  # noqa: E402
from gntkit.shards.convert import convert  # noqa: E402
from gntkit.shards.hdf5 import read_shard  # noqa: E402
from gntkit.tools.fixtures.dgrl import write_dgrl_corpus  # noqa: E402
from gntkit.tools.fixtures.pot import write_pot_corpus  # noqa: E402
from gntkit.tools.synth import write_corpus  # noqa: E402

LINES = {"line_height": 16, "max_line_width": 120}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages") / "HWDB2.0Train"
    write_dgrl_corpus(folder, writers=8, pages=3, lines=2)
    return folder


def _split_writers(folder: Path, manifest: dict) -> dict:
    """split -> {writer id: set of key prefixes} as the shards hold them."""
    out = {}
    for split, entry in manifest["splits"].items():
        writers: dict = {}
        for shard in entry["shards"]:
            for sample in read_shard(folder / shard["file"]):
                writers.setdefault(sample["writer_id"], set()).add(sample["key"].rsplit("/", 1)[0])
        out[split] = writers
    return out


def _assert_disjoint(by_split: dict) -> None:
    splits = list(by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not set(by_split[a]) & set(by_split[b]), f"writers in both {a} and {b}"


@pytest.mark.parametrize(("split", "val_fraction", "expected"), [
    ("all", 0.25, {"all": 6, "val": 2}),
    ("train=1-6,test=7-8", 0.34, {"train": 4, "val": 2, "test": 2}),
    ("train=1-6,test=7-8", 0.0, {"train": 6, "test": 2}),
])
def test_every_split_of_multi_page_dgrl_keeps_writers_whole(pages, tmp_path, split, val_fraction, expected):
    out = tmp_path / "out"
    manifest = convert(pages, out, to="hdf5", split=split, val_fraction=val_fraction, split_seed=3, workers=2, preprocess=LINES,
                       on_unknown="other", hash_sources=False)
    by_split = _split_writers(out, manifest)
    _assert_disjoint(by_split)
    assert {s: len(w) for s, w in by_split.items()} == expected
    for split_name, writers in by_split.items():
        assert sorted(manifest["splits"][split_name]["writers"]) == sorted(writers)
        for writer, page_keys in writers.items():  # every page of the writer, keyed by page
            assert page_keys == {f"{writer}-P{p:02d}" for p in (1, 2, 3)}
    keys = [s["key"] for e in manifest["splits"].values() for shard in e["shards"] for s in read_shard(out / shard["file"])]
    assert len(keys) == len(set(keys)) == 8 * 3 * 2


def test_inspect_counts_people_not_pages(pages):
    report = inspect_sources(pages).to_json()
    assert report["writers"] == 8 and report["files"] == 24


def test_pages_of_one_writer_in_two_folders_stay_apart_in_keys(tmp_path):
    # Pages of writer 1 given from two folders: one writer, keys by page, one page twice refused.
    write_dgrl_corpus(tmp_path / "a", writers=1, pages=2)
    write_dgrl_corpus(tmp_path / "b", writers=1, pages=1)
    from gntkit.errors import GntkitError
    from gntkit.formats.sources import find_members

    with pytest.raises(GntkitError, match="Page 001-P01 appears twice"):
        find_members([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "b" / "001-P01.dgrl").rename(tmp_path / "b" / "001-P03.dgrl")
    members = find_members([tmp_path / "a", tmp_path / "b"])
    assert [m.writer_id for m in members] == ["001"] * 3 and [m.key_base for m in members] == ["001-P01", "001-P02", "001-P03"]


def test_mixed_gnt_and_pot_sources_split_by_person(tmp_path):
    folder = tmp_path / "mixed"
    write_corpus(folder, writers=6, first_writer=1001, num_classes=4, samples_per_class=1, num_symbols=0, seed=2)
    write_pot_corpus(folder, writers=6, first_writer=1001, num_classes=4, seed=3)
    out = tmp_path / "out"
    manifest = convert(folder, out, to="hdf5", split="train=1001-1004,test=1005-1006", val_fraction=0.5, split_seed=1, workers=2,
                       preprocess={"size": 16}, charset="data", hash_sources=False)
    by_split = _split_writers(out, manifest)
    _assert_disjoint(by_split)
    assert {s: len(w) for s, w in by_split.items()} == {"train": 2, "val": 2, "test": 2}
    for writers in by_split.values():  # both formats of a person on the same side
        assert all(prefixes == {w, f"{w}.pot"} for w, prefixes in writers.items())
