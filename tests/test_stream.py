"""The sample stream: order, keys, labels, out-of-charset policies, skip accounting, workers."""

import numpy as np
import pytest

from gntkit.errors import CharsetError, FormatError, GntkitError
from gntkit.formats.gnt import GntFile
from gntkit.formats.sources import find_members
from gntkit.samples.charset import builtin, from_data
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.stream import StreamReport, iter_batches
from gntkit.tools.reference.gnt import read_records


def collect(batches):
    keys, labels, codes, images = [], [], [], []
    for batch in batches:
        keys += batch.keys
        labels += batch.labels.tolist()
        codes += batch.tag_codes.tolist()
        images += [batch.image(i).copy() for i in range(len(batch))]
    return keys, labels, codes, images


def test_raw_stream_matches_reference_reader(corpus_c):
    charset = builtin("gb2312-1")
    keys, labels, codes, images = collect(iter_batches(corpus_c, charset, batch_size=7))
    expected_keys, expected_images = [], []
    for path in sorted(corpus_c.glob("*.gnt")):
        records, _, reason = read_records(path.read_bytes())
        assert reason is None
        writer = path.name.split("-")[0]
        for number, (_, _code, w, h, bitmap) in enumerate(records):
            expected_keys.append(f"{writer}/{number}")
            expected_images.append(np.frombuffer(bitmap, np.uint8).reshape(h, w))
    assert keys == expected_keys
    assert all(np.array_equal(a, b) for a, b in zip(images, expected_images))
    expected_codes = [code for path in sorted(corpus_c.glob("*.gnt")) for _, code, *_ in read_records(path.read_bytes())[0]]
    assert codes == expected_codes
    assert [charset.characters[label] for label in labels] == [bytes((c >> 8, c & 0xFF)).decode("gb2312") for c in codes]


def test_symbols_dropped_and_counted_with_level1_charset(corpus_f):
    report = StreamReport()
    keys, labels, codes, _ = collect(iter_batches(corpus_f, builtin("gb2312-1"), report=report))
    assert report.records == 2 * (8 + 6) * 2
    assert report.dropped == 2 * 6 * 2 and report.kept == len(keys) == 2 * 8 * 2
    assert sum(report.outside_codes.values()) == report.dropped
    assert "dropped 24 sample(s)" in report.summary()
    assert all(code & 0xFF != 0 for code in codes)


def test_on_unknown_error_names_file_record_and_code(corpus_f):
    with pytest.raises(CharsetError, match=r"1001-f\.gnt record \d+ at byte \d+: "
                                           r"expected a character in charset 'gb2312-1', found '.' \(0x..00\)"):
        list(iter_batches(corpus_f, builtin("gb2312-1"), on_unknown="error"))


def test_on_unknown_other_maps_to_last_class(corpus_f):
    charset = builtin("gb2312-1").with_other()
    report = StreamReport()
    _, labels, codes, _ = collect(iter_batches(corpus_f, charset, on_unknown="other", report=report))
    symbols = [label for label, code in zip(labels, codes) if code & 0xFF == 0]
    assert symbols and set(symbols) == {len(charset) - 1}
    assert report.other == len(symbols) and report.dropped == 0


def test_data_charset_keeps_symbols(corpus_f):
    members = find_members(corpus_f)
    codes = np.concatenate([GntFile(m.read()).index.tag_codes for m in members])
    charset = from_data(codes)
    assert len(charset) == 14 and charset.characters[0] == "0"
    _, labels, _, _ = collect(iter_batches(members, charset))
    assert len(labels) == 56


def test_damaged_file_raise_and_skip(tmp_path, corpus_c):
    import shutil

    folder = tmp_path / "gnt"
    shutil.copytree(corpus_c, folder)
    target = folder / "1002-c.gnt"
    data = target.read_bytes()
    target.write_bytes(data[:-100])
    with pytest.raises(FormatError, match="1002-c.gnt at byte"):
        list(iter_batches(folder, builtin("gb2312-1")))
    report = StreamReport()
    keys, *_ = collect(iter_batches(folder, builtin("gb2312-1"), on_error="skip", report=report))
    assert len(keys) == 3 * 24 - 1 and report.skipped_records == 1 and report.skipped_bytes > 0
    assert report.lost_anything and "skipped 1 damaged" in report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_workers_give_identical_stream(corpus_c, parallel):
    charset = builtin("gb2312-1")
    settings = Preprocess()
    for preprocess in (None, settings):
        one = collect(iter_batches(corpus_c, charset, preprocess, batch_size=5))
        two = collect(iter_batches(corpus_c, charset, preprocess, batch_size=5, workers=2, parallel=parallel))
        assert one[:3] == two[:3]
        assert len(one[3]) == len(two[3]) and all(np.array_equal(a, b) for a, b in zip(one[3], two[3]))


def test_bad_parallel_and_hash_members(corpus_c):
    charset = builtin("gb2312-1")
    with pytest.raises(GntkitError, match="parallel must be one of threads, processes, found 'fork'"):
        next(iter_batches(corpus_c, charset, workers=2, parallel="fork"))
    with pytest.raises(GntkitError, match="hash_members must be True, False or 'archived'"):
        next(iter_batches(corpus_c, charset, hash_members="some"))


def test_open_len_and_iterate_samples(corpus_f):
    import gntkit

    source = gntkit.open(corpus_f)
    assert len(source) == 56 and len(source.charset) == 14
    samples = list(source)
    assert len(samples) == 56 and samples[0].key == "1001/0"
    first = samples[0]
    assert first.image.dtype == np.uint8 and first.image.ndim == 2
    assert first.character == source.charset.characters[first.label]
    level1 = gntkit.open(corpus_f, charset="gb2312-1")
    assert len(level1) == 32 == len(list(level1)) and level1.report.dropped == 24
    with pytest.raises(CharsetError):
        gntkit.open(corpus_f, charset="gb2312-1", on_unknown="error")
    from gntkit.samples.preprocess import Preprocess

    small = gntkit.open(corpus_f, preprocess=Preprocess(size=32))
    batch = next(small.batches(batch_size=10))
    assert batch.images.shape == (10, 32, 32) and len(small) == 56
