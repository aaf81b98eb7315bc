"""TFRecord shards of `tf.train.Example`s, written without TensorFlow.

Every batch becomes one buffer in two kernel calls: `_example_sizes` computes each
record's serialized size, and `_write_frames` writes all Examples with their
framing (length, masked CRC32C of the length, data, masked CRC32C of the data)
into one preallocated uint8 array, computing each CRC right after the record is
written, while it is in cache. Strings reach the kernels as one UTF-8 buffer and
offsets per column; nothing in the loop is a Python object.

Protobuf wire format written here (field number << 3 | wire type 2 = 0x0A, 0x12, 0x1A):

    Example  { 1: Features }
    Features { 1: repeated MapEntry }           map<string, Feature>, keys sorted
    MapEntry { 1: key string, 2: value Feature }
    Feature  { 1: BytesList | 3: Int64List }
    BytesList{ 1: repeated bytes }
    Int64List{ 1: packed varint }

TensorFlow is imported only by `tf_feature_description` and `read_shard`.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.jit import njit
from gntkit.kernels.crc32c import crc32c_update, mask_crc
from gntkit.samples.batch import SampleBatch
from gntkit.shards.writer import PixelView, ShardSink, ShardWriter, utf8_column

#: Features of every Example, in the order of docs/architecture.md: (name, dtype).
FEATURES: tuple[tuple[str, str], ...] = (
    ("image", "string"),
    ("height", "int64"),
    ("width", "int64"),
    ("label", "int64"),
    ("tag_code", "int64"),
    ("character", "string"),
    ("writer_id", "string"),
    ("key", "string"),
)

#: With strokes (attrs "strokes", online sources) every Example also has these bytes features:
#: int16 little-endian x, y pairs, and int16 little-endian points per stroke.
STROKE_FEATURES: tuple[tuple[str, str], ...] = (("points", "string"), ("stroke_lengths", "string"))

#: With text lines (attrs "lines") every Example also has these: the transcription (UTF-8 bytes)
#: and the class ids of its characters (an int64 list, what tf.io.VarLenFeature(tf.int64) parses).
LINE_FEATURES: tuple[tuple[str, str], ...] = (("text", "string"), ("label_sequence", "int64_list"))

IMAGE_ENCODING = "raw uint8, row-major, height x width"

# Kernel inputs: text columns (UTF-8 buffer + offsets) and int64 columns, by position. The
# stroke columns are bytes columns of the same kind, after the text ones.
_TEXT_COLUMNS = ("character", "writer_id", "key")
_BYTES_COLUMNS = _TEXT_COLUMNS + ("points", "stroke_lengths")
_INT_COLUMNS = ("height", "width", "label", "tag_code")
_KIND_IMAGE, _KIND_TEXT, _KIND_INT = 0, 1, 2


def _field_table(features=FEATURES):
    """Sorted feature names as one byte buffer + offsets, with each field's kind and column."""
    names = sorted(name for name, _ in features)
    encoded = [name.encode("ascii") for name in names]
    name_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
    name_offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=name_offsets[1:])
    kinds = np.empty(len(names), dtype=np.int64)
    columns = np.zeros(len(names), dtype=np.int64)
    for f, name in enumerate(names):
        if name == "image":
            kinds[f] = _KIND_IMAGE
        elif name in _BYTES_COLUMNS:
            kinds[f], columns[f] = _KIND_TEXT, _BYTES_COLUMNS.index(name)
        else:
            kinds[f], columns[f] = _KIND_INT, _INT_COLUMNS.index(name)
    return name_bytes, name_offsets, kinds, columns


_NAMES, _NAME_OFFSETS, _KINDS, _COLUMNS = _field_table()
_STROKE_TABLE = _field_table(FEATURES + STROKE_FEATURES)


# --------------------------------------------------------------------------- kernels
@njit
def _varint_size(value):
    """Bytes of the protobuf varint of an int64 (negatives take 10)."""
    if value < 0:
        return 10
    size = 1
    while value >= 128:
        value >>= 7
        size += 1
    return size


@njit
def _put_varint(out, pos, value):
    """Write the varint of an int64 at out[pos]; return the position after it."""
    if value < 0:
        # The uint64 two's complement: bits 0..62 come out of the arithmetic shift
        # unchanged, and the tenth byte carries bit 63 alone.
        for k in range(9):
            out[pos + k] = ((value >> (7 * k)) & 127) | 128
        out[pos + 9] = 1
        return pos + 10
    while value >= 128:
        out[pos] = (value & 127) | 128
        value >>= 7
        pos += 1
    out[pos] = value
    return pos + 1


@njit
def _feature_value_size(kind, column, i, pixel_offsets, text_offsets, ints):
    """Size of the Feature message of field (kind, column) of record i."""
    if kind == _KIND_INT:
        packed = _varint_size(ints[column, i])
        inner = 1 + _varint_size(packed) + packed
    else:
        if kind == _KIND_IMAGE:
            length = pixel_offsets[i + 1] - pixel_offsets[i]
        else:
            length = text_offsets[column, i + 1] - text_offsets[column, i]
        inner = 1 + _varint_size(length) + length
    return 1 + _varint_size(inner) + inner


@njit
def _example_sizes(pixel_offsets, text_offsets, ints, name_offsets, kinds, columns, feature_sizes, features_sizes, sizes):
    """Sizes of record i: its Feature f (feature_sizes[i, f]), Features message, serialized Example."""
    for i in range(sizes.shape[0]):
        features = 0
        for f in range(kinds.shape[0]):
            name_len = name_offsets[f + 1] - name_offsets[f]
            feature = _feature_value_size(kinds[f], columns[f], i, pixel_offsets, text_offsets, ints)
            feature_sizes[i, f] = feature
            entry = 1 + _varint_size(name_len) + name_len + 1 + _varint_size(feature) + feature
            features += 1 + _varint_size(entry) + entry
        features_sizes[i] = features
        sizes[i] = 1 + _varint_size(features) + features


@njit
def _put_masked_crc(out, pos, start, end):
    """Write the little-endian masked CRC32C of out[start:end] at out[pos:pos+4]."""
    masked = mask_crc(crc32c_update(0, out, start, end))
    for k in range(4):
        out[pos + k] = (masked >> (8 * k)) & 255


@njit
def _copy(src, src_start, out, pos, length):
    """out[pos:pos+length] = src[src_start:src_start+length]; returns pos + length.

    A loop over two views: LLVM vectorizes it, about 2x numba's slice assignment and
    10x a loop over offset indices (which keeps negative-index handling per byte).
    """
    source = src[src_start:src_start + length]
    target = out[pos:pos + length]
    for k in range(length):
        target[k] = source[k]
    return pos + length


@njit
def _write_frames(pixels, pixel_offsets, text, text_offsets, ints,
                  names, name_offsets, kinds, columns, feature_sizes, features_sizes, sizes, frame_offsets, out):
    """Write record i's TFRecord frame at out[frame_offsets[i]:frame_offsets[i+1]] for every i."""
    for i in range(sizes.shape[0]):
        pos = frame_offsets[i]
        length = sizes[i]
        for k in range(8):
            out[pos + k] = (length >> (8 * k)) & 255
        _put_masked_crc(out, pos + 8, pos, pos + 8)
        pos += 12
        data_start = pos
        out[pos] = 0x0A  # Example.features
        pos = _put_varint(out, pos + 1, features_sizes[i])
        for f in range(kinds.shape[0]):
            kind = kinds[f]
            column = columns[f]
            name_start = name_offsets[f]
            name_len = name_offsets[f + 1] - name_start
            feature = feature_sizes[i, f]
            entry = 1 + _varint_size(name_len) + name_len + 1 + _varint_size(feature) + feature
            out[pos] = 0x0A  # Features.feature (map entry)
            pos = _put_varint(out, pos + 1, entry)
            out[pos] = 0x0A  # MapEntry.key
            pos = _put_varint(out, pos + 1, name_len)
            pos = _copy(names, name_start, out, pos, name_len)
            out[pos] = 0x12  # MapEntry.value
            pos = _put_varint(out, pos + 1, feature)
            if kind == _KIND_INT:
                value = ints[column, i]
                packed = _varint_size(value)
                out[pos] = 0x1A  # Feature.int64_list
                pos = _put_varint(out, pos + 1, 1 + _varint_size(packed) + packed)
                out[pos] = 0x0A  # Int64List.value, packed
                pos = _put_varint(out, pos + 1, packed)
                pos = _put_varint(out, pos, value)
            else:
                if kind == _KIND_IMAGE:
                    src_start = pixel_offsets[i]
                    size = pixel_offsets[i + 1] - src_start
                else:
                    src_start = text_offsets[column, i]
                    size = text_offsets[column, i + 1] - src_start
                out[pos] = 0x0A  # Feature.bytes_list
                pos = _put_varint(out, pos + 1, 1 + _varint_size(size) + size)
                out[pos] = 0x0A  # BytesList.value
                pos = _put_varint(out, pos + 1, size)
                if kind == _KIND_IMAGE:
                    pos = _copy(pixels, src_start, out, pos, size)
                else:
                    pos = _copy(text, src_start, out, pos, size)
        _put_masked_crc(out, pos, data_start, pos)


# --------------------------------------------------------------------------- Python side
def serialize_batch(batch: SampleBatch, pixels: PixelView | None = None, strokes: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Serialize a batch as TFRecord frames of tf.train.Examples, back to back.

    `TFRecordWriter` calls this after `ShardWriter` checked the batch; called directly,
    only what keeps the kernels in bounds is checked (offsets against buffer sizes).

    Args:
        batch: the samples.
        pixels: the batch's pixels as flat buffer + offsets (what `ShardWriter` checked);
            built from `batch` when None.
        strokes: the batch's checked strokes (gntkit.samples.strokes.check_strokes) to add as the
            STROKE_FEATURES, or None.

    Returns:
        (frames, offsets): uint8 array of all frames, and N+1 int64 offsets into it
        (record i is frames[offsets[i]:offsets[i+1]]).

    Raises:
        GntkitError: when strings are not str or the pixel buffer is inconsistent.
    """
    n = len(batch)
    if pixels is None:
        if batch.raw:
            pixels = PixelView(np.ascontiguousarray(batch.pixels), np.ascontiguousarray(batch.pixel_offsets, dtype=np.int64),
                               np.asarray(batch.heights), np.asarray(batch.widths))
        else:
            images = np.ascontiguousarray(batch.images)
            per = images.shape[1] * images.shape[2]
            pixels = PixelView(images.reshape(-1), np.arange(n + 1, dtype=np.int64) * per,
                               np.asarray(batch.heights), np.asarray(batch.widths))
    columns = _BYTES_COLUMNS if strokes is not None else _TEXT_COLUMNS
    texts, text_offsets = [], np.empty((len(columns), n + 1), dtype=np.int64)
    base = 0
    for c, name in enumerate(columns):
        if name in _TEXT_COLUMNS:
            data, offsets = utf8_column(getattr(batch, name + "s"), name + "s")
        else:  # int16 little-endian bytes of a ragged stroke column
            values = strokes[name]
            data = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
            offsets = strokes[name + "_offsets"] * (values.itemsize * (values.shape[1] if values.ndim == 2 else 1))
        texts.append(data)
        text_offsets[c] = offsets + base
        base += len(data)
    text = np.frombuffer(b"".join(texts), dtype=np.uint8)
    ints = np.empty((len(_INT_COLUMNS), n), dtype=np.int64)
    ints[0], ints[1] = pixels.heights, pixels.widths
    ints[2], ints[3] = batch.labels, batch.tag_codes
    # Every offset the kernels follow is checked here, before they read.
    pixel_offsets = np.ascontiguousarray(pixels.offsets, dtype=np.int64)
    if pixel_offsets.shape != (n + 1,) or (n and (pixel_offsets[0] < 0 or pixel_offsets[-1] > pixels.pixels.shape[0]
                                                 or np.any(np.diff(pixel_offsets) < 0))):
        raise GntkitError(f"Pixel offsets of a batch of {n} records do not delimit its {pixels.pixels.shape[0]} pixel bytes.")
    if pixels.pixels.dtype != np.uint8 or pixels.pixels.ndim != 1:
        raise GntkitError(f"Pixels must be a flat uint8 array, found {pixels.pixels.dtype} {pixels.pixels.shape}.")
    if text_offsets[-1, -1] != text.shape[0]:
        raise GntkitError("Internal error: text offsets do not match the UTF-8 buffer.")
    if n and (np.diff(text_offsets, axis=1) < 0).any():
        raise GntkitError(f"Byte column offsets of a batch of {n} records must rise.")
    names, name_offsets, kinds, field_columns = _STROKE_TABLE if strokes is not None else (_NAMES, _NAME_OFFSETS, _KINDS, _COLUMNS)
    sizes = np.empty(n, dtype=np.int64)
    feature_sizes = np.empty((n, kinds.shape[0]), dtype=np.int64)
    features_sizes = np.empty(n, dtype=np.int64)
    _example_sizes(pixel_offsets, text_offsets, ints, name_offsets, kinds, field_columns, feature_sizes, features_sizes, sizes)
    frame_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes + 16, out=frame_offsets[1:])
    frames = np.empty(int(frame_offsets[-1]), dtype=np.uint8)
    _write_frames(pixels.pixels, pixel_offsets, text, text_offsets, ints,
                  names, name_offsets, kinds, field_columns, feature_sizes, features_sizes, sizes, frame_offsets, frames)
    return frames, frame_offsets


def _varint(value: int) -> bytes:
    """The protobuf varint of an int64 (negatives as their uint64 two's complement, 10 bytes)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _example(features: dict) -> bytes:
    """A serialized tf.train.Example of {name: bytes | list of int}, features in name order as the batch kernel writes them."""
    entries = []
    for name in sorted(features):
        value = features[name]
        if isinstance(value, (bytes, bytearray)):
            feature = _field(0x0A, _field(0x0A, bytes(value)))  # Feature.bytes_list { value }
        else:
            packed = _field(0x0A, b"".join(_varint(int(v)) for v in value)) if len(value) else b""
            feature = _field(0x1A, packed)  # Feature.int64_list, packed
        entries.append(_field(0x0A, _field(0x0A, name.encode("ascii")) + _field(0x12, feature)))
    return _field(0x0A, b"".join(entries))


def serialize_lines(batch: SampleBatch, pixels: PixelView, lines: dict) -> tuple[np.ndarray, np.ndarray]:
    """Serialize a batch of text lines as TFRecord frames: the usual features plus LINE_FEATURES.

    Lines are few (HWDB2.x: about 5,090 pages of 10-13 lines, 50,000-66,000) and large, so this is plain Python per Example
    (the image copy dominates), beside the numba kernel that serve millions of characters.

    Args:
        batch: the samples; pixels: its checked pixels; lines: gntkit.samples.lines.check_lines of its meta.

    Returns:
        (frames, offsets) as serialize_batch.
    """
    from gntkit.kernels.crc32c import crc32c

    frames, sizes = [], [0]
    sequence, offsets = lines["label_sequence"], lines["label_sequence_offsets"]
    for i in range(len(batch)):
        start, end = int(pixels.offsets[i]), int(pixels.offsets[i + 1])
        data = _example({
            "character": batch.characters[i].encode("utf-8"), "height": [int(pixels.heights[i])],
            "image": pixels.pixels[start:end].tobytes(), "key": batch.keys[i].encode("utf-8"), "label": [int(batch.labels[i])],
            "tag_code": [int(batch.tag_codes[i])], "width": [int(pixels.widths[i])], "writer_id": batch.writer_ids[i].encode("utf-8"),
            "text": lines["text"][i].encode("utf-8"), "label_sequence": sequence[offsets[i]:offsets[i + 1]].tolist(),
        })
        length = np.array([len(data)], "<u8").tobytes()
        frame = (length + np.array([mask_crc(crc32c(length))], "<u4").tobytes() + data
                 + np.array([mask_crc(crc32c(data))], "<u4").tobytes())
        frames.append(frame)
        sizes.append(len(frame))
    return np.frombuffer(b"".join(frames), np.uint8), np.cumsum(sizes).astype(np.int64)


class TFRecordWriter(ShardWriter):
    """Writes one TFRecord shard; see docs/architecture.md "TFRecord" for the Example features.

    Args:
        path: final shard path (`{name}-{split}.tfrecord-{i:05d}-of-{n:05d}`); must not exist.
        split: split name.
        attrs: shard attributes (not stored in TFRecord files; the manifest holds them).
        compression: None, or "gzip" (whole file, what `TFRecordDataset(compression_type="GZIP")` reads).
            Uncompressed shards get `{path}.index.npy` with N+1 record frame offsets.

    Raises:
        OutputExistsError: when the shard (or its index) already exists.
        GntkitError: on an unknown compression.
    """

    format = "tfrecord"

    def _open(self) -> None:
        self._sink = ShardSink(self.partial_path, self.compression, compute_sha256=self.compute_sha256)

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        if self.lines:
            frames, offsets = serialize_lines(batch, pixels, self._batch_lines)
        else:
            frames, offsets = serialize_batch(batch, pixels, self._batch_strokes if self.strokes else None)
        self._add_offsets(offsets[1:] + self._end_offset)
        self._sink.write(frames)

    def _finish(self) -> tuple[int, str]:
        return self._sink.close()

    def _discard(self) -> None:
        self._sink.abort()


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """Describe the Example features of TFRecord shards, as JSON-able data for the manifest.

    Args:
        raw: True for original variable-size bitmaps, False for preprocessed S x S images.
        image_size: S in fixed-size mode; ignored (may be None) in raw mode.
        strokes: the Examples also hold raw strokes (the STROKE_FEATURES and a "strokes" entry).
        lines: the Examples are text lines (variable-width images, the LINE_FEATURES, a "lines" entry;
            `label_sequence` has dtype "int64_list": tf.io.VarLenFeature(tf.int64)).

    Returns:
        {"format": "tfrecord", "record": "tf.train.Example",
         "features": [{"name", "dtype" ("string" | "int64"), "shape": []}, ...],
         "image": {"feature": "image", "encoding": "raw uint8, row-major, height x width",
                   "raw": bool, "shape": [S, S] or None, "decode": how to decode with tf}}.
        `tf_feature_description(spec)` turns it into tf.io.FixedLenFeature's.

    Raises:
        GntkitError: when fixed-size mode has no positive image size.
    """
    if not raw and (not isinstance(image_size, (int, np.integer)) or image_size <= 0):
        raise GntkitError(f"Fixed-size TFRecord shards need a positive image_size, found {image_size!r}.")
    spec = {
        "format": "tfrecord",
        "record": "tf.train.Example",
        "features": [{"name": name, "dtype": dtype, "shape": []} for name, dtype in FEATURES],
        "image": {
            "feature": "image",
            "encoding": IMAGE_ENCODING,
            "raw": bool(raw),
            "shape": None if raw else [int(image_size), int(image_size)],
            "decode": "tf.reshape(tf.io.decode_raw(image, tf.uint8), [height, width])",
        },
    }
    if strokes:
        from gntkit.samples.strokes import STROKES_SPEC

        spec["features"] += [{"name": name, "dtype": dtype, "shape": []} for name, dtype in STROKE_FEATURES]
        spec["strokes"] = {**STROKES_SPEC, "encoding": "int16 little-endian bytes",
                           "decode": "tf.reshape(tf.io.decode_raw(points, tf.int16), [-1, 2]); tf.io.decode_raw(stroke_lengths, tf.int16)"}
    if lines:
        from gntkit.samples.lines import LINES_SPEC

        spec["features"] += [{"name": name, "dtype": dtype, "shape": [] if dtype == "string" else [None]} for name, dtype in LINE_FEATURES]
        spec["lines"] = {**LINES_SPEC, "decode": "tf.io.VarLenFeature(tf.int64) for label_sequence; text is UTF-8 bytes"}
    return spec


def tf_feature_description(spec: dict) -> dict:
    """Build the `tf.io.parse_example` feature description of a `feature_spec` dict.

    Args:
        spec: what `feature_spec` returned (e.g. read from dataset_info.json).

    Returns:
        {name: tf.io.FixedLenFeature(shape, tf.string | tf.int64)}.

    Raises:
        MissingDependencyError: when TensorFlow is not installed.
        GntkitError: on an unknown dtype in the spec.
    """
    # TensorFlow is heavy and optional: only readers that parse with it load it.
    tf = require("tensorflow", "tensorflow", "Parsing TFRecord shards with TensorFlow")
    dtypes = {"string": tf.string, "int64": tf.int64}
    description = {}
    for feature in spec["features"]:
        if feature["dtype"] == "int64_list":  # a list of any length (text lines' label_sequence)
            description[feature["name"]] = tf.io.VarLenFeature(tf.int64)
            continue
        if feature["dtype"] not in dtypes:
            raise GntkitError(f"Feature {feature['name']!r} has dtype {feature['dtype']!r}; expected 'string' or 'int64'.")
        description[feature["name"]] = tf.io.FixedLenFeature(list(feature["shape"]), dtypes[feature["dtype"]])
    return description


def _flatten_sequences(tf, parsed: dict) -> dict:
    """The sparse label_sequence of parsed Examples as flat values + lengths per Example (numpy
    iteration would densify it with zeros, and 0 is a class)."""
    sparse = parsed.pop("label_sequence")
    count = tf.shape(parsed["key"])[0]
    parsed["label_sequence"] = sparse.values
    rows = tf.cast(sparse.indices[:, 0], tf.int32)
    parsed["label_sequence_lengths"] = tf.math.bincount(rows, minlength=count, maxlength=count, dtype=tf.int64)
    return parsed


def read_shard(path, compression: str | None = None, batch_size: int = 256):
    """Read a TFRecord shard back with the stock TensorFlow reader (for `verify` and tests).

    Args:
        path: shard file.
        compression: None or "gzip", as written.
        batch_size: records parsed per `tf.io.parse_example` call.

    Yields:
        dict samples: key, writer_id, character (str), tag_code, label (int), image
        (2-D uint8 array, height x width), in file order; for Examples with strokes also
        points (int16 (P, 2)) and stroke_lengths (int16 (S,)).

    Raises:
        MissingDependencyError: when TensorFlow is not installed.
        GntkitError: on an unknown compression.
    """
    if isinstance(compression, str):
        compression = compression.lower()
    if compression not in (None, "gzip"):
        raise GntkitError(f"TFRecord shards support compression None or 'gzip', found {compression!r}.")
    # TensorFlow is heavy and optional: only reading back with the stock reader needs it.
    tf = require("tensorflow", "tensorflow", "Reading TFRecord shards")
    description = tf_feature_description(feature_spec(raw=True))
    # Strokes are optional: absent, they parse as empty (a stroke sample always has points).
    for name, _ in STROKE_FEATURES:
        description[name] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
    # Text lines likewise: an Example of a character has no text (and an empty label sequence).
    description["text"] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
    description["label_sequence"] = tf.io.VarLenFeature(tf.int64)
    dataset = tf.data.TFRecordDataset([str(path)], compression_type="GZIP" if compression == "gzip" else "")
    dataset = dataset.batch(batch_size).map(lambda records: _flatten_sequences(tf, tf.io.parse_example(records, description)))
    for parsed in dataset.as_numpy_iterator():
        for i in range(len(parsed["key"])):
            height, width = int(parsed["height"][i]), int(parsed["width"][i])
            sample = {
                "key": parsed["key"][i].decode("utf-8"),
                "writer_id": parsed["writer_id"][i].decode("utf-8"),
                "character": parsed["character"][i].decode("utf-8"),
                "tag_code": int(parsed["tag_code"][i]),
                "label": int(parsed["label"][i]),
                "image": np.frombuffer(parsed["image"][i], dtype=np.uint8).reshape(height, width),
            }
            if parsed["text"][i] or parsed["label"][i] == -1:  # a text line
                sample["text"] = parsed["text"][i].decode("utf-8")
                ends = np.cumsum(parsed["label_sequence_lengths"])
                sample["label_sequence"] = parsed["label_sequence"][ends[i] - parsed["label_sequence_lengths"][i]:ends[i]].astype(np.int64)
            if parsed["points"][i]:
                if len(parsed["points"][i]) % 4 or len(parsed["stroke_lengths"][i]) % 2:
                    raise GntkitError(f"{path}: record {sample['key']!r} has {len(parsed['points'][i])} bytes of points and "
                                      f"{len(parsed['stroke_lengths'][i])} of stroke lengths; expected multiples of 4 and 2.")
                sample["points"] = np.frombuffer(parsed["points"][i], dtype="<i2").astype(np.int16).reshape(-1, 2)
                sample["stroke_lengths"] = np.frombuffer(parsed["stroke_lengths"][i], dtype="<i2").astype(np.int16)
            yield sample
