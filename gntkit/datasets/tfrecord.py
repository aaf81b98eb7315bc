"""Reading TFRecord shards (tf.train.Example records with image, height, width, label) without
TensorFlow: the shard's bytes by mmap (GZIP shards decompressed into memory), record offsets
from the `.index.npy` file or a scan of the frame lengths, and batches parsed by the numba
Example kernel. numpy only (the format table in gntkit.shards.manifest names this module)."""

from __future__ import annotations

import gzip

import numpy as np

from gntkit.datasets._files import check_records, load_index, readonly
from gntkit.errors import FormatError
from gntkit.formats.sources import mapped_bytes
from gntkit.kernels import shards as _kernels
from gntkit.kernels.example_parse import parse_example
from gntkit.shards.manifest import Shard

__all__ = ["ShardReader", "prepare_bulk", "read_rows"]

_IMAGE_KEY = np.frombuffer(b"image", np.uint8)
_LABEL_KEY = np.frombuffer(b"label", np.uint8)


class ShardReader:
    """One TFRecord shard: its bytes and record offsets.

    Args:
        shard: the manifest's entry for the file.
        image_size: side of the fixed-size images, or None (raw bitmaps).
        compression: the manifest's compression ("GZIP" or None).

    Raises:
        FormatError: a GZIP stream that does not decompress, frames that run past the end,
            or a record count other than the manifest's.
    """

    def __init__(self, shard: Shard, image_size: int | None, compression: str | None = None):
        self.shard = shard
        self.image_size = image_size
        if str(compression or "").upper() == "GZIP":
            with gzip.open(shard.path, "rb") as handle:
                try:
                    self.buf = readonly(np.frombuffer(handle.read(), np.uint8))
                except (OSError, EOFError) as exc:
                    raise FormatError(str(shard.path), None, "a GZIP-compressed TFRecord file (the manifest says GZIP)", str(exc)) from None
            self.offsets = self._scan()
        else:
            self.buf = readonly(mapped_bytes(shard.path))
            self.offsets = load_index(shard, len(self.buf))
            if self.offsets is None:
                self.offsets = self._scan()
        check_records(shard, len(self.offsets) - 1)

    def _scan(self) -> np.ndarray:
        """Record offsets from the frame lengths, for shards without an index file."""
        buf, offsets, pos = self.buf, [0], 0
        while pos < len(buf):
            if pos + 12 > len(buf):
                raise FormatError(str(self.shard.path), pos, "a 12-byte TFRecord frame header", f"{len(buf) - pos} bytes")
            pos += 16 + int.from_bytes(bytes(buf[pos:pos + 8]), "little")
            if pos > len(buf):
                raise FormatError(str(self.shard.path), offsets[-1], "a complete TFRecord frame",
                                  "a frame running past the end of the file")
            offsets.append(pos)
        return np.asarray(offsets, np.int64)

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Record j of this shard (any image size), parsed in plain Python.

        Raises:
            FormatError: the record is not an Example with image, height, width and label.
        """
        start, end = int(self.offsets[j]), int(self.offsets[j + 1])
        try:
            features = parse_example(bytes(self.buf[start + 12:end - 4]))
            height, width = features["height"][0], features["width"][0]
            image = np.frombuffer(features["image"][0], np.uint8).reshape(height, width)
            return image, int(features["label"][0])
        except (ValueError, KeyError, IndexError) as exc:
            raise FormatError(str(self.shard.path), start, f"record {j} to be a tf.train.Example with image, height, width, label",
                              str(exc)) from None


def prepare_bulk(bulk, readers: list) -> None:
    """Give a BulkReader the record start / end offsets of all its shards, in its record space."""
    bulk.starts = np.concatenate([r.offsets[:-1] for r in readers]).astype(np.int64)
    bulk.ends = np.concatenate([r.offsets[1:] for r in readers]).astype(np.int64)


def read_rows(bulk, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """Records `rows` of a BulkReader's record space into images (B, S, S) and labels (B,): one kernel call.

    Raises:
        FormatError: the first record that is not an Example with a S x S image and a label.
    """
    flat = images.reshape(len(rows), -1)
    status = np.zeros(len(rows), np.int64)
    _kernels.parse_examples(bulk.bufs, bulk.shard_of, bulk.starts, bulk.ends, rows, _IMAGE_KEY, _LABEL_KEY, flat, labels, status)
    bad = np.flatnonzero(status)
    if len(bad):
        reader, local = bulk.where(int(rows[bad[0]]))
        raise FormatError(str(reader.shard.path), int(reader.offsets[local]),
                          f"record {local} to hold {_kernels.STATUS_TEXT[int(status[bad[0]])]}", "something else")
