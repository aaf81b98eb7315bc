"""One sample as one PNG, for the layouts that text-recognition toolkits read (LMDB, PaddleOCR):
gntkit's record of a sample as JSON, a PNG `tEXt` chunk to carry it, and decoding with Pillow.

The images themselves come from gntkit.kernels.png (deterministic 8-bit grayscale PNGs).
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

from gntkit.errors import FormatError, GntkitError
from gntkit.samples.batch import SampleBatch

#: the fields of gntkit's record of a sample (text lines add label_sequence)
RECORD_FIELDS = ["height", "key", "label", "tag_code", "width", "writer_id"]
#: PNG signature + IHDR chunk: a tEXt chunk goes right after them
_HEADER_BYTES = 8 + 25
#: the IEND chunk every whole PNG ends with (Pillow decodes a PNG cut off after its image data)
_IEND = b"\0\0\0\0IEND\xaeB`\x82"


def sample_record(batch: SampleBatch, i: int, sequence: np.ndarray | None, ascii_only: bool = False) -> bytes:
    """Sample i's record: JSON of RECORD_FIELDS (plus label_sequence for a text line), sorted keys, no spaces.

    Args:
        batch: the batch; i: the sample.
        sequence: the line's class ids, or None for a single character.
        ascii_only: escape non-ASCII characters (for a PNG tEXt chunk, which is Latin-1).

    Returns:
        UTF-8 (or ASCII) bytes.
    """
    record = {"height": int(batch.heights[i]), "key": batch.keys[i], "label": int(batch.labels[i]),
              "tag_code": int(batch.tag_codes[i]), "width": int(batch.widths[i]), "writer_id": batch.writer_ids[i]}
    if sequence is not None:
        record["label_sequence"] = sequence.tolist()
    return json.dumps(record, sort_keys=True, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8")


def line_sequences(lines: dict | None, n: int) -> list:
    """Each sample's class ids from a batch's checked lines (gntkit.samples.lines.check_lines),
    or None per sample for single characters."""
    if lines is None:
        return [None] * n
    values, offsets = lines["label_sequence"], lines["label_sequence_offsets"]
    return [values[offsets[i]:offsets[i + 1]] for i in range(n)]


def with_text_chunk(png: bytes, keyword: str, text: bytes) -> bytes:
    """The PNG with a tEXt chunk `keyword` = `text` right after its header (readers that do not know it skip it).

    Raises:
        GntkitError: text that is not Latin-1 printable bytes without NUL.
    """
    if b"\0" in text:
        raise GntkitError(f"A PNG tEXt chunk holds text without NUL bytes, found one in {text[:40]!r}.")
    data = keyword.encode("latin-1") + b"\0" + text
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:_HEADER_BYTES] + chunk + png[_HEADER_BYTES:]


def decode_png(data: bytes, where: str, keyword: str | None = None) -> tuple[np.ndarray, str | None]:
    """An 8-bit grayscale PNG as a 2-D uint8 array, and the text of its tEXt chunk `keyword` (None when absent).

    Raises:
        FormatError: not a whole PNG (cut off before its IEND chunk), one Pillow does not decode, or not
            grayscale; `where` names the file or key.
    """
    if not data.endswith(_IEND):
        raise FormatError(where, None, "a PNG image ending in its IEND chunk", f"{len(data)} bytes ending in {bytes(data[-12:])!r}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode != "L":
                raise FormatError(where, None, "an 8-bit grayscale PNG", f"mode {image.mode}")
            pixels = np.asarray(image)
            text = image.info.get(keyword) if keyword is not None else None
    # Pillow reports damaged PNGs in several ways (OSError, ValueError, SyntaxError for a bad
    # chunk CRC, EOFError, a decompression bomb): each is one bad sample.
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise FormatError(where, None, "a PNG image", str(exc) or type(exc).__name__) from None
    return pixels, text


def sample_from_record(record: bytes | str, text: str, image: np.ndarray, where: str) -> dict:
    """A sample dict as the stock readers yield it (key, writer_id, character, tag_code, label, image;
    text and label_sequence for a text line) from its JSON record, its text and its image.

    Raises:
        FormatError: a record that is not JSON with RECORD_FIELDS.
    """
    try:
        meta = json.loads(record)
        sample = {"key": meta["key"], "writer_id": meta["writer_id"], "character": text, "tag_code": int(meta["tag_code"]),
                  "label": int(meta["label"]), "image": image}
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(where, None, f"a JSON record with {', '.join(RECORD_FIELDS)}", f"{type(exc).__name__}: {exc}") from None
    if "label_sequence" in meta:
        sample["text"] = text
        sample["label_sequence"] = np.asarray(meta["label_sequence"], np.int64)
    return sample


def text_chunk(data: bytes, keyword: str) -> str | None:
    """The text of the PNG's tEXt chunk `keyword` before its image data, without decoding the image (None when absent)."""
    wanted, pos = keyword.encode("latin-1"), 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tEXt":
            name, _, text = data[pos + 8:pos + 8 + length].partition(b"\0")
            if name == wanted:
                return text.decode("latin-1")
        pos += 12 + length
    return None
