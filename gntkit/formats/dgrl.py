"""The DGRL layout (CASIA HWDB2.0-2.2, offline text pages): index, validate, read line bitmaps.

A DGRL file is one scanned page, all little-endian:

    uint32   header size = 36 + length of the illustration text
    8 bytes  format code "DGR", NUL-padded
    ...      illustration text (header size - 36 bytes, NUL-terminated)
    20 bytes code type "GB", NUL-padded
    int16    code length (2)
    int16    bits per pixel (8, or 1)
    int32    page height, page width, line count
    then per line:
    int32    character count
    ...      labels: code length x count bytes; a code is read FIRST byte HIGH as in GNT
             (0xFFFF = a character left unlabelled, ASCII stored as [byte, 0x00])
    int32    top, left, height, width
    ...      the line bitmap: height*width uint8 at 8 bits per pixel (255 = background);
             at 1 bit per pixel, packed rows (see below)

1 bit per pixel: no real 1-bit page was available to check against. We follow the one public
reader that handles it (a Python `read_dgrl` found with the code search: `_decode_1bpp_to_uint8`):
each row padded to whole bytes (ceil(width / 8) bytes a row), bits most significant first, bit 1 =
ink (read as 0) and bit 0 = background (read as 255). That reader itself says the polarity is a
guess ("if your samples look inverted, swap the mapping"); the row padding and bit order are the
usual packing (as PIL's mode "1" and numpy.unpackbits) but equally unconfirmed. Every other
public reader handles 8 bits per pixel only.

A record of this format is one text LINE (SAMPLE_KIND = "line"): its label is a sequence of
codes, not one tag code, and its image has variable width. A page's writer id is the writer number
in its file name (`001-P16.dgrl` -> "001": one person, however many pages), so splits keep all of
a writer's pages on one side; its keys start with the page's stem (`member_key`: "001-P16/3" for
line 3), unique across the pages of one writer. meta["writer"] and meta["page"] carry both parts.
Lines are few (10-13 a page), so the index is built by a plain loop that checks every length
against the bytes present; the bitmaps are numpy slices (8 bpp) or numpy.unpackbits (1 bpp).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import numpy as np

from gntkit.errors import FormatError, GntkitError
from gntkit.formats import foreign_content
from gntkit.formats.base import Bitmaps, Problem, RecordIndexBase, check_buffer, check_options, chosen_records, packed_bitmaps

NAME = "dgrl"
DESCRIPTION = "CASIA offline text lines, HWDB2.x"
KIND_WORDS = ".dgrl files"
# HWDB2.x text holds GB2312 level-1 and level-2 characters, full-width punctuation and ASCII:
# no built-in charset covers it, so the classes come from the data (every decodable code, by code).
DEFAULT_CHARSET = "data"
POLARITY = "dark-on-light"
SUFFIX = ".dgrl"
SAMPLE_KIND = "line"  # records are text lines: label sequences and variable-width images
DEFAULT_SPLIT = "all"
SYNTH_SAMPLES = "lines"  # gntkit synth writes pages of text lines (gntkit.tools.synth_pages)
SYNTH_FILE_NAME = "{writer:03d}-P{page:02d}.dgrl"

DEFAULT_LINE_HEIGHT = 64
DEFAULT_MAX_LINE_WIDTH = 2048
#: what `convert` uses for DGRL sources unless told otherwise (lines are not cropped to squares)
PREPROCESS_DEFAULTS = {"line_height": DEFAULT_LINE_HEIGHT, "max_line_width": DEFAULT_MAX_LINE_WIDTH}

FORMAT_CODE = b"DGR"
HEADER_FIXED = 36  # header size field + format code + code type + code length + bits per pixel
PAGE_BYTES = 12  # page height, width, line count
LINE_FIXED = 20  # character count + top, left, height, width
UNLABELLED = 0xFFFF
DEFAULT_MAX_SIDE = 8192  # real pages are about 2,400 x 3,500

_PAGE_NAME = re.compile(r"^(.+?)-P(\d+)$", re.IGNORECASE)


def _i32(buf: np.ndarray, pos: int) -> int:
    return struct.unpack_from("<i", buf, pos)[0]  # callers check that the 4 bytes are present


def _i16(buf: np.ndarray, pos: int) -> int:
    return struct.unpack_from("<h", buf, pos)[0]


@dataclass
class DgrlHeader:
    """The page header: what the file says about itself.

    Attributes:
        header_size, format_code (bytes, NULs stripped), illustration (bytes before the first NUL),
        code_type (str), code_length, bits_per_pixel, page_height, page_width, line_count;
        lines_offset: byte offset of the first line record.
    """

    header_size: int
    format_code: bytes
    illustration: bytes
    code_type: str
    code_length: int
    bits_per_pixel: int
    page_height: int
    page_width: int
    line_count: int
    lines_offset: int


@dataclass
class DgrlIndex(RecordIndexBase):
    """Where every valid line of one DGRL page lies, and what it says.

    Attributes:
        header: the page header.
        offsets: int64 byte offset of each line record.
        bitmap_offsets: int64 byte offset of each line's bitmap.
        tops, lefts, heights, widths: int32 position and size of each line on the page.
        label_codes: uint16 every line's codes back to back (first byte high);
            label_offsets: int64 (N+1,), line i's codes are label_codes[label_offsets[i]:label_offsets[i+1]].
        record_numbers: int64 line index on the page (0-based).
        problems: damaged stretches skipped (empty unless on_error="skip").
        tag_codes: uint16 zeros: a line has no single tag code (the record-file protocol's
            single-label column; the line path of gntkit.samples.stream reads label_codes instead).
    """

    header: DgrlHeader
    offsets: np.ndarray
    bitmap_offsets: np.ndarray
    tops: np.ndarray
    lefts: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    label_codes: np.ndarray
    label_offsets: np.ndarray
    record_numbers: np.ndarray
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self):
        self.tag_codes = np.zeros(len(self.offsets), np.uint16)

    @property
    def char_counts(self) -> np.ndarray:
        """int64 characters of every line."""
        return np.diff(self.label_offsets)

    def codes_of(self, i: int) -> np.ndarray:
        """Line i's codes (uint16, a view)."""
        return self.label_codes[self.label_offsets[i]:self.label_offsets[i + 1]]


def bitmap_bytes(height: int, width: int, bits_per_pixel: int) -> int:
    """Bytes a line bitmap takes: height*width at 8 bpp, height*ceil(width/8) at 1 bpp."""
    return height * width if bits_per_pixel == 8 else height * ((width + 7) // 8)


def read_header(buf: np.ndarray, path: str = "<bytes>", max_side: int = DEFAULT_MAX_SIDE) -> DgrlHeader:
    """Read and check the page header and page record against the bytes present.

    Raises:
        FormatError: another format, a truncated header, a header size that does not fit,
            a format code other than "DGR", a code type other than GB, a code length other
            than 2, bits per pixel other than 8 or 1, a page size outside 1..max_side, or a
            line count the remaining bytes cannot hold.
    """
    n = len(buf)
    if n == 0:
        raise FormatError(path, 0, "a DGRL page header", "an empty file")
    other = foreign_content(buf, NAME) if bytes(buf[4:7]) != FORMAT_CODE else None
    if other is not None:
        raise FormatError(path, 0, "a DGRL page header (format code \"DGR\" at byte 4)", other)
    if n < HEADER_FIXED + PAGE_BYTES:
        raise FormatError(path, 0, f"a DGRL header and page record of at least {HEADER_FIXED + PAGE_BYTES} bytes",
                          f"only {n} bytes (truncated)")
    header_size = int(np.frombuffer(buf[:4].tobytes(), "<u4")[0])
    code = bytes(buf[4:12])
    if code[:3] != FORMAT_CODE or code[3:].strip(b"\0") not in (b"", b"L"):
        raise FormatError(path, 4, "the format code \"DGR\" (NUL-padded to 8 bytes)", f"{code!r}")
    if header_size < HEADER_FIXED or header_size + PAGE_BYTES > n:
        raise FormatError(path, 0, f"a header size of at least {HEADER_FIXED} that leaves the {PAGE_BYTES}-byte page record "
                          f"inside the file's {n} bytes", f"header size {header_size}")
    illustration = bytes(buf[12:header_size - 24]).split(b"\0", 1)[0]
    code_type_raw = bytes(buf[header_size - 24:header_size - 4])
    code_type = code_type_raw.split(b"\0", 1)[0].decode("ascii", "replace")
    if code_type.upper() not in ("GB", "GBK", "GB2312"):
        shown = code_type_raw.rstrip(b"\0")
        raise FormatError(path, header_size - 24, "code type \"GB\" (NUL-padded to 20 bytes)", f"{shown!r}")
    code_length, bits = _i16(buf, header_size - 4), _i16(buf, header_size - 2)
    if code_length != 2:
        raise FormatError(path, header_size - 4, "a code length of 2 bytes (GB codes)", f"code length {code_length}")
    if bits not in (8, 1):
        raise FormatError(path, header_size - 2, "8 or 1 bits per pixel", f"{bits} bits per pixel")
    page_height, page_width, lines = (_i32(buf, header_size + 4 * k) for k in range(3))
    if not (1 <= page_height <= max_side and 1 <= page_width <= max_side):
        raise FormatError(path, header_size, f"a page height and width of 1..{max_side} pixels",
                          f"height {page_height} and width {page_width} (damaged header?)")
    room = (n - header_size - PAGE_BYTES) // (LINE_FIXED + code_length + 1)
    if not 1 <= lines <= room:
        raise FormatError(path, header_size + 8, f"a line count of 1..{room} (each line takes at least {LINE_FIXED + code_length + 1} "
                          f"of the {n - header_size - PAGE_BYTES} bytes left)", f"line count {lines} (impossible count)")
    return DgrlHeader(header_size, code.rstrip(b"\0"), illustration, code_type, code_length, bits, page_height, page_width,
                      lines, header_size + PAGE_BYTES)


def _check_line(buf: np.ndarray, pos: int, header: DgrlHeader, max_side: int):
    """One line record at pos, checked against the bytes present.

    Returns:
        (None, (count, top, left, height, width, end)) when whole, or ((expected, found), None).
    """
    n = len(buf)
    if pos + 4 > n:
        return (f"a {LINE_FIXED}-byte line record", f"only {n - pos} bytes before the end of the file (truncated)"), None
    count = _i32(buf, pos)
    room = (n - pos - LINE_FIXED) // header.code_length
    if not 1 <= count <= room:
        return (f"a character count of 1..{max(room, 0)} (the labels must fit in the bytes left)",
                f"character count {count} (impossible count or truncated file)"), None
    box = pos + 4 + count * header.code_length
    top, left, height, width = (_i32(buf, box + 4 * k) for k in range(4))
    if not (1 <= height <= min(max_side, header.page_height) and 1 <= width <= min(max_side, header.page_width)):
        tallest, widest = min(max_side, header.page_height), min(max_side, header.page_width)
        return (f"a line height of 1..{tallest} and width of 1..{widest} (inside the {header.page_height}x{header.page_width} page)",
                f"height {height} and width {width} (damaged line header?)"), None
    end = box + 16 + bitmap_bytes(height, width, header.bits_per_pixel)
    if end > n:
        return (f"{end - box - 16} bitmap bytes for the {height}x{width} line at {header.bits_per_pixel} bits per pixel",
                f"only {n - box - 16} bytes before the end of the file (truncated)"), None
    return None, (count, top, left, height, width, end)


def index_dgrl(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> DgrlIndex:
    """Index every line of a DGRL page held in memory, checking each length against the bytes present.

    Args:
        buf: the whole file as a 1-D uint8 array.
        path: name used in messages.
        on_error: "raise" stops at the first damaged line with a FormatError; "skip" keeps the
            lines before it and records a Problem for the rest of the page (a damaged line's
            length is unknown, so nothing after it can be trusted), or for trailing bytes.
        max_side: largest page or line side accepted as real.

    Returns:
        DgrlIndex of the valid lines, in page order.

    Raises:
        FormatError: a damaged header (always: without it nothing can be read), or a damaged
            line or trailing bytes with on_error="raise".
        GntkitError: bad arguments.
    """
    buf = check_buffer(buf, "DGRL bytes")
    check_options(on_error, max_side, max_side_limit=1 << 20)
    header = read_header(buf, path, int(max_side))
    rows, codes, problems = [], [], []
    pos = header.lines_offset
    for line in range(header.line_count):
        problem, fields = _check_line(buf, pos, header, int(max_side))
        if problem is not None:
            if on_error == "raise":
                raise FormatError(path, pos, f"{problem[0]} for line {line} of {header.line_count}", problem[1])
            problems.append(Problem(path, pos, f"{problem[0]} for line {line} of {header.line_count}", problem[1],
                                    skipped_bytes=len(buf) - pos, skipped_records=header.line_count - line))
            pos = len(buf)
            break
        count, top, left, height, width, end = fields
        labels = buf[pos + 4:pos + 4 + 2 * count].reshape(count, 2).astype(np.uint16)
        codes.append(labels[:, 0] << 8 | labels[:, 1])
        rows.append((pos, pos + 20 + 2 * count, top, left, height, width, line))
        pos = end
    if pos < len(buf):
        expected, found = f"the end of the file after {header.line_count} lines", f"{len(buf) - pos} more bytes (size mismatch)"
        if on_error == "raise":
            raise FormatError(path, pos, expected, found)
        problems.append(Problem(path, pos, expected, found, skipped_bytes=len(buf) - pos, skipped_records=0))
    table = np.array(rows, np.int64).reshape(-1, 7)
    label_offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(c) for c in codes], out=label_offsets[1:])
    label_codes = np.concatenate(codes).astype(np.uint16) if codes else np.zeros(0, np.uint16)
    return DgrlIndex(header, table[:, 0].copy(), table[:, 1].copy(), *(table[:, k].astype(np.int32) for k in (2, 3, 4, 5)),
                     label_codes, label_offsets, table[:, 6].copy(), problems)


def unpack_bits(packed: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 1-bit line bitmap as uint8 (height, width): rows padded to whole bytes, most significant
    bit first, bit 1 = ink (0), bit 0 = background (255); see the module docstring for what is uncertain."""
    bits = np.unpackbits(np.asarray(packed, np.uint8).reshape(height, (width + 7) // 8), axis=1)[:, :width]
    return np.where(bits == 1, np.uint8(0), np.uint8(255))


def pack_bits(bitmap: np.ndarray) -> bytes:
    """The inverse of unpack_bits for fixtures: pixels below 128 are ink (bit 1)."""
    return np.packbits(np.asarray(bitmap) < 128, axis=1).tobytes()


class DgrlFile:
    """One DGRL page's bytes with its line index: line bitmaps and label codes.

    Args:
        buf: the whole file as a 1-D uint8 array (from np.fromfile or a zip member).
        path: name used in messages and keys.
        on_error, max_side: as for index_dgrl.
    """

    def __init__(self, buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE):
        self.buf = check_buffer(buf, "DGRL bytes")
        self.path = str(path)
        self.index = index_dgrl(self.buf, self.path, on_error=on_error, max_side=max_side)

    def __len__(self) -> int:
        return len(self.index)

    def _chosen(self, records) -> np.ndarray:
        return chosen_records(records, len(self), self.path, noun="line")

    def bitmap(self, i: int) -> np.ndarray:
        """Line i's bitmap as uint8 (height, width), 255 background (a view at 8 bpp)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.path}: line {i} out of range (page has {len(self)} valid lines).")
        i %= len(self)
        h, w = int(self.index.heights[i]), int(self.index.widths[i])
        start = int(self.index.bitmap_offsets[i])
        bits = self.index.header.bits_per_pixel
        data = self.buf[start:start + bitmap_bytes(h, w, bits)]
        return data.reshape(h, w) if bits == 8 else unpack_bits(data, h, w)

    def gather(self, records=None, serial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The chosen lines' bitmaps as one flat uint8 array (sizes: index.heights / widths).

        Returns:
            (pixels uint8 flat, pixel_offsets int64 of length len(records)+1).
        """
        chosen = self._chosen(records)
        images = [self.bitmap(int(i)).reshape(-1) for i in chosen]
        offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum([im.size for im in images], out=offsets[1:])
        return (np.concatenate(images) if images else np.zeros(0, np.uint8)), offsets

    def locate(self, records=None, serial: bool = False, pen_width: float | None = None) -> Bitmaps:
        """Where the chosen lines' bitmaps lie: in the file's bytes at 8 bits per pixel (no copy),
        in one unpacked array at 1 bit per pixel (gntkit.formats.base.Bitmaps; serial and pen_width unused)."""
        chosen = self._chosen(records)
        heights, widths = self.index.heights[chosen].copy(), self.index.widths[chosen].copy()
        if self.index.header.bits_per_pixel == 8:
            return Bitmaps(self.buf, self.index.bitmap_offsets[chosen].copy(), heights, widths)
        return packed_bitmaps(*self.gather(chosen), heights, widths)

    def batch_extras(self, chosen) -> dict:
        """Each chosen line's label codes (ragged: meta "label_codes" + "label_codes_offsets"),
        writer, page and line index, for SampleBatch.meta."""
        chosen = self._chosen(chosen)
        counts = self.index.char_counts[chosen]
        offsets = np.zeros(len(chosen) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        parts = [self.index.codes_of(int(i)) for i in chosen]
        writer, page = writer_and_page(self.path)
        return {
            "label_codes": np.concatenate(parts).astype(np.uint16) if parts else np.zeros(0, np.uint16),
            "label_codes_offsets": offsets,
            "writer": [writer] * len(chosen),
            "page": [page] * len(chosen),
            "line": self.index.record_numbers[chosen].copy(),
        }

    def inspect_stats(self) -> dict:
        """Pages, lines and characters of this file (per line), for `gntkit inspect`."""
        return {"lines_per_page": np.array([len(self)], np.int64), "characters_per_line": self.index.char_counts.copy()}


def writer_and_page(name: str) -> tuple[str, str]:
    """(writer, page) from a DGRL file name: `001-P16.dgrl` -> ("001", "16"); ("stem", "") otherwise."""
    stem = member_key(name)
    match = _PAGE_NAME.match(stem)
    return (match.group(1), match.group(2)) if match else (stem, "")


def matches_name(name: str) -> bool:
    """True for a `.dgrl` file name (any case)."""
    return name.lower().endswith(SUFFIX)


def sniff(head: bytes, size: int) -> bool:
    """True when the head shows a DGRL header: "DGR" at byte 4 and a header size that fits the file."""
    if len(head) < 12 or head[4:7] != FORMAT_CODE or head[7:12].strip(b"\0") not in (b"", b"L"):
        return False
    header_size = int.from_bytes(head[:4], "little")
    return HEADER_FIXED <= header_size and header_size + PAGE_BYTES <= size


def writer_id(name: str) -> str:
    """Writer id from a DGRL file name: the person's number, `001-P16.dgrl` -> "001" (the whole
    stem for a name without a page part)."""
    return writer_and_page(name)[0]


def member_key(name: str) -> str:
    """What a page's sample keys start with: its stem, `001-P16.dgrl` -> "001-P16" (the writer
    alone would repeat across a writer's pages)."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "_"


def open_file(buf: np.ndarray, path: str = "<bytes>", on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> DgrlFile:
    """Index and validate a DGRL page held in memory (see DgrlFile). max_side is raised to at least
    DEFAULT_MAX_SIDE: the stream's default is sized for single characters, pages are larger."""
    return DgrlFile(buf, path, on_error=on_error, max_side=max(int(max_side), DEFAULT_MAX_SIDE))


def encode_page(lines, page_height: int, page_width: int, bits_per_pixel: int = 8, illustration: bytes = b"",
                format_code: bytes = FORMAT_CODE, code_type: bytes = b"GB") -> bytes:
    """Serialise lines as a DGRL page (the inverse of reading; used by fixtures and benchmarks).

    Args:
        lines: iterable of (codes, top, left, bitmap): codes an iterable of int 2-byte codes
            (first byte high: 0xFFFF unlabelled, ASCII as byte << 8), bitmap a 2-D uint8 array
            (255 background; at 1 bit per pixel, values below 128 become ink).
        page_height, page_width: page size in pixels.
        bits_per_pixel: 8 or 1.
        illustration: the header's free text (NUL appended).

    Returns:
        The bytes of a DGRL file.

    Raises:
        GntkitError: a code over 2 bytes, an empty line, a bitmap that is not 2-D uint8.
    """
    if bits_per_pixel not in (8, 1):
        raise GntkitError(f"A DGRL page has 8 or 1 bits per pixel, found {bits_per_pixel}.")
    text = bytes(illustration) + b"\0"
    header = (np.array([HEADER_FIXED + len(text)], "<u4").tobytes() + format_code.ljust(8, b"\0") + text
              + code_type.ljust(20, b"\0") + np.array([2, bits_per_pixel], "<i2").tobytes())
    lines = list(lines)
    chunks = [header, np.array([page_height, page_width, len(lines)], "<i4").tobytes()]
    for codes, top, left, bitmap in lines:
        codes = np.asarray(list(codes), np.int64)
        bitmap = np.asarray(bitmap)
        if codes.size == 0 or codes.min() < 0 or codes.max() > 0xFFFF:
            raise GntkitError(f"A DGRL line needs at least one 2-byte code, found {codes.tolist()[:5]}.")
        if bitmap.dtype != np.uint8 or bitmap.ndim != 2:
            raise GntkitError(f"A DGRL line bitmap must be a 2-D uint8 array, found {bitmap.dtype} {bitmap.shape}.")
        h, w = bitmap.shape
        chunks.append(np.array([len(codes)], "<i4").tobytes())
        chunks.append(codes.astype(">u2").tobytes())
        chunks.append(np.array([top, left, h, w], "<i4").tobytes())
        chunks.append(np.ascontiguousarray(bitmap).tobytes() if bits_per_pixel == 8 else pack_bits(bitmap))
    return b"".join(chunks)
