"""A plain reference IDX reader (struct + numpy, no validation beyond what it needs), for tests.

It reads the format as the MNIST page describes it and nothing more, so the real reader in
gntkit.formats.idx can be compared with it on valid files.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np


def read_idx(data: bytes) -> np.ndarray:
    """An IDX file's array: magic 00 00 08 D, D big-endian uint32 sizes, uint8 elements."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    zero, element_type, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and element_type == 0x08
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    count = int(np.prod(shape))
    return np.frombuffer(data, np.uint8, count, 4 + 4 * ndim).reshape(shape)


def read_pair(images_path, labels_path, transposed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images ink bright as stored, upright if transposed; labels) of one images/labels pair."""
    with open(images_path, "rb") as f:
        images = read_idx(f.read())
    with open(labels_path, "rb") as f:
        labels = read_idx(f.read())
    assert len(images) == len(labels)
    return (images.transpose(0, 2, 1) if transposed else images), labels
