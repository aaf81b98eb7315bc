"""Text lines streamed from a converted DGRL set, local or at a URL: bounded memory whatever the
split's size, batches of lines of similar width, for numpy, PyTorch and TensorFlow.

`open_line_stream(DIR_OR_URL, split, buffer_lines=2048)` returns a `LineStream` with the interface
of `gntkit.datasets.lines.LineSet` (`batches`, `len()`, `num_classes`, `blank`, `pad_value`,
`height`), so a trainer takes either, and `lines.torch_batches` / `lines.tf_dataset` adapt both.
Shards are read one after another with each format's stock reader (the writer module's
`read_shard`); a remote folder's shards are fetched into gntkit's shard cache first
(`gntkit.shards.remote`), checked against their sha256, the next one fetched while this one is read.

One epoch on rank r of world_size:

1. The shards are put in an order seeded by (seed, epoch) (file order when shuffle is False) and
   their lines, in file order within each shard, make the epoch's stream of all N lines.
2. Rank r reads the r-th contiguous slice of that stream (as `sampling.rank_share` with
   even="none"): every line exactly once per epoch across ranks, counts differing by at most
   one, and each rank reads only the shards its slice touches.
3. Lines fill a pool of `buffer_lines`. A full pool keeps `len % batch_size` of its lines, drawn
   at random, for the next pool, sorts the others by width (ties in a random order), cuts them
   into batches of batch_size and yields the batches in a random order (seeded by seed, epoch and
   rank). The last pool of the epoch ends with the one short batch (dropped with drop_last).
   A rank yields ceil(n_r / batch_size) batches (floor with drop_last): `num_batches`.
   With bucket=False the pool is cut in its (shuffled) order instead: the usual shuffle buffer.

Memory holds the pool (buffer_lines + batch_size lines) and the stock reader's own read-ahead
(HDF5: blocks of at most 16 MiB of line pixels; TFRecord: 256 records; WebDataset: one sample),
never the split.
numpy only at import.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gntkit.datasets.sampling import check_count, check_rank, epoch_order, num_batches, shuffle_mode
from gntkit.errors import FormatError, GntkitError
from gntkit.samples.lines import pad_lines
from gntkit.shards import remote
from gntkit.shards.manifest import MANIFEST, choose_split, load_manifest, shards_of
from gntkit.shards.registry import output_format

__all__ = ["LineStream", "open_line_stream", "line_set_info", "DEFAULT_BUFFER_LINES"]

DEFAULT_BUFFER_LINES = 2048  # HWDB2.x at height 64: about 130 MB of lines


def line_set_info(manifest: dict, where) -> tuple[int, int, int]:
    """(num_classes, pad_value, height) of a text-line conversion's manifest.

    Raises:
        GntkitError: a conversion of single characters, or one without a line height (--raw).
    """
    if "lines" not in (manifest.get("features") or {}):
        raise GntkitError(f"{where}: expected a conversion of text lines (DGRL sources), "
                          "found one of single characters (its features list no lines).")
    preprocess = manifest.get("preprocess") or {}
    height = preprocess.get("line_height")
    if preprocess.get("raw") or not isinstance(height, int) or height < 1:
        raise GntkitError(f"{where}: expected lines of one height to batch (a conversion with --line-height), "
                          f"found line_height {height!r} (a --raw conversion?).")
    pad_value = 0 if preprocess.get("invert", False) else 255
    return int(manifest["charset"]["num_classes"]), pad_value, int(height)


class LineStream:
    """One split's text lines, read shard by shard as batches are asked for (see the module docstring).

    Made by `open_line_stream`. Attributes: `shards` (the split's `Shard` list), `split`,
    `num_classes`, `pad_value`, `height`, `buffer_lines`, `bucket`, `url` (None when local).
    """

    def __init__(self, where, manifest: dict, split: str, shards: list, *, buffer_lines: int, bucket: bool, folder=None):
        self.num_classes, self.pad_value, self.height = line_set_info(manifest, where)
        self.where, self.split, self.shards, self.remote = str(where), split, shards, folder
        self.url = folder.url if folder is not None else None
        self.format = output_format(manifest["format"])
        self.compression = manifest.get("compression")
        self.buffer_lines, self.bucket = buffer_lines, bucket

    def __repr__(self) -> str:
        return (f"LineStream({self.where!r}, split={self.split!r}, lines={len(self)}, shards={len(self.shards)}, "
                f"height={self.height}, buffer_lines={self.buffer_lines}, bucket={self.bucket})")

    def __len__(self) -> int:
        return int(sum(shard.records for shard in self.shards))

    @property
    def blank(self) -> int:
        """CTC's blank index: one past the charset's classes."""
        return self.num_classes

    def rank_slice(self, *, shuffle=True, seed: int = 0, epoch: int = 0, rank: int = 0, world_size: int = 1) -> list[tuple[int, int, int]]:
        """The reads of one rank's epoch: (shard id, lines to skip, lines to take), in stream order.

        Raises:
            GntkitError: a bad seed, epoch, rank or world_size.
        """
        rank, world_size = check_rank(rank, world_size)
        order = epoch_order(len(self.shards), seed, epoch, shuffle_mode(shuffle) is not None)
        sizes = np.asarray([self.shards[k].records for k in order], np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        bounds = (np.arange(world_size + 1) * int(starts[-1])) // world_size
        low, high = int(bounds[rank]), int(bounds[rank + 1])
        reads = []
        for k, start, stop in zip(order.tolist(), starts[:-1].tolist(), starts[1:].tolist()):
            first, last = max(low, start), min(high, stop)
            if first < last:
                reads.append((k, first - start, last - first))
        return reads

    def num_batches(self, batch_size: int, *, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> int:
        """Batches that `batches` yields on this rank (ranks differ by at most one: DistributedDataParallel
        needs equal step counts, so stop every rank after the smallest count over the ranks)."""
        rank, world_size = check_rank(rank, world_size)
        bounds = (np.arange(world_size + 1) * len(self)) // world_size
        return num_batches(int(bounds[rank + 1] - bounds[rank]), check_count("batch_size", batch_size, 1), drop_last)

    def batches(self, batch_size: int, *, shuffle=True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                rank: int = 0, world_size: int = 1):
        """One epoch of one rank as padded batches (images uint8 (B, H, W), widths int64 (B,), labels int64
        (B, L) padded with 0, label_lengths int64 (B,)): the layout of `LineSet.batches`.

        Raises:
            GntkitError: a bad argument, a line outside the charset or of another height;
                FormatError: a shard that holds fewer lines than the manifest says.
        """
        batch_size = check_count("batch_size", batch_size, 1)
        reads = self.rank_slice(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
        rng = np.random.default_rng([seed, epoch, rank, world_size, 0x11E5])
        mixed = shuffle_mode(shuffle) is not None
        pool = []
        for line in self._lines(reads):
            pool.append(line)
            if len(pool) >= max(self.buffer_lines, batch_size):
                groups, pool = self._cut(pool, batch_size, rng, mixed, final=False)
                for group in groups:
                    yield self._batch(group)
        groups, _ = self._cut(pool, batch_size, rng, mixed, final=True)
        for group in groups:
            if len(group) == batch_size or not drop_last:
                yield self._batch(group)

    def _cut(self, pool: list, batch_size: int, rng, mixed: bool, final: bool) -> tuple[list, list]:
        """(batches of pool lines, lines kept for the next pool): see the module docstring, step 3."""
        n = len(pool)
        order = rng.permutation(n) if mixed else np.arange(n)
        keep = np.zeros(0, np.int64) if final else order[:n % batch_size]
        used = order[len(keep):]
        if self.bucket:
            widths = np.asarray([pool[i][0].shape[1] for i in used], np.int64)
            used = used[np.argsort(widths, kind="stable")]
        groups = [used[i:i + batch_size] for i in range(0, len(used), batch_size)]
        full = [g for g in groups if len(g) == batch_size]
        if mixed:
            full = [full[i] for i in rng.permutation(len(full))]
        short = [g for g in groups if len(g) < batch_size]
        return [[pool[i] for i in g] for g in full + short], [pool[i] for i in np.sort(keep)]

    def _batch(self, lines: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        images, widths = pad_lines([image for image, _ in lines], pad_value=self.pad_value)
        lengths = np.array([len(sequence) for _, sequence in lines], np.int64)
        labels = np.zeros((len(lines), max(int(lengths.max()), 1)), np.int64)
        for b, (_, sequence) in enumerate(lines):
            labels[b, :len(sequence)] = sequence
        return images, widths, labels, lengths

    def _lines(self, reads: list[tuple[int, int, int]]):
        """(image, label sequence) of each line the reads name, in order; remote shards fetched first."""
        for r, (k, skip, take) in enumerate(reads):
            shard = self.shards[k]
            if self.remote is not None:
                self.remote.fetch([shard])
                if r + 1 < len(reads):  # the next shard downloads while this one is read
                    self.remote.prefetch([self.shards[reads[r + 1][0]]])
            seen = 0
            samples = self.format.read_shard(shard.path, compression=self.compression)
            try:
                while seen < skip + take:
                    sample = next(samples, None)
                    if sample is None:
                        break
                    seen += 1
                    line = self._line(shard, sample) if seen > skip else None
                    # Nothing (nor enumerate's reused tuple) may hold a sample while the reader reads
                    # its next block: a sample's image is a view that keeps its whole block alive.
                    sample = None
                    if line is not None:
                        yield line
            finally:
                samples.close()  # the stock reader closes its file
            if seen < skip + take:
                raise FormatError(str(shard.path), None, f"{shard.records} lines (as {MANIFEST} says)", f"{seen}")

    def _line(self, shard, sample: dict) -> tuple[np.ndarray, np.ndarray]:
        sequence = np.asarray(sample.get("label_sequence", ()), np.int64)
        if sequence.size == 0 or sequence.min() < 0 or sequence.max() >= self.num_classes:
            raise GntkitError(f"{shard.path} line {sample.get('key')!r}: expected 1 or more class ids in 0..{self.num_classes - 1}, "
                              f"found {sequence.tolist()[:8]}.")
        image = sample["image"]
        if image.ndim != 2 or image.shape[0] != self.height:
            raise GntkitError(f"{shard.path} line {sample.get('key')!r}: expected an image {self.height} pixels high "
                              f"(the conversion's line_height), found shape {image.shape}.")
        # A copy: the stock readers hand out views of their whole read block.
        return np.array(image, np.uint8, order="C"), sequence.copy()


def open_line_stream(path, split: str | None = None, *, buffer_lines: int = DEFAULT_BUFFER_LINES, bucket: bool = True,
                     cache_dir=None, cache_limit: int | None = None, storage_options: dict | None = None) -> LineStream:
    """Open one split of a text-line conversion for streaming (see the module docstring).

    Args:
        path: a folder written by `gntkit convert` from .dgrl sources, or its fsspec URL.
        split: the split; "train" or the only one when None.
        buffer_lines: lines in the pool that batches are bucketed from (memory: about
            buffer_lines x height x mean width bytes).
        bucket: batch lines of similar width together (False: in the pool's shuffled order).
        cache_dir, cache_limit, storage_options: for URLs, as in `gntkit.datasets.open`.

    Returns:
        A LineStream.

    Raises:
        GntkitError: not a complete conversion of text lines with a line height, a missing split
            or shard, a remote folder that cannot be reached, or a bad argument.
    """
    buffer_lines = check_count("buffer_lines", buffer_lines, 1)
    if not isinstance(bucket, bool):
        raise GntkitError(f"bucket must be True or False, found {bucket!r}.")
    if split is not None and not isinstance(split, str):
        raise GntkitError(f"split must be a split name (str) or None, found {type(split).__name__}.")
    if remote.is_url(path):
        folder = remote.RemoteFolder(str(path), cache_dir, cache_limit, storage_options)
        manifest = folder.manifest()
        line_set_info(manifest, path)
        split = choose_split(manifest, split, str(path))
        return LineStream(path, manifest, split, folder.shards(split), buffer_lines=buffer_lines, bucket=bucket, folder=folder)
    if cache_dir is not None or cache_limit is not None or storage_options is not None:
        raise GntkitError(f"{path}: cache_dir, cache_limit and storage_options are for URLs; a local folder is read in place.")
    if not isinstance(path, (str, os.PathLike)):
        raise GntkitError(f"path must be a folder path or URL, found {type(path).__name__}.")
    folder = Path(path)
    manifest = load_manifest(folder)
    line_set_info(manifest, folder)
    split = choose_split(manifest, split, folder)
    return LineStream(folder, manifest, split, shards_of(folder, manifest, split), buffer_lines=buffer_lines, bucket=bucket)
