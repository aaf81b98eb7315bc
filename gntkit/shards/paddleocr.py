"""PaddleOCR recognition data: PNG files and a label file per shard; writer, feature spec, stock reader.

PaddleOCR's recognition datasets (`SimpleDataSet`) read label files whose lines are

    images/train/hwdb-train-00000/000000001.png<TAB>the line's text

an image path relative to the dataset folder (`data_dir`), a tab, and the text (the line's
transcription for DGRL lines, the character for isolated characters). Each shard is one label
file, `NAME-SPLIT-00000-of-00004.txt` (the manifest lists it with its size and sha256), with its
images in `images/SPLIT/NAME-SPLIT-00000/`, numbered from 1. Each PNG carries gntkit's record of
the sample (key, writer_id, label, tag_code, height, width, and label_sequence for text lines:
JSON with sorted keys, ASCII) in a `tEXt` chunk with the keyword `gntkit`, which image readers
skip. A text may not hold a tab or a line break (the label file's separators).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.kernels.png import encode_pngs_ragged
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.shards.sample_png import RECORD_FIELDS, decode_png, line_sequences, sample_from_record, sample_record, with_text_chunk
from gntkit.shards.writer import PixelView, ShardWriter

#: the folder under the dataset folder that holds the images, and the tEXt keyword of gntkit's record
IMAGES, KEYWORD = "images", "gntkit"
#: characters a text may not hold: the label file's separators
SEPARATORS = ("\t", "\n", "\r")


def image_folder(shard_path: str, split: str) -> str:
    """The images folder of the shard written at `shard_path`, relative to the dataset folder
    (`images/SPLIT/STEM`, the stem of the shard's name when it was written: renaming it keeps it)."""
    return f"{IMAGES}/{split}/{Path(shard_path).name.removesuffix('.txt')}"


class PaddleOCRWriter(ShardWriter):
    """Writes a PaddleOCR label file (the shard) and its PNG images; no compression, no strokes.

    Raises:
        GntkitError: (besides the base's) a conversion with strokes, or a text holding a tab or line break.
    """

    format = "paddleocr"

    def _open(self) -> None:
        if self.strokes:
            raise GntkitError(f"{self.path}: PaddleOCR shards hold images and texts, not strokes: convert to webdataset, "
                              "tfrecord or hdf5 for --strokes.")
        self._root = os.path.dirname(self.path) or "."
        self._images = image_folder(self.path, self.split)
        images = os.path.join(self._root, self._images)
        if os.path.isdir(images):  # left by an interrupted run of this shard (its label file was never finished)
            shutil.rmtree(images)
        os.makedirs(images)
        self._file = open(self.partial_path, "wb")

    def _check_format(self, batch: SampleBatch, pixels: PixelView) -> None:
        for i, text in enumerate(batch.characters):
            if any(separator in text for separator in SEPARATORS):
                raise GntkitError(f"{self.path} record {self.records + i} (key {batch.keys[i]!r}): expected a text without tabs or "
                                  f"line breaks (PaddleOCR's label separators), found {text!r}.")

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        data, offsets = encode_pngs_ragged(pixels.pixels, pixels.offsets, pixels.heights, pixels.widths)
        sequences = line_sequences(self._batch_lines, len(batch))
        lines = []
        for i in range(len(batch)):
            name = f"{self._images}/{self.records + i + 1:09d}.png"
            record = sample_record(batch, i, sequences[i], ascii_only=True)
            png = with_text_chunk(data[offsets[i]:offsets[i + 1]].tobytes(), KEYWORD, record)
            with open(os.path.join(self._root, name), "wb") as image:
                image.write(png)
            lines.append(f"{name}\t{batch.characters[i]}\n")
        self._file.write("".join(lines).encode("utf-8"))

    def _finish(self) -> tuple[int, None]:
        self._file.close()
        return os.path.getsize(self.partial_path), None  # the base hashes the finished label file

    def _discard(self) -> None:
        self._file.close()
        shutil.rmtree(os.path.join(self._root, self._images), ignore_errors=True)


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """Describe PaddleOCR shards for the manifest (JSON-able).

    Raises:
        GntkitError: fixed-size mode without a positive image size, or strokes (not held).
    """
    if not raw and (not isinstance(image_size, (int, np.integer)) or image_size <= 0):
        raise GntkitError(f"Fixed-size PaddleOCR shards need a positive image_size, found {image_size!r}.")
    if strokes:
        raise GntkitError("PaddleOCR shards hold images and texts, not strokes: convert to webdataset, tfrecord or hdf5 for --strokes.")
    spec = {
        "format": "paddleocr",
        "layout": f"a label file per shard, lines `IMAGE_PATH<TAB>TEXT` (UTF-8), paths relative to the folder; "
                  f"images in {IMAGES}/SPLIT/SHARD_STEM/000000001.png ...",
        "text": "the line's transcription, or the character",
        "png_text_chunk": {"keyword": KEYWORD, "content": "JSON object, sorted keys, ASCII"},
        "json_fields": RECORD_FIELDS + (["label_sequence"] if lines else []),
        "image": {"encoding": "8-bit grayscale PNG", "raw": bool(raw), "shape": None if raw else [int(image_size), int(image_size)]},
    }
    if lines:
        spec["lines"] = dict(LINES_SPEC)
    return spec


def label_entries(path) -> list[tuple[str, str]]:
    """(image path relative to the label file's folder, text) of every line of a label file.

    Raises:
        FormatError: a line that is not `path<TAB>text`, or bytes that are not UTF-8.
    """
    data = Path(path).read_bytes()
    entries, offset = [], 0
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        fields = line.split(b"\t")
        if len(fields) != 2 or not fields[0]:
            raise FormatError(str(path), offset, "a line `image_path<TAB>text`", repr(line[:60]))
        try:
            entries.append((fields[0].decode("utf-8"), fields[1].decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise FormatError(str(path), offset + exc.start, "UTF-8 text", repr(line[:60])) from None
        offset += len(line) + 1
    return entries


def read_image(folder: Path, name: str) -> tuple[np.ndarray, str | None]:
    """The image `name` (relative to `folder`) and its gntkit record.

    Raises:
        FormatError: a missing or damaged PNG.
    """
    try:
        data = (folder / name).read_bytes()
    except OSError as exc:
        raise FormatError(str(folder / name), None, "the image the label file names", exc.strerror or str(exc)) from None
    return decode_png(data, str(folder / name), KEYWORD)


def read_shard(path, compression: str | None = None):
    """Read a PaddleOCR shard back with plain file reads: its label file, then each image it names.

    Yields:
        dict samples: key, writer_id, character (the text), tag_code, label (int), image (2-D
        uint8); for text lines also text and label_sequence (int64 (L,)).

    Raises:
        FormatError / GntkitError: a bad label line, a missing or damaged image, an image without gntkit's record.
    """
    if compression is not None:
        raise GntkitError(f"PaddleOCR shards are never compressed, found compression {compression!r}.")
    folder = Path(path).parent
    for name, text in label_entries(path):
        image, record = read_image(folder, name)
        if record is None:
            raise FormatError(str(folder / name), None, f"a PNG tEXt chunk {KEYWORD!r} with gntkit's record", "none")
        yield sample_from_record(record, text, image, str(folder / name))
