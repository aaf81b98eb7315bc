"""TensorFlow adapter: `make_dataset(...)` -> tf.data.Dataset of (uint8 (B, S, S), int64 (B,)) batches.

Two readers:

- "native" (TFRecord only; the default there): TFRecordDataset reads with parallel
  interleave, batched `tf.io.parse_example` + `decode_raw`, prefetch. With
  shuffle=False or "shard" it yields exactly the batches of the PyTorch adapter (each
  rank's records are runs inside shards: a shard is read whole and its records gathered
  in the epoch's order). With shuffle=True ("global") a rank keeps exactly the records
  the epoch order gives it (the same multiset as PyTorch's rank), read in file order and
  mixed by a seeded shuffle buffer: the same samples per epoch, in a different order.
- "numpy" (every format; the default for HDF5 and WebDataset): the numba bulk readers
  that PyTorch uses, called per batch through `tf.numpy_function` in a deterministic
  parallel map: exactly the PyTorch batches, in the same order.

Epoch order, rank split, padding and batching are the ones in `gntkit.datasets`.
"""

from __future__ import annotations

import numpy as np

from gntkit.datasets import as_shardset, check_count, check_even, check_rank, num_batches, rank_share, shuffle_mode
from gntkit.errors import GntkitError, require

# This module is the TensorFlow adapter: tensorflow is its one heavy import, with the
# one-sentence install hint when it is missing.
tf = require("tensorflow", "tensorflow", "The TensorFlow data pipeline (gntkit.datasets.tf)")

__all__ = ["make_dataset", "rank_of"]

_READERS = ("auto", "native", "numpy")
# The output format tf.data reads itself (TFRecordDataset), by its gntkit.shards.registry name.
_NATIVE_FORMAT = "tfrecord"


def rank_of(input_context=None, rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size) from a tf.distribute.InputContext, or the explicit values, else (0, 1).

    Raises:
        GntkitError: both an input context and explicit values, or values out of range.
    """
    if input_context is not None:
        if rank is not None or world_size is not None:
            raise GntkitError("Give either input_context or rank/world_size, not both.")
        if not isinstance(input_context, tf.distribute.InputContext):
            raise GntkitError(f"input_context must be a tf.distribute.InputContext, found {type(input_context).__name__}.")
        rank, world_size = input_context.input_pipeline_id, input_context.num_input_pipelines
    elif rank is None and world_size is None:
        rank, world_size = 0, 1
    elif rank is None or world_size is None:
        raise GntkitError(f"Give both rank and world_size, found rank={rank}, world_size={world_size}.")
    return check_rank(rank, world_size)


def make_dataset(source, split: str | None = None, batch_size: int = 256, shuffle=True, seed: int = 0, input_context=None, *,
                 epoch: int = 0, num_epochs: int = 1, start_batch: int = 0, drop_last: bool = False, even: str = "pad",
                 reader: str = "auto",
                 rank: int | None = None, world_size: int | None = None, shuffle_buffer: int = 16384,
                 num_parallel_reads: int | None = None) -> tf.data.Dataset:
    """A tf.data.Dataset of (uint8 images (B, S, S), int64 labels (B,)) for one input pipeline.

    Args:
        source: output folder of `gntkit convert`, or a ShardSet.
        split: split name (None: "train", or the only split).
        batch_size: records per batch in this pipeline (with tf.distribute, the per-replica
            batch: `input_context.get_per_replica_batch_size(global_batch)`).
        shuffle: True / "global", "shard" or False, as in the PyTorch adapter.
        seed: seed of the order; epoch: the first epoch; num_epochs: epochs in the dataset
            (each with its own order, one after the other).
        start_batch: skip this many batches of the first epoch (resume mid-epoch: pass the
            number of batches already trained on).
        input_context: tf.distribute.InputContext; its input_pipeline_id / num_input_pipelines
            play rank / world_size (or pass rank and world_size).
        drop_last: drop the pipeline's last short batch of each epoch.
        even: "pad", "drop" or "none" (see `gntkit.datasets.rank_share`).
        reader: "native" (TFRecord with tf.data ops), "numpy" (numba bulk reads via
            tf.numpy_function, any format) or "auto": numpy wherever the shards can be read
            by offset (every format, uncompressed TFRecord included: about 3x the native
            reader here, and exactly PyTorch's batches), native for GZIP TFRecord. Choose
            "native" for a pure tf.data graph (tf.data service, TPU hosts).
        shuffle_buffer: shuffle buffer of the native reader in global mode.
        num_parallel_reads: shards read at once by the native reader (default AUTOTUNE-ish: 4).

    Returns:
        tf.data.Dataset, prefetched.

    Raises:
        GntkitError: bad arguments, a raw-mode conversion, or see `gntkit.datasets.open`.
    """
    shards = as_shardset(source, split)
    size = shards._require_fixed_size("make_dataset")
    batch_size = check_count("batch_size", batch_size, 1)
    mode = shuffle_mode(shuffle)
    seed, epoch = check_count("seed", seed), check_count("epoch", epoch)
    num_epochs = check_count("num_epochs", num_epochs, 1)
    start_batch = check_count("start_batch", start_batch)
    even = check_even(even)
    reader = _choose_reader(shards, reader)
    rank, world_size = rank_of(input_context, rank, world_size)
    shuffle_buffer = check_count("shuffle_buffer", shuffle_buffer, 1)
    parallel = check_count("num_parallel_reads", num_parallel_reads, 1) if num_parallel_reads is not None else 4
    settings = dict(shards=shards, size=size, batch_size=batch_size, mode=mode, seed=seed, rank=rank, world_size=world_size,
                    drop_last=bool(drop_last), even=even)
    if reader == "numpy":
        dataset = _numpy_dataset(epochs=range(epoch, epoch + num_epochs), start_batch=start_batch, **settings)
    else:
        dataset = _native_dataset(range(epoch, epoch + num_epochs), start_batch, shuffle_buffer=shuffle_buffer, parallel=parallel,
                                  **settings)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _choose_reader(shards, reader: str) -> str:
    """"native" or "numpy" for `reader` ("auto" picks; see make_dataset)."""
    if reader not in _READERS:
        raise GntkitError(f"reader must be one of {', '.join(_READERS)}, found {reader!r}.")
    if reader == "auto":
        reader = "native" if shards.format == _NATIVE_FORMAT and shards.info.get("compression") else "numpy"
    if reader == "native" and shards.format != _NATIVE_FORMAT:
        raise GntkitError(f"reader='native' reads TFRecord shards; {shards.path} holds {shards.format} shards (use reader='numpy').")
    return reader


def _native_dataset(epochs: range, start_batch: int, **settings) -> tf.data.Dataset:
    """The native reader's epochs one after the other, the first starting at batch start_batch."""
    dataset = None
    for e in epochs:
        one = _native_epoch(epoch=e, **settings)
        if e == epochs.start and start_batch:
            one = one.skip(start_batch)
        dataset = one if dataset is None else dataset.concatenate(one)
    return dataset


def _numpy_dataset(shards, size, batch_size, mode, seed, rank, world_size, drop_last, even, epochs, start_batch) -> tf.data.Dataset:
    """Batches read by ShardSet.read_batch in tf.numpy_function calls: PyTorch's batches, in its order.

    Each epoch's plan (record indices per batch) is computed when the epoch starts; batches
    are read by a deterministic parallel map (the numba kernels release the GIL, so reads
    overlap), then prefetched.
    """

    def plan_of(e):
        plan = shards.batch_plan(batch_size, shuffle=mode or False, seed=seed, epoch=int(e), rank=rank, world_size=world_size,
                                 drop_last=drop_last, even=even)
        lengths = np.asarray([len(idx) for _, idx in plan], np.int64)
        flat = np.concatenate([idx for _, idx in plan]) if plan else np.zeros(0, np.int64)
        return flat.astype(np.int64), lengths

    def read(indices):
        return shards.read_batch(indices)

    def one_epoch(flat, lengths):
        return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_lengths(flat, lengths))

    def read_batch(indices):
        images, labels = tf.numpy_function(read, [indices], (tf.uint8, tf.int64), stateful=False)
        return tf.ensure_shape(images, (None, size, size)), tf.ensure_shape(labels, (None,))

    plans = tf.data.Dataset.range(epochs.start, epochs.stop).map(lambda e: tf.numpy_function(plan_of, [e], (tf.int64, tf.int64)))
    batches = plans.flat_map(lambda flat, lengths: one_epoch(tf.ensure_shape(flat, (None,)), tf.ensure_shape(lengths, (None,))))
    if start_batch:
        batches = batches.skip(start_batch)  # skips indices only: the first epoch's first batches
    return batches.map(read_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _parser(size: int):
    description = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(records):
        features = tf.io.parse_example(records, description)
        images = tf.reshape(tf.io.decode_raw(features["image"], tf.uint8), [-1, size, size])
        return images, features["label"]

    return parse


def _native_epoch(shards, size, batch_size, mode, seed, rank, world_size, drop_last, even, epoch, shuffle_buffer,
                  parallel) -> tf.data.Dataset:
    compression = "GZIP" if str(shards.compression or "").upper() == "GZIP" else ""
    order = shards.epoch_order(seed, epoch, mode or False)
    share = rank_share(order, rank, world_size, even)
    paths = [str(s.path) for s in shards.shards]
    if shards.remote is not None:  # TFRecordDataset opens files itself: fetch this rank's shards first
        shards.fetch(np.unique(np.searchsorted(shards.shard_sizes.cumsum(), share, side="right")))
    if mode == "global":
        records = _global_records(shards, share, paths, compression, parallel)
        shuffle_seed = int(np.random.default_rng([seed, epoch, rank]).integers(2**31 - 1))
        records = records.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
    else:
        records = _segment_records(shards, share, paths, compression, parallel)
    # The rank's batch count is fixed by its share, as in PyTorch (equal on every rank).
    records = records.take(len(share))
    batches = records.batch(batch_size, drop_remainder=bool(drop_last))
    expected = num_batches(len(share), batch_size, drop_last)
    batches = batches.map(_parser(size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.apply(tf.data.experimental.assert_cardinality(expected)) if expected else batches.take(0)


def _segment_records(shards, share: np.ndarray, paths: list[str], compression: str, parallel: int) -> tf.data.Dataset:
    """Records of `share` in its order, when it is made of runs inside shards (shuffle False / "shard").

    Each run's shard is read whole (one batch of all its records) and the run's records are
    gathered from it; runs are read `parallel` at a time and concatenated in order.
    """
    if not len(share):
        return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
    starts = np.asarray([s.start for s in shards.shards], np.int64)
    shard_of = np.searchsorted(starts, share, side="right") - 1
    breaks = np.flatnonzero(np.diff(shard_of)) + 1
    run_starts = np.concatenate([[0], breaks])
    run_lengths = np.diff(np.concatenate([run_starts, [len(share)]]))
    run_shards = shard_of[run_starts]
    local = share - starts[shard_of]
    files = tf.constant([paths[k] for k in run_shards])
    counts = tf.constant([shards.shards[k].records for k in run_shards], tf.int64)
    positions = tf.RaggedTensor.from_row_lengths(tf.constant(local, tf.int64), tf.constant(run_lengths, tf.int64))
    runs = tf.data.Dataset.from_tensor_slices((files, counts, positions))

    def read_run(path, count, wanted):
        whole = tf.data.TFRecordDataset(path, compression_type=compression).batch(count)
        return whole.map(lambda serialized: tf.gather(serialized, wanted)).unbatch()

    # block_length >= every run: each run is emitted whole before the next, so the output is the
    # runs' concatenation while the next runs are already being read.
    return runs.interleave(read_run, cycle_length=parallel, block_length=int(run_lengths.max()),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _global_records(shards, share: np.ndarray, paths: list[str], compression: str, parallel: int) -> tf.data.Dataset:
    """The records of `share` (with their multiplicity: padding may repeat one), in file order, interleaved."""
    n = len(shards)
    counts = np.bincount(share, minlength=n).astype(np.int64)
    wanted = sorted({int(k) for k in np.searchsorted([s.start for s in shards.shards], share, side="right") - 1})
    if not wanted:
        return tf.data.Dataset.from_tensor_slices(tf.constant([], tf.string))
    if (counts == 1).all():  # one pipeline holding every record once: no selection needed
        files = tf.data.Dataset.from_tensor_slices(tf.constant(paths))
        return files.interleave(lambda path: tf.data.TFRecordDataset(path, compression_type=compression), cycle_length=parallel,
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    copies = tf.constant(counts)
    files = tf.data.Dataset.from_tensor_slices((tf.constant([paths[k] for k in wanted]),
                                                tf.constant([shards.shards[k].start for k in wanted], tf.int64)))

    def read_shard(path, start):
        records = tf.data.TFRecordDataset(path, compression_type=compression)
        numbered = tf.data.Dataset.zip((tf.data.Dataset.range(start, start + 2**40), records))
        # Keep each record as often as the rank's share names it (0, 1, or 2 with padding), in chunks for speed.
        return numbered.batch(1024).map(lambda index, serialized: tf.repeat(serialized, tf.gather(copies, index))).unbatch()

    return files.interleave(read_shard, cycle_length=parallel, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
