"""PaddleOCR recognition shards: a shard is a folder of PNG images and PaddleOCR's label file.

    label.txt              one line per sample: `images/000000001.png<TAB>text` (UTF-8, LF), the
                           image path relative to the shard folder, the text a line's
                           transcription or the character
    images/000000001.png   8-bit grayscale PNG (lossless, deterministic), samples numbered from 1
    gntkit-meta.jsonl      gntkit's own fields, one UTF-8 JSON object (sorted keys) per line in the
                           same order: key, writer_id, tag_code, label (+ label_sequence for text lines)

PaddleOCR's SimpleDataSet takes it as `data_dir: <shard folder>` and `label_file_list:
[<shard folder>/label.txt]`; it splits each line at the tab and joins the path to data_dir.
A shard is self-contained (paths are relative to it), so it can be moved or renamed. A text
holding a tab or a line break cannot be written in the label file and is refused.
"""

from __future__ import annotations

import os

from gntkit.errors import GntkitError
from gntkit.samples.batch import SampleBatch
from gntkit.shards.manifest import is_plain_name
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

LABEL_FILE = "label.txt"
META_FILE = "gntkit-meta.jsonl"
IMAGES = "images"


def image_name(index: int) -> str:
    """The label file's path of sample `index` (from 1): `images/000000001.png`."""
    return f"{IMAGES}/{index:09d}.png"


class PaddleOCRWriter(ShardWriter):
    """Writes one PaddleOCR shard folder; see the module docstring for the layout.

    Args:
        path: final shard folder (`...-00000-of-00002.paddleocr`); must not exist.
        split: split name.
        attrs: shard attributes (the manifest holds them); "strokes" is refused (images and labels only).
        compression: must be None (the images are PNGs).

    Raises:
        OutputExistsError: when the folder already exists.
        GntkitError: on a compression other than None, or strokes.
    """

    format = "paddleocr"

    def _open(self) -> None:
        refuse_strokes("PaddleOCR", self.path, self.strokes)
        self._labels = self._meta = None
        os.mkdir(self.partial_path)
        os.mkdir(os.path.join(self.partial_path, IMAGES))
        self._labels = open(os.path.join(self.partial_path, LABEL_FILE), "wb")  # noqa: SIM115 - closed in _finish / _discard
        self._meta = open(os.path.join(self.partial_path, META_FILE), "wb")  # noqa: SIM115
        self._bytes = 0

    def _check_format(self, batch: SampleBatch, pixels: PixelView) -> None:
        for i, text in enumerate(sample_texts(batch, self._batch_lines)):
            if "\t" in text or "\n" in text or "\r" in text:
                raise GntkitError(f"batch starting at record {self.records} of {self.path}: record {i} (key {batch.keys[i]!r}) has a "
                                  f"text with a tab or line break, which PaddleOCR's label file cannot hold: {text[:40]!r}.")

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        images, texts = encode_batch_pngs(pixels), sample_texts(batch, self._batch_lines)
        labels = []
        for i, image in enumerate(images):
            name = image_name(self.records + i + 1)
            with open(os.path.join(self.partial_path, name), "wb") as f:
                f.write(image)
            labels.append(f"{name}\t{texts[i]}\n")
        label_bytes = "".join(labels).encode("utf-8")
        meta_bytes = b"".join(m + b"\n" for m in sample_meta(batch, self._batch_lines))
        self._labels.write(label_bytes)
        self._meta.write(meta_bytes)
        self._bytes += sum(map(len, images)) + len(label_bytes) + len(meta_bytes)

    def _finish(self) -> tuple[int, str | None]:
        self._labels.close()
        self._meta.close()
        return self._bytes, None

    def _discard(self) -> None:
        for file in (self._labels, self._meta):
            if file is not None:
                file.close()


def card_loading(manifest: dict, folder_name: str) -> list[str]:
    """The dataset card's "Loading" lines for PaddleOCR output (gntkit.shards.card)."""
    first = first_shard(manifest, folder_name)
    return ["Each `*.paddleocr` folder is a PaddleOCR recognition set: `label.txt` (`images/%09d.png<TAB>text` per line, paths "
            "relative to the folder) and the PNG images. In a PaddleOCR config (SimpleDataSet):", "",
            "```yaml", "dataset:", "  name: SimpleDataSet", f"  data_dir: {first}", f"  label_file_list: [{first}/label.txt]", "```", "",
            gntkit_reading(folder_name)]


def feature_spec(raw: bool, image_size: int | None, strokes: bool = False, lines: bool = False) -> dict:
    """The manifest's description of PaddleOCR shards (files and their content).

    Raises:
        GntkitError: strokes (PaddleOCR shards hold images and labels only).
    """
    parts = [
        {"name": LABEL_FILE, "content": "UTF-8 lines `images/%09d.png<TAB>text`, samples numbered from 1"},
        {"name": f"{IMAGES}/%09d.png", "content": "8-bit grayscale PNG, lossless"},
        {"name": META_FILE,
         "content": "one UTF-8 JSON object per sample, sorted keys: key, writer_id, tag_code, label (+ label_sequence)"},
    ]
    layout = "a folder per shard: PaddleOCR's recognition label file and the images it names (data_dir = the shard folder)"
    return layout_spec("PaddleOCR", "paddleocr", layout, ("files", parts), raw, image_size, strokes, lines)


def _read_lines(path: str, name: str) -> list[bytes]:
    try:
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise GntkitError(f"{path}: expected a PaddleOCR shard folder with {name}, found none ({exc.strerror or exc}).") from None
    if data and not data.endswith(b"\n"):
        raise GntkitError(f"{os.path.join(path, name)}: expected lines ending in a line feed, found a last line without one.")
    return data.split(b"\n")[:-1]


def read_shard(path, compression: str | None = None):
    """Read a PaddleOCR shard folder back as PaddleOCR's SimpleDataSet does (for `verify`,
    gntkit.datasets.lines and tests): the label file's lines split at the tab, each image path
    joined to the folder and decoded with PIL, gntkit's fields from the meta file.

    Args:
        path: the shard folder.
        compression: must be None.

    Yields:
        dict samples: key, writer_id, character (the label text), tag_code, label, image (2-D uint8);
        text lines also text and label_sequence (int64 (L,)).

    Raises:
        GntkitError: a missing file, a label line without a tab, an image path outside the
            folder's images, or label and meta files of different lengths.
    """
    if compression is not None:
        raise GntkitError(f"PaddleOCR shards are never compressed, found compression {compression!r}.")
    path = os.fspath(path)
    labels, metas = _read_lines(path, LABEL_FILE), _read_lines(path, META_FILE)
    if len(labels) != len(metas):
        raise GntkitError(f"{path}: expected as many lines in {META_FILE} as in {LABEL_FILE} ({len(labels)}), found {len(metas)}.")
    for i, (line, meta) in enumerate(zip(labels, metas)):
        where = f"{os.path.join(path, LABEL_FILE)} line {i + 1}"
        try:
            name, text = line.decode("utf-8").split("\t", 1)
        except (UnicodeDecodeError, ValueError):
            raise GntkitError(f"{where}: expected UTF-8 `image path<TAB>text`, found {line[:60]!r}.") from None
        folder, _, file = name.partition("/")
        if folder != IMAGES or not is_plain_name(file):
            raise GntkitError(f"{where}: expected an image path {IMAGES}/<file name> inside the shard, found {name[:80]!r}.")
        try:
            with open(os.path.join(path, name), "rb") as f:
                data = f.read()
        except OSError as exc:
            raise GntkitError(f"{where}: cannot read its image {name} ({exc.strerror or exc}).") from None
        yield sample_of(meta, text, decode_png(data, f"{where} ({name})"), where)


__all__ = ["PaddleOCRWriter", "feature_spec", "read_shard", "image_name", "LABEL_FILE", "META_FILE"]
