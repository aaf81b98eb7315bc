"""WebDataset shards: POSIX (ustar) tar files, one sample = three consecutive members.

Members of sample `1001/42`: `1001/42.png` (8-bit grayscale PNG), `1001/42.cls` (class
id, ASCII decimal) and `1001/42.json` (key, writer_id, tag_code, character, label,
height, width; sorted keys, UTF-8). With strokes (attrs "strokes", online sources) two
more members follow: `1001/42.points.npy` (int16 (P, 2)) and `1001/42.stroke_lengths.npy`
(int16 (S,)), as `np.save` writes them. Output is byte-identical run to run: every
header has mtime 0, uid/gid 0, empty uname/gname, mode 0o444, and the PNGs use
fixed settings.

Both the tar headers and the PNGs are written here rather than through tarfile and
PIL, whose per-member object overhead is several times the encoding work for
64x64 images: a whole conversion to WebDataset is 3.68x faster with this tar layout than with
`tarfile.TarFile.addfile` per member (benchmarks/bench_handwritten.py, docs/benchmarks.md
"Hand-written code beside libraries"). Headers equal `tarfile.TarInfo.tobuf(tarfile.USTAR_FORMAT)` byte for
byte and the archive end matches `tarfile` (two zero blocks, padded to 10240 bytes);
the PNG is the standard minimal one (IHDR, one IDAT with filter type 0 rows, IEND)
that PIL and every PNG reader decode, its zlib stream one fixed-Huffman deflate
block from the numba batch encoder `gntkit.kernels.png` (about 10x zlib level 1,
PNGs about 4% larger on glyphs). The tests check both. Per batch, one kernel call
encodes all PNGs, Python formats the JSON, and one more kernel lays out all headers,
members and padding in one buffer.

webdataset itself is imported only by `read_shard`.
"""

from __future__ import annotations

import json

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.jit import njit
from gntkit.kernels.png import encode_pngs, encode_pngs_ragged
from gntkit.samples.batch import SampleBatch
from gntkit.samples.lines import LINES_SPEC
from gntkit.samples.strokes import STROKES_SPEC
from gntkit.shards.writer import PixelView, ShardSink, ShardWriter, utf8_column

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile.RECORDSIZE: the archive is padded to a multiple of it
MEMBER_SUFFIXES = (".png", ".cls", ".json")
STROKE_SUFFIXES = (".points.npy", ".stroke_lengths.npy")
LINE_SUFFIXES = (".txt", ".labels.npy")  # text lines: the transcription (UTF-8) and the class ids (int64)


# --------------------------------------------------------------------------- tar headers
def _header_template() -> bytes:
    """A ustar header with every field fixed except name, size and checksum (all zero/blank)."""
    header = bytearray(BLOCK)
    header[100:108] = b"0000444\0"        # mode
    header[108:116] = b"0000000\0"        # uid
    header[116:124] = b"0000000\0"        # gid
    header[136:148] = b"00000000000\0"    # mtime 0
    header[148:156] = b"        "         # checksum is computed with this field as spaces
    header[156:157] = b"0"                # regular file
    header[257:265] = b"ustar\x0000"      # POSIX magic + version
    # uname, gname, devmajor, devminor (empty for regular files, as tarfile writes them), prefix: NUL
    return bytes(header)


_TEMPLATE = _header_template()
_TEMPLATE_SUM = sum(_TEMPLATE)


def tar_header(name: bytes, size: int) -> bytes:
    """The 512-byte ustar header of a regular file member (mode 0o444, mtime 0, owner 0/"").

    Args:
        name: member name, at most 100 bytes (UTF-8).
        size: member size in bytes, below 8 GiB.

    Returns:
        The header block, equal to tarfile's for the same TarInfo in USTAR format.

    Raises:
        GntkitError: when the name is too long or the size out of range.
    """
    if len(name) > 100 or not name or b"\0" in name:
        raise GntkitError(f"Tar member name {name!r} must be 1 to 100 bytes without NUL.")
    if not 0 <= size < 8**11:
        raise GntkitError(f"Tar member size {size} is outside ustar's range [0, 8 GiB).")
    size_field = b"%011o\0" % size
    checksum = _TEMPLATE_SUM + sum(name) + sum(size_field)
    return b"".join((name, _TEMPLATE[len(name):124], size_field, _TEMPLATE[136:148],
                     b"%06o\0 " % checksum, _TEMPLATE[156:]))


# --------------------------------------------------------------------------- PNG
def encode_png(image: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale PNG (lossless, deterministic), as the writer does.

    Args:
        image: (height, width) uint8, both sides >= 1.

    Returns:
        The PNG file bytes (from the batch kernel `gntkit.kernels.png.encode_pngs`).

    Raises:
        GntkitError: on a wrong dtype, dimensionality or an empty side.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2 or 0 in image.shape:
        raise GntkitError(f"PNG images must be 2-D uint8 with both sides >= 1, found {image.dtype} {image.shape}.")
    data, _ = encode_pngs(image[None])
    return data.tobytes()


# --------------------------------------------------------------------------- batch assembly
# json.dumps(meta, sort_keys=True, ensure_ascii=False) of the seven fields, as a template:
# the keys are fixed and sorted, strings go through json's own escaping (the tests compare).
_JSON_TEMPLATE = '{"character": %s, "height": %d, "key": %s, "label": %d, "tag_code": %d, "width": %d, "writer_id": %s}'
_json_string = json.encoder.encode_basestring  # what ensure_ascii=False uses
def _suffix_table(suffixes) -> tuple[np.ndarray, np.ndarray]:
    return (np.frombuffer(b"".join(s.encode("ascii") for s in suffixes), dtype=np.uint8).copy(),
            np.cumsum([0] + [len(s) for s in suffixes]).astype(np.int64))


_SUFFIXES, _SUFFIX_OFFSETS = _suffix_table(MEMBER_SUFFIXES)
_STROKE_SUFFIXES, _STROKE_SUFFIX_OFFSETS = _suffix_table(MEMBER_SUFFIXES + STROKE_SUFFIXES)
_LINE_SUFFIXES, _LINE_SUFFIX_OFFSETS = _suffix_table(MEMBER_SUFFIXES + LINE_SUFFIXES)
_TEMPLATE_ARRAY = np.frombuffer(_TEMPLATE, dtype=np.uint8).copy()


@njit
def _write_samples(template, template_sum, names, name_offsets, suffixes, suffix_offsets, data, data_offsets, starts, out):
    """Write sample i's members (j = png, cls, json) at out[starts[i]:]: header, data, zero padding.

    Member (i, j) is named names[i] + suffixes[j] and holds data[data_offsets[j, i]:data_offsets[j, i+1]].
    `out` must be zeroed; the header is `template` with name, size and checksum filled in.
    """
    for i in range(starts.shape[0] - 1):
        pos = starts[i]
        for j in range(data_offsets.shape[0]):
            header = out[pos:pos + 512]
            for k in range(512):
                header[k] = template[k]
            checksum = template_sum
            k = 0
            for b in range(name_offsets[i], name_offsets[i + 1]):
                header[k] = names[b]
                checksum += np.int64(names[b])
                k += 1
            for b in range(suffix_offsets[j], suffix_offsets[j + 1]):
                header[k] = suffixes[b]
                checksum += np.int64(suffixes[b])
                k += 1
            size = data_offsets[j, i + 1] - data_offsets[j, i]
            value = size
            for d in range(10, -1, -1):  # 11 octal digits, then the template's NUL
                digit = 48 + (value & 7)
                header[124 + d] = digit
                checksum += digit
                value >>= 3
            for d in range(5, -1, -1):  # "%06o\0 ": the template already holds the final space
                header[148 + d] = 48 + (checksum & 7)
                checksum >>= 3
            header[154] = 0
            pos += 512
            source = data[data_offsets[j, i]:data_offsets[j, i + 1]]
            target = out[pos:pos + size]
            for k in range(size):
                target[k] = source[k]
            pos += (size + 511) // 512 * 512


# --------------------------------------------------------------------------- writer
class WebDatasetWriter(ShardWriter):
    """Writes one WebDataset tar shard; see the module docstring for the members.

    Args:
        path: final shard path (`...tar-00000-of-00010`); must not exist.
        split: split name.
        attrs: shard attributes (not stored in the tar; the manifest holds them).
        compression: must be None (PNG members are compressed already).

    Raises:
        OutputExistsError: when the shard (or its index) already exists.
        GntkitError: on a compression other than None.

    `{path}.index.npy` holds N+1 offsets: the header of each sample's first member,
    then the end of the last sample (where the end-of-archive blocks start).
    """

    format = "webdataset"

    def _open(self) -> None:
        self._sink = ShardSink(self.partial_path, compute_sha256=self.compute_sha256)

    def _check_format(self, batch: SampleBatch, pixels: PixelView) -> None:
        """Keys must make member names (webdataset splits `{key}.{ext}` at the first dot after
        the last slash) and images must be non-empty (PNG needs both sides >= 1)."""
        keys = batch.keys
        for i, key in enumerate(keys):
            if not isinstance(key, str) or not key or "." in key.rsplit("/", 1)[-1] or len(key.encode("utf-8")) > 95:
                raise GntkitError(
                    f"Record {self.records + i} of {self.path}: key {key!r} cannot name tar members; "
                    "expected a non-empty str of at most 95 UTF-8 bytes with no '.' after its last '/'."
                )
        if len(set(keys)) != len(keys):
            raise GntkitError(f"Batch starting at record {self.records} of {self.path} repeats a key; keys must be unique.")
        heights, widths = np.asarray(pixels.heights), np.asarray(pixels.widths)
        if len(keys) and (np.any(heights == 0) or np.any(widths == 0)):
            bad = int(np.flatnonzero((heights == 0) | (widths == 0))[0])
            raise GntkitError(f"Record {self.records + bad} of {self.path} has an empty image ({heights[bad]}x{widths[bad]}); "
                              "PNG needs both sides >= 1.")

    def _write_batch(self, batch: SampleBatch, pixels: PixelView) -> None:
        n = len(batch)
        heights = np.asarray(pixels.heights, dtype=np.int64)
        widths = np.asarray(pixels.widths, dtype=np.int64)
        png_data, png_offsets = encode_pngs_ragged(pixels.pixels, pixels.offsets, heights, widths)
        labels = np.asarray(batch.labels).tolist()
        classes = "".join(["%d" % v for v in labels]).encode("ascii")
        class_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len("%d" % v) for v in labels], out=class_offsets[1:])
        metas, meta_offsets = utf8_column(
            [_JSON_TEMPLATE % (_json_string(c), h, _json_string(k), v, t, w, _json_string(wid)) for c, h, k, v, t, w, wid in
             zip(batch.characters, heights.tolist(), batch.keys, labels, np.asarray(batch.tag_codes).tolist(), widths.tolist(),
                 batch.writer_ids)],
            "characters",
        )
        data = np.concatenate([png_data, np.frombuffer(classes + metas, dtype=np.uint8)])
        data_offsets = np.stack([png_offsets, class_offsets + png_offsets[-1], meta_offsets + png_offsets[-1] + class_offsets[-1]])
        suffixes, suffix_offsets = _SUFFIXES, _SUFFIX_OFFSETS
        if self.strokes:
            npys = [_npy_column(self._batch_strokes[name], self._batch_strokes[name + "_offsets"]) for name in ("points", "stroke_lengths")]
            base = data.shape[0]
            rows = [data_offsets]
            for column, offsets in npys:
                rows.append(offsets[None] + base)
                base += len(column)
            data = np.concatenate([data] + [np.frombuffer(column, dtype=np.uint8) for column, _ in npys])
            data_offsets = np.concatenate(rows)
            suffixes, suffix_offsets = _STROKE_SUFFIXES, _STROKE_SUFFIX_OFFSETS
        if self.lines:
            lines = self._batch_lines
            columns = [utf8_column(lines["text"], "meta['text']"), _npy_column(lines["label_sequence"], lines["label_sequence_offsets"])]
            data, data_offsets = _append_columns(data, data_offsets, columns)
            suffixes, suffix_offsets = _LINE_SUFFIXES, _LINE_SUFFIX_OFFSETS
        names, name_offsets = utf8_column(batch.keys, "keys")
        # Every length the kernel follows is checked here, before it reads.
        sizes = np.diff(data_offsets, axis=1)
        if data_offsets[-1, -1] != data.shape[0] or sizes.min(initial=0) < 0 or sizes.max(initial=0) >= 8**11:
            raise GntkitError(f"Batch starting at record {self.records} of {self.path}: a tar member is empty-offset or over 8 GiB.")
        if np.diff(name_offsets).max(initial=0) > 100 - (int(np.diff(suffix_offsets).max())):
            raise GntkitError(f"Batch starting at record {self.records} of {self.path}: "
                              "a key is too long for its tar member names (100 bytes with suffix).")
        footprint = (BLOCK + (sizes + BLOCK - 1) // BLOCK * BLOCK).sum(axis=0)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(footprint, out=starts[1:])
        out = np.zeros(int(starts[-1]), dtype=np.uint8)  # padding stays zero
        _write_samples(_TEMPLATE_ARRAY, _TEMPLATE_SUM, np.frombuffer(names, dtype=np.uint8), name_offsets,
                       suffixes, suffix_offsets, data, data_offsets, starts, out)
        self._add_offsets(starts[1:] + self._end_offset)
        self._sink.write(out)

    def _finish(self) -> tuple[int, str]:
        end = self._end_offset
        # End of archive as tarfile writes it: two zero blocks, then zeros up to a full record.
        trailer = 2 * BLOCK
        trailer += -(end + trailer) % RECORD
        self._sink.write(b"\0" * trailer)
        return self._sink.close()

    def _discard(self) -> None:
        self._sink.abort()


def _append_columns(data: np.ndarray, data_offsets: np.ndarray, columns) -> tuple[np.ndarray, np.ndarray]:
    """data and its (members, N+1) offsets with more member columns ((bytes, N+1 offsets) each) after them."""
    base, rows = data.shape[0], [data_offsets]
    for column, offsets in columns:
        rows.append(np.asarray(offsets, np.int64)[None] + base)
        base += len(column)
    return np.concatenate([data] + [np.frombuffer(column, dtype=np.uint8) for column, _ in columns]), np.concatenate(rows)


_NPY_HEADERS: dict = {}


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """The .npy header np.save writes for an array of this dtype and shape (cached: shapes repeat)."""
    key = (dtype.str, shape)
    header = _NPY_HEADERS.get(key)
    if header is None:
        import io

        stream = io.BytesIO()
        np.lib.format.write_array_header_1_0(stream, {"descr": dtype.str, "fortran_order": False, "shape": shape})
        header = _NPY_HEADERS[key] = stream.getvalue()
    return header


def _npy_column(values: np.ndarray, offsets: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Each sample's slice of ragged values as a .npy file, back to back: (bytes, N+1 int64 offsets)."""
    raw = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"), copy=False)).tobytes()
    row = values.itemsize * (values.shape[1] if values.ndim == 2 else 1)
    parts, sizes = [], []
    for first, last in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        header = _npy_header(values.dtype.newbyteorder("<"), (last - first,) + values.shape[1:])
        parts.append(header)
        parts.append(raw[first * row:last * row])
        sizes.append(len(header) + (last - first) * row)
    column_offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=column_offsets[1:])
    return b"".join(parts), column_offsets


def feature_spec(raw: bool, image_size: int | None = None, strokes: bool = False, lines: bool = False) -> dict:
    """Describe the members of WebDataset shards, as JSON-able data for the manifest.

    Args:
        raw: True for original variable-size bitmaps, False for S x S images.
        image_size: S in fixed-size mode; ignored in raw mode.
        strokes: the shards also hold raw strokes (two .npy members per sample and a "strokes" entry).
        lines: the shards hold text lines (variable-width PNGs, `.txt` and `.labels.npy` members, a "lines" entry).

    Returns:
        {"format": "webdataset", "members": [{"suffix", "content"}], "json_fields": [...],
         "image": {"encoding", "raw", "shape"}}.

    Raises:
        GntkitError: when fixed-size mode has no positive image size.
    """
    if not raw and (not isinstance(image_size, (int, np.integer)) or image_size <= 0):
        raise GntkitError(f"Fixed-size WebDataset shards need a positive image_size, found {image_size!r}.")
    spec = {
        "format": "webdataset",
        "members": [
            {"suffix": "png", "content": "8-bit grayscale PNG, lossless"},
            {"suffix": "cls", "content": "class id, ASCII decimal"},
            {"suffix": "json", "content": "UTF-8 JSON object, sorted keys"},
        ],
        "json_fields": ["character", "height", "key", "label", "tag_code", "width", "writer_id"],
        "image": {"encoding": "8-bit grayscale PNG", "raw": bool(raw),
                  "shape": None if raw else [int(image_size), int(image_size)]},
    }
    if strokes:
        spec["members"] += [{"suffix": "points.npy", "content": "int16 (P, 2) .npy (np.save)"},
                            {"suffix": "stroke_lengths.npy", "content": "int16 (S,) .npy (np.save)"}]
        spec["strokes"] = dict(STROKES_SPEC)
    if lines:
        spec["members"] += [{"suffix": "txt", "content": "the line's transcription, UTF-8"},
                            {"suffix": "labels.npy", "content": "int64 (L,) class ids .npy (np.save)"}]
        spec["lines"] = dict(LINES_SPEC)
    return spec


def read_shard(path, compression: str | None = None):
    """Read a tar shard back with the stock `webdataset.WebDataset` reader (for `verify` and tests).

    Args:
        path: shard file.
        compression: must be None (tar shards are not compressed).

    Yields:
        dict samples: key, writer_id, character (str), tag_code, label (int), image (2-D uint8);
        with strokes also points (int16 (P, 2)) and stroke_lengths (int16 (S,)); with text lines
        also text (str, from `.txt`) and label_sequence (int64 (L,), from `.labels.npy`).

    Raises:
        MissingDependencyError: when webdataset is not installed.
        GntkitError: when a sample lacks a member or its .cls and .json disagree.
    """
    if compression is not None:
        raise GntkitError(f"WebDataset shards are never compressed, found compression {compression!r}.")
    # webdataset pulls in its pipeline machinery (and torch when present): reading only.
    wds = require("webdataset", "webdataset", "Reading WebDataset shards")
    dataset = wds.WebDataset(str(path), shardshuffle=False, nodesplitter=None, workersplitter=None,
                             empty_check=False).decode("l8")
    for sample in dataset:
        missing = [s for s in ("png", "cls", "json") if s not in sample]
        if missing:
            raise GntkitError(f"{path}: sample {sample.get('__key__')!r} lacks member(s) {', '.join(missing)}.")
        meta = sample["json"]
        if meta["label"] != sample["cls"]:
            raise GntkitError(f"{path}: sample {sample['__key__']!r} has label {sample['cls']} in .cls but {meta['label']} in .json.")
        image = np.asarray(sample["png"], dtype=np.uint8)
        out = {
            "key": sample["__key__"],
            "writer_id": meta["writer_id"],
            "character": meta["character"],
            "tag_code": int(meta["tag_code"]),
            "label": int(sample["cls"]),
            "image": image,
        }
        for name in ("points", "stroke_lengths"):
            if name + ".npy" in sample:
                out[name] = sample[name + ".npy"]
        if "txt" in sample:  # text lines
            out["text"] = sample["txt"]
            out["label_sequence"] = np.asarray(sample["labels.npy"], np.int64)
        yield out
