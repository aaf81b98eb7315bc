"""numba kernels that write TFRecord frames of tf.train.Examples (gntkit.shards.tfrecord calls them).

`example_sizes` computes each record's serialized size, and `write_frames` writes all Examples
of a batch with their framing (length, masked CRC32C of the length, data, masked CRC32C of the
data) into one preallocated uint8 array, computing each CRC right after the record is written,
while it is in cache. Strings reach the kernels as one byte buffer and offsets per column.

Protobuf wire format written here (field number << 3 | wire type 2 = 0x0A, 0x12, 0x1A):

    Example  { 1: Features }
    Features { 1: repeated MapEntry }           map<string, Feature>, keys sorted
    MapEntry { 1: key string, 2: value Feature }
    Feature  { 1: BytesList | 3: Int64List }
    BytesList{ 1: repeated bytes }
    Int64List{ 1: packed varint }

A field is one of three kinds: the image (bytes from the pixel buffer), a bytes column (text or
strokes, from the byte buffer) or an int64 column. The plain-Python reference of the format is
`gntkit.kernels.example_parse.parse_example`, and the tests compare with protobuf's serialization.
"""

from __future__ import annotations

from gntkit.jit import njit
from gntkit.kernels.crc32c import crc32c_update, mask_crc

KIND_IMAGE, KIND_BYTES, KIND_INT = 0, 1, 2


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
    if kind == KIND_INT:
        packed = _varint_size(ints[column, i])
        inner = 1 + _varint_size(packed) + packed
    else:
        if kind == KIND_IMAGE:
            length = pixel_offsets[i + 1] - pixel_offsets[i]
        else:
            length = text_offsets[column, i + 1] - text_offsets[column, i]
        inner = 1 + _varint_size(length) + length
    return 1 + _varint_size(inner) + inner


@njit
def example_sizes(pixel_offsets, text_offsets, ints, name_offsets, kinds, columns, feature_sizes, features_sizes, sizes):
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
def write_frames(pixels, pixel_offsets, text, text_offsets, ints,
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
            if kind == KIND_INT:
                value = ints[column, i]
                packed = _varint_size(value)
                out[pos] = 0x1A  # Feature.int64_list
                pos = _put_varint(out, pos + 1, 1 + _varint_size(packed) + packed)
                out[pos] = 0x0A  # Int64List.value, packed
                pos = _put_varint(out, pos + 1, packed)
                pos = _put_varint(out, pos, value)
            else:
                if kind == KIND_IMAGE:
                    src_start = pixel_offsets[i]
                    size = pixel_offsets[i + 1] - src_start
                else:
                    src_start = text_offsets[column, i]
                    size = text_offsets[column, i + 1] - src_start
                out[pos] = 0x0A  # Feature.bytes_list
                pos = _put_varint(out, pos + 1, 1 + _varint_size(size) + size)
                out[pos] = 0x0A  # BytesList.value
                pos = _put_varint(out, pos + 1, size)
                if kind == KIND_IMAGE:
                    pos = _copy(pixels, src_start, out, pos, size)
                else:
                    pos = _copy(text, src_start, out, pos, size)
        _put_masked_crc(out, pos, data_start, pos)
