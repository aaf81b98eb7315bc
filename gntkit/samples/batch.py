"""SampleBatch: the one stream element that every writer and adapter consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SampleBatch:
    """A batch of decoded samples in global stream order.

    Exactly one image layout is set:
    - fixed size (preprocessed): `images` is uint8 (N, S, S);
    - raw (original bitmaps, lossless): `pixels` is the uint8 concatenation of the
      row-major bitmaps and `pixel_offsets` int64 (N+1,) delimits them.
    `heights` / `widths` are always set (S, S in fixed-size mode).

    Attributes:
        keys: unique sample keys "{writer_id}/{record_index}" (record index within its file).
        writer_ids: writer id of each sample, e.g. "1001", "C001".
        tag_codes: uint16 GB/ASCII tag code as stored in the file (high byte first).
        labels: int64 class id in the charset.
        characters: the character each label stands for.
        meta: what a format carries beyond the image (text lines, strokes): each entry is
            either one value per sample (a list or an array of length N) or ragged data
            `meta[k]` delimited by `meta[k + "_offsets"]` (int64, N+1 entries).
    """

    keys: list[str]
    writer_ids: list[str]
    tag_codes: np.ndarray
    labels: np.ndarray
    characters: list[str]
    heights: np.ndarray
    widths: np.ndarray
    images: np.ndarray | None = None
    pixels: np.ndarray | None = None
    pixel_offsets: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.keys)
        for name in ("writer_ids", "tag_codes", "labels", "characters", "heights", "widths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SampleBatch.{name} has {len(getattr(self, name))} entries, expected {n} (one per key).")
        if (self.images is None) == (self.pixels is None):
            raise ValueError("SampleBatch needs exactly one of images (fixed size) or pixels (raw).")
        if self.images is not None:
            if self.images.dtype != np.uint8 or self.images.ndim != 3 or self.images.shape[0] != n:
                raise ValueError(f"SampleBatch.images must be uint8 (N, S, S) with N={n}, found {self.images.dtype} {self.images.shape}.")
        else:
            if self.pixel_offsets is None or len(self.pixel_offsets) != n + 1:
                raise ValueError(f"SampleBatch.pixel_offsets must have N+1={n + 1} entries in raw mode.")

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def raw(self) -> bool:
        """True when the batch holds original variable-size bitmaps."""
        return self.images is None

    def image(self, i: int) -> np.ndarray:
        """The i-th image as a 2-D uint8 array (a view, no copy)."""
        if self.images is not None:
            return self.images[i]
        start, end = int(self.pixel_offsets[i]), int(self.pixel_offsets[i + 1])
        return self.pixels[start:end].reshape(int(self.heights[i]), int(self.widths[i]))

    def slice(self, start: int, end: int) -> SampleBatch:
        """Samples start..end as a new SampleBatch (pixel data and ragged meta data are views)."""
        common = dict(
            keys=self.keys[start:end], writer_ids=self.writer_ids[start:end], tag_codes=self.tag_codes[start:end],
            labels=self.labels[start:end], characters=self.characters[start:end],
            heights=self.heights[start:end], widths=self.widths[start:end], meta=_slice_meta(self.meta, start, end),
        )
        if self.images is not None:
            return SampleBatch(**common, images=self.images[start:end])
        first, last = int(self.pixel_offsets[start]), int(self.pixel_offsets[end])
        return SampleBatch(**common, pixels=self.pixels[first:last], pixel_offsets=self.pixel_offsets[start:end + 1] - first)


def _slice_meta(meta: dict, start: int, end: int) -> dict:
    out = {}
    for key, value in meta.items():
        if key.endswith("_offsets") and key[: -len("_offsets")] in meta:
            continue  # sliced with its values below
        offsets = meta.get(key + "_offsets")
        if offsets is not None:
            first, last = int(offsets[start]), int(offsets[end])
            out[key] = value[first:last]
            out[key + "_offsets"] = offsets[start:end + 1] - first
        else:
            out[key] = value[start:end]
    return out
