"""tf.train.Example parsing in plain Python: the reference of `gntkit.kernels.shards.parse_examples`,
and the parser of single records of any image size (raw mode), where the bulk kernel does not apply.

It reads the protobuf wire format directly (numpy only): TFRecord shards are read without
TensorFlow, and the tests hold the bulk kernel to this parser on random and damaged records.
"""

from __future__ import annotations

import numpy as np


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
    result = {}
    for features in _spans(data, 0, len(data), 1):  # Example.features
        for entry in _spans(data, *features, 1):  # Features.feature: map entries
            key, value = None, []
            for number, wire, span in _fields(data, *entry):
                if number == 1 and wire == 2:
                    key = data[span[0]:span[1]].decode("utf-8")
                elif number == 2 and wire == 2:
                    value += _feature_values(data, span)
            if key is not None:
                result[key] = value
    return result


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value) of each field of the message data[start:end]; a length-delimited
    value is its (start, end) span, a varint or fixed64 an int, a fixed32 a float."""
    pos = start
    while pos < end:
        tag, pos = _py_varint(data, pos, end)
        wire = tag & 7
        if wire == 0:
            value, pos = _py_varint(data, pos, end)
        elif wire == 2:
            length, pos = _py_varint(data, pos, end)
            if pos + length > end:
                raise ValueError(f"length-delimited field at byte {pos} runs {pos + length - end} bytes past its message")
            value, pos = (pos, pos + length), pos + length
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = np.frombuffer(data[pos:pos + 4], "<f4")[0].item(), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} at byte {pos}")
        yield tag >> 3, wire, value


def _spans(data: bytes, start: int, end: int, number: int):
    """The spans of the length-delimited fields `number` of the message data[start:end]."""
    return [span for found, wire, span in _fields(data, start, end) if found == number and wire == 2]


def _feature_values(data: bytes, span: tuple[int, int]) -> list:
    """The values of one Feature message: its BytesList (1), FloatList (2) or Int64List (3), packed or not."""
    values = []
    for kind, wire, inner in _fields(data, *span):
        if wire != 2:
            continue
        for _, value_wire, value in _fields(data, *inner):
            if kind == 1 and value_wire == 2:
                values.append(data[value[0]:value[1]])
            elif kind == 3 and value_wire == 0:
                values.append(_signed64(value))
            elif kind == 3 and value_wire == 2:
                pos = value[0]
                while pos < value[1]:
                    item, pos = _py_varint(data, pos, value[1])
                    values.append(_signed64(item))
            elif kind == 2 and value_wire == 5:
                values.append(value)
            elif kind == 2 and value_wire == 2:
                values.extend(np.frombuffer(data[value[0]:value[1]], "<f4").tolist())
    return values


def _signed64(value: int) -> int:
    return value if value < 2**63 else value - 2**64


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
