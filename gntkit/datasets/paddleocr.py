"""Reading PaddleOCR shards (gntkit.shards.paddleocr) for gntkit.datasets: a label file and the PNG
files it names. Labels come from the records in the PNGs' tEXt chunks; each read decodes one PNG
with Pillow. There is no bulk kernel path (`buf` is None), so ShardSet reads batches through
`ShardReader.read`. numpy and pillow only.
"""

from __future__ import annotations

import json

import numpy as np

from gntkit.datasets._files import check_records
from gntkit.errors import FormatError
from gntkit.shards.manifest import Shard
from gntkit.shards.paddleocr import KEYWORD, label_entries, read_image
from gntkit.shards.sample_png import text_chunk

__all__ = ["ShardReader"]


class ShardReader:
    """One PaddleOCR shard: the image paths and labels in memory, images read on demand.

    Args:
        shard: the manifest's entry for the label file.
        image_size: side of the fixed-size images, or None (raw bitmaps).
        compression: must be None (PaddleOCR shards are not compressed).

    Raises:
        FormatError: a count other than the manifest's, a bad label line, or an image without gntkit's record.
    """

    def __init__(self, shard: Shard, image_size: int | None, compression: str | None = None):
        if compression is not None:
            raise FormatError(str(shard.path), None, "an uncompressed PaddleOCR shard", f"compression {compression!r}")
        self.shard, self.image_size = shard, image_size
        self.buf = None  # no bulk kernel path: batches are read sample by sample
        self.folder = shard.path.parent
        self.names = [name for name, _ in label_entries(shard.path)]
        check_records(shard, len(self.names))
        self.labels = np.array([self._label(name) for name in self.names], np.int64)

    def _label(self, name: str) -> int:
        path = self.folder / name
        try:
            record = text_chunk(path.read_bytes(), KEYWORD)
            return int(json.loads(record)["label"])
        except OSError as exc:
            raise FormatError(str(path), None, "the image the label file names", exc.strerror or str(exc)) from None
        except (TypeError, ValueError, KeyError):
            raise FormatError(str(path), None, f"a PNG tEXt chunk {KEYWORD!r} with a JSON record holding a label",
                              "none" if record is None else repr(record[:60])) from None

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Sample j of this shard: (uint8 image, label)."""
        image, _ = read_image(self.folder, self.names[j])
        return image, int(self.labels[j])

    def read(self, local: np.ndarray, out_images: np.ndarray, out_labels: np.ndarray) -> None:
        """Samples `local` of this shard into out_images (B, S, S) and out_labels (B,).

        Raises:
            FormatError: an image of another size than the conversion's.
        """
        for row, j in enumerate(np.asarray(local).tolist()):
            image, out_labels[row] = self.get(j)
            if image.shape != out_images.shape[1:]:
                raise FormatError(str(self.folder / self.names[j]), None, f"a {out_images.shape[1]}x{out_images.shape[2]} image",
                                  f"{image.shape}")
            out_images[row] = image
