"""ShardSet: one split of a gntkit conversion, local or remote: metadata, random access, bulk
batch reads and the split's epochs (`gntkit.datasets.sampling`). Made by `gntkit.datasets.open`.
numpy only; each format's reader module is imported when its first shard is opened."""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from gntkit.datasets._files import AbsentShard
from gntkit.datasets.bulk import BulkReader
from gntkit.datasets.sampling import batch_plan, check_count, epoch_order, num_batches, rank_share
from gntkit.errors import FormatError, GntkitError
from gntkit.samples.charset import Charset
from gntkit.shards.manifest import CHARSET_JSON, MANIFEST, Shard
from gntkit.shards.registry import output_format

__all__ = ["ShardSet"]


class ShardSet:
    """One split of a gntkit output folder: metadata, random access and bulk batch reads.

    Made by `gntkit.datasets.open`. Picklable (open files are reopened in each process),
    so it can be handed to data-loader workers.

    Attributes:
        path: the output folder.
        info: the whole manifest (gntkit.json) as a dict.
        format: the output format's name in gntkit.shards.registry ("tfrecord", "hdf5", ...).
        split: the split this set reads; splits: all split names in the folder.
        shards: list of `Shard` (paths, record counts, global start index).
        preprocess: the preprocessing settings that produced the images (dict).
        image_size: side S of the (S, S) images, or None in raw mode.
        num_classes: number of classes in the charset.
        url: where the shards live when they are remote (an fsspec URL), else None; `path`
            is then the local cache folder that holds the charset files.
        remote: the `gntkit.shards.remote.RemoteFolder` that fetches remote shards, else None.
    """

    def __init__(self, path: Path, info: dict, split: str, shards: list[Shard], remote=None):
        if "lines" in (info.get("features") or {}):
            raise GntkitError(f"{remote.url if remote is not None else path} holds text lines (label sequences, variable width), "
                              "not one class per image: read it with gntkit.datasets.lines.open_lines (CTC-ready batches).")
        fmt = output_format(info["format"])
        if not fmt.loadable:
            fmt.reader_module()  # raises: one sentence naming the formats gntkit.datasets reads
        self.path = Path(path)
        self.info = info
        self.format = fmt.name
        self.remote = remote
        self.url = remote.url if remote is not None else None
        self.split = split
        self.splits = list(info["splits"])
        self.shards = shards
        self.preprocess = dict(info.get("preprocess") or {})
        raw = bool(self.preprocess.get("raw", False))
        size = self.preprocess.get("size")
        self.image_size = None if raw or size is None else int(size)
        charset_info = info.get("charset") or {}
        self.num_classes = int(charset_info["num_classes"]) if "num_classes" in charset_info else None
        self.compression = info.get("compression")
        self._starts = np.asarray([s.start for s in shards], np.int64)
        self._charset = None
        self._reset()

    def __repr__(self) -> str:
        size = f"{self.image_size}x{self.image_size}" if self.image_size else "raw"
        return (f"ShardSet({self.url or str(self.path)!r}, split={self.split!r}, format={self.format!r}, records={len(self)}, "
                f"shards={len(self.shards)}, images={size})")

    def __len__(self) -> int:
        return int(sum(s.records for s in self.shards))

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("_readers", "_stream", "_bulk_reader", "_pid", "_lock"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    @property
    def charset(self):
        """The `gntkit.samples.charset.Charset` of the labels (loaded from charset.json on first use)."""
        if self._charset is None:
            self._charset = Charset.load(self.path)
            if self.num_classes is not None and len(self._charset) != self.num_classes:
                raise FormatError(str(self.path / CHARSET_JSON), None, f"{self.num_classes} classes (as {MANIFEST} says)",
                                  str(len(self._charset)))
        return self._charset

    @property
    def raw(self) -> bool:
        """True when the shards hold original variable-size bitmaps (no fixed image size)."""
        return self.image_size is None

    @property
    def shard_sizes(self) -> np.ndarray:
        """Records per shard, in file order (int64)."""
        return np.asarray([s.records for s in self.shards], np.int64)

    def close(self) -> None:
        """Close open shard files (they reopen on the next read)."""
        for reader in self._readers.values():
            handle = getattr(reader, "file", None)
            if handle is not None:
                handle.close()
        self._reset()

    def _reset(self, forked: bool = False) -> None:
        # Also called after a fork (data-loader workers): a child never uses the parent's h5py
        # handles. The bulk reader holds only read-only mmaps and arrays, which stay valid in a
        # forked child, so a child keeps it and starts without rebuilding it.
        self._readers, self._stream, self._pid = {}, OrderedDict(), os.getpid()
        # Guards lazily built state: tf.data calls read_batch from several threads at once.
        self._lock = threading.RLock()
        if not forked:
            self._bulk_reader = None

    def fetch(self, shard_ids=None) -> list[Path]:
        """The local paths of shards `shard_ids` (default: all), fetched first when the set is remote.

        For readers that open shard files themselves (TensorFlow's TFRecordDataset): a remote
        set fetches each shard into its cache once, checked against its sha256.

        Raises:
            GntkitError: a shard id out of range, or a fetch or checksum failure.
        """
        ids = range(len(self.shards)) if shard_ids is None else [int(k) for k in shard_ids]
        if any(not 0 <= k < len(self.shards) for k in ids):
            raise GntkitError(f"{self.url or self.path} split {self.split!r} has shards 0..{len(self.shards) - 1}, asked for {list(ids)}.")
        wanted = [self.shards[k] for k in ids]
        if self.remote is not None:
            self.remote.fetch(wanted)
        return [shard.path for shard in wanted]

    def prepare(self) -> ShardSet:
        """Open every shard and load the numba kernels now, in this process.

        Data-loader workers forked afterwards inherit the open shards and compiled kernels
        instead of paying that start-up each (seconds per worker per epoch otherwise).
        make_loader calls it before starting workers.

        Returns:
            self.
        """
        if len(self) and not self.raw:
            self.read_batch(np.zeros(1, np.int64))
        return self

    # -- readers

    def _reader(self, k: int):
        if os.getpid() != self._pid:
            self._reset(forked=True)
        reader = self._readers.get(k)
        if reader is not None:
            return reader
        with self._lock:
            return self._open_reader(k)

    def _open_reader(self, k: int):
        reader = self._readers.get(k)
        if reader is None:
            shard = self.shards[k]
            if self.remote is None:
                reader = self._reader_module().ShardReader(shard, self.image_size, self.compression)
            else:
                reader = self._open_remote_reader(shard)
            self._readers[k] = reader
        return reader

    def _open_remote_reader(self, shard: Shard):
        """Fetch a shard into the cache (checked against its sha256), then open it."""
        for attempt in (0, 1):
            self.remote.fetch([shard])
            try:
                return self._reader_module().ShardReader(shard, self.image_size, self.compression)
            except FileNotFoundError:
                # Another process sharing the cache evicted it between the fetch and the open.
                if attempt:
                    raise GntkitError(f"{shard.path}: evicted from the cache again as soon as it was fetched; "
                                      "raise cache_limit above the shards that several processes read at once.") from None

    def _reader_module(self):
        # gntkit.shards.registry names each format's reader module.
        return output_format(self.format).reader_module()

    def _require_fixed_size(self, what: str) -> int:
        if self.image_size is None:
            raise GntkitError(f"{self.path}: {what} needs fixed-size images, but this conversion kept raw bitmaps "
                              "(convert with --size to batch them).")
        return self.image_size

    def _check_indices(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise GntkitError(f"indices must be a 1-D integer array, found {indices.dtype} {indices.shape}.")
        indices = indices.astype(np.int64, copy=False)
        n = len(self)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            bad = int(indices[(indices < 0) | (indices >= n)][0])
            raise GntkitError(f"{self.path} split {self.split!r} has records 0..{n - 1}, asked for record {bad}.")
        return indices

    def get(self, i: int) -> tuple[np.ndarray, int]:
        """Record i of the split: (uint8 image (H, W), class id).

        Raises:
            GntkitError: i out of range; FormatError: the record cannot be decoded.
        """
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise GntkitError(f"record index must be an integer, found {type(i).__name__}.")
        (i,) = self._check_indices([int(i)])
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self._reader(k).get(int(i - self._starts[k]))

    def _bulk(self, shard_ids=None) -> BulkReader | None:
        """A BulkReader over all shards (cached per process) or over `shard_ids`; None where h5py must read."""
        everything = shard_ids is None
        if everything and self._bulk_reader is not None:
            return self._bulk_reader
        if os.getpid() != self._pid:
            self._reset(forked=True)
        with self._lock:
            if everything and self._bulk_reader is not None:  # another thread built it meanwhile
                return self._bulk_reader
            return self._build_bulk(shard_ids)

    def _build_bulk(self, shard_ids) -> BulkReader | None:
        everything = shard_ids is None
        readers = [self._reader(k) for k in (range(len(self.shards)) if everything else shard_ids)]
        if not readers or any(r.buf is None for r in readers):  # HDF5 with compressed images: h5py reads
            return None
        bulk = BulkReader(self._reader_module(), readers, self.image_size)
        if everything:
            self._bulk_reader = bulk
        return bulk

    def _remote_bulk(self, indices: np.ndarray) -> BulkReader | None:
        """A BulkReader over every shard whose shards fetched so far include those `indices` need.

        Shards not fetched yet hold their place with an empty stand-in, so each rank and
        worker downloads only the shards its own batches touch.
        """
        needed = np.unique(np.searchsorted(self._starts, indices, side="right") - 1).tolist()
        if os.getpid() != self._pid:
            self._reset(forked=True)
        with self._lock:
            bulk = self._bulk_reader
            missing = [k for k in needed if bulk is None or isinstance(bulk.readers[k], AbsentShard)]
            if not missing:
                return bulk
            self.remote.fetch([self.shards[k] for k in missing])  # in parallel, before opening one by one
            present = {} if bulk is None else {k: r for k, r in enumerate(bulk.readers) if not isinstance(r, AbsentShard)}
            present.update(self._readers)
            for k in missing:
                present[k] = self._reader(k)
            if any(r.buf is None for r in present.values()):  # HDF5 with compressed images: h5py reads
                return None
            readers = [present.get(k) or AbsentShard(shard) for k, shard in enumerate(self.shards)]
            self._bulk_reader = BulkReader(self._reader_module(), readers, self.image_size)
            return self._bulk_reader

    def read_batch(self, indices, streaming: bool = False, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Records `indices` (in that order) as uint8 images (B, S, S) and int64 labels (B,).

        One numba pass per batch across shards: a memmap gather for HDF5, Example parsing
        for TFRecord, tar/PNG walking plus zlib for WebDataset. HDF5 files with compressed
        images are read through h5py instead.

        Args:
            indices: 1-D integer array of record indices in the split.
            streaming: read whole shards sequentially and keep the last two decoded in
                memory, instead of random access (for GZIP shards and slow storage;
                pair with shuffle="shard" or False).
            out: optional C-contiguous uint8 array (B, S, S) to write the images into
                (e.g. a view of shared memory); returned as the images.

        Raises:
            GntkitError: raw-mode conversion, an index out of range or a bad `out`;
                FormatError: bad records.
        """
        size = self._require_fixed_size("reading batches")
        indices = self._check_indices(indices)
        if out is None:
            images = np.empty((len(indices), size, size), np.uint8)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (len(indices), size, size)
              or not out.flags.c_contiguous):
            found = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise GntkitError(f"out must be a C-contiguous uint8 array of shape {(len(indices), size, size)}, found {found}.")
        else:
            images = out
        labels = np.empty(len(indices), np.int64)
        if not len(indices):
            return images, labels
        if streaming:
            bulk = None
        else:
            bulk = self._bulk() if self.remote is None else self._remote_bulk(indices)
        if bulk is not None:
            bulk.read(indices, images, labels)
            return images, labels
        shard_of = np.searchsorted(self._starts, indices, side="right") - 1
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for rows in np.split(order, bounds):
            k = int(shard_of[rows[0]])
            local = indices[rows] - self._starts[k]
            if streaming:
                shard_images, shard_labels = self._whole_shard(k)
                images[rows], labels[rows] = shard_images[local], shard_labels[local]
            else:  # HDF5 with compressed images
                part_images = np.empty((len(rows), size, size), np.uint8)
                part_labels = np.empty(len(rows), np.int64)
                self._reader(k).read(local, part_images, part_labels)
                images[rows], labels[rows] = part_images, part_labels
        return images, labels

    def _whole_shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Shard k decoded in memory; the last two shards used stay cached (streaming mode)."""
        if os.getpid() != self._pid:
            self._reset(forked=True)
        with self._lock:
            return self._cached_shard(k)

    def _cached_shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k in self._stream:
            self._stream.move_to_end(k)
            return self._stream[k]
        images, labels = self._read_shard(k)
        if self._bulk_reader is None:
            self._readers.pop(k, None)  # the decoded copy replaces the file (GZIP: the decompressed bytes)
        self._stream[k] = (images, labels)
        while len(self._stream) > 2:
            self._stream.popitem(last=False)
        return images, labels

    def _read_shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        size, n = self.image_size, self.shards[k].records
        images, labels = np.empty((n, size, size), np.uint8), np.empty(n, np.int64)
        if n:
            local = np.arange(n, dtype=np.int64)
            bulk = self._bulk([k])
            if bulk is not None:
                bulk.read(local, images, labels)
            else:
                self._reader(k).read(local, images, labels)
        return images, labels

    def read_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Records start..stop-1 as uint8 images (B, S, S) and int64 labels (B,)."""
        start, stop = check_count("start", start), check_count("stop", stop)
        if stop < start:
            raise GntkitError(f"stop must be >= start, found start={start}, stop={stop}.")
        return self.read_batch(np.arange(start, stop, dtype=np.int64))

    def read_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in memory: uint8 images (N, S, S) and int64 labels (N,), in file order.

        Meant for small sets and for the GPU-resident loader (HWDB1.1 train at 64 x 64 is
        about 3.7 GB). Reads shard by shard.
        """
        size = self._require_fixed_size("read_arrays")
        images = np.empty((len(self), size, size), np.uint8)
        labels = np.empty(len(self), np.int64)
        for k, shard in enumerate(self.shards):
            rows = slice(shard.start, shard.start + shard.records)
            images[rows], labels[rows] = self._read_shard(k)
        return images, labels

    # -- epochs

    def epoch_order(self, seed: int = 0, epoch: int = 0, shuffle=True) -> np.ndarray:
        """`epoch_order` for this split (passes the shard sizes that shuffle="shard" needs)."""
        return epoch_order(len(self), seed, epoch, shuffle, self.shard_sizes)

    def batch_plan(self, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                   worker: int = 0, num_workers: int = 1, start_batch: int = 0, drop_last: bool = False,
                   even: str = "pad") -> list[tuple[int, np.ndarray]]:
        """`batch_plan` of this split's epoch order: (batch number, indices) for one worker of one rank."""
        order = self.epoch_order(seed, epoch, shuffle)
        return batch_plan(order, rank, world_size, worker, num_workers, batch_size=batch_size, drop_last=drop_last,
                          even=even, start_batch=start_batch)

    def num_batches(self, batch_size: int, world_size: int = 1, drop_last: bool = False, even: str = "pad", rank: int = 0) -> int:
        """Batches per epoch on one rank (equal on every rank unless even="none")."""
        share = rank_share(np.zeros(len(self), np.int64), rank, world_size, even) if len(self) else np.zeros(0)
        return num_batches(len(share), batch_size, drop_last)

    def iter_batches(self, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1,
                     worker: int = 0, num_workers: int = 1, start_batch: int = 0, drop_last: bool = False,
                     even: str = "pad", streaming: bool = False):
        """Yield (images uint8 (B, S, S), labels int64 (B,)) numpy batches for one worker of one rank.

        Arguments as in `batch_plan`; `streaming` as in `read_batch`.
        """
        self._require_fixed_size("iter_batches")
        plan = self.batch_plan(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                               worker=worker, num_workers=num_workers, start_batch=start_batch, drop_last=drop_last, even=even)
        ahead = self._lookahead(plan)
        for b, (_, indices) in enumerate(plan):
            ahead(b)
            yield self.read_batch(indices, streaming=streaming)

    def _lookahead(self, plan: list):
        """For a remote set, a callable(b) to call before reading batch b of `plan`: it starts fetching
        the next shard the plan needs, so the download overlaps the reads (local sets: does nothing).

        Only shards in the plan are fetched: a rank or worker still downloads only its own.
        """
        if self.remote is None or not plan:
            return lambda b: None
        first_batch = {}  # shard id -> first batch of the plan that needs it, in plan order
        for b, (_, indices) in enumerate(plan):
            for k in np.unique(np.searchsorted(self._starts, indices, side="right") - 1).tolist():
                first_batch.setdefault(k, b)
        order = sorted(first_batch, key=first_batch.get)
        starts = [first_batch[k] for k in order]  # ascending
        last = [-1]

        def ahead(b: int) -> None:
            i = bisect.bisect_right(starts, b)  # the first shard that only a later batch needs
            if i < len(order) and i != last[0]:
                last[0] = i
                self.remote.prefetch([self.shards[order[i]]])

        return ahead
