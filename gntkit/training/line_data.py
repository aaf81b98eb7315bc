"""Text-line training data, framework-free: which runs read lines, the line batches, and their error counts.

A conversion of `.dgrl` pages (its manifest's features list "lines") trains a line model
(`crnn`); a conversion of single characters trains an image model. `LineBatches` has the
interface of gntkit's loaders (`set_epoch`, `len`, `num_samples`, iteration), and yields
pairs as the one training loop takes them: ((images uint8 (B, H, W), widths int64 (B,)),
(labels int64 (B, L), label_lengths int64 (B,))). `read_line_split` is the one place line
data is read from a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gntkit.datasets.line_stream import open_line_stream
from gntkit.datasets.lines import open_lines
from gntkit.errors import GntkitError
from gntkit.models.configs import get_config, line_model_names
from gntkit.shards import remote
from gntkit.shards.manifest import load_manifest, manifest_path
from gntkit.training.config import TrainConfig, pick_val_split
from gntkit.training.line_metrics import align

__all__ = ["is_line_data", "check_model_fits_data", "read_line_split", "LineBatches", "line_sources",
           "collapse_path", "edit_totals", "validation_totals", "LinePreviews"]


def _manifest_of(data_dir) -> dict | None:
    """The manifest of a local folder or a URL, or None where there is none to read."""
    if not isinstance(data_dir, (str, Path)):
        return None
    if remote.is_url(data_dir):
        return remote.RemoteFolder(str(data_dir)).manifest()
    return load_manifest(Path(data_dir)) if manifest_path(data_dir) is not None else None


def is_line_data(data_dir) -> bool:
    """Whether `data_dir` (a folder or its URL) is a conversion of text lines (its manifest's features list "lines")."""
    manifest = _manifest_of(data_dir)
    return manifest is not None and "lines" in (manifest.get("features") or {})


def check_model_fits_data(model: str, data_dir) -> bool:
    """Return whether `data_dir` holds text lines, after checking that `model` reads what it holds.

    Raises:
        GntkitError: an image model on text lines, or a line model on single characters.
    """
    lines = is_line_data(data_dir)
    line_model = get_config(model).is_line_model
    if lines and not line_model:
        raise GntkitError(f"{data_dir}: expected single-character images for --model {model}, found text lines "
                          f"(a conversion of .dgrl pages): train a line model (--model {', '.join(line_model_names())}), "
                          "or convert .gnt/.pot sources for a character classifier.")
    if line_model and not lines:
        raise GntkitError(f"{data_dir}: expected text lines for --model {model}, found single characters "
                          "(or no conversion of .dgrl pages): convert .dgrl pages for a line model, or "
                          "train an image model such as --model cnn3 on these characters.")
    return lines


def read_line_split(data_dir, split: str, *, stream: bool = False):
    """The lines of one split, with `.batches(batch_size, shuffle=, seed=, epoch=, drop_last=)`,
    `.num_classes`, `.blank`, `.height`, `len()`.

    stream=True: gntkit.datasets.line_stream (bounded memory, batches bucketed by width: what
    training reads); False: gntkit.datasets.lines.open_lines (the whole split in memory, with
    each line's key and text: what evaluation reports by writer; a URL's files are fetched to a
    temporary folder first).
    """
    if stream:
        return open_line_stream(data_dir, split)
    if remote.is_url(data_dir):
        with remote.mirror(str(data_dir)) as local:
            return open_lines(local, split)
    return open_lines(data_dir, split)


class LineBatches:
    """One split's lines as the training loop takes them: ((images, widths), (labels, label_lengths)) per batch.

    The order of epoch e is the line set's (seeded by seed and e): a resumed run replays it.

    Raises:
        GntkitError: an empty split or a bad batch size.
    """

    def __init__(self, lines, batch_size: int, shuffle: bool = True, seed: int = 0):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise GntkitError(f"batch_size must be a whole number of at least 1, found {batch_size!r}.")
        if len(lines) == 0:
            raise GntkitError("A line split needs at least one line, found none.")
        self.lines, self.batch_size, self.shuffle, self.seed, self.epoch = lines, batch_size, shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch` (deterministic in seed and epoch)."""
        self.epoch = int(epoch)

    def num_samples(self) -> int:
        """Lines per epoch."""
        return len(self.lines)

    def __len__(self) -> int:
        return -(-len(self.lines) // self.batch_size)

    def __iter__(self):
        for images, widths, labels, lengths in self.lines.batches(self.batch_size, shuffle=self.shuffle, seed=self.seed,
                                                                  epoch=self.epoch, drop_last=False):
            yield (images, widths), (labels, lengths)


def line_sources(config: TrainConfig, data_dir, world_size: int = 1):
    """(train LineBatches, validation LineBatches or None, data facts) of a line conversion.

    Raises:
        GntkitError: more than one process or replica (line training runs in one), or bad data.
    """
    if world_size != 1:
        raise GntkitError(f"Line models train in one process on one device, found {world_size}: "
                          "run without torchrun / with one visible GPU (CUDA_VISIBLE_DEVICES=0).")
    manifest = _manifest_of(data_dir)
    train_lines = read_line_split(data_dir, config.train_split, stream=True)
    val_split = pick_val_split(list(manifest["splits"]), config.val_split, config.train_split)
    val_lines = read_line_split(data_dir, val_split, stream=True) if val_split is not None else None
    train = LineBatches(train_lines, config.batch_size, True, config.seed)
    val = LineBatches(val_lines, config.eval_batch_size or 2 * config.batch_size, False, config.seed) if val_lines else None
    height = int(train_lines.height)
    where = str(data_dir) if remote.is_url(data_dir) else str(Path(data_dir).resolve())
    facts = {"data_dir": where, "num_classes": int(train_lines.num_classes), "image_size": height,
             "preprocess": dict(manifest["preprocess"]), "train_split": config.train_split, "val_split": val_split,
             "train_samples": len(train_lines), "val_samples": len(val_lines) if val_lines else 0, "lines": True}
    return train, val, facts


def collapse_path(path, blank: int) -> list:
    """A best path's class ids with repeats merged and blanks dropped (greedy CTC decoding of one line)."""
    path = np.asarray(path)
    keep = np.ones(len(path), bool)
    keep[1:] = path[1:] != path[:-1]
    return [int(c) for c in path[keep & (path != blank)]]


def edit_totals(paths, frames, labels, label_lengths, blank: int) -> tuple[int, int]:
    """(edits, ground-truth characters) of a batch read by greedy decoding of its best paths.

    Args:
        paths: int (B, T) the best class of every frame; frames: (B,) the frames of each line.
        labels: int (B, L) ground truth, padded; label_lengths: (B,).
        blank: CTC's blank index.
    """
    edits = characters = 0
    for path, count, label, length in zip(np.asarray(paths), np.asarray(frames), np.asarray(labels),
                                          np.asarray(label_lengths)):
        reference = label[:int(length)].tolist()
        edits += align(reference, collapse_path(path[:int(count)], blank)).edits
        characters += len(reference)
    return edits, characters


def validation_totals(batches) -> dict:
    """A validation pass's figures from its batches, each (summed CTC loss, log_probs (B, T, C + 1),
    frames (B,), labels (B, L), label_lengths (B,)) in numpy: {"loss" (mean CTC per line),
    "accuracy" (AR = 1 - CER of greedy decoding), "top5": None, "cer", "images" (lines)}.

    Raises:
        GntkitError: no batch at all.
    """
    loss_sum, lines, edits, characters = 0.0, 0, 0, 0
    for loss, log_probs, frames, labels, lengths in batches:
        e, c = edit_totals(log_probs.argmax(-1), frames, labels, lengths, log_probs.shape[-1] - 1)
        loss_sum, edits, characters, lines = loss_sum + loss, edits + e, characters + c, lines + len(frames)
    if lines == 0:
        raise GntkitError("The validation split has no lines: expected at least one batch.")
    cer = edits / max(characters, 1)
    return {"loss": loss_sum / lines, "accuracy": 1.0 - cer, "top5": None, "cer": cer, "images": lines}


class LinePreviews:
    """The sample-image hooks of both frameworks' line backends (mixed in before the backend):
    the first training lines, shown as the step sees them (line models train without the warp)."""

    def sample_images(self, train_batches, count: int = 8) -> np.ndarray:
        """uint8 (N <= count, H, W): the first training lines."""
        for (images, _), _ in train_batches:
            return np.asarray(images)[:count]
        return np.zeros((0, 1, 1), np.uint8)

    def augmented_preview(self, images) -> np.ndarray:
        """The lines as the step sees them."""
        return np.asarray(images)
