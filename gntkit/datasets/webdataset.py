"""Reading WebDataset shards (tar files of `key.png` + `key.cls` samples): the shard's bytes by
mmap, sample offsets from the `.index.npy` file or a scan of the member headers, and batches
decoded by numba kernels (tar walking, PNG unfiltering) with zlib; pillow decodes unusual
samples. numpy only, pillow when needed (the format table in gntkit.shards.manifest names this module)."""

from __future__ import annotations

import io
import zlib

import numpy as np

from gntkit.datasets._files import check_records, load_index, readonly
from gntkit.errors import FormatError
from gntkit.formats.sources import mapped_bytes
from gntkit.kernels import shards as _kernels
from gntkit.shards.manifest import Shard

__all__ = ["ShardReader", "prepare_bulk", "read_rows"]


class ShardReader:
    """One WebDataset tar shard: its bytes (mmap) and sample offsets; the slow path decodes with pillow.

    Args:
        shard: the manifest's entry for the file.
        image_size: side of the fixed-size images, or None (raw bitmaps).
        compression: unused (tar shards are not compressed); accepted for a uniform signature.

    Raises:
        FormatError: offsets that do not fit, or a sample count other than the manifest's.
    """

    def __init__(self, shard: Shard, image_size: int | None, compression: str | None = None):
        self.shard = shard
        self.image_size = image_size
        self.buf = readonly(mapped_bytes(shard.path))
        self.offsets = load_index(shard, len(self.buf))
        if self.offsets is None:
            self.offsets = self._scan()
        check_records(shard, len(self.offsets) - 1)

    def _members(self, start: int, end: int):
        """(name, data start, size) of each regular member whose header lies in [start, end)."""
        buf, pos, long_name = self.buf, start, None
        while pos < end:
            header_pos = pos
            header = bytes(buf[pos:pos + 512])
            if len(header) < 512:
                raise FormatError(str(self.shard.path), pos, "a 512-byte tar header", f"{len(header)} bytes")
            if header == bytes(512):
                return
            size = self._member_size(header, pos)
            kind = header[156:157]
            data = pos + 512
            pos = data + -(-size // 512) * 512
            if kind == b"L":
                long_name = self._text(bytes(buf[data:data + size]).rstrip(b"\0"), data, "a GNU long member name")
            elif kind == b"x":
                for line in self._text(bytes(buf[data:data + size]), data, "pax header records").split("\n"):
                    if "path=" in line:
                        long_name = line.split("path=", 1)[1]
            elif kind in (b"0", b"\0"):
                name = long_name
                if name is None:
                    name = self._text(header[0:100].rstrip(b"\0"), header_pos, "a member name")
                    prefix = self._text(header[345:500].rstrip(b"\0"), header_pos + 345, "a member name prefix")
                    if prefix and header[257:262] == b"ustar":
                        name = prefix + "/" + name
                yield name, data, size
                long_name = None
            else:
                long_name = None

    def _member_size(self, header: bytes, pos: int) -> int:
        """The octal size field of the tar header at `pos`, or FormatError."""
        try:
            return int(header[124:136].strip(b"\0 ") or b"0", 8)
        except ValueError:
            raise FormatError(str(self.shard.path), pos, "an octal member size in the tar header", repr(header[124:136])) from None

    def _text(self, raw: bytes, offset: int, what: str) -> str:
        """UTF-8 text from a tar header or member (names), or FormatError at its byte offset."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(str(self.shard.path), offset + exc.start, f"{what} in UTF-8", f"the byte 0x{raw[exc.start]:02x}") from None

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
            size = self._member_size(header, pos)
            pos += 512 + -(-size // 512) * 512
            if header[156:157] not in (b"0", b"\0"):
                continue
            name_key, _ = self._split_name(self._text(header[0:100].rstrip(b"\0"), header_pos, "a member name"))
            if name_key != key:
                offsets.append(header_pos)
                key = name_key
        offsets.append(pos)
        return np.asarray(offsets if len(offsets) > 1 else [0], np.int64)

    def get(self, j: int) -> tuple[np.ndarray, int]:
        """Sample j of this shard: full tar header handling and pillow (any image size).

        Raises:
            FormatError: a damaged header, a missing .png or .cls member, or one that does not decode.
        """
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
                    raise FormatError(str(self.shard.path), data, f"sample {j}: a decimal class id in .cls",
                                      repr(bytes(self.buf[data:data + size])[:20])) from None
        if image is None or label is None:
            raise FormatError(str(self.shard.path), start, f"sample {j} to have .png and .cls members", "one of them missing")
        return image, label


def _decode_png(data: bytes, path, offset: int) -> np.ndarray:
    """An 8-bit grayscale PNG decoded by pillow; FormatError naming the file and offset otherwise."""
    from PIL import Image  # pillow is a core dependency; imported here to keep `import gntkit.datasets` light

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode != "L":
                raise FormatError(str(path), offset, "an 8-bit grayscale PNG", f"mode {image.mode}")
            return np.asarray(image)
    # pillow reports damaged PNGs in several ways (OSError, ValueError "Truncated IHDR chunk",
    # SyntaxError for a bad chunk, EOFError, a decompression bomb): each is one bad sample.
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise FormatError(str(path), offset, "a PNG image", str(exc) or type(exc).__name__) from None


def prepare_bulk(bulk, readers: list) -> None:
    """Give a BulkReader the sample start / end offsets of all its shards, in its record space."""
    bulk.starts = np.concatenate([r.offsets[:-1] for r in readers]).astype(np.int64)
    bulk.ends = np.concatenate([r.offsets[1:] for r in readers]).astype(np.int64)


def read_rows(bulk, rows: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    """Samples `rows` of a BulkReader's record space into images (B, S, S) and labels (B,).

    The numba kernel locates each sample's PNG data and class id, zlib inflates, the kernel
    unfilters; samples with unusual members or PNG layouts go through pillow and the full tar
    parser (`ShardReader.get`).

    Raises:
        FormatError: a sample without a S x S grayscale PNG and a class id.
    """
    status = np.zeros(len(rows), np.int64)
    side = bulk.size
    idat_starts = np.zeros(len(rows), np.int64)
    idat_lens = np.zeros(len(rows), np.int64)
    _kernels.locate_png(bulk.bufs, bulk.shard_of, bulk.starts, bulk.ends, rows, side, idat_starts, idat_lens, labels, status)
    expected = side * (side + 1)
    raw = np.zeros((len(rows), expected), np.uint8)
    ok = np.flatnonzero(status == 0)
    views = bulk.views
    inflated = []
    for k, start, length in zip(bulk.shard_of[rows[ok]].tolist(), idat_starts[ok].tolist(), idat_lens[ok].tolist()):
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
        reader, local = bulk.where(int(rows[i]))
        image, labels[i] = reader.get(local)
        if image.shape != (side, side):
            raise FormatError(str(reader.shard.path), int(reader.offsets[local]), f"sample {local}: a {side}x{side} image",
                              f"{image.shape}")
        images[i] = image
