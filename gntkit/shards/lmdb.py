"""LMDB shards in the layout that text-recognition toolkits read: writer, feature spec, stock reader.

clovaai's deep-text-recognition-benchmark, PARSeq and MMOCR read a folder holding one LMDB
environment (`data.mdb`) with these keys, samples numbered from 1 in each environment:

    num-samples      the sample count, ASCII decimal
    image-%09d       the sample's image, an 8-bit grayscale PNG
    label-%09d       its text, UTF-8: the line's transcription (DGRL lines) or the character
    meta-%09d        gntkit's record, UTF-8 JSON with sorted keys: key, writer_id, label,
                     tag_code, height, width (and label_sequence for text lines); the
                     toolkits ignore it

Each shard is its own folder, `NAME-SPLIT-00000-of-00004.lmdb/`, holding `data.mdb`; the
manifest lists that file (its size and sha256). The toolkits open the folder with
`lmdb.open(folder, readonly=True, lock=False)`, which needs no `lock.mdb`, so none is written.
Keys and values go in one write transaction per batch, so the file is a function of the
samples: converting twice gives the same bytes. `lmdb` is an optional package (the `lmdb`
extra), imported by the functions that use it.
"""

from __future__ import annotations

import os

import numpy as np

from gntkit.errors import FormatError, GntkitError, require
from gntkit.kernels.png import encode_pngs_ragged
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.shards.sample_png import RECORD_FIELDS, decode_png, line_sequences, sample_from_record, sample_record
from gntkit.shards.writer import PixelView, ShardWriter

#: the keys of sample i (1-based) and of the sample count
IMAGE_KEY, LABEL_KEY, META_KEY, COUNT_KEY = "image-%09d", "label-%09d", "meta-%09d", b"num-samples"
#: the LMDB data file inside each shard's folder (what LMDB opens in a folder)
DATA_FILE = "data.mdb"
#: the first map size; it doubles whenever a batch does not fit (the file holds only the pages in use)
FIRST_MAP_SIZE = 64 << 20


def _lmdb(purpose: str):
    return require("lmdb", "lmdb", purpose)


class LMDBWriter(ShardWriter):
    """Writes one LMDB environment (`data.mdb` in the shard's folder); no compression, no strokes.

    The `path` is the data file (`.../NAME.lmdb/data.mdb`); its folder is created. The
    environment is written as `data.mdb.partial` (lock-free, one process writes it) and renamed.

    Raises:
        MissingDependencyError: the lmdb package is not installed.
        GntkitError: (besides the base's) a conversion with strokes, which LMDB shards do not hold.
    """

    format = "lmdb"

    def _open(self) -> None:
        if self.strokes:
            raise GntkitError(f"{self.path}: LMDB shards hold images and texts, not strokes: convert to webdataset, "
                              "tfrecord or hdf5 for --strokes.")
        lmdb = _lmdb("Writing LMDB shards")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if os.path.exists(self.partial_path):  # left by an interrupted run: LMDB would append to it
            os.remove(self.partial_path)
        self._map_size = FIRST_MAP_SIZE
        self._env = lmdb.open(self.partial_path, map_size=self._map_size, subdir=False, lock=False, sync=False, metasync=False,
                              readahead=False, max_dbs=0)

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        data, offsets = encode_pngs_ragged(pixels.pixels, pixels.offsets, pixels.heights, pixels.widths)
        sequences = line_sequences(self._batch_lines, len(batch))
        items = []
        for i in range(len(batch)):
            number = self.records + i + 1
            items += [((IMAGE_KEY % number).encode(), data[offsets[i]:offsets[i + 1]].tobytes()),
                      ((LABEL_KEY % number).encode(), batch.characters[i].encode("utf-8")),
                      ((META_KEY % number).encode(), sample_record(batch, i, sequences[i]))]
        self._put(items)

    def _put(self, items: list) -> None:
        """Write the items in one transaction, growing the map until they fit."""
        lmdb = _lmdb("Writing LMDB shards")
        needed = sum(len(key) + len(value) for key, value in items)
        while True:
            if self._map_size < 4 * needed + (FIRST_MAP_SIZE >> 1) + os.path.getsize(self.partial_path):
                self._grow()
                continue
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value)
                return
            except lmdb.MapFullError:  # the transaction was aborted: nothing of it reached the file
                self._grow()

    def _grow(self) -> None:
        self._map_size *= 2
        self._env.set_mapsize(self._map_size)

    def _finish(self) -> tuple[int, None]:
        self._put([(COUNT_KEY, str(self.records).encode("ascii"))])
        self._env.sync(True)
        self._env.close()
        return os.path.getsize(self.partial_path), None  # the base hashes the finished file

    def _discard(self) -> None:
        self._env.close()
        if os.path.exists(self.partial_path):
            os.remove(self.partial_path)
        folder = os.path.dirname(self.path)
        if folder and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """Describe LMDB shards for the manifest (JSON-able).

    Raises:
        GntkitError: fixed-size mode without a positive image size, or strokes (not held).
    """
    if not raw and (not isinstance(image_size, (int, np.integer)) or image_size <= 0):
        raise GntkitError(f"Fixed-size LMDB shards need a positive image_size, found {image_size!r}.")
    if strokes:
        raise GntkitError("LMDB shards hold images and texts, not strokes: convert to webdataset, tfrecord or hdf5 for --strokes.")
    spec = {
        "format": "lmdb",
        "layout": f"a folder per shard holding the LMDB environment {DATA_FILE}; samples numbered from 1",
        "keys": [
            {"key": COUNT_KEY.decode(), "content": "the sample count, ASCII decimal"},
            {"key": IMAGE_KEY, "content": "8-bit grayscale PNG, lossless"},
            {"key": LABEL_KEY, "content": "UTF-8 text: the line's transcription, or the character"},
            {"key": META_KEY, "content": "UTF-8 JSON object, sorted keys"},
        ],
        "json_fields": RECORD_FIELDS + (["label_sequence"] if lines else []),
        "image": {"encoding": "8-bit grayscale PNG", "raw": bool(raw), "shape": None if raw else [int(image_size), int(image_size)]},
    }
    if lines:
        spec["lines"] = dict(LINES_SPEC)
    return spec


def read_shard(path, compression: str | None = None):
    """Read an LMDB shard back as the toolkits open it: its folder, read-only, without a lock file.

    Args:
        path: the shard's data file (`.../NAME.lmdb/data.mdb`) or its folder.
        compression: must be None.

    Yields:
        dict samples: key, writer_id, character (the label text), tag_code, label (int), image
        (2-D uint8); for text lines also text and label_sequence (int64 (L,)).

    Raises:
        MissingDependencyError: the lmdb package is not installed.
        FormatError / GntkitError: a missing key, a count that is not a number, a damaged PNG or JSON record.
    """
    if compression is not None:
        raise GntkitError(f"LMDB shards are never compressed, found compression {compression!r}.")
    folder = os.path.dirname(os.fspath(path)) if os.path.basename(os.fspath(path)) == DATA_FILE else os.fspath(path)
    env = _lmdb("Reading LMDB shards").open(folder, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin(write=False) as txn:
            for number in range(1, sample_count(txn, folder) + 1):
                yield sample_of(txn, number, folder)
    finally:
        env.close()


def sample_count(txn, where) -> int:
    """The `num-samples` value of an open LMDB transaction.

    Raises:
        GntkitError: the key is missing or not an ASCII decimal.
    """
    value = txn.get(COUNT_KEY)
    if value is None or not value.isdigit():
        raise GntkitError(f"{where}: expected the key num-samples holding an ASCII decimal count, found {value!r}.")
    return int(value)


def sample_of(txn, number: int, where) -> dict:
    """Sample `number` (1-based) of an open LMDB transaction, as `read_shard` yields it.

    Raises:
        GntkitError: one of its keys is missing; FormatError: text that is not UTF-8, a damaged PNG or JSON record.
    """
    values = {}
    for template in (IMAGE_KEY, LABEL_KEY, META_KEY):
        value = txn.get((template % number).encode())
        if value is None:
            raise GntkitError(f"{where}: expected the key {template % number} (sample {number} of num-samples), found none.")
        values[template] = value
    place = f"{where} {LABEL_KEY % number}"
    try:
        text = values[LABEL_KEY].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(place, exc.start, "UTF-8 text", f"the byte 0x{values[LABEL_KEY][exc.start]:02x}") from None
    image, _ = decode_png(values[IMAGE_KEY], f"{where} {IMAGE_KEY % number}")
    return sample_from_record(values[META_KEY], text, image, f"{where} {META_KEY % number}")
