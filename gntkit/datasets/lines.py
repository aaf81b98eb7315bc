"""Text lines of a converted DGRL set: padded batches ready for CTC loss in numpy, PyTorch and TensorFlow.

`open_lines(folder, split)` reads a split's line images, label sequences, texts and keys into
memory with the formats' stock readers (each writer's `read_shard`). At the default line
height of 64 a line is about 64 x 1,000 bytes: HWDB2.x's 50,000-66,000 lines take 3-4 GB, so
open one split at a time, or convert with a smaller --line-height / --max-line-width.
`LineSet.batches` yields batches in the epoch order of gntkit.datasets.sampling (the image
loaders' order: one seed, one order in every framework):

    images         uint8 (B, H, W): each line left-aligned, padded right with the background
                   (0 when the conversion inverted the ink, 255 otherwise); W = the widest line
    widths         int64 (B,): each line's own width
    labels         int64 (B, L): class ids in the manifest's charset, padded with 0 after each
                   line's end (the lengths say where: 0 is a class too)
    label_lengths  int64 (B,)

CTC's blank is one more class: `blank = num_classes` (the model outputs num_classes + 1
scores per frame): `torch.nn.functional.ctc_loss(..., blank=num_classes)` and
`tf.nn.ctc_loss(..., logits_time_major=False, blank_index=num_classes)` (or -1). A frame
count per line comes from its width (e.g. widths // the model's horizontal stride).
`torch_batches` and `tf_dataset` give the same batches as framework tensors. numpy only at
import; torch and tensorflow are imported by the functions that use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gntkit.datasets.sampling import epoch_order, rank_share
from gntkit.errors import GntkitError, require
from gntkit.samples.lines import pad_lines
from gntkit.shards.manifest import choose_split, load_manifest, shards_of
from gntkit.shards.registry import output_format

__all__ = ["LineSet", "open_lines", "torch_batches", "tf_dataset"]


class LineSet:
    """One split's text lines in memory.

    Attributes:
        images: list of N uint8 (H, W_i) line images.
        sequences: int64 (L,) every line's class ids back to back; sequence_offsets: int64 (N+1,).
        texts, keys: lists of N str.
        num_classes: classes in the charset (CTC's blank is this index).
        pad_value: the background value used right of each line.
    """

    def __init__(self, images, sequences, sequence_offsets, texts, keys, num_classes: int, pad_value: int = 0):
        self.images, self.sequences, self.sequence_offsets = images, sequences, sequence_offsets
        self.texts, self.keys, self.num_classes, self.pad_value = texts, keys, num_classes, pad_value

    def __len__(self) -> int:
        return len(self.images)

    @property
    def blank(self) -> int:
        """CTC's blank index: one past the charset's classes."""
        return self.num_classes

    @property
    def height(self) -> int | None:
        """The lines' height in pixels (None for an empty set)."""
        return int(self.images[0].shape[0]) if self.images else None

    def sequence(self, i: int) -> np.ndarray:
        """Line i's class ids (a view)."""
        if not 0 <= i < len(self):
            raise IndexError(f"line {i} out of range for a set of {len(self)}.")
        return self.sequences[self.sequence_offsets[i]:self.sequence_offsets[i + 1]]

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lines at indices as (images uint8 (B, H, W), widths int64 (B,), labels int64 (B, L), label_lengths int64 (B,))."""
        indices = [int(i) for i in indices]
        images, widths = pad_lines([self.images[i] for i in indices], pad_value=self.pad_value)
        sequences = [self.sequence(i) for i in indices]
        lengths = np.array([len(s) for s in sequences], np.int64)
        labels = np.zeros((len(indices), max(int(lengths.max()), 1)), np.int64)
        for b, sequence in enumerate(sequences):
            labels[b, :len(sequence)] = sequence
        return images, widths, labels, lengths

    def batches(self, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                rank: int = 0, world_size: int = 1):
        """One epoch of padded batches (see the module docstring), in gntkit's epoch order; with
        world_size > 1, rank's contiguous slice of it (`sampling.rank_share`, even="none": every
        line once per epoch across ranks).

        Raises:
            GntkitError: a batch size below 1, a bad rank or world_size.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise GntkitError(f"batch_size must be a whole number of at least 1, found {batch_size!r}.")
        order = rank_share(epoch_order(len(self), seed, epoch, shuffle), rank, world_size, even="none")
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size])


def open_lines(folder, split: str | None = None) -> LineSet:
    """Read one split of a text-line conversion (DGRL sources) into a LineSet.

    Args:
        folder: a folder written by `gntkit convert` from .dgrl sources.
        split: the split; "train" or the only one when None.

    Returns:
        LineSet of the split's lines in shard order.

    Raises:
        GntkitError: not a complete conversion, a conversion of single characters, a missing
            split or shard, lines of different heights (a --raw conversion), or a line whose
            label sequence is empty or outside the charset.
        MissingDependencyError: the format's reader library is not installed.
    """
    folder = Path(folder)
    manifest = load_manifest(folder)
    if "lines" not in (manifest.get("features") or {}):
        raise GntkitError(f"{folder}: expected a conversion of text lines (DGRL sources), "
                          "found one of single characters (its features list no lines).")
    split = choose_split(manifest, split, folder)
    fmt = output_format(manifest["format"])
    num_classes = int(manifest["charset"]["num_classes"])
    images, sequences, texts, keys = [], [], [], []
    for shard in shards_of(folder, manifest, split):
        for sample in fmt.read_shard(shard.path, compression=manifest.get("compression")):
            sequence = np.asarray(sample.get("label_sequence", ()), np.int64)
            if sequence.size == 0 or sequence.min() < 0 or sequence.max() >= num_classes:
                raise GntkitError(f"{shard.path} line {sample['key']!r}: expected 1 or more class ids in 0..{num_classes - 1}, "
                                  f"found {sequence.tolist()[:8]}.")
            images.append(sample["image"])
            sequences.append(sequence)
            texts.append(sample["text"])
            keys.append(sample["key"])
    offsets = np.zeros(len(sequences) + 1, np.int64)
    np.cumsum([len(s) for s in sequences], out=offsets[1:])
    heights = {image.shape[0] for image in images}
    if len(heights) > 1:
        raise GntkitError(f"{folder}: expected lines of one height to batch (a conversion with --line-height), "
                          f"found heights {sorted(heights)[:5]} (a --raw conversion?).")
    pad_value = 0 if manifest["preprocess"].get("invert", False) else 255
    values = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    return LineSet(images, values, offsets, texts, keys, num_classes, pad_value)


def torch_batches(lines: LineSet, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                  rank: int = 0, world_size: int = 1):
    """`lines.batches` (a LineSet, or a `line_stream.LineStream`) as torch tensors: images float32
    (B, 1, H, W) in [0, 1], widths, labels and label_lengths int64, as
    torch.nn.functional.ctc_loss(log_probs, labels, frames, label_lengths, blank=lines.blank) takes them.

    Raises:
        MissingDependencyError: torch is not installed.
    """
    torch = require("torch", "torch", "Loading text-line batches for PyTorch")
    for images, widths, labels, lengths in lines.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
                                                         rank=rank, world_size=world_size):
        yield (torch.from_numpy(images).unsqueeze(1).float().div_(255.0), torch.from_numpy(widths),
               torch.from_numpy(labels), torch.from_numpy(lengths))


def tf_dataset(lines: LineSet, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
               rank: int = 0, world_size: int = 1):
    """`lines.batches` (a LineSet, or a `line_stream.LineStream`) as a tf.data.Dataset of (images
    float32 (B, H, W, 1) in [0, 1], widths int64 (B,), labels int64 (B, L), label_lengths int64 (B,)), as
    tf.nn.ctc_loss(labels, logits, label_lengths, frames, logits_time_major=False, blank_index=lines.blank) takes them.

    Raises:
        MissingDependencyError: tensorflow is not installed.
    """
    tf = require("tensorflow", "tensorflow", "Loading text-line batches for TensorFlow")
    height = lines.height

    def generate():
        for images, widths, labels, lengths in lines.batches(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
                                                             rank=rank, world_size=world_size):
            yield (images[..., None].astype(np.float32) / np.float32(255.0)), widths, labels, lengths

    signature = (tf.TensorSpec((None, height, None, 1), tf.float32), tf.TensorSpec((None,), tf.int64),
                 tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(generate, output_signature=signature)
