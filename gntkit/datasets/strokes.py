"""Raw strokes of converted online handwriting (POT with --strokes): padded point batches for
online recognisers, in numpy, PyTorch and TensorFlow.

`open_strokes(folder, split)` reads a split's strokes, labels and keys into memory (about
0.5 KB a sample: OLHWDB1.1-train, 900k samples, is about 0.4 GB) with the formats' own readers
(a reader module's `read_strokes` where it has one, as HDF5's reads its datasets directly;
else the format's stock reader `read_shard`).
`StrokeSet.batches` yields padded batches in the epoch order that gntkit.datasets.sampling
defines for the image loaders, so a seed gives the same order in every framework:

    points   float32 (B, T, 3): x, y (tablet units, or normalised) and 1.0 on each stroke's
             last point (pen up); zeros after each sample's end
    lengths  int64 (B,): points per sample (T = the longest in the batch, or max_points)
    labels   int64 (B,): class ids in the manifest's charset

`torch_batches` and `tf_dataset` give the same batches as framework tensors. numpy only at
import; torch and tensorflow are imported by the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gntkit.datasets.sampling import epoch_order
from gntkit.errors import GntkitError, require
from gntkit.samples.strokes import check_sample_strokes, pad_strokes
from gntkit.shards.manifest import choose_split, load_manifest, shards_of
from gntkit.shards.registry import output_format

__all__ = ["StrokeSet", "open_strokes", "torch_batches", "tf_dataset"]


class StrokeSet:
    """One split's raw strokes in memory (ragged, as in gntkit.samples.strokes) with labels and keys.

    Attributes:
        points: int16 (P, 2); point_offsets: int64 (N+1,).
        stroke_lengths: int16 (S,); stroke_offsets: int64 (N+1,).
        labels: int64 (N,); keys: list of N sample keys.
        num_classes: classes in the charset.
    """

    def __init__(self, points, point_offsets, stroke_lengths, stroke_offsets, labels, keys, num_classes: int):
        self.points, self.point_offsets = points, point_offsets
        self.stroke_lengths, self.stroke_offsets = stroke_lengths, stroke_offsets
        self.labels, self.keys, self.num_classes = labels, keys, num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample i's (points int16 (P, 2), stroke_lengths int16 (S,)) as views."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for a set of {len(self)}.")
        return (self.points[self.point_offsets[i]:self.point_offsets[i + 1]],
                self.stroke_lengths[self.stroke_offsets[i]:self.stroke_offsets[i + 1]])

    def batch(self, indices, max_points: int | None = None, normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples at indices as (points float32 (B, T, 3), lengths int64 (B,), labels int64 (B,)).

        normalize: shift each sample to its bounding box's corner and divide by its longer side,
        so coordinates lie in [0, 1] (tablet units otherwise).
        """
        samples = [self.sample(int(i)) for i in indices]
        points, lengths = pad_strokes(samples, max_points)
        if normalize:
            for b, (raw, _) in enumerate(samples):
                low = raw.min(axis=0).astype(np.float32)
                side = max(float((raw.max(axis=0) - raw.min(axis=0)).max()), 1.0)
                points[b, :lengths[b], :2] = (points[b, :lengths[b], :2] - low) / side
        return points, lengths, self.labels[np.asarray(indices, np.int64)]

    def batches(self, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                max_points: int | None = None, normalize: bool = False):
        """One epoch of padded batches (see the module docstring), in gntkit's epoch order.

        Raises:
            GntkitError: a batch size below 1.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GntkitError(f"batch_size must be a whole number of at least 1, found {batch_size!r}.")
        order = epoch_order(len(self), seed, epoch, shuffle)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size], max_points, normalize)


def _ragged(chunks: list[np.ndarray], dtype, shape_tail: tuple) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(chunks) + 1, np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    values = np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros((0,) + shape_tail, dtype)
    return values, offsets


def _read_samples(fmt, path: Path, compression) -> tuple:
    """Any shard's strokes through its format's stock reader."""
    points, lengths, labels, keys = [], [], [], []
    for sample in fmt.read_shard(path, compression=compression):
        if "points" not in sample:
            raise GntkitError(f"{path}: sample {sample['key']!r} has no strokes; expected a conversion with --strokes.")
        check_sample_strokes(sample["points"], sample["stroke_lengths"], f"{path} sample {sample['key']!r}")
        points.append(sample["points"])
        lengths.append(sample["stroke_lengths"])
        labels.append(sample["label"])
        keys.append(sample["key"])
    point_values, point_offsets = _ragged(points, np.int16, (2,))
    length_values, length_offsets = _ragged(lengths, np.int16, ())
    return point_values, point_offsets, length_values, length_offsets, np.asarray(labels, np.int64), keys


def open_strokes(folder, split: str | None = None) -> StrokeSet:
    """Read one split of a conversion made with --strokes into a StrokeSet.

    Args:
        folder: a folder written by `gntkit convert ... --strokes`.
        split: the split; "train" or the only one when None.

    Returns:
        StrokeSet of the split's samples in shard order.

    Raises:
        GntkitError: not a complete conversion, a conversion without strokes, a missing split
            or shard, or damaged stroke data.
        MissingDependencyError: the format's reader library is not installed.
    """
    folder = Path(folder)
    manifest = load_manifest(folder)
    if "strokes" not in (manifest.get("features") or {}):
        raise GntkitError(f"{folder}: expected a conversion with raw strokes (--strokes), "
                          "found one without (its features list no strokes).")
    split = choose_split(manifest, split, folder)
    fmt = output_format(manifest["format"])
    read_strokes = getattr(fmt.reader_module(), "read_strokes", None)  # a format's direct path, where it has one
    parts = []
    for shard in shards_of(folder, manifest, split):
        if read_strokes is not None:
            parts.append(read_strokes(shard.path))
        else:
            parts.append(_read_samples(fmt, shard.path, manifest.get("compression")))
    return _join(parts, int(manifest["charset"]["num_classes"]))


def _join(parts: list[tuple], num_classes: int) -> StrokeSet:
    """Shards' ragged columns as one StrokeSet (offsets moved past the earlier shards)."""
    if not parts:
        return StrokeSet(np.zeros((0, 2), np.int16), np.zeros(1, np.int64), np.zeros(0, np.int16), np.zeros(1, np.int64),
                         np.zeros(0, np.int64), [], num_classes)
    columns = []
    for k in (0, 2):
        base, offsets = 0, [np.zeros(1, np.int64)]
        for part in parts:
            offsets.append(part[k + 1][1:] - part[k + 1][0] + base)
            base += int(part[k + 1][-1] - part[k + 1][0])
        columns.append((np.concatenate([p[k][p[k + 1][0]:p[k + 1][-1]] for p in parts]), np.concatenate(offsets)))
    labels = np.concatenate([p[4] for p in parts]).astype(np.int64)
    keys = [key for p in parts for key in p[5]]
    return StrokeSet(columns[0][0], columns[0][1], columns[1][0], columns[1][1], labels, keys, num_classes)


def torch_batches(strokes: StrokeSet, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0,
                  drop_last: bool = False, max_points: int | None = None, normalize: bool = False):
    """StrokeSet.batches as torch tensors: (points float32 (B, T, 3), lengths int64 (B,), labels int64 (B,)),
    ready for torch.nn.utils.rnn.pack_padded_sequence(points, lengths, batch_first=True).

    Raises:
        MissingDependencyError: torch is not installed.
    """
    torch = require("torch", "torch", "Loading stroke batches for PyTorch")
    for points, lengths, labels in strokes.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
                                                   max_points=max_points, normalize=normalize):
        yield torch.from_numpy(points), torch.from_numpy(lengths), torch.from_numpy(labels)


def tf_dataset(strokes: StrokeSet, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, max_points: int | None = None, normalize: bool = False):
    """StrokeSet.batches as a tf.data.Dataset of (points float32 (B, T, 3), lengths int64 (B,),
    labels int64 (B,)); T varies by batch unless max_points is set.

    Raises:
        MissingDependencyError: tensorflow is not installed.
    """
    tf = require("tensorflow", "tensorflow", "Loading stroke batches for TensorFlow")
    signature = (tf.TensorSpec((None, max_points, 3), tf.float32), tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(
        lambda: strokes.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
                                max_points=max_points, normalize=normalize),
        output_signature=signature)
