"""gntkit.datasets: read the shards that `gntkit convert` wrote, in any format, without a framework.

`open(DIR, split=...)` reads `dataset_info.json` and returns a `ShardSet`: the split's
shards, charset, preprocessing, random access to records, bulk batch reads, and the
epoch order / rank / worker partition that both framework adapters
(`gntkit.datasets.torch`, `gntkit.datasets.tf`) share, so PyTorch and TensorFlow see
the same samples in every epoch.

Epoch semantics (one definition, used everywhere):

1. `epoch_order(n, seed, epoch, shuffle)` gives the epoch's order of all n records:
   identity (`shuffle=False`), a full permutation seeded by (seed, epoch)
   (`shuffle=True` or `"global"`), or shards in a permuted order with records permuted
   inside each shard (`shuffle="shard"`, for sequential streaming).
2. `rank_share(order, rank, world_size, even)` gives rank r the r-th contiguous slice.
   `even="pad"` (default, like DDP's DistributedSampler) wraps around to the start of the
   order so every rank gets ceil(n / world_size) records: at most world_size - 1 records
   repeat once per epoch. `even="drop"` drops the last n % world_size records of the
   (shuffled) order instead, so every rank gets floor(n / world_size) and none repeats.
   `even="none"` splits without padding or dropping (counts differ by at most one;
   for evaluation, not for DDP training, where unequal step counts hang).
3. The rank's records are cut into batches of batch_size (the last one short unless
   drop_last). Data-loader worker w of k produces batches w, w + k, w + 2k, ...; loaders
   hand them out round-robin, so the batch sequence does not depend on k.

This module imports numpy and the standard library only; h5py is imported when an
HDF5 shard is read, pillow when a WebDataset shard is decoded.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gntkit.kernels import shards as _kernels
from gntkit.errors import FormatError, GntkitError, require
from gntkit.sources import mapped_bytes
from gntkit.digest import default_threads, sha256_files

__all__ = [
    "MANIFEST",
    "Shard",
    "ShardSet",
    "open",
    "epoch_order",
    "rank_share",
    "partition",
    "batch_plan",
    "num_batches",
]

MANIFEST = "dataset_info.json"

# Format names as written in the manifest, with the spellings users type.
_FORMAT_ALIASES = {"tfrecord": "tfrecord", "hdf5": "hdf5", "h5": "hdf5", "webdataset": "webdataset", "wds": "webdataset", "tar": "webdataset"}
_EVEN_MODES = ("pad", "drop", "none")


# --------------------------------------------------------------------------- sampler logic


def _check_count(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GntkitError(f"{name} must be an integer >= {minimum}, found {value!r}.")
    return int(value)


def check_rank(rank, world_size) -> tuple[int, int]:
    """(rank, world_size) as ints, checked: world_size >= 1, 0 <= rank < world_size.

    Raises:
        GntkitError: a value out of range or not an integer.
    """
    world_size = _check_count("world_size", world_size, 1)
    rank = _check_count("rank", rank)
    if rank >= world_size:
        raise GntkitError(f"rank must be below world_size={world_size}, found {rank}.")
    return rank, world_size


def _shuffle_mode(shuffle) -> str | None:
    """Normalise the `shuffle` argument to None, "global" or "shard"."""
    if shuffle is False or shuffle is None or shuffle == "none":
        return None
    if shuffle is True or shuffle == "global":
        return "global"
    if shuffle == "shard":
        return "shard"
    raise GntkitError(f"shuffle must be True, False, 'global' or 'shard', found {shuffle!r}.")


def epoch_order(n: int, seed: int, epoch: int, shuffle=True, shard_sizes=None) -> np.ndarray:
    """The order in which one epoch visits records 0..n-1 (before splitting across ranks).

    Args:
        n: number of records in the split.
        seed: non-negative integer; the same (seed, epoch) gives the same order everywhere.
        epoch: non-negative epoch number; each epoch gets a different order.
        shuffle: False (identity), True / "global" (a full random permutation), or
            "shard" (shards in random order, records permuted inside each shard; keeps
            reads within one or two shards at a time, for streaming).
        shard_sizes: records per shard, in file order; required for shuffle="shard".

    Returns:
        int64 array of the n record indices.

    Raises:
        GntkitError: a negative or non-integer argument, or shard sizes that do not add up to n.
    """
    n = _check_count("n", n)
    seed = _check_count("seed", seed)
    epoch = _check_count("epoch", epoch)
    mode = _shuffle_mode(shuffle)
    if mode is None:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    if mode == "global":
        return rng.permutation(n).astype(np.int64)
    if shard_sizes is None:
        raise GntkitError("shuffle='shard' needs shard_sizes (records per shard, in file order).")
    sizes = np.asarray(shard_sizes, dtype=np.int64)
    if sizes.ndim != 1 or (sizes < 0).any() or int(sizes.sum()) != n:
        raise GntkitError(f"shard_sizes must be non-negative and add up to n={n}, found a total of {int(sizes.sum())}.")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    parts = [starts[s] + rng.permutation(int(sizes[s])) for s in rng.permutation(len(sizes))]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def rank_share(indices, rank: int, world_size: int, even: str = "pad") -> np.ndarray:
    """The records of one rank: the rank-th contiguous slice of an epoch order.

    Args:
        indices: the epoch order (1-D integer array).
        rank: 0 <= rank < world_size.
        world_size: number of ranks (processes / GPUs).
        even: "pad" (wrap to the start so every rank gets ceil(n / world_size)),
            "drop" (drop the tail so every rank gets floor(n / world_size)) or "none".

    Returns:
        int64 array of record indices for this rank.

    Raises:
        GntkitError: bad rank / world_size / even.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1:
        raise GntkitError(f"indices must be a 1-D array, found shape {indices.shape}.")
    rank, world_size = check_rank(rank, world_size)
    if even not in _EVEN_MODES:
        raise GntkitError(f"even must be one of {', '.join(_EVEN_MODES)}, found {even!r}.")
    n = len(indices)
    if even == "none":
        bounds = (np.arange(world_size + 1) * n) // world_size
        return indices[bounds[rank]:bounds[rank + 1]]
    per = -(-n // world_size) if even == "pad" else n // world_size
    if even == "pad" and per * world_size > n:
        indices = np.resize(indices, per * world_size)  # cyclic: the order, then its start again
    return indices[rank * per:(rank + 1) * per]


def num_batches(count: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches that `count` records make (a short last batch counts unless drop_last)."""
    count = _check_count("count", count)
    batch_size = _check_count("batch_size", batch_size, 1)
    return count // batch_size if drop_last else -(-count // batch_size)


def batch_plan(indices, rank: int = 0, world_size: int = 1, worker: int = 0, num_workers: int = 1, *,
               batch_size: int = 1, drop_last: bool = False, even: str = "pad", start_batch: int = 0) -> list[tuple[int, np.ndarray]]:
    """The batches one worker of one rank produces, as (batch number, record indices) pairs.

    The rank's share (see `rank_share`) is cut into batches; batches before `start_batch`
    are skipped (resume), and the remaining ones go round-robin to the workers:
    worker w gets remaining batches w, w + num_workers, ... . A loader that takes one
    batch from each worker in turn therefore yields batch start_batch, start_batch + 1, ...
    whatever num_workers is.

    Returns:
        list of (batch number within the rank's epoch, int64 index array).

    Raises:
        GntkitError: any argument out of range.
    """
    num_workers = _check_count("num_workers", num_workers, 1)
    worker = _check_count("worker", worker)
    if worker >= num_workers:
        raise GntkitError(f"worker must be below num_workers={num_workers}, found {worker}.")
    start_batch = _check_count("start_batch", start_batch)
    batch_size = _check_count("batch_size", batch_size, 1)
    share = rank_share(indices, rank, world_size, even)
    total = num_batches(len(share), batch_size, drop_last)
    return [(b, share[b * batch_size:(b + 1) * batch_size]) for b in range(start_batch + worker, total, num_workers)]


def partition(indices, rank: int, world_size: int, worker: int = 0, num_workers: int = 1, *,
              batch_size: int = 1, drop_last: bool = False, even: str = "pad", start_batch: int = 0) -> np.ndarray:
    """The record indices that one worker of one rank reads in an epoch, in order.

    Across ranks: no record is lost or repeated except by the documented `even` policy
    ("pad" repeats at most world_size - 1 records, "drop" leaves out at most
    world_size - 1), and every rank gets the same count. Within a rank, workers get whole
    batches round-robin (see `batch_plan`), so the order a loader yields does not depend
    on num_workers.

    Args:
        indices: the epoch order (`epoch_order(...)`).
        rank, world_size: this process's place among the ranks.
        worker, num_workers: this data-loader worker among the rank's workers.
        batch_size, drop_last: how the rank's records are cut into batches.
        even: "pad", "drop" or "none" (see `rank_share`).
        start_batch: skip the rank's first start_batch batches (resume mid-epoch).

    Returns:
        int64 array: the worker's batches concatenated.
    """
    plan = batch_plan(indices, rank, world_size, worker, num_workers, batch_size=batch_size,
                      drop_last=drop_last, even=even, start_batch=start_batch)
    return np.concatenate([idx for _, idx in plan]) if plan else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Shard:
    """One shard file of a split.

    Attributes:
        path: the shard file.
        records: number of records in it.
        start: global index (within the split) of its first record.
        bytes: file size from the manifest, or None.
        sha256: checksum from the manifest, or None.
        index: the `{shard}.index.npy` record offsets file, or None.
    """

    path: Path
    records: int
    start: int
    bytes: int | None = None
    sha256: str | None = None
    index: Path | None = None


def _manifest_error(path: Path, expected: str, found: str) -> GntkitError:
    return FormatError(str(path), None, expected, found)


def _read_manifest(folder: Path) -> dict:
    if not folder.exists():
        raise GntkitError(f"{folder}: expected a gntkit output folder, found nothing there.")
    if not folder.is_dir():
        raise GntkitError(f"{folder}: expected a gntkit output folder, found a file.")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise GntkitError(f"{folder} is not a gntkit output folder: it has no {MANIFEST} (write one with `gntkit convert`).")
    try:
        info = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _manifest_error(manifest_path, "a JSON manifest", f"unreadable JSON ({exc})") from None
    if not isinstance(info, dict):
        raise _manifest_error(manifest_path, "a JSON object", type(info).__name__)
    for key in ("format", "splits"):
        if key not in info:
            raise _manifest_error(manifest_path, f"the field {key!r}", "no such field")
    if info.get("complete") is not True:
        raise GntkitError(f"{folder} holds an incomplete conversion ({MANIFEST} says complete: {json.dumps(info.get('complete'))}); "
                          f"run `gntkit convert` again with --overwrite.")
    if str(info["format"]).lower() not in _FORMAT_ALIASES:
        raise _manifest_error(manifest_path, "format tfrecord, hdf5 or webdataset", repr(info["format"]))
    if not isinstance(info["splits"], dict) or not info["splits"]:
        raise _manifest_error(manifest_path, "at least one split under 'splits'", repr(info["splits"]))
    return info


def _shards_of(folder: Path, manifest_path: Path, split: str, entry: dict) -> list[Shard]:
    if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
        raise _manifest_error(manifest_path, f"a 'shards' list for split {split!r}", repr(entry)[:80])
    shards, start = [], 0
    for k, item in enumerate(entry["shards"]):
        if not isinstance(item, dict) or "file" not in item or not isinstance(item.get("records"), int):
            raise _manifest_error(manifest_path, f"shard {k} of split {split!r} to have 'file' and integer 'records'", repr(item)[:80])
        path = folder / item["file"]
        if not path.is_file():
            raise GntkitError(f"{folder} holds an incomplete conversion: shard {item['file']} listed in {MANIFEST} is missing.")
        index = folder / item["index"] if item.get("index") else None
        if index is not None and not index.is_file():
            raise GntkitError(f"{folder} holds an incomplete conversion: record index {item['index']} listed in {MANIFEST} is missing.")
        shards.append(Shard(path, item["records"], start, item.get("bytes"), item.get("sha256"), index))
        start += item["records"]
    declared = entry.get("num_records")
    if declared is not None and declared != start:
        raise _manifest_error(manifest_path, f"split {split!r} num_records equal to the sum of its shards' records ({start})", str(declared))
    return shards


def open(path, split: str | None = None, verify: bool = False) -> ShardSet:  # noqa: A001 - the module's entry point, like gzip.open
    """Open one split of a gntkit output folder.

    Args:
        path: the folder `gntkit convert` wrote (holding dataset_info.json).
        split: split name; None picks "train" when present, else the only split.
        verify: also check every shard against its sha256 in the manifest (reads all bytes).

    Returns:
        A ShardSet over that split.

    Raises:
        GntkitError: the folder is not a gntkit output, the conversion is incomplete
            (complete: false or a listed shard missing), the split does not exist (the
            message names the ones that do), or a shard fails its checksum.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise GntkitError(f"path must be a folder path, found {type(path).__name__}.")
    if split is not None and not isinstance(split, str):
        raise GntkitError(f"split must be a split name (str) or None, found {type(split).__name__}.")
    folder = Path(path)
    info = _read_manifest(folder)
    names = list(info["splits"])
    if split is None:
        if "train" in names:
            split = "train"
        elif len(names) == 1:
            split = names[0]
        else:
            raise GntkitError(f"{folder} has splits {', '.join(names)} and none is 'train': pass split=... to choose one.")
    if split not in info["splits"]:
        raise GntkitError(f"{folder} has no split {split!r}; it has {', '.join(repr(s) for s in names)}.")
    shards = _shards_of(folder, folder / MANIFEST, split, info["splits"][split])
    if verify:
        for shard in shards:
            if not shard.sha256:
                raise GntkitError(f"{shard.path}: cannot verify, {MANIFEST} records no sha256 for this shard.")
        for shard, found in zip(shards, sha256_files([shard.path for shard in shards], threads=default_threads())):
            if found != shard.sha256:
                raise GntkitError(f"{shard.path} fails its checksum: {MANIFEST} says sha256 {shard.sha256}, the file has {found}.")
    return ShardSet(folder, info, split, shards)


# --------------------------------------------------------------------------- shard readers


def _load_index(shard: Shard, size: int) -> np.ndarray | None:
    if shard.index is None:
        return None
    offsets = np.load(shard.index)
    if offsets.ndim != 1 or len(offsets) != shard.records + 1 or offsets[0] < 0 or offsets[-1] > size or (np.diff(offsets) <= 0).any():
        raise FormatError(str(shard.index), None, f"{shard.records + 1} increasing byte offsets within {size} bytes",
                          f"{len(offsets)} offsets from {offsets[:1].tolist()} to {offsets[-1:].tolist()}")
    return offsets.astype(np.int64)


def _check_records(shard: Shard, found: int) -> None:
    if found != shard.records:
        raise FormatError(str(shard.path), None, f"{shard.records} records (as {MANIFEST} says)", f"{found}")


def _readonly(array: np.ndarray) -> np.ndarray:
    # The numba kernels take one typed list of shard buffers; every entry must have the same
    # (read-only) array type.
    array.setflags(write=False)
    return array


class _TFRecordShard:
    """One TFRecord shard: its bytes (mmap; GZIP shards decompressed into memory) and record offsets."""

    def __init__(self, shard: Shard, image_size: int | None, compressed: bool):
        self.shard = shard
        self.image_size = image_size
        if compressed:
            with gzip.open(shard.path, "rb") as handle:
                try:
                    self.buf = _readonly(np.frombuffer(handle.read(), np.uint8))
                except (OSError, EOFError) as exc:
                    raise FormatError(str(shard.path), None, "a GZIP-compressed TFRecord file (the manifest says GZIP)", str(exc)) from None
            self.offsets = self._scan()
        else:
            self.buf = _readonly(mapped_bytes(shard.path))
            self.offsets = _load_index(shard, len(self.buf))
            if self.offsets is None:
                self.offsets = self._scan()
        _check_records(shard, len(self.offsets) - 1)

    def _scan(self) -> np.ndarray:
        """Record offsets from the frame lengths, for shards without an index file."""
        buf, offsets, pos = self.buf, [0], 0
        while pos < len(buf):
            if pos + 12 > len(buf):
                raise FormatError(str(self.shard.path), pos, "a 12-byte TFRecord frame header", f"{len(buf) - pos} bytes")
            pos += 16 + int.from_bytes(bytes(buf[pos:pos + 8]), "little")
            if pos > len(buf):
                raise FormatError(str(self.shard.path), offsets[-1], "a complete TFRecord frame", "a frame running past the end of the file")
            offsets.append(pos)
        return np.asarray(offsets, np.int64)

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Record j of this shard (any image size), parsed in plain Python."""
        start, end = int(self.offsets[j]), int(self.offsets[j + 1])
        try:
            features = _kernels.parse_example(bytes(self.buf[start + 12:end - 4]))
            height, width = features["height"][0], features["width"][0]
            image = np.frombuffer(features["image"][0], np.uint8).reshape(height, width)
            return image, int(features["label"][0])
        except (ValueError, KeyError, IndexError) as exc:
            raise FormatError(str(self.shard.path), start, f"record {j} to be a tf.train.Example with image, height, width, label", str(exc)) from None


_IMAGE_KEY = np.frombuffer(b"image", np.uint8)
_LABEL_KEY = np.frombuffer(b"label", np.uint8)


class _HDF5Shard:
    """One HDF5 shard: labels in memory; images by memmap of the raw chunks when unfiltered, else h5py reads."""

    def __init__(self, shard: Shard, image_size: int | None):
        h5py = require("h5py", "h5py", "Reading HDF5 shards")  # heavy; only HDF5 users need it
        self.shard = shard
        self.image_size = image_size
        # A chunk cache as large as the shard's images: each compressed chunk is decompressed once.
        self.file = h5py.File(shard.path, "r", rdcc_nbytes=max(1 << 20, shard.records * (image_size or 1) ** 2 + (1 << 20)), rdcc_nslots=100003)
        try:
            self.labels = np.asarray(self.file["labels"][:], np.int64)
        except KeyError:
            raise FormatError(str(shard.path), None, "a 'labels' dataset", "none") from None
        _check_records(shard, len(self.labels))
        self.images = self.file.get("images")
        self.positions = None
        self.buf = None
        if image_size is not None:
            if self.images is None or self.images.shape[1:] != (image_size, image_size) or self.images.dtype != np.uint8:
                found = "no 'images' dataset" if self.images is None else f"{self.images.dtype} {self.images.shape}"
                raise FormatError(str(shard.path), None, f"an 'images' dataset uint8 (N, {image_size}, {image_size})", found)
            self.positions = self._raw_positions()
            if self.positions is not None:
                self.buf = _readonly(mapped_bytes(shard.path))

    def _raw_positions(self) -> np.ndarray | None:
        """Byte position of each image in the file when the dataset is stored unfiltered, else None."""
        ds, n, block = self.images, self.shard.records, self.image_size ** 2
        if n == 0 or ds.id.get_create_plist().get_nfilters() != 0:
            return None
        if ds.chunks is None:
            offset = ds.id.get_offset()
            return None if offset is None else offset + np.arange(n, dtype=np.int64) * block
        rows = ds.chunks[0]
        if ds.chunks[1:] != ds.shape[1:]:
            return None
        chunk_bytes = np.full(-(-n // rows), -1, np.int64)
        for k in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(k)
            chunk_bytes[info.chunk_offset[0] // rows] = info.byte_offset
        if (chunk_bytes < 0).any():
            return None  # unwritten chunks read as fill values: leave that to h5py
        r = np.arange(n, dtype=np.int64)
        return chunk_bytes[r // rows] + (r % rows) * block

    def read(self, local: np.ndarray, out_images: np.ndarray, out_labels: np.ndarray) -> None:
        """h5py reads, for filtered (compressed) images: one slab when the records are close, else a sorted selection."""
        out_labels[:] = self.labels[local]
        order = np.argsort(local, kind="stable")
        sorted_local = local[order]
        lo, hi = int(sorted_local[0]), int(sorted_local[-1]) + 1
        if hi - lo <= 4 * len(local):
            out_images[order] = self.images[lo:hi][sorted_local - lo]
        else:
            unique, inverse = np.unique(sorted_local, return_inverse=True)
            out_images[order] = self.images[unique][inverse]

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Record j of this shard through h5py (fixed-size or raw)."""
        if self.images is not None:
            return np.asarray(self.images[j]), int(self.labels[j])
        try:
            offsets = self.file["pixel_offsets"]
            start, end = int(offsets[j]), int(offsets[j + 1])
            height, width = int(self.file["heights"][j]), int(self.file["widths"][j])
            return np.asarray(self.file["pixels"][start:end]).reshape(height, width), int(self.labels[j])
        except (KeyError, ValueError) as exc:
            raise FormatError(str(self.shard.path), None, f"record {j} in 'pixels' / 'pixel_offsets' / 'heights' / 'widths'", str(exc)) from None


class _TarShard:
    """One WebDataset tar shard: its bytes (mmap) and sample offsets; the slow path decodes with pillow."""

    def __init__(self, shard: Shard, image_size: int | None):
        self.shard = shard
        self.image_size = image_size
        self.buf = _readonly(mapped_bytes(shard.path))
        self.offsets = _load_index(shard, len(self.buf))
        if self.offsets is None:
            self.offsets = self._scan()
        _check_records(shard, len(self.offsets) - 1)

    def _members(self, start: int, end: int):
        """(name, data start, size) of each regular member whose header lies in [start, end)."""
        buf, pos, long_name = self.buf, start, None
        while pos < end:
            header = bytes(buf[pos:pos + 512])
            if len(header) < 512:
                raise FormatError(str(self.shard.path), pos, "a 512-byte tar header", f"{len(header)} bytes")
            if header == bytes(512):
                return
            try:
                size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            except ValueError:
                raise FormatError(str(self.shard.path), pos, "an octal member size in the tar header", repr(header[124:136])) from None
            kind = header[156:157]
            data = pos + 512
            pos = data + -(-size // 512) * 512
            if kind == b"L":
                long_name = bytes(buf[data:data + size]).rstrip(b"\0").decode("utf-8")
            elif kind == b"x":
                for line in bytes(buf[data:data + size]).decode("utf-8").split("\n"):
                    if "path=" in line:
                        long_name = line.split("path=", 1)[1]
            elif kind in (b"0", b"\0"):
                name = long_name
                if name is None:
                    name = header[0:100].rstrip(b"\0").decode("utf-8")
                    prefix = header[345:500].rstrip(b"\0").decode("utf-8")
                    if prefix and header[257:262] == b"ustar":
                        name = prefix + "/" + name
                yield name, data, size
                long_name = None
            else:
                long_name = None

    @staticmethod
    def _split_name(name: str) -> tuple[str, str]:
        slash = name.rfind("/")
        dot = name.find(".", slash + 1)
        return (name, "") if dot < 0 else (name[:dot], name[dot + 1:])

    def _scan(self) -> np.ndarray:
        """Sample offsets from the member headers, for shards without an index file."""
        offsets, key, pos = [], None, 0
        buf = self.buf
        while pos + 512 <= len(buf):
            header_pos = pos
            header = bytes(buf[pos:pos + 512])
            if header == bytes(512):
                break
            size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            pos += 512 + -(-size // 512) * 512
            if header[156:157] not in (b"0", b"\0"):
                continue
            name_key, _ = self._split_name(header[0:100].rstrip(b"\0").decode("utf-8"))
            if name_key != key:
                offsets.append(header_pos)
                key = name_key
        offsets.append(pos)
        return np.asarray(offsets if len(offsets) > 1 else [0], np.int64)

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Sample j of this shard: full tar header handling and pillow (any image size)."""
        start, end = int(self.offsets[j]), int(self.offsets[j + 1])
        image, label = None, None
        for name, data, size in self._members(start, end):
            _, ext = self._split_name(name)
            if ext == "png":
                image = _decode_png(bytes(self.buf[data:data + size]), self.shard.path, data)
            elif ext == "cls":
                try:
                    label = int(bytes(self.buf[data:data + size]).decode("ascii").strip())
                except (UnicodeDecodeError, ValueError):
                    raise FormatError(str(self.shard.path), data, f"sample {j}: a decimal class id in .cls", repr(bytes(self.buf[data:data + size])[:20])) from None
        if image is None or label is None:
            raise FormatError(str(self.shard.path), start, f"sample {j} to have .png and .cls members", "one of them missing")
        return image, label


def _decode_png(data: bytes, path: Path, offset: int) -> np.ndarray:
    from PIL import Image  # pillow is a core dependency; imported here to keep `import gntkit.datasets` light

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode != "L":
                raise FormatError(str(path), offset, "an 8-bit grayscale PNG", f"mode {image.mode}")
            return np.asarray(image)
    except OSError as exc:
        raise FormatError(str(path), offset, "a PNG image", str(exc)) from None


class _BulkReader:
    """Several shards seen as one record space (0..total-1) for the numba kernels: one kernel call per batch.

    Built per process from the shard readers (mmaps stay shared with the page cache).
    """

    def __init__(self, fmt: str, readers: list, image_size: int):
        from numba.typed import List  # numba is a core dependency; typed lists carry the shard buffers into the kernels

        self.format = fmt
        self.readers = readers
        self.size = image_size
        counts = np.asarray([r.shard.records for r in readers], np.int64)
        self.first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.shard_of = np.repeat(np.arange(len(readers), dtype=np.int64), counts)
        self.bufs = List([r.buf for r in readers])
        self.views = [memoryview(r.buf) for r in readers]  # cheap slicing for zlib
        if fmt == "hdf5":
            self.positions = np.concatenate([r.positions for r in readers]).astype(np.int64)
            self.labels = np.concatenate([r.labels for r in readers])
        else:
            self.starts = np.concatenate([r.offsets[:-1] for r in readers]).astype(np.int64)
            self.ends = np.concatenate([r.offsets[1:] for r in readers]).astype(np.int64)

    def _where(self, row: int) -> tuple[_TFRecordShard | _TarShard, int]:
        k = int(self.shard_of[row])
        return self.readers[k], int(row - self.first[k])

    def read(self, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
        """Records `rows` of this record space into images (B, S, S) and labels (B,)."""
        flat = images.reshape(len(rows), -1)
        if self.format == "hdf5":
            _kernels.gather_blocks(self.bufs, self.shard_of, self.positions, rows, self.size * self.size, flat)
            labels[:] = self.labels[rows]
            return
        status = np.zeros(len(rows), np.int64)
        if self.format == "tfrecord":
            _kernels.parse_examples(self.bufs, self.shard_of, self.starts, self.ends, rows, _IMAGE_KEY, _LABEL_KEY, flat, labels, status)
            bad = np.flatnonzero(status)
            if len(bad):
                reader, local = self._where(int(rows[bad[0]]))
                raise FormatError(str(reader.shard.path), int(reader.offsets[local]),
                                  f"record {local} to hold {_kernels.STATUS_TEXT[int(status[bad[0]])]}", "something else")
            return
        self._read_tar(rows, images, labels, status)

    def _read_tar(self, rows: np.ndarray, images: np.ndarray, labels: np.ndarray, status: np.ndarray) -> None:
        side = self.size
        idat_starts = np.zeros(len(rows), np.int64)
        idat_lens = np.zeros(len(rows), np.int64)
        _kernels.locate_png(self.bufs, self.shard_of, self.starts, self.ends, rows, side, idat_starts, idat_lens, labels, status)
        expected = side * (side + 1)
        raw = np.zeros((len(rows), expected), np.uint8)
        ok = np.flatnonzero(status == 0)
        views = self.views
        inflated = []
        for k, start, length in zip(self.shard_of[rows[ok]].tolist(), idat_starts[ok].tolist(), idat_lens[ok].tolist()):
            try:
                inflated.append(zlib.decompress(views[k][start:start + length]))
            except zlib.error:
                inflated.append(b"")
        sizes = np.fromiter(map(len, inflated), np.int64, len(inflated))
        if (sizes == expected).all():
            raw[ok] = np.frombuffer(b"".join(inflated), np.uint8).reshape(len(ok), expected)
        else:
            for i, data in zip(ok.tolist(), inflated):
                if len(data) == expected:
                    raw[i] = np.frombuffer(data, np.uint8)
                else:
                    status[i] = _kernels.NO_PNG
        _kernels.png_unfilter(raw, side, images.reshape(len(rows), -1), status)
        for i in np.flatnonzero(status).tolist():  # unusual members or PNG layouts: pillow and the full tar parser
            reader, local = self._where(int(rows[i]))
            image, labels[i] = reader.get(local)
            if image.shape != (side, side):
                raise FormatError(str(reader.shard.path), int(reader.offsets[local]), f"sample {local}: a {side}x{side} image", f"{image.shape}")
            images[i] = image


# --------------------------------------------------------------------------- ShardSet


class ShardSet:
    """One split of a gntkit output folder: metadata, random access and bulk batch reads.

    Made by `gntkit.datasets.open`. Picklable (open files are reopened in each process),
    so it can be handed to data-loader workers.

    Attributes:
        path: the output folder.
        info: the whole manifest (dataset_info.json) as a dict.
        format: "tfrecord", "hdf5" or "webdataset".
        split: the split this set reads; splits: all split names in the folder.
        shards: list of `Shard` (paths, record counts, global start index).
        preprocess: the preprocessing settings that produced the images (dict).
        image_size: side S of the (S, S) images, or None in raw mode.
        num_classes: number of classes in the charset.
    """

    def __init__(self, path: Path, info: dict, split: str, shards: list[Shard]):
        self.path = Path(path)
        self.info = info
        self.format = _FORMAT_ALIASES[str(info["format"]).lower()]
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
        return f"ShardSet({str(self.path)!r}, split={self.split!r}, format={self.format!r}, records={len(self)}, shards={len(self.shards)}, images={size})"

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
        """The `gntkit.charset.Charset` of the labels (loaded from charset.json on first use)."""
        if self._charset is None:
            from gntkit.charset import Charset  # core module; deferred so a manifest can be inspected alone

            self._charset = Charset.load(self.path)
            if self.num_classes is not None and len(self._charset) != self.num_classes:
                raise FormatError(str(self.path / "charset.json"), None, f"{self.num_classes} classes (as {MANIFEST} says)", str(len(self._charset)))
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
            if self.format == "tfrecord":
                reader = _TFRecordShard(shard, self.image_size, str(self.compression or "").upper() == "GZIP")
            elif self.format == "hdf5":
                reader = _HDF5Shard(shard, self.image_size)
            else:
                reader = _TarShard(shard, self.image_size)
            self._readers[k] = reader
        return reader

    def _require_fixed_size(self, what: str) -> int:
        if self.image_size is None:
            raise GntkitError(f"{self.path}: {what} needs fixed-size images, but this conversion kept raw bitmaps (convert with --size to batch them).")
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

    def _bulk(self, shard_ids=None) -> _BulkReader | None:
        """A _BulkReader over all shards (cached per process) or over `shard_ids`; None where h5py must read."""
        everything = shard_ids is None
        if everything and self._bulk_reader is not None:
            return self._bulk_reader
        if os.getpid() != self._pid:
            self._reset(forked=True)
        with self._lock:
            if everything and self._bulk_reader is not None:  # another thread built it meanwhile
                return self._bulk_reader
            return self._build_bulk(shard_ids)

    def _build_bulk(self, shard_ids) -> _BulkReader | None:
        everything = shard_ids is None
        readers = [self._reader(k) for k in (range(len(self.shards)) if everything else shard_ids)]
        if not readers or (self.format == "hdf5" and any(r.buf is None for r in readers)):
            return None
        bulk = _BulkReader(self.format, readers, self.image_size)
        if everything:
            self._bulk_reader = bulk
        return bulk

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
        elif not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (len(indices), size, size) or not out.flags.c_contiguous:
            found = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise GntkitError(f"out must be a C-contiguous uint8 array of shape {(len(indices), size, size)}, found {found}.")
        else:
            images = out
        labels = np.empty(len(indices), np.int64)
        if not len(indices):
            return images, labels
        bulk = None if streaming else self._bulk()
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
        start, stop = _check_count("start", start), _check_count("stop", stop)
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
        for _, indices in self.batch_plan(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                                          worker=worker, num_workers=num_workers, start_batch=start_batch,
                                          drop_last=drop_last, even=even):
            yield self.read_batch(indices, streaming=streaming)


def _as_shardset(source, split: str | None) -> ShardSet:
    """A ShardSet from a folder path or an existing ShardSet (used by the adapters)."""
    if isinstance(source, ShardSet):
        if split is not None and split != source.split:
            return open(source.path, split)
        return source
    return open(source, split)
