"""Where training batches come from: in-memory arrays (`ArrayBatches`) and the facts about shard data.

`ArrayBatches` has the interface of gntkit's loaders (`set_epoch`, `len`,
iteration over (uint8 images (B, S, S), int64 labels (B,))), so the trainers
take either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.manifest import MANIFEST, manifest_path
from gntkit.training.config import TrainConfig, positive_int

__all__ = ["ArrayBatches", "check_arrays", "array_sources", "data_facts", "splits_in", "preprocess_json"]


class ArrayBatches:
    """In-memory batches of (uint8 images (B, S, S), int64 labels (B,)) as numpy arrays.

    The same interface as gntkit's torch loaders (`set_epoch`, `len`, iteration),
    so trainers accept either. The order of epoch e is a permutation seeded by
    (seed, e); with `world_size` > 1 each rank takes every world_size-th sample
    of that order (as DistributedSampler does, padding by wrapping around).

    Raises:
        GntkitError: arrays of the wrong dtype or shape, or a bad batch size or rank.
    """

    def __init__(self, images, labels, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise GntkitError(
                f"Training images must be uint8 of shape (N, S, S), found {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise GntkitError(
                f"Labels must be integers of shape ({images.shape[0]},), found {labels.dtype} {labels.shape}."
            )
        if images.shape[0] == 0:
            raise GntkitError("Training needs at least one image, found an empty array.")
        positive_int("batch_size", batch_size)
        positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise GntkitError(f"rank must be in 0..{world_size - 1}, found {rank}.")
        self.images = np.ascontiguousarray(images)
        self.labels = labels.astype(np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def image_size(self) -> int:
        """Side S of the (S, S) images."""
        return int(self.images.shape[1])

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffling order of `epoch` (deterministic in seed and epoch)."""
        self.epoch = int(epoch)

    def _indices(self) -> np.ndarray:
        n = len(self.labels)
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                 if self.shuffle else np.arange(n))
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            order = np.resize(order, per_rank * self.world_size)[self.rank::self.world_size]
        return order

    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = len(self.labels)
        return -(-n // self.world_size) if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self.num_samples()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self._indices()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.images[idx], self.labels[idx]


def splits_in(data_dir) -> list[str]:
    """Split names recorded in a shard folder's manifest (gntkit.json, or an older folder's dataset_info.json).

    Raises:
        GntkitError: the folder has no readable manifest.
    """
    path = manifest_path(data_dir)
    if path is None:
        raise GntkitError(f"{data_dir}: expected a gntkit shard folder with {MANIFEST}, found none.")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GntkitError(f"{path}: expected JSON, found a syntax error at line {exc.lineno}.") from None
    splits = info.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise GntkitError(f"{path}: expected a non-empty 'splits' object, found {splits!r}.")
    return list(splits)


def data_facts(train_set, data_dir, train_split: str, val_split: str | None, val_samples: int) -> dict:
    """What the trainer needs to know about shards, from a gntkit.datasets ShardSet."""
    size = int(train_set.image_size) if train_set.image_size else None
    if not size:
        raise GntkitError(
            f"{data_dir}: training needs fixed-size images, found raw (native-size) shards; "
            f"convert with a size (e.g. --size 64)."
        )
    return {
        "data_dir": str(Path(data_dir).resolve()),
        "num_classes": int(train_set.num_classes),
        "image_size": size,
        "preprocess": dict(train_set.preprocess),
        "train_split": train_split,
        "val_split": val_split,
        "train_samples": int(len(train_set)),
        "val_samples": int(val_samples),
    }


def preprocess_json(preprocess, image_size: int) -> dict:
    """The preprocessing description stored in a run: a dict, a Preprocess, or None (gntkit's default at this size)."""
    if preprocess is None:
        return Preprocess(size=image_size).to_json()
    if hasattr(preprocess, "to_json"):
        return preprocess.to_json()
    if isinstance(preprocess, dict):
        return dict(preprocess)
    raise GntkitError(f"preprocess must be a Preprocess, a dict or None, found {type(preprocess).__name__}.")


def check_arrays(images, labels, num_classes: int, what: str):
    """Validate one (images, labels) pair for in-memory training.

    Raises:
        GntkitError: wrong dtype, shape, or labels outside 0..num_classes-1.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) == 0:
        raise GntkitError(f"{what} images must be uint8 of shape (N, S, S) with N > 0, found {images.dtype} {images.shape}.")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise GntkitError(f"{what} labels must be {len(images)} integers, found {labels.dtype} {labels.shape}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise GntkitError(
            f"{what} labels must be class ids 0..{num_classes - 1}, found {labels.min()}..{labels.max()}."
        )
    return images, labels.astype(np.int64)


def array_sources(arrays, classes, preprocess, config: TrainConfig, rank: int = 0, world_size: int = 1):
    """ArrayBatches for in-memory training, and the data facts; see gntkit.training.train_arrays."""
    if arrays is None or len(arrays) != 4:
        raise GntkitError("In-memory training needs (train_images, train_labels, val_images, val_labels).")
    if classes is None or len(classes) < 2:
        raise GntkitError("In-memory training needs the class names (at least 2), found none.")
    num_classes = len(classes)
    train_images, train_labels = check_arrays(arrays[0], arrays[1], num_classes, "Training")
    size = int(train_images.shape[1])
    val = None
    val_count = 0
    if arrays[2] is not None:
        val_images, val_labels = check_arrays(arrays[2], arrays[3], num_classes, "Validation")
        if val_images.shape[1] != size:
            raise GntkitError(f"Validation images must be {size}x{size} like the training images, "
                              f"found {val_images.shape[1]}x{val_images.shape[2]}.")
        val = ArrayBatches(val_images, val_labels, max(1, (config.eval_batch_size or 2 * config.batch_size) // world_size),
                           shuffle=False, seed=config.seed, rank=rank, world_size=world_size)
        val_count = len(val_labels)
    elif config.early_stopping is not None:
        raise GntkitError("early_stopping needs validation arrays, found none.")
    train = ArrayBatches(train_images, train_labels, max(1, config.batch_size // world_size), shuffle=True,
                         seed=config.seed, rank=rank, world_size=world_size)
    facts = {
        "data_dir": None,
        "num_classes": num_classes,
        "image_size": size,
        "preprocess": preprocess_json(preprocess, size),
        "train_split": "arrays",
        "val_split": "arrays" if val is not None else None,
        "train_samples": int(len(train_labels)),
        "val_samples": int(val_count),
    }
    return train, val, facts
