"""LMDB shards in the layout of text-recognition toolkits (clovaai's deep-text-recognition-benchmark,
PARSeq, MMOCR): a shard is a folder holding one LMDB environment, `data.mdb`.

Keys (ASCII), samples numbered from 1 as those toolkits count them:

    num-samples        the sample count, ASCII decimal
    image-%09d         the image as an 8-bit grayscale PNG (lossless, deterministic)
    label-%09d         the label as UTF-8 text: a text line's transcription, or the character
    meta-%09d          gntkit's own fields as UTF-8 JSON with sorted keys (key, writer_id,
                       tag_code, label; label_sequence for text lines); the toolkits ignore it

The toolkits open a folder with `lmdb.open(folder, readonly=True, lock=False, readahead=False,
meminit=False)`, read `num-samples`, then `label-%09d` and `image-%09d` for each index and decode
the image with PIL; `read_shard` reads it the same way. The writer opens the environment without a
lock file (`lock=False`, it is the only writer), so a finished shard folder holds `data.mdb` only; a
reader that opens it with a lock adds `lock.mdb`, which the shard's size and digest leave out
(OutputFormat.scratch_files). One transaction per batch in a fixed order keeps `data.mdb`
byte-identical run to run.

lmdb is imported only by the writer and `read_shard`.
"""

from __future__ import annotations

import errno
import os

from gntkit.errors import GntkitError, require
from gntkit.samples.batch import SampleBatch
from gntkit.shards.recognition import (
    decode_png,
    encode_batch_pngs,
    first_shard,
    gntkit_reading,
    layout_spec,
    refuse_strokes,
    sample_meta,
    sample_of,
    sample_texts,
)
from gntkit.shards.writer import PixelView, ShardWriter

#: the address space reserved for one environment (what clovaai's create_lmdb_dataset uses): a
#: reservation only, the file grows with the data
MAP_SIZE = 1 << 40
NUM_SAMPLES = b"num-samples"


def sample_keys(index: int) -> tuple[bytes, bytes, bytes]:
    """The image, label and meta keys of sample `index` (from 1), e.g. b"image-000000001"."""
    return b"image-%09d" % index, b"label-%09d" % index, b"meta-%09d" % index


def _as_os_error(exc: Exception) -> OSError:
    """An lmdb failure as the OSError the base writer reports (a full or read-only folder)."""
    lmdb = require("lmdb", "lmdb", "Writing LMDB shards")
    code = errno.ENOSPC if isinstance(exc, lmdb.DiskError) else errno.EACCES if isinstance(exc, lmdb.ReadonlyError) else errno.EIO
    return OSError(code, os.strerror(code) if code != errno.EIO else f"LMDB: {exc}")


class LMDBWriter(ShardWriter):
    """Writes one LMDB shard folder (`data.mdb`); see the module docstring for the keys.

    Args:
        path: final shard folder (`...-00000-of-00002.lmdb`); must not exist.
        split: split name.
        attrs: shard attributes (the manifest holds them); "strokes" is refused (images and labels only).
        compression: must be None (the images are PNGs).

    Raises:
        OutputExistsError: when the folder already exists.
        GntkitError: on a compression other than None or strokes.
        MissingDependencyError: lmdb is not installed.
    """

    format = "lmdb"

    def _open(self) -> None:
        refuse_strokes("LMDB", self.path, self.strokes)
        lmdb = self._lmdb = require("lmdb", "lmdb", "Writing LMDB shards")
        os.mkdir(self.partial_path)
        try:
            self._env = lmdb.open(self.partial_path, map_size=MAP_SIZE, subdir=True, lock=False, readahead=False, meminit=True)
        except lmdb.Error as exc:
            raise _as_os_error(exc) from None

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        images, texts, metas = encode_batch_pngs(pixels), sample_texts(batch, self._batch_lines), sample_meta(batch, self._batch_lines)
        try:
            with self._env.begin(write=True) as txn:
                for i in range(len(batch)):
                    image_key, label_key, meta_key = sample_keys(self.records + i + 1)
                    txn.put(image_key, images[i])
                    txn.put(label_key, texts[i].encode("utf-8"))
                    txn.put(meta_key, metas[i])
        except self._lmdb.Error as exc:
            raise _as_os_error(exc) from None

    def _finish(self) -> tuple[int, str | None]:
        try:
            with self._env.begin(write=True) as txn:
                txn.put(NUM_SAMPLES, b"%d" % self.records)
            self._env.close()
        except self._lmdb.Error as exc:
            raise _as_os_error(exc) from None
        return os.path.getsize(os.path.join(self.partial_path, "data.mdb")), None

    def _discard(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()


def card_loading(manifest: dict, folder_name: str) -> list[str]:
    """The dataset card's "Loading" lines for LMDB output (gntkit.shards.card)."""
    first = first_shard(manifest, folder_name)
    return ["Each `*.lmdb` folder is one LMDB environment in the layout of deep-text-recognition-benchmark, PARSeq and MMOCR "
            "(`num-samples`, `image-%09d` PNG, `label-%09d` UTF-8 text, from 1). Point their LMDB dataset at a shard folder, "
            "or at this folder (deep-text-recognition-benchmark and PARSeq take every folder below it holding `data.mdb`):", "",
            "```python", "import io, lmdb", "from PIL import Image",
            f"env = lmdb.open({first!r}, readonly=True, lock=False, readahead=False, meminit=False)",
            "with env.begin() as txn:", "    n = int(txn.get(b'num-samples'))",
            "    text = txn.get(b'label-000000001').decode()", "    image = Image.open(io.BytesIO(txn.get(b'image-000000001')))",
            "```", "", gntkit_reading(folder_name)]


def feature_spec(raw: bool, image_size: int | None, strokes: bool = False, lines: bool = False) -> dict:
    """The manifest's description of LMDB shards (keys and their content).

    Raises:
        GntkitError: strokes (LMDB shards hold images and labels only).
    """
    parts = [
        {"key": "num-samples", "content": "sample count, ASCII decimal"},
        {"key": "image-%09d", "content": "8-bit grayscale PNG, lossless; samples numbered from 1"},
        {"key": "label-%09d", "content": "UTF-8 text: the line's transcription, or the character"},
        {"key": "meta-%09d", "content": "UTF-8 JSON object, sorted keys: key, writer_id, tag_code, label (+ label_sequence)"},
    ]
    layout = "a folder per shard holding an LMDB environment (data.mdb), as deep-text-recognition-benchmark, PARSeq and MMOCR read"
    return layout_spec("LMDB", "lmdb", layout, ("keys", parts), raw, image_size, strokes, lines)


def read_shard(path, compression: str | None = None):
    """Read an LMDB shard folder back as the toolkits do (for `verify`, gntkit.datasets.lines and tests).

    Args:
        path: the shard folder.
        compression: must be None.

    Yields:
        dict samples: key, writer_id, character (the label text), tag_code, label, image (2-D uint8);
        text lines also text and label_sequence (int64 (L,)).

    Raises:
        MissingDependencyError: lmdb is not installed.
        GntkitError: not an LMDB folder, or a missing or undecodable entry (named by its key).
    """
    if compression is not None:
        raise GntkitError(f"LMDB shards are never compressed, found compression {compression!r}.")
    lmdb = require("lmdb", "lmdb", "Reading LMDB shards")
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        raise GntkitError(f"{path}: expected an LMDB shard folder holding data.mdb, found none.")
    env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
    try:
        with env.begin(write=False) as txn:
            count = txn.get(NUM_SAMPLES)
            if count is None or not count.isdigit():
                raise GntkitError(f"{path}: expected the key 'num-samples' with an ASCII count, found {count!r}.")
            for index in range(1, int(count) + 1):
                keys = sample_keys(index)
                values = [txn.get(key) for key in keys]
                missing = [key.decode() for key, value in zip(keys, values) if value is None]
                if missing:
                    raise GntkitError(f"{path}: expected {int(count)} samples, found no {', '.join(missing)}.")
                where = f"{path} sample {index}"
                try:
                    text = values[1].decode("utf-8")
                except UnicodeDecodeError:
                    raise GntkitError(f"{where}: expected a UTF-8 label, found {values[1][:40]!r}.") from None
                yield sample_of(values[2], text, decode_png(values[0], where), where)
    finally:
        env.close()
