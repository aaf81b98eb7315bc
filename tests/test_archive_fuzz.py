"""Whole archives (zip, ALZip, gzip, zip inside zip), mutated by truncation, byte flips and inserted or
deleted bytes, read in both error modes: "raise" gives a gntkit error (never another exception type),
"skip" never raises for damage and never returns a record that the original archive does not hold."""

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gntkit.errors import GntkitError
from gntkit.formats.sources import find_members
from gntkit.samples.stream import open_member
from gntkit.tools.fixtures.alz import Member, alz_bytes
from gntkit.tools.synth import write_corpus


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """name -> bytes of small GNT files, and the set of records they hold."""
    folder = tmp_path_factory.mktemp("fuzz") / "gnt"
    files = sorted(write_corpus(folder, writers=3, num_classes=2, samples_per_class=1, style="c", num_symbols=0))
    named = {f.name: f.read_bytes() for f in files}
    records = set()
    for member in find_members(files):
        records |= records_of(member)
    return named, records


def records_of(member) -> set:
    """(tag code, width, height, bitmap bytes) of every record a member yields."""
    record_file, _ = open_member(member, on_error="skip")
    if record_file is None or len(record_file) == 0:
        return set()
    index = record_file.index
    pixels, offsets = record_file.gather(np.arange(len(record_file)))
    return {(int(index.tag_codes[i]), int(index.widths[i]), int(index.heights[i]),
             bytes(pixels[int(offsets[i]):int(offsets[i]) + int(index.widths[i]) * int(index.heights[i])]))
            for i in range(len(record_file))}


def zip_bytes(named: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in named.items():
            archive.writestr(name, data)
    return out.getvalue()


def build(kind: str, named: dict) -> tuple[str, bytes]:
    """(file name, bytes) of an archive of the given kind holding the GNT files."""
    if kind == "zip":
        return "a.zip", zip_bytes(named)
    if kind == "alz":
        return "a.alz", alz_bytes([Member(name, data, method=i % 3) for i, (name, data) in enumerate(named.items())])
    if kind == "gzip":
        name, data = next(iter(named.items()))
        return f"{name}.gz", gzip.compress(data, mtime=0)
    return "outer.zip", zip_bytes({"inner.zip": zip_bytes(named)}, zipfile.ZIP_STORED)


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
)


def mutate(data: bytes, how) -> bytes:
    at = min(int(how[1] * len(data)), len(data) - 1)
    if how[0] == "truncate":
        return data[:at]
    if how[0] == "flip":
        return data[:at] + bytes([data[at] ^ how[2]]) + data[at + 1:]
    if how[0] == "insert":
        return data[:at] + how[2] + data[at:]
    return data[:at] + data[at + how[2]:]


def read_all(path: Path, on_error: str) -> set:
    records = set()
    for member in find_members([path], on_error=on_error):
        if on_error == "raise":
            open_member(member, on_error="raise")
        records |= records_of(member)
    return records


@pytest.mark.parametrize("kind", ["zip", "alz", "gzip", "zip-in-zip"])
def test_mutated_archives_fail_cleanly_or_salvage_only_original_records(kind, originals, tmp_path_factory):
    named, original = originals
    name, data = build(kind, named)
    folder = tmp_path_factory.mktemp(kind.replace("-", "_"))
    counter = iter(range(1 << 30))

    @settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(mutation, min_size=1, max_size=3))
    def check(mutations):
        damaged = data
        for how in mutations:
            if damaged:
                damaged = mutate(damaged, how)
        path = folder / str(next(counter)) / name
        path.parent.mkdir()
        path.write_bytes(damaged)
        try:
            read_all(path, "raise")
        except GntkitError:
            pass
        try:
            kept = read_all(path, "skip")
        except GntkitError as exc:  # damage that renamed every member: no source file is left to salvage
            assert "found none" in str(exc)
            kept = set()
        assert kept <= original

    check()
