"""TFRecord shards of `tf.train.Example`s, written without TensorFlow.

Every batch of characters becomes one buffer in two calls of the numba kernels in
`gntkit.kernels.tfrecord` (Examples and their TFRecord frames, CRC32C included). The encoder is
gntkit's own because the whole conversion to TFRecord is 1.39x faster with it than with the
protobuf package (benchmarks/bench_handwritten.py; docs/benchmarks.md, "Hand-written code beside
libraries"). Text lines (few and large) are built by the protobuf package (`example_class`).

TensorFlow is imported only by `tf_feature_description` and `read_shard`.
"""

from __future__ import annotations

import functools

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.kernels.crc32c import masked_crc32c
from gntkit.kernels.tfrecord import KIND_BYTES, KIND_IMAGE, KIND_INT, example_sizes, write_frames
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.samples.strokes import STROKES_SPEC
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
            kinds[f] = KIND_IMAGE
        elif name in _BYTES_COLUMNS:
            kinds[f], columns[f] = KIND_BYTES, _BYTES_COLUMNS.index(name)
        else:
            kinds[f], columns[f] = KIND_INT, _INT_COLUMNS.index(name)
    return name_bytes, name_offsets, kinds, columns


_NAMES, _NAME_OFFSETS, _KINDS, _COLUMNS = _field_table()
_STROKE_TABLE = _field_table(FEATURES + STROKE_FEATURES)


# --------------------------------------------------------------------------- Python side
def _byte_columns(batch: SampleBatch, strokes: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The bytes columns (text in UTF-8, strokes as int16 LE) as one buffer plus (columns, N+1) offsets into it."""
    columns = _BYTES_COLUMNS if strokes is not None else _TEXT_COLUMNS
    texts, text_offsets = [], np.empty((len(columns), len(batch) + 1), dtype=np.int64)
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
    if len(batch) and (np.diff(text_offsets, axis=1) < 0).any():
        raise GntkitError(f"Byte column offsets of a batch of {len(batch)} records must rise.")
    return text, text_offsets


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
    pixels = _checked_pixels(batch, pixels)  # every offset the kernels follow is checked before they read
    text, text_offsets = _byte_columns(batch, strokes)
    ints = np.empty((len(_INT_COLUMNS), n), dtype=np.int64)
    ints[0], ints[1] = pixels.heights, pixels.widths
    ints[2], ints[3] = batch.labels, batch.tag_codes
    names, name_offsets, kinds, field_columns = _STROKE_TABLE if strokes is not None else (_NAMES, _NAME_OFFSETS, _KINDS, _COLUMNS)
    sizes = np.empty(n, dtype=np.int64)
    feature_sizes = np.empty((n, kinds.shape[0]), dtype=np.int64)
    features_sizes = np.empty(n, dtype=np.int64)
    example_sizes(pixels.offsets, text_offsets, ints, name_offsets, kinds, field_columns, feature_sizes, features_sizes, sizes)
    frame_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes + 16, out=frame_offsets[1:])
    frames = np.empty(int(frame_offsets[-1]), dtype=np.uint8)
    write_frames(pixels.pixels, pixels.offsets, text, text_offsets, ints,
                 names, name_offsets, kinds, field_columns, feature_sizes, features_sizes, sizes, frame_offsets, frames)
    return frames, frame_offsets


def _checked_pixels(batch: SampleBatch, pixels: PixelView | None) -> PixelView:
    """The batch's pixels as flat buffer + offsets (built from batch when None), offsets checked against the buffer."""
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
    offsets = np.asarray(pixels.offsets, dtype=np.int64)
    if pixels.pixels.dtype != np.uint8 or pixels.pixels.ndim != 1:
        raise GntkitError(f"Pixels must be a flat uint8 array, found {pixels.pixels.dtype} {pixels.pixels.shape}.")
    if offsets.shape != (n + 1,) or (n and (offsets[0] < 0 or offsets[-1] > pixels.pixels.shape[0] or np.any(np.diff(offsets) < 0))):
        raise GntkitError(f"Pixel offsets of a batch of {n} records do not delimit its {pixels.pixels.shape[0]} pixel bytes.")
    return PixelView(pixels.pixels, offsets, pixels.heights, pixels.widths)


@functools.lru_cache(maxsize=1)
def example_class():
    """The `tf.train.Example` message class (package tensorflow), built with the protobuf package alone.

    `Features.feature` is declared as the repeated FeatureEntry messages that its map<string, Feature>
    is on the wire, so entries go out in the order they are added: key order, as TensorFlow's C++
    serializer writes them. (upb's map sorting puts "label_sequence" before "label".)
    """
    # protobuf's descriptor machinery takes about 45 ms to import: only writing TFRecord shards needs it.
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="gntkit/tensorflow_example.proto", package="tensorflow", syntax="proto3")

    def message_field(message, name: str, number: int, type_name: str, label=field.LABEL_OPTIONAL, **options):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE, label=label, type_name=f".tensorflow.{type_name}", **options)

    for name, kind in (("BytesList", field.TYPE_BYTES), ("FloatList", field.TYPE_FLOAT), ("Int64List", field.TYPE_INT64)):
        proto.message_type.add(name=name).field.add(name="value", number=1, type=kind, label=field.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name, kind in ((1, "bytes_list", "BytesList"), (2, "float_list", "FloatList"), (3, "int64_list", "Int64List")):
        message_field(feature, name, number, kind, oneof_index=0)
    entry = proto.message_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    message_field(entry, "value", 2, "Feature")
    message_field(proto.message_type.add(name="Features"), "feature", 1, "FeatureEntry", label=field.LABEL_REPEATED)
    message_field(proto.message_type.add(name="Example"), "features", 1, "Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def _example(message_class, features: dict) -> bytes:
    """A serialized Example of {name: bytes | list of int}, features in key order; an empty int list stays a present, empty Int64List."""
    example = message_class()
    entries = example.features.feature
    for name in sorted(features):
        value, feature = features[name], entries.add(key=name).value
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        else:
            feature.int64_list.SetInParent()
            feature.int64_list.value.extend(value)
    return example.SerializeToString()


def frame_records(records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """TFRecord frames of serialized records, back to back: (uint8 frames, N+1 int64 offsets)."""
    parts = []
    for data in records:
        length = len(data).to_bytes(8, "little")
        parts += (length, int(masked_crc32c(length)).to_bytes(4, "little"), data, int(masked_crc32c(data)).to_bytes(4, "little"))
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    np.cumsum([len(data) + 16 for data in records], out=offsets[1:])
    return np.frombuffer(b"".join(parts), dtype=np.uint8), offsets


def serialize_lines(batch: SampleBatch, pixels: PixelView, lines: dict) -> tuple[np.ndarray, np.ndarray]:
    """Serialize a batch of text lines as TFRecord frames: the usual features plus LINE_FEATURES.

    Lines are few (HWDB2.x: 50,000-66,000) and large, so each Example is built by the protobuf
    package (the image copy dominates), beside the numba kernels that serve millions of characters.

    Args:
        batch: the samples; pixels: its checked pixels; lines: gntkit.samples.lines.check_lines of its meta.

    Returns:
        (frames, offsets) as serialize_batch.
    """
    message_class, pixels = example_class(), _checked_pixels(batch, pixels)
    bounds, sequence, offsets = pixels.offsets.tolist(), lines["label_sequence"], lines["label_sequence_offsets"]
    records = []
    for i in range(len(batch)):
        records.append(_example(message_class, {
            "character": batch.characters[i].encode("utf-8"), "height": [int(pixels.heights[i])],
            "image": pixels.pixels[bounds[i]:bounds[i + 1]].tobytes(), "key": batch.keys[i].encode("utf-8"),
            "label": [int(batch.labels[i])], "tag_code": [int(batch.tag_codes[i])], "width": [int(pixels.widths[i])],
            "writer_id": batch.writer_ids[i].encode("utf-8"),
            "text": lines["text"][i].encode("utf-8"), "label_sequence": sequence[offsets[i]:offsets[i + 1]].tolist(),
        }))
    return frame_records(records)


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
        spec["features"] += [{"name": name, "dtype": dtype, "shape": []} for name, dtype in STROKE_FEATURES]
        spec["strokes"] = {**STROKES_SPEC, "encoding": "int16 little-endian bytes",
                           "decode": "tf.reshape(tf.io.decode_raw(points, tf.int16), [-1, 2]); tf.io.decode_raw(stroke_lengths, tf.int16)"}
    if lines:
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
