"""HDF5 shards: one file per shard, one chunked, resizable dataset per field.

Layout (docs/architecture.md "HDF5"): `images` uint8 (N, S, S) in fixed-size mode,
or `pixels` uint8 (total,) + `pixel_offsets` int64 (N+1,) in raw mode; `heights`,
`widths` int32; `labels` int64; `tag_codes` uint16; `writer_ids`, `keys`,
`characters` variable-length UTF-8 strings. Root attributes: `gntkit_version`,
`split`, `charset` (JSON), `preprocess` (JSON), `num_records`. With strokes (attrs
"strokes", online sources): ragged `points` int16 (P, 2) + `points_offsets` int64 (N+1,)
and `stroke_lengths` int16 (S,) + `stroke_lengths_offsets` int64 (N+1,), and the root
attribute `strokes` = 1.

Each batch is one resize and one slice assignment per dataset. h5py is imported
by the functions that use it, never by `import gntkit.shards.writer`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re

import numpy as np

import gntkit
from gntkit.errors import GntkitError, require
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.samples.strokes import STROKES_SPEC
from gntkit.shards.registry import output_format
from gntkit.shards.writer import PixelView, ShardWriter

#: Bytes per chunk of the image data: small enough for cheap random reads of one
#: sample, large enough that a compressed chunk is worth its index entry.
IMAGE_CHUNK_BYTES = 256 * 1024
#: Rows per chunk of the per-record datasets.
RECORD_CHUNK_ROWS = 16384
#: Free bytes kept beyond a batch's own before h5py may write it: an unfinished image chunk,
#: the per-record chunks and HDF5's metadata, all written late (see HDF5Writer._check_room).
_ROOM_RESERVE = 2 * IMAGE_CHUNK_BYTES + 2 * 1024 * 1024
#: Bytes per record beyond its pixels: labels, sizes, codes and the three strings.
_RECORD_BYTES = 128

#: per-record datasets: name -> (dtype, SampleBatch attribute or None for strings)
_NUMERIC = (("heights", "int32"), ("widths", "int32"), ("labels", "int64"), ("tag_codes", "uint16"))
_STRINGS = (("writer_ids", "writer_ids"), ("keys", "keys"), ("characters", "characters"))


def _h5py():
    # h5py is optional and loads the HDF5 C library: only HDF5 shards need it.
    return require("h5py", "h5py", "Writing and reading HDF5 shards")


def _json_attr(value) -> str:
    """A JSON text for an attribute: strings that already are JSON pass unchanged."""
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            pass
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class HDF5Writer(ShardWriter):
    """Writes one HDF5 shard (`.h5`).

    Args:
        path: final shard path; must not exist.
        split: split name, stored as the `split` attribute.
        attrs: must hold "charset" and "preprocess" (dicts or JSON text); "gntkit_version"
            defaults to the installed version.
        compression: None, "lzf" (fast) or "gzip" (level 4); applied to every numeric dataset.

    Raises:
        OutputExistsError: when the shard already exists.
        GntkitError: on missing attrs or an unknown compression.
        MissingDependencyError: when h5py is not installed.
    """

    format = "hdf5"

    def _open(self) -> None:
        missing = [name for name in ("charset", "preprocess") if name not in self.attrs]
        if missing:
            raise GntkitError(f"HDF5 shard attrs need {' and '.join(missing)} (Charset.to_json() / Preprocess.to_json()), "
                              f"found keys {sorted(self.attrs)}.")
        h5py = _h5py()
        self._file = h5py.File(self.partial_path, "w")
        root = self._file.attrs
        root["gntkit_version"] = str(self.attrs.get("gntkit_version", gntkit.__version__))
        root["split"] = self.split
        root["charset"] = _json_attr(self.attrs["charset"])
        root["preprocess"] = _json_attr(self.attrs["preprocess"])
        root["num_records"] = 0
        if self.strokes:
            root["strokes"] = 1
        if self.lines:
            root["lines"] = 1
        self._datasets: dict = {}
        self._ragged_totals = {"points": 0, "stroke_lengths": 0, "label_sequence": 0}
        self._pixel_total = 0
        self._pending = None  # images of an unfinished chunk (see _write_images)

    def _filter_options(self) -> dict:
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": 4}
        if self.compression == "lzf":
            return {"compression": "lzf"}
        return {}

    def _create_datasets(self, raw: bool, image_size: tuple[int, int] | None) -> None:
        """Create every dataset empty and resizable, chunked as documented above."""
        h5py = _h5py()
        f, filters = self._file, self._filter_options()
        if raw:
            f.create_dataset("pixels", shape=(0,), maxshape=(None,), dtype="uint8", chunks=(IMAGE_CHUNK_BYTES,), **filters)
            offsets = f.create_dataset("pixel_offsets", shape=(1,), maxshape=(None,), dtype="int64", chunks=(RECORD_CHUNK_ROWS,), **filters)
            offsets[0] = 0
        else:
            height, width = image_size
            rows = max(1, IMAGE_CHUNK_BYTES // max(1, height * width))
            f.create_dataset("images", shape=(0, height, width), maxshape=(None, height, width), dtype="uint8",
                             chunks=(rows, max(1, height), max(1, width)), **filters)
        for name, dtype in _NUMERIC:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(RECORD_CHUNK_ROWS,), **filters)
        string = h5py.string_dtype("utf-8")
        for name, _ in _STRINGS:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=string, chunks=(RECORD_CHUNK_ROWS // 4,))
        if self.strokes:
            f.create_dataset("points", shape=(0, 2), maxshape=(None, 2), dtype="int16", chunks=(RECORD_CHUNK_ROWS, 2), **filters)
            f.create_dataset("stroke_lengths", shape=(0,), maxshape=(None,), dtype="int16", chunks=(RECORD_CHUNK_ROWS,), **filters)
            for name in ("points_offsets", "stroke_lengths_offsets"):
                f.create_dataset(name, shape=(1,), maxshape=(None,), dtype="int64", chunks=(RECORD_CHUNK_ROWS,), **filters)[0] = 0
        if self.lines:  # text lines: the transcription and the ragged label sequence
            f.create_dataset("text", shape=(0,), maxshape=(None,), dtype=string, chunks=(RECORD_CHUNK_ROWS // 4,))
            f.create_dataset("label_sequence", shape=(0,), maxshape=(None,), dtype="int64", chunks=(RECORD_CHUNK_ROWS,), **filters)
            offsets = f.create_dataset("label_sequence_offsets", shape=(1,), maxshape=(None,), dtype="int64",
                                       chunks=(RECORD_CHUNK_ROWS,), **filters)
            offsets[0] = 0
        self._datasets = {name: f[name] for name in f}

    def _check_room(self, nbytes: int) -> None:
        """Raise ENOSPC before h5py writes, when the folder lacks room for nbytes (plus chunks and
        metadata): HDF5 fails badly mid-write on a full disk (its metadata cache then faults the
        process as the file closes), so the writer stops while the file is still whole."""
        stat = os.statvfs(os.path.dirname(os.path.abspath(self.partial_path)))
        if stat.f_bavail * stat.f_frsize < nbytes + _ROOM_RESERVE:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.partial_path)

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        self._check_room(int(pixels.offsets[-1] - pixels.offsets[0]) + _RECORD_BYTES * len(batch))
        try:
            self._write_columns(batch, pixels)
        except (OSError, RuntimeError) as exc:  # HDF5 reports a failed write(2) in its message: errno = N
            raise _os_error(exc, self.partial_path) from None

    def _write_columns(self, batch: SampleBatch, pixels: PixelView) -> None:
        if not self._datasets:
            self._create_datasets(self.raw, self.image_size)
        start, n = self.records, len(batch)
        end = start + n
        d = self._datasets
        if self.raw:
            first, last = int(pixels.offsets[0]), int(pixels.offsets[-1])
            d["pixels"].resize((self._pixel_total + last - first,))
            d["pixels"][self._pixel_total:] = pixels.pixels[first:last]
            d["pixel_offsets"].resize((end + 1,))
            d["pixel_offsets"][start + 1:] = pixels.offsets[1:] - first + self._pixel_total
            self._pixel_total += last - first
        else:
            d["images"].resize((end,) + self.image_size)
            self._write_images(np.ascontiguousarray(batch.images), start)
        for name, dtype in _NUMERIC:
            values = pixels.heights if name == "heights" else pixels.widths if name == "widths" else getattr(batch, name)
            d[name].resize((end,))
            d[name][start:end] = np.asarray(values).astype(dtype, copy=False)
        for name, attribute in _STRINGS:
            d[name].resize((end,))
            d[name][start:end] = np.array(getattr(batch, attribute), dtype=object)
        if self.strokes:
            self._write_strokes(start, end)
        if self.lines:
            d["text"].resize((end,))
            d["text"][start:end] = np.array(self._batch_lines["text"], dtype=object)
            self._write_strokes(start, end, self._batch_lines, ("label_sequence",))

    def _write_strokes(self, start: int, end: int, ragged: dict | None = None, names=("points", "stroke_lengths")) -> None:
        """Append the batch's ragged points and stroke lengths (or other ragged columns) with their offsets."""
        d, strokes = self._datasets, self._batch_strokes if ragged is None else ragged
        for name in names:
            values, offsets, total = strokes[name], strokes[name + "_offsets"], self._ragged_totals[name]
            d[name].resize((total + len(values),) + values.shape[1:])
            d[name][total:] = values
            d[name + "_offsets"].resize((end + 1,))
            d[name + "_offsets"][start + 1:] = offsets[1:] + total
            self._ragged_totals[name] = total + len(values)

    def _write_images(self, images: np.ndarray, start: int) -> None:
        """Write images[i] as record start + i, whole uncompressed chunks straight to the file.

        h5py's slice assignment copies every chunk through HDF5's chunk cache first;
        `write_direct_chunk` writes the caller's bytes as they are (same file layout, about
        1 CPU-s less over HWDB1.1-train). A chunk that a batch leaves unfinished waits in
        `_pending` until the next batch (or `_finish`) completes it.
        """
        dataset = self._datasets["images"]
        if self.compression is not None:  # filters run inside HDF5
            dataset[start:start + len(images)] = images
            return
        rows = dataset.chunks[0]
        pending = self._pending  # always starts at a chunk boundary
        if pending is not None:
            need = rows - len(pending)
            if len(images) < need:
                self._pending = np.concatenate([pending, images])
                return
            dataset.id.write_direct_chunk((start - len(pending), 0, 0), np.concatenate([pending, images[:need]]))
            images, start, self._pending = images[need:], start + need, None
        whole = len(images) - len(images) % rows
        for first in range(0, whole, rows):
            dataset.id.write_direct_chunk((start + first, 0, 0), images[first:first + rows])
        if whole < len(images):
            self._pending = images[whole:].copy()

    def _finish(self) -> tuple[int, None]:
        self._check_room(0 if self._pending is None else self._pending.nbytes)
        try:
            return self._complete()
        except (OSError, RuntimeError) as exc:
            raise _os_error(exc, self.partial_path) from None

    def _complete(self) -> tuple[int, None]:
        pending = self._pending
        if pending is not None:  # the last, partial chunk (the dataset's extent already covers it)
            self._datasets["images"][self.records - len(pending):self.records] = pending
            self._pending = None
        if not self._datasets:  # an empty shard still has the documented datasets (raw layout when unknown)
            self._create_datasets(bool(self.raw) if self.raw is not None else True, self.image_size)
        self._file.attrs["num_records"] = self.records
        # A flush that fails leaves the file open and whole for _discard; a close that fails would
        # leave HDF5's state broken until the process ends (it then faults).
        self._file.flush()
        self._file.close()
        return os.path.getsize(self.partial_path), None

    def _discard(self) -> None:
        file = getattr(self, "_file", None)
        if file is None:
            return
        # Closing flushes HDF5's metadata, and a file whose flush failed stays open in the library,
        # which flushes it again as the process exits: give the blocks back first, so that every
        # flush finds room on a full disk (the file is deleted next anyway).
        with contextlib.suppress(OSError):
            os.truncate(self.partial_path, 0)
        if file.id.valid:
            file.close()


def _os_error(exc: Exception, path: str) -> Exception:
    """The OSError inside an HDF5 error message (`errno = 28`) without HDF5's internals, else the error itself."""
    found = re.search(r"errno = (\d+)", str(exc))
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), path)


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """Describe the datasets of HDF5 shards, as JSON-able data for the manifest.

    Args:
        raw: True for original variable-size bitmaps (`pixels` + `pixel_offsets`), False for `images`.
        image_size: S in fixed-size mode; ignored in raw mode.
        strokes: the shards also hold raw strokes (adds their datasets and a "strokes" entry).
        lines: the shards hold text lines (variable-width images in the raw layout, `text` and the
            ragged `label_sequence`; a "lines" entry).

    Returns:
        {"format": "hdf5", "datasets": [{"name", "dtype", "shape"}], "attributes": [...],
         "image": {"encoding", "raw", "shape"}}; "N" and "total" stand for the record and pixel counts.

    Raises:
        GntkitError: when fixed-size mode has no positive image size.
    """
    if not raw and (not isinstance(image_size, (int, np.integer)) or image_size <= 0):
        raise GntkitError(f"Fixed-size HDF5 shards need a positive image_size, found {image_size!r}.")
    if raw:
        image_sets = [{"name": "pixels", "dtype": "uint8", "shape": ["total"]},
                      {"name": "pixel_offsets", "dtype": "int64", "shape": ["N+1"]}]
    else:
        image_sets = [{"name": "images", "dtype": "uint8", "shape": ["N", int(image_size), int(image_size)]}]
    spec = {
        "format": "hdf5",
        "datasets": image_sets
        + [{"name": name, "dtype": dtype, "shape": ["N"]} for name, dtype in _NUMERIC]
        + [{"name": name, "dtype": "string", "shape": ["N"]} for name, _ in _STRINGS],
        "attributes": ["gntkit_version", "split", "charset", "preprocess", "num_records"],
        "image": {
            "encoding": "raw uint8, row-major, height x width"
            + ("; image i is pixels[pixel_offsets[i]:pixel_offsets[i+1]]" if raw else ""),
            "raw": bool(raw),
            "shape": None if raw else [int(image_size), int(image_size)],
        },
    }
    if strokes:
        spec["datasets"] += [{"name": "points", "dtype": "int16", "shape": ["P", 2]},
                             {"name": "points_offsets", "dtype": "int64", "shape": ["N+1"]},
                             {"name": "stroke_lengths", "dtype": "int16", "shape": ["S"]},
                             {"name": "stroke_lengths_offsets", "dtype": "int64", "shape": ["N+1"]}]
        spec["attributes"].append("strokes")
        spec["strokes"] = {**STROKES_SPEC,
                           "layout": "ragged: sample i's points are points[points_offsets[i]:points_offsets[i+1]], its strokes likewise"}
    if lines:
        spec["datasets"] += [{"name": "text", "dtype": "string", "shape": ["N"]},
                             {"name": "label_sequence", "dtype": "int64", "shape": ["L"]},
                             {"name": "label_sequence_offsets", "dtype": "int64", "shape": ["N+1"]}]
        spec["attributes"].append("lines")
        spec["lines"] = {**LINES_SPEC,
                         "layout": "ragged: line i's class ids are label_sequence[label_sequence_offsets[i]:label_sequence_offsets[i+1]]"}
    return spec


def read_shard(path, compression: str | None = None, block: int = 4096, block_bytes: int = 16 << 20):
    """Read an HDF5 shard back with plain h5py (for `verify` and tests).

    Args:
        path: shard file.
        compression: what the shard was written with (None, "lzf", "gzip"); h5py
            undoes the filters itself, so this is only checked to be a known value.
        block: records read per h5py call.
        block_bytes: for variable-size images (raw bitmaps, text lines), the most pixel bytes
            one call reads (at least one record): a reader's memory stays bounded.

    Yields:
        dict samples: key, writer_id, character (str), tag_code, label (int), image (2-D uint8);
        with strokes also points (int16 (P, 2)) and stroke_lengths (int16 (S,)); with text
        lines also text (str) and label_sequence (int64 (L,)).

    Raises:
        MissingDependencyError: when h5py is not installed.
        GntkitError: when the file lacks the documented datasets.
    """
    if isinstance(compression, str):
        compression = compression.lower()
    if compression not in output_format(HDF5Writer.format).compressions:
        raise GntkitError(f"HDF5 shards support compression None, 'lzf' or 'gzip', found {compression!r}.")
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        raw = "pixels" in f
        needed = ["pixels", "pixel_offsets"] if raw else ["images"]
        needed += [name for name, _ in _NUMERIC] + [name for name, _ in _STRINGS]
        missing = [name for name in needed if name not in f]
        if missing:
            raise GntkitError(f"{path}: expected HDF5 datasets {', '.join(missing)}, found only {', '.join(sorted(f))}.")
        n = f["labels"].shape[0]
        bounds = _block_bounds(f["pixel_offsets"][:] if raw else None, n, block, block_bytes)
        for start, end in zip(bounds[:-1], bounds[1:]):
            yield from _read_block(f, start, end, raw)


def _block_bounds(pixel_offsets, n: int, block: int, block_bytes: int) -> list[int]:
    """Record bounds of read blocks: `block` records each, and for variable-size images (text lines
    at 64 x 1,000 bytes) no more pixel bytes than block_bytes (at least one record a block)."""
    if pixel_offsets is None:
        return list(range(0, n, block)) + [n] if n else [0]
    bounds = [0]
    while bounds[-1] < n:
        start = bounds[-1]
        fits = int(np.searchsorted(pixel_offsets, pixel_offsets[start] + block_bytes, side="right")) - 1
        bounds.append(min(n, start + block, max(fits, start + 1)))
    return bounds


def _read_block(f, start: int, end: int, raw: bool):
    """The samples of records start..end of an open shard (see read_shard)."""
    columns = {name: f[name][start:end] for name, _ in _NUMERIC}
    strings = {name: f[name].asstr()[start:end] for name, _ in _STRINGS}
    if raw:
        offsets = f["pixel_offsets"][start:end + 1]
        pixels = f["pixels"][offsets[0]:offsets[-1]]
        offsets = offsets - offsets[0]
    else:
        images = f["images"][start:end]
    ragged = _read_ragged(f, start, end, [name for name in ("points", "stroke_lengths", "label_sequence") if name in f])
    texts = f["text"].asstr()[start:end] if "text" in f else None
    for i in range(end - start):
        if raw:
            image = pixels[offsets[i]:offsets[i + 1]].reshape(int(columns["heights"][i]), int(columns["widths"][i]))
        else:
            image = images[i]
        sample = {
            "key": strings["keys"][i],
            "writer_id": strings["writer_ids"][i],
            "character": strings["characters"][i],
            "tag_code": int(columns["tag_codes"][i]),
            "label": int(columns["labels"][i]),
            "image": image,
        }
        for name, (values, value_offsets) in ragged.items():
            sample[name] = values[value_offsets[i]:value_offsets[i + 1]]
        if texts is not None:
            sample["text"] = texts[i]
        yield sample


def _read_ragged(f, start: int, end: int, names) -> dict:
    """Records start..end of the named ragged datasets: name -> (values, offsets from 0)."""
    out = {}
    for name in names:
        offsets = f[name + "_offsets"][start:end + 1]
        out[name] = (f[name][offsets[0]:offsets[-1]], offsets - offsets[0])
    return out
