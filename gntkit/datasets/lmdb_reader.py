"""Reading LMDB shards (gntkit.shards.lmdb) for gntkit.datasets: random access by sample number.

The environment is opened as the text-recognition toolkits open it (its folder, read-only,
no lock file); each read decodes the sample's PNG with Pillow. There is no bulk kernel path
(`buf` is None), so ShardSet reads batches through `ShardReader.read`. The lmdb package is
imported when the first shard is opened.
"""

from __future__ import annotations

import json

import numpy as np

from gntkit.datasets._files import check_records
from gntkit.errors import FormatError, require
from gntkit.shards.lmdb import IMAGE_KEY, META_KEY, sample_count, sample_of
from gntkit.shards.manifest import Shard
from gntkit.shards.sample_png import decode_png

__all__ = ["ShardReader"]


class ShardReader:
    """One LMDB shard: its environment (`file`, closed by ShardSet.close), labels in memory, images on demand.

    Args:
        shard: the manifest's entry for the shard's data file (`.../NAME.lmdb/data.mdb`).
        image_size: side of the fixed-size images, or None (raw bitmaps).
        compression: must be None (LMDB shards are not compressed).

    Raises:
        MissingDependencyError: the lmdb package is not installed.
        FormatError: a count other than the manifest's, or a damaged record.
    """

    def __init__(self, shard: Shard, image_size: int | None, compression: str | None = None):
        if compression is not None:
            raise FormatError(str(shard.path), None, "an uncompressed LMDB shard", f"compression {compression!r}")
        lmdb = require("lmdb", "lmdb", "Reading LMDB shards")
        self.shard, self.image_size = shard, image_size
        self.buf = None  # no bulk kernel path: batches are read sample by sample
        self.folder = str(shard.path.parent)
        self.file = lmdb.open(self.folder, readonly=True, lock=False, readahead=False, meminit=False)
        with self.file.begin(write=False) as txn:
            count = sample_count(txn, self.folder)
            check_records(shard, count)
            self.labels = np.array([self._label(txn, number) for number in range(1, count + 1)], np.int64)

    def _label(self, txn, number: int) -> int:
        record = txn.get((META_KEY % number).encode())
        try:
            return int(json.loads(record)["label"])
        except (TypeError, ValueError, KeyError):
            raise FormatError(f"{self.folder} {META_KEY % number}", None, "a JSON record with a label", repr(record)[:60]) from None

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Sample j (0-based) of this shard: (uint8 image, label)."""
        with self.file.begin(write=False) as txn:
            data = txn.get((IMAGE_KEY % (j + 1)).encode())
            if data is None:
                sample = sample_of(txn, j + 1, self.folder)  # names the missing key
                return sample["image"], sample["label"]
        image, _ = decode_png(data, f"{self.folder} {IMAGE_KEY % (j + 1)}")
        return image, int(self.labels[j])

    def read(self, local: np.ndarray, out_images: np.ndarray, out_labels: np.ndarray) -> None:
        """Samples `local` of this shard into out_images (B, S, S) and out_labels (B,).

        Raises:
            FormatError: an image of another size than the conversion's.
        """
        for row, j in enumerate(np.asarray(local).tolist()):
            image, out_labels[row] = self.get(j)
            if image.shape != out_images.shape[1:]:
                raise FormatError(f"{self.folder} {IMAGE_KEY % (j + 1)}", None, f"a {out_images.shape[1]}x{out_images.shape[2]} image",
                                  f"{image.shape}")
            out_images[row] = image
