"""numba kernels behind gntkit.datasets: bulk record gathering and tf.train.Example parsing.

Kernels take contiguous arrays and scalars and return arrays or status codes; the
Python wrappers in `gntkit.datasets` check inputs and turn status codes into
`FormatError`s naming the shard and record. Each kernel has a plain-Python
reference (`parse_example`, numpy slicing) that the tests compare against.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

# Status codes returned per record by `parse_examples`.
OK = 0
TRUNCATED = 1  # a length or varint runs past the record
BAD_IMAGE = 2  # no `image` bytes feature of the expected size
NO_LABEL = 3  # no `label` int64 feature
BAD_FRAME = 4  # the frame length disagrees with the record offsets

STATUS_TEXT = {
    TRUNCATED: "a protobuf field that runs past the end of the record",
    BAD_IMAGE: "an `image` bytes feature of height*width bytes",
    NO_LABEL: "an int64 `label` feature",
    BAD_FRAME: "a frame length that matches the record offsets",
}


@njit
def gather_blocks(buf, positions, block, out):
    """Copy `block` bytes starting at each buf[positions[i]] into row i of out (B, block)."""
    for i in range(positions.shape[0]):
        start = positions[i]
        for j in range(block):
            out[i, j] = buf[start + j]


@njit
def _varint(buf, pos, end):
    """Decode a protobuf varint at buf[pos]; returns (value, next position) or (0, -1) if truncated."""
    value = np.uint64(0)
    shift = np.uint64(0)
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += np.uint64(7)
        if shift >= np.uint64(64):
            return np.uint64(0), -1
    return np.uint64(0), -1


@njit
def _skip(buf, pos, end, wire_type):
    """Position after a field body of the given wire type, or -1 if it cannot be skipped."""
    if wire_type == 0:
        _, pos = _varint(buf, pos, end)
        return pos
    if wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    elif wire_type == 2:
        length, pos = _varint(buf, pos, end)
        if pos < 0:
            return -1
        pos += np.int64(length)
    else:
        return -1
    return pos if pos <= end else -1


@njit
def _same_bytes(buf, start, length, key):
    if length != key.shape[0]:
        return False
    for j in range(length):
        if buf[start + j] != key[j]:
            return False
    return True


@njit
def _feature_image(buf, pos, end, out_row):
    """Copy the first BytesList value of a Feature at buf[pos:end] into out_row; True when the size fits."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return False
        if tag == 10:  # field 1 (bytes_list), length-delimited
            length, pos = _varint(buf, pos, end)
            if pos < 0:
                return False
            list_end = pos + np.int64(length)
            while pos < list_end:
                inner, pos = _varint(buf, pos, list_end)
                if pos < 0:
                    return False
                if inner == 10:  # BytesList.value
                    size, pos = _varint(buf, pos, list_end)
                    if pos < 0 or np.int64(size) != out_row.shape[0] or pos + np.int64(size) > list_end:
                        return False
                    for j in range(out_row.shape[0]):
                        out_row[j] = buf[pos + j]
                    return True
                pos = _skip(buf, pos, list_end, np.int64(inner & np.uint64(7)))
                if pos < 0:
                    return False
            return False
        pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
        if pos < 0:
            return False
    return False


@njit
def _feature_int64(buf, pos, end):
    """First value of the Int64List of a Feature at buf[pos:end]; (value, True) or (0, False)."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return np.int64(0), False
        if tag == 26:  # field 3 (int64_list), length-delimited
            length, pos = _varint(buf, pos, end)
            if pos < 0:
                return np.int64(0), False
            list_end = pos + np.int64(length)
            while pos < list_end:
                inner, pos = _varint(buf, pos, list_end)
                if pos < 0:
                    return np.int64(0), False
                if inner == 10:  # packed values
                    _, pos = _varint(buf, pos, list_end)
                    if pos < 0:
                        return np.int64(0), False
                    value, pos = _varint(buf, pos, list_end)
                    return np.int64(value), pos > 0
                if inner == 8:  # one unpacked value
                    value, pos = _varint(buf, pos, list_end)
                    return np.int64(value), pos > 0
                pos = _skip(buf, pos, list_end, np.int64(inner & np.uint64(7)))
                if pos < 0:
                    return np.int64(0), False
            return np.int64(0), False
        pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
        if pos < 0:
            return np.int64(0), False
    return np.int64(0), False


@njit
def _parse_one(buf, start, end, image_key, label_key, out_row):
    """Parse one serialized Example at buf[start:end]; returns (status, label)."""
    got_image = False
    got_label = False
    label = np.int64(0)
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return TRUNCATED, label
        if tag != 10:  # Example.features
            pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
            if pos < 0:
                return TRUNCATED, label
            continue
        length, pos = _varint(buf, pos, end)
        if pos < 0 or pos + np.int64(length) > end:
            return TRUNCATED, label
        features_end = pos + np.int64(length)
        while pos < features_end:
            tag, pos = _varint(buf, pos, features_end)
            if pos < 0:
                return TRUNCATED, label
            if tag != 10:  # Features.feature map entry
                pos = _skip(buf, pos, features_end, np.int64(tag & np.uint64(7)))
                if pos < 0:
                    return TRUNCATED, label
                continue
            length, pos = _varint(buf, pos, features_end)
            if pos < 0 or pos + np.int64(length) > features_end:
                return TRUNCATED, label
            entry_end = pos + np.int64(length)
            key_start = -1
            key_len = 0
            value_start = -1
            value_end = -1
            while pos < entry_end:
                tag, pos = _varint(buf, pos, entry_end)
                if pos < 0:
                    return TRUNCATED, label
                if tag == 10 or tag == 18:
                    length, pos = _varint(buf, pos, entry_end)
                    if pos < 0 or pos + np.int64(length) > entry_end:
                        return TRUNCATED, label
                    if tag == 10:
                        key_start = pos
                        key_len = np.int64(length)
                    else:
                        value_start = pos
                        value_end = pos + np.int64(length)
                    pos += np.int64(length)
                else:
                    pos = _skip(buf, pos, entry_end, np.int64(tag & np.uint64(7)))
                    if pos < 0:
                        return TRUNCATED, label
            if key_start < 0 or value_start < 0:
                continue
            if _same_bytes(buf, key_start, key_len, image_key):
                if not _feature_image(buf, value_start, value_end, out_row):
                    return BAD_IMAGE, label
                got_image = True
            elif _same_bytes(buf, key_start, key_len, label_key):
                label, ok = _feature_int64(buf, value_start, value_end)
                if not ok:
                    return NO_LABEL, label
                got_label = True
    if not got_image:
        return BAD_IMAGE, label
    if not got_label:
        return NO_LABEL, label
    return OK, label


@njit
def parse_examples(buf, frame_starts, frame_ends, image_key, label_key, images, labels, status):
    """Parse TFRecord frames buf[frame_starts[i]:frame_ends[i]] into images[i] (flat) and labels[i].

    A frame is uint64 length, uint32 crc, the Example, uint32 crc. status[i] gets a code
    from this module (OK when the record parsed). CRCs are not checked here: whole
    shards are checked by sha256 when `verify=True` is asked.
    """
    for i in range(frame_starts.shape[0]):
        start = frame_starts[i]
        end = frame_ends[i]
        if start + 16 > end:
            status[i] = BAD_FRAME
            continue
        length = np.int64(0)
        for j in range(8):
            length |= np.int64(buf[start + j]) << np.int64(8 * j)
        if start + 16 + length != end:
            status[i] = BAD_FRAME
            continue
        code, label = _parse_one(buf, start + 12, start + 12 + length, image_key, label_key, images[i])
        status[i] = code
        labels[i] = label


def parse_example(data: bytes) -> dict:
    """Parse one serialized tf.train.Example into {key: list of values} in plain Python.

    Bytes features give lists of `bytes`, int64 features lists of `int`, float features
    lists of `float`. This is the reference for `parse_examples` and serves random access
    in raw mode (images of varying size), where the bulk kernel does not apply.

    Raises:
        ValueError: the bytes are not a well-formed Example.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_example needs bytes, found {type(data).__name__}.")
    data = bytes(data)

    def fields(start: int, end: int):
        pos = start
        while pos < end:
            tag, pos = _py_varint(data, pos, end)
            wire = tag & 7
            if wire == 0:
                value, pos = _py_varint(data, pos, end)
                yield tag >> 3, wire, value
            elif wire == 2:
                length, pos = _py_varint(data, pos, end)
                if pos + length > end:
                    raise ValueError(f"length-delimited field at byte {pos} runs {pos + length - end} bytes past its message")
                yield tag >> 3, wire, (pos, pos + length)
                pos += length
            elif wire == 1:
                yield tag >> 3, wire, int.from_bytes(data[pos:pos + 8], "little")
                pos += 8
            elif wire == 5:
                yield tag >> 3, wire, np.frombuffer(data[pos:pos + 4], "<f4")[0].item()
                pos += 4
            else:
                raise ValueError(f"unsupported wire type {wire} at byte {pos}")

    result = {}
    for number, wire, span in fields(0, len(data)):
        if number != 1 or wire != 2:
            continue
        for fnum, fwire, entry in fields(*span):
            if fnum != 1 or fwire != 2:
                continue
            key, value = None, []
            for enum_, ewire, espan in fields(*entry):
                if enum_ == 1 and ewire == 2:
                    key = data[espan[0]:espan[1]].decode("utf-8")
                elif enum_ == 2 and ewire == 2:
                    for kind, kwire, kspan in fields(*espan):
                        if kwire != 2:
                            continue
                        for vnum, vwire, v in fields(*kspan):
                            if kind == 1 and vwire == 2:
                                value.append(data[v[0]:v[1]])
                            elif kind == 3 and vwire == 0:
                                value.append(v if v < 2**63 else v - 2**64)
                            elif kind == 3 and vwire == 2:
                                pos = v[0]
                                while pos < v[1]:
                                    item, pos = _py_varint(data, pos, v[1])
                                    value.append(item if item < 2**63 else item - 2**64)
                            elif kind == 2 and vwire == 5:
                                value.append(v)
                            elif kind == 2 and vwire == 2:
                                value.extend(np.frombuffer(data[v[0]:v[1]], "<f4").tolist())
            if key is not None:
                result[key] = value
    return result


def _py_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError(f"varint runs past the end of its message at byte {pos}")
