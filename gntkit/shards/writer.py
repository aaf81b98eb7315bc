"""What every shard writer shares, all consuming `SampleBatch`.

The formats themselves (TFRecord, HDF5, WebDataset, ...) are listed in
gntkit.shards.registry, which names each writer class; `import gntkit.shards.writer`
never loads tensorflow, torch, h5py or webdataset.

`ShardWriter` holds the `{shard}.partial` file that is renamed on a successful close,
input checks, the record index, and `ShardSink`, a background thread that hashes and writes (and
optionally gzips) the shard bytes so SHA-256 and disk I/O overlap with encoding.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
from collections.abc import Mapping

import numpy as np

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import check_lines
from gntkit.samples.strokes import check_strokes
from gntkit.shards.digest import sha256_shards
from gntkit.shards.manifest import output_write_error
from gntkit.shards.registry import output_format


def utf8_column(strings, what: str) -> tuple[bytes, np.ndarray]:
    """Encode a list of str as one UTF-8 buffer plus N+1 int64 byte offsets, without a per-string loop.

    Args:
        strings: sequence of str.
        what: field name for error messages, e.g. "keys".

    Returns:
        (data, offsets): string i is data[offsets[i]:offsets[i+1]].

    Raises:
        GntkitError: when an entry is not a str or cannot be encoded as UTF-8.
    """
    n = len(strings)
    try:
        joined = "".join(strings)
        data = joined.encode("utf-8")
        char_counts = np.fromiter(map(len, strings), dtype=np.int64, count=n)
    except TypeError:
        bad = next(i for i, s in enumerate(strings) if not isinstance(s, str))
        raise GntkitError(
            f"SampleBatch.{what}[{bad}] must be a str, found {type(strings[bad]).__name__}."
        ) from None
    except UnicodeEncodeError as exc:
        raise GntkitError(f"SampleBatch.{what} holds text that is not valid Unicode ({exc.reason}).") from None
    char_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(char_counts, out=char_offsets[1:])
    if len(data) == len(joined):  # all ASCII: one byte per character
        return data, char_offsets
    # Bytes per code point from its value, then per-string sums at the character boundaries.
    code_points = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4")
    widths = 1 + (code_points >= 0x80).astype(np.int64) + (code_points >= 0x800) + (code_points >= 0x10000)
    byte_ends = np.zeros(len(code_points) + 1, dtype=np.int64)
    np.cumsum(widths, out=byte_ends[1:])
    return data, byte_ends[char_offsets]


class ShardSink:
    """Writes a shard file on a background thread, computing its SHA-256 on the way.

    `write` queues a buffer and returns; the thread hashes it and writes it (after
    gzip compression when asked). hashlib, file writes and zlib release the GIL, so
    this runs beside the encoding of the next batch. At most `depth` buffers wait.

    Args:
        path: file to create (truncated if it exists).
        compression: None, or "gzip" for a whole-file gzip stream (mtime 0, no name: deterministic).
        depth: queued buffers before `write` blocks.
        compute_sha256: hash on the way (False: `close` returns None for the digest, for a
            caller that hashes many shards at once afterwards, see gntkit.shards.digest).
    """

    def __init__(self, path: str, compression: str | None = None, depth: int = 4, compute_sha256: bool = True):
        self.path = path
        self._file = _HashingFile(open(path, "wb"), compute_sha256)
        self._gzip = None
        if compression == "gzip":
            import gzip  # stdlib; only gzip shards need it

            # TF's GZIP reader (zlib) reads any gzip stream; mtime=0 and an empty name
            # keep the bytes identical run to run. Level 6 is zlib's default, as TF's writer.
            self._gzip = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=self._file, mtime=0)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"gntkit-sink-{os.path.basename(path)}", daemon=True)
        self._thread.start()

    def _run(self):
        target = self._gzip if self._gzip is not None else self._file
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                target.write(item)
            except BaseException as exc:  # reported to the producer on its next call
                self._error = exc

    def write(self, data) -> None:
        """Queue a bytes-like buffer (not modified afterwards by the caller) for writing.

        Raises:
            OSError (or whatever the writer thread hit): a failure from an earlier buffer.
        """
        if self._error is not None:
            raise self._error
        if memoryview(data).nbytes:
            self._queue.put(data)

    def close(self) -> tuple[int, str | None]:
        """Flush everything, close the file and return (bytes on disk, sha256 hex or None when not computed).

        Raises:
            The first error of the writer thread, if any.
        """
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is None and self._gzip is not None:
                self._gzip.close()  # writes the gzip trailer; leaves the file open
        finally:
            self._file.file.close()
        if self._error is not None:
            raise self._error
        return self._file.bytes, self._file.sha.hexdigest() if self._file.sha is not None else None

    def abort(self) -> None:
        """Stop the thread and close the file without reporting errors (the caller deletes it)."""
        self._error = self._error or RuntimeError("aborted")
        self._queue.put(None)
        self._thread.join()
        self._file.file.close()


class _HashingFile:
    """A write-only file wrapper that counts (and optionally hashes) what passes through it."""

    def __init__(self, file, compute_sha256: bool = True):
        self.file = file
        self.sha = hashlib.sha256() if compute_sha256 else None
        self.bytes = 0

    def write(self, data) -> int:
        if self.sha is not None:
            self.sha.update(data)
        self.file.write(data)
        size = memoryview(data).nbytes
        self.bytes += size
        return size

    def flush(self) -> None:
        self.file.flush()


class ShardWriter:
    """Base of the format writers: the file lifecycle and input checks they share.

    A writer creates `path + ".partial"` (a file, or a folder for formats whose shards are
    folders, OutputFormat.folder), and `close()` renames it to `path` (with
    `{path}.index.npy` beside it for formats that have record offsets). Leaving a
    `with` block by an exception deletes the partial file. Subclasses set `format` (a
    gntkit.shards.registry name) and implement `_open`, `_write_batch` and `_finish`.

    Args:
        path: final shard path; must not exist.
        split: split name stored with the shard, e.g. "train".
        attrs: {"gntkit_version", "charset", "preprocess"} (stored by formats with file attributes);
            "strokes": True also writes each sample's raw strokes (SampleBatch.meta, see
            gntkit.samples.strokes: every batch must carry them), as each format's feature_spec says;
            "lines": True also writes each text line's transcription and label sequence (see gntkit.samples.lines).
        compression: format-specific; see each subclass.
        compute_sha256: False leaves "sha256" None in `close()`'s result, for a caller
            that hashes its shards together afterwards (gntkit.shards.digest.sha256_files is
            several times faster on many files than one hashlib stream per shard).

    Raises:
        OutputExistsError: when `path` already exists.
        GntkitError: on a bad split, attrs or compression value.
    """

    #: the format's name in gntkit.shards.registry, which gives its extension, compressions and
    #: whether it writes `{shard}.index.npy` (uncompressed only)
    format = ""

    def __init__(self, path, *, split: str, attrs: Mapping, compression: str | None = None, compute_sha256: bool = True):
        spec = self.spec = output_format(self.format)
        self.extension, self.compressions, self.has_index = spec.extension, spec.compressions, spec.has_index
        self.path = os.fspath(path)
        self.compute_sha256 = bool(compute_sha256)
        if not isinstance(split, str) or not split:
            raise GntkitError(f"split must be a non-empty str such as 'train', found {split!r}.")
        if not isinstance(attrs, Mapping):
            raise GntkitError(f"attrs must be a dict, found {type(attrs).__name__}.")
        if isinstance(compression, str):
            compression = compression.lower()
        if compression not in self.compressions:
            allowed = ", ".join(repr(c) for c in self.compressions)
            raise GntkitError(f"{self.format} shards support compression {allowed}, found {compression!r}.")
        self.split = split
        self.attrs = dict(attrs)
        self.strokes = bool(self.attrs.get("strokes", False))
        self._batch_strokes: dict | None = None  # the current batch's checked strokes (strokes mode)
        self.lines = bool(self.attrs.get("lines", False))
        self._batch_lines: dict | None = None  # the current batch's checked text and label sequences (lines mode)
        self.compression = compression
        self.index_path = self.path + ".index.npy" if self.has_index and compression is None else None
        for final in (self.path, self.index_path):
            if final is not None and os.path.exists(final):
                raise OutputExistsError(f"Shard file {final} already exists; remove it or choose another output folder.")
        self.partial_path = self.path + ".partial"
        self.records = 0
        self.raw: bool | None = None  # set by the first batch
        self.image_size: tuple[int, int] | None = None
        self._offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self._closed = False
        self._failed: str | None = None
        self._result: dict | None = None
        try:
            self._open()
        except OSError as exc:  # the folder is full, read-only or gone before the first byte
            self._closed = True
            self._discard_quietly()
            raise self._write_error(exc) from None

    # -- subclass hooks -------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _check_format(self, batch: SampleBatch, pixels: PixelView) -> None:
        """Format-specific checks of a batch, before anything is written (raise GntkitError)."""

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        raise NotImplementedError

    def _finish(self) -> tuple[int, str | None]:
        """Complete the partial file; return (size, sha256 or None to hash the file after)."""
        raise NotImplementedError

    def _discard(self) -> None:
        """Release open handles after a failure (the base deletes the files)."""

    # -- public ---------------------------------------------------------------------
    def write(self, batch: SampleBatch) -> None:
        """Append a batch of samples to the shard.

        Args:
            batch: a `SampleBatch`; all batches of one shard share layout (raw or
                fixed size) and, in fixed-size mode, image size.

        A batch that fails the checks is refused whole and the shard stays usable; a
        failure while writing (e.g. a full disk) leaves the writer failed: `close()` then
        raises and removes the partial file.

        Raises:
            GntkitError: on a closed or failed writer, or a batch that breaks those rules.
        """
        if self._failed is not None:
            raise GntkitError(f"Shard writer for {self.path} failed earlier ({self._failed}); abort it and start the shard again.")
        if self._closed:
            raise GntkitError(f"Shard writer for {self.path} is closed; open a new writer to write more.")
        pixels, raw, image_size = self._check_batch(batch)
        if self.strokes:
            self._batch_strokes = check_strokes(batch.meta, len(batch), f"batch starting at record {self.records} of {self.path}")
        if self.lines:
            self._batch_lines = check_lines(batch.meta, len(batch), f"batch starting at record {self.records} of {self.path}")
        self._check_format(batch, pixels)
        if len(batch) == 0:
            return
        self.raw, self.image_size = raw, image_size
        try:
            self._write_batch(batch, pixels)
        except OSError as exc:  # a full, read-only or vanished output folder
            self._failed = f"{type(exc).__name__}: {exc}"
            raise self._write_error(exc) from None
        except BaseException as exc:
            self._failed = f"{type(exc).__name__}: {exc}"
            raise
        self.records += len(batch)

    def close(self) -> dict:
        """Finish the shard: complete the file, write the index, rename `.partial` to the final name.

        Returns:
            {"records": N, "bytes": file size, "sha256": hex digest (None when compute_sha256 is False),
            "index": index file name or None}.

        Raises:
            OutputExistsError: when the final name appeared while writing.
            OSError: on a failed write or rename (the partial file is removed).
        """
        if self._result is not None:
            return self._result
        if self._closed:
            raise GntkitError(f"Shard writer for {self.path} was aborted; nothing to close.")
        if self._failed is not None:
            self.abort()
            raise GntkitError(f"Shard writer for {self.path} failed while writing ({self._failed}); its partial file was removed.")
        self._closed = True
        try:
            size, sha256 = self._finish()
            if sha256 is None and self.compute_sha256:
                sha256 = sha256_shards([self.partial_path], self.spec)[0]  # formats whose library writes the file (HDF5, LMDB)
            elif not self.compute_sha256:
                sha256 = None
            index_name = None
            if self.index_path is not None:
                offsets = np.concatenate(self._offsets)
                partial_index = self.index_path + ".partial"
                with open(partial_index, "wb") as f:
                    np.save(f, offsets, allow_pickle=False)
            for final in (self.path, self.index_path):
                if final is not None and os.path.exists(final):
                    raise OutputExistsError(f"Shard file {final} appeared while writing; not overwriting it.")
            if self.index_path is not None:
                os.replace(self.index_path + ".partial", self.index_path)
                index_name = os.path.basename(self.index_path)
            os.replace(self.partial_path, self.path)
        except OSError as exc:
            self._discard_quietly()
            raise self._write_error(exc) from None
        except BaseException:
            self._discard_quietly()
            raise
        self._result = {"records": self.records, "bytes": size, "sha256": sha256, "index": index_name}
        return self._result

    def abort(self) -> None:
        """Stop writing and delete the partial files; the final shard is never created."""
        if self._result is not None:
            return
        self._closed = True
        self._discard_quietly()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        elif self._result is None and not self._closed:
            self.close()
        return False

    # -- shared helpers -------------------------------------------------------------
    def _write_error(self, exc: OSError) -> GntkitError:
        """The one sentence for a write the output folder refused (see output_write_error)."""
        return output_write_error(exc, self.partial_path, f" after {self.records:,} of its records")

    def _discard_quietly(self) -> None:
        """Release the handles and remove the partial files after a failed write; a folder that
        refuses even that (read-only, gone) leaves nothing more to do."""
        try:
            self._discard()
        except Exception:  # noqa: S110 - the write already failed and is being reported
            pass
        try:
            self._remove_partials()
        except OSError:
            pass

    def _remove_partials(self) -> None:
        for partial in (self.partial_path, self.index_path and self.index_path + ".partial"):
            if partial and os.path.isdir(partial) and not os.path.islink(partial):
                shutil.rmtree(partial)  # a folder shard (OutputFormat.folder)
            elif partial and os.path.exists(partial):
                os.remove(partial)

    def _add_offsets(self, ends: np.ndarray) -> None:
        """Record the end offsets of the records just written (relative to the file start)."""
        self._offsets.append(np.asarray(ends, dtype=np.int64))

    @property
    def _end_offset(self) -> int:
        return int(self._offsets[-1][-1])

    def _check_batch(self, batch) -> tuple[PixelView, bool, tuple | None]:
        """Check a batch against the shard's rules without changing any state.

        Returns:
            (its pixels as a flat buffer + offsets, raw, image size (h, w) or None).
        """
        if not isinstance(batch, SampleBatch):
            raise GntkitError(f"Shard writers take gntkit.samples.batch.SampleBatch, found {type(batch).__name__}.")
        n = len(batch)
        where = f"batch starting at record {self.records} of {self.path}"
        if self.raw is not None and batch.raw != self.raw:
            mode = "raw (variable-size)" if self.raw else "fixed-size"
            found = "raw" if batch.raw else "fixed-size"
            raise GntkitError(f"{where}: expected {mode} images like the earlier batches, found {found} images.")
        heights = np.asarray(batch.heights)
        widths = np.asarray(batch.widths)
        for name, values in (("heights", heights), ("widths", widths)):
            if values.ndim != 1 or (n and (values.dtype.kind not in "iu" or values.min() < 0)):
                raise GntkitError(f"{where}: SampleBatch.{name} must be non-negative integers, found {values.dtype} {values.shape}.")
        for name, values, low, high in (("labels", batch.labels, -(2**63), 2**63 - 1), ("tag_codes", batch.tag_codes, 0, 0xFFFF)):
            values = np.asarray(values)
            if values.ndim != 1 or (n and (values.dtype.kind not in "iu" or values.min() < low or values.max() > high)):
                raise GntkitError(f"{where}: SampleBatch.{name} must be integers in [{low}, {high}], found {values.dtype} {values.shape}.")
        for name in ("keys", "writer_ids", "characters"):
            values = getattr(batch, name)
            if not set(map(type, values)) <= {str}:  # map/set iterate in C: 10x a generator per sample
                bad = next(i for i, v in enumerate(values) if type(v) is not str)
                raise GntkitError(f"{where}: SampleBatch.{name}[{bad}] must be a str, found {type(values[bad]).__name__}.")
        if not batch.raw:
            images = np.ascontiguousarray(batch.images)
            size = images.shape[1:]
            if self.image_size is not None and size != self.image_size:
                raise GntkitError(f"{where}: expected images of {self.image_size[0]}x{self.image_size[1]} like the earlier batches, "
                                  f"found {size[0]}x{size[1]}.")
            if n and (np.any(heights != size[0]) or np.any(widths != size[1])):
                bad = int(np.flatnonzero((heights != size[0]) | (widths != size[1]))[0])
                raise GntkitError(f"{where}: record {bad} has height x width {heights[bad]}x{widths[bad]}, "
                                  f"expected {size[0]}x{size[1]} (the image array's size).")
            per_image = size[0] * size[1]
            return PixelView(images.reshape(-1), np.arange(n + 1, dtype=np.int64) * per_image, heights, widths), False, size
        pixels = np.asarray(batch.pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 1:
            raise GntkitError(f"{where}: SampleBatch.pixels must be a 1-D uint8 array, found {pixels.dtype} {pixels.shape}.")
        pixels = np.ascontiguousarray(pixels)
        offsets = np.ascontiguousarray(batch.pixel_offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.shape[0] != n + 1:
            raise GntkitError(f"{where}: SampleBatch.pixel_offsets must have N+1={n + 1} entries, found shape {offsets.shape}.")
        lengths = np.diff(offsets)
        expected = heights.astype(np.int64) * widths.astype(np.int64)
        if n and (offsets[0] < 0 or offsets[-1] > pixels.shape[0] or np.any(lengths != expected)):
            if offsets[0] < 0 or offsets[-1] > pixels.shape[0]:
                raise GntkitError(f"{where}: SampleBatch.pixel_offsets must lie within [0, {pixels.shape[0]}], "
                                  f"found [{offsets[0]}, {offsets[-1]}].")
            bad = int(np.flatnonzero(lengths != expected)[0])
            raise GntkitError(f"{where}: record {bad} has {lengths[bad]} pixel bytes, expected height*width = {expected[bad]}.")
        return PixelView(pixels, offsets, heights, widths), True, None


class PixelView:
    """A batch's pixels as one flat uint8 buffer; image i is `pixels[offsets[i]:offsets[i+1]]` (h x w)."""

    __slots__ = ("pixels", "offsets", "heights", "widths")

    def __init__(self, pixels: np.ndarray, offsets: np.ndarray, heights: np.ndarray, widths: np.ndarray):
        self.pixels = pixels
        self.offsets = offsets
        self.heights = heights
        self.widths = widths

    def image(self, i: int) -> np.ndarray:
        """Image i as a 2-D uint8 view."""
        return self.pixels[self.offsets[i]:self.offsets[i + 1]].reshape(int(self.heights[i]), int(self.widths[i]))

