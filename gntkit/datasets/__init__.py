"""gntkit.datasets: read the shards that `gntkit convert` wrote, in any format, without a framework.

`open(DIR_OR_URL, split=...)` reads the manifest `gntkit.json` (through `gntkit.shards.manifest`) and returns a
`ShardSet`: the split's shards, charset, preprocessing, random access to records, bulk batch
reads, and the epoch order / rank / worker partition that both framework adapters
(`gntkit.datasets.torch`, `gntkit.datasets.tf`) share, so PyTorch and TensorFlow see the same
samples in every epoch.

The package, by job:

- `sampling`: epoch order, rank share, worker partition, batch plan (the epoch semantics; its
  docstring states them).
- `tfrecord`, `hdf5`, `webdataset`: one reader module per shard format, named by the format
  table in `gntkit.shards.registry` (a `ShardReader` class and the bulk `read_rows`).
- `shardset`: `ShardSet`; `bulk`: several shards as one record space for the numba kernels.
- `torch`, `tf`: the framework adapters (each imports its framework when imported).

Remote folders (`https://`, `s3://`, `gs://`, any fsspec URL) are read through `gntkit.shards.remote`:
the manifest, charset and index files are fetched at open, each shard on first use into a
bounded local cache, checked against the manifest's sha256 first.

Importing this package imports numpy and the standard library only; h5py is imported when an
HDF5 shard is read, pillow when a WebDataset sample is decoded by the slow path, fsspec when a
URL is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from gntkit.datasets.sampling import (
    EVEN_MODES,
    batch_plan,
    check_count,
    check_even,
    check_rank,
    epoch_order,
    num_batches,
    partition,
    rank_share,
    shuffle_mode,
)
from gntkit.datasets.shardset import ShardSet
from gntkit.errors import GntkitError
from gntkit.shards import remote
from gntkit.shards.digest import default_threads, sha256_files
from gntkit.shards.manifest import MANIFEST, Shard, choose_split, load_manifest, shards_of

__all__ = [
    "MANIFEST",
    "Shard",
    "ShardSet",
    "open",
    "as_shardset",
    "epoch_order",
    "rank_share",
    "partition",
    "batch_plan",
    "num_batches",
    "check_rank",
    "check_count",
    "check_even",
    "shuffle_mode",
    "EVEN_MODES",
]


def open(path, split: str | None = None, verify: bool = False, *, cache_dir=None, cache_limit: int | None = None,  # noqa: A001 - the module's entry point, like gzip.open
         storage_options: dict | None = None) -> ShardSet:
    """Open one split of a gntkit output folder, on local disk or at an fsspec URL.

    Args:
        path: the folder `gntkit convert` wrote (holding gntkit.json), or its URL
            (`https://...`, `s3://bucket/dir`, `gs://...`, any fsspec protocol).
        split: split name; None picks "train" when present, else the only split.
        verify: also check every shard against its sha256 in the manifest (reads all bytes;
            remote shards are always checked when fetched, so this fetches them all).
        cache_dir: remote only: the local folder for fetched files (default
            `$GNTKIT_CACHE_DIR`, else `~/.cache/gntkit`).
        cache_limit: remote only: bytes the cache may hold before the least recently used
            files are evicted (default `$GNTKIT_CACHE_LIMIT`, else 20 GiB).
        storage_options: remote only: passed to fsspec (e.g. `{"endpoint_url": ...}` for S3).

    Returns:
        A ShardSet over that split.

    Raises:
        GntkitError: the folder is not a gntkit output, the conversion is incomplete
            (complete: false or a listed shard missing), the split does not exist (the
            message names the ones that do), a shard fails its checksum, a remote
            folder cannot be reached, or the folder holds a layout for other toolkits (LMDB,
            PaddleOCR: OutputFormat.loadable is False; their text lines load with
            gntkit.datasets.lines.open_lines).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise GntkitError(f"path must be a folder path or URL, found {type(path).__name__}.")
    if split is not None and not isinstance(split, str):
        raise GntkitError(f"split must be a split name (str) or None, found {type(split).__name__}.")
    if remote.is_url(path):
        return _open_remote(str(path), split, verify, remote.RemoteFolder(str(path), cache_dir, cache_limit, storage_options))
    if cache_dir is not None or cache_limit is not None or storage_options is not None:
        raise GntkitError(f"{path}: cache_dir, cache_limit and storage_options are for URLs; a local folder is read in place.")
    folder = Path(path)
    manifest = load_manifest(folder)
    split = choose_split(manifest, split, folder)
    shards = shards_of(folder, manifest, split)
    shard_set = ShardSet(folder, manifest, split, shards)  # refuses a format gntkit.datasets does not read
    if verify:
        _verify_local(shards)
    return shard_set


def _verify_local(shards: list[Shard]) -> None:
    """Check every shard's bytes against the sha256 its manifest lists (all shards at once, on all cores)."""
    for shard in shards:
        if not shard.sha256:
            raise GntkitError(f"{shard.path}: cannot verify, {MANIFEST} records no sha256 for this shard.")
    for shard, found in zip(shards, sha256_files([shard.path for shard in shards], threads=default_threads())):
        if found != shard.sha256:
            raise GntkitError(f"{shard.path} fails its checksum: {MANIFEST} says sha256 {shard.sha256}, the file has {found}.")


def _open_remote(url: str, split: str | None, verify: bool, folder) -> ShardSet:
    """A ShardSet over a remote folder: manifest and charset fetched now, shards when first read."""
    manifest = folder.manifest()
    split = choose_split(manifest, split, url)
    shards = folder.shards(split)
    if verify:
        folder.fetch(shards)  # fetching checks each shard against its sha256
    return ShardSet(folder.local, manifest, split, shards, remote=folder)


def as_shardset(source, split: str | None = None) -> ShardSet:
    """A ShardSet from a folder path, a URL or an existing ShardSet (what the adapters accept).

    A ShardSet of another split than `split` is reopened on that split (with the same
    remote settings).

    Raises:
        GntkitError: see `open`.
    """
    if isinstance(source, ShardSet):
        if split is not None and split != source.split:
            if source.remote is not None:
                return _open_remote(source.url, split, False, source.remote)
            return open(source.path, split)
        return source
    return open(source, split)
