"""What the layouts of text-recognition toolkits (gntkit.shards.lmdb, gntkit.shards.paddleocr) share:
each sample is a PNG image, a label text (a text line's transcription, or the character) and
gntkit's own fields as one JSON object; their stock readers decode the images with PIL, as the
toolkits do. numpy and the PNG kernel only; pillow when an image is decoded."""

from __future__ import annotations

import io
import json
import numbers

import numpy as np

from gntkit.errors import GntkitError
from gntkit.kernels.png import encode_pngs_ragged
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.shards.writer import PixelView


def sample_meta(batch: SampleBatch, lines: dict | None) -> list[bytes]:
    """gntkit's fields of each sample of a batch as UTF-8 JSON (sorted keys), the `meta` entry of
    both toolkit layouts; `lines` is the writer's checked text lines, or None for characters."""
    out = []
    for i in range(len(batch)):
        meta = {"key": batch.keys[i], "writer_id": batch.writer_ids[i], "tag_code": int(batch.tag_codes[i]),
                "label": int(batch.labels[i])}
        if lines is not None:
            offsets = lines["label_sequence_offsets"]
            meta["label_sequence"] = lines["label_sequence"][offsets[i]:offsets[i + 1]].tolist()
        out.append(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return out


def sample_texts(batch: SampleBatch, lines: dict | None) -> list[str]:
    """The label text of each sample: a line's transcription, or the character."""
    return list(lines["text"]) if lines is not None else list(batch.characters)


def encode_batch_pngs(pixels: PixelView) -> list[bytes]:
    """Every image of a batch as PNG file bytes (the numba batch encoder, as the WebDataset writer)."""
    data, offsets = encode_pngs_ragged(pixels.pixels, pixels.offsets, pixels.heights, pixels.widths)
    return [data[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def decode_png(data: bytes, where: str) -> np.ndarray:
    """A PNG's pixels as 2-D uint8 through PIL, as the toolkits decode their images.

    Raises:
        GntkitError: bytes PIL cannot decode.
    """
    from PIL import Image, UnidentifiedImageError  # pillow: only readers decode images

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise GntkitError(f"{where}: expected a PNG image, found bytes PIL cannot decode ({exc}).") from None


def sample_of(meta_bytes: bytes, text: str, image: np.ndarray, where: str) -> dict:
    """One sample dict of the stock readers from the stored meta JSON, label text and image.

    Raises:
        GntkitError: meta that is not a JSON object with the fields, or a label sequence whose
            presence disagrees with a label of -1.
    """
    try:
        meta = json.loads(meta_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    fields = ("key", "writer_id", "tag_code", "label")
    if not isinstance(meta, dict) or any(name not in meta for name in fields):
        raise GntkitError(f"{where}: expected gntkit's meta JSON object with {', '.join(fields)}, found {meta_bytes[:80]!r}.")
    out = {"key": meta["key"], "writer_id": meta["writer_id"], "character": text, "tag_code": int(meta["tag_code"]),
           "label": int(meta["label"]), "image": image}
    if "label_sequence" in meta:  # text lines
        out["text"] = text
        out["label_sequence"] = np.asarray(meta["label_sequence"], np.int64)
    return out


def first_shard(manifest: dict, folder_name: str) -> str:
    """The first split's first shard folder, as a path under folder_name (for the dataset card)."""
    split = next(iter(manifest["splits"]))
    return f"{folder_name}/{manifest['splits'][split]['shards'][0]['file']}"


def gntkit_reading(folder_name: str) -> str:
    """The dataset card's closing sentence: how gntkit itself checks and reads a toolkit layout."""
    return ("`gntkit verify` checks the folders; text lines load in gntkit with "
            f"`gntkit.datasets.lines.open_lines({folder_name!r})` (`gntkit.datasets.open` reads TFRecord, HDF5 and WebDataset).")


def layout_spec(title: str, name: str, layout: str, parts: tuple[str, list], raw: bool, image_size, strokes: bool,
                lines: bool) -> dict:
    """The manifest's description of a toolkit layout's shards: every sample a PNG and a label text.

    Args:
        title: the layout's name in messages; name: its output format name; layout: one sentence.
        parts: ("keys" or "files", their descriptions).

    Raises:
        GntkitError: strokes (these layouts hold images and labels only), or a fixed size that is not positive.
    """
    if strokes:
        raise GntkitError(f"{title} shards hold images and labels, found strokes asked for: use tfrecord, hdf5 or webdataset.")
    if not raw and (not isinstance(image_size, numbers.Integral) or image_size < 1):
        raise GntkitError(f"Fixed-size {title} shards need a positive image_size, found {image_size!r}.")
    spec = {"format": name, "layout": layout, parts[0]: parts[1],
            "image": {"encoding": "8-bit grayscale PNG", "raw": bool(raw), "shape": None if raw else [int(image_size), int(image_size)]}}
    if lines:
        spec["lines"] = dict(LINES_SPEC)
    return spec


def refuse_strokes(title: str, path, strokes: bool) -> None:
    """A writer of a toolkit layout refuses a conversion with --strokes before writing a byte."""
    if strokes:
        raise GntkitError(f"{path}: {title} shards hold images and labels, found a conversion with --strokes: "
                          "use --to tfrecord, hdf5 or webdataset for raw strokes.")
