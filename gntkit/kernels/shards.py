"""numba kernels behind gntkit.datasets: bulk record gathering, tf.train.Example parsing, PNG unfiltering.

Kernels take contiguous arrays and scalars and return arrays or status codes; the
Python wrappers in `gntkit.datasets` check inputs and turn status codes into
`FormatError`s naming the shard and record. Each kernel has a plain-Python
reference (`gntkit.kernels.example_parse.parse_example`, numpy slicing) that the tests compare against.
"""

from __future__ import annotations

import numpy as np

from gntkit.jit import njit

# Status codes returned per record by `parse_examples`.
OK = 0
TRUNCATED = 1  # a length or varint runs past the record
BAD_IMAGE = 2  # no `image` bytes feature of the expected size
NO_LABEL = 3  # no `label` int64 feature
BAD_FRAME = 4  # the frame length disagrees with the record offsets

STATUS_TEXT = {
    TRUNCATED: "a protobuf field that runs past the end of the record",
    BAD_IMAGE: "an `image` bytes feature of height*width bytes",
    NO_LABEL: "an int64 `label` feature",
    BAD_FRAME: "a frame length that matches the record offsets",
}


@njit
def gather_blocks(bufs, shard_of, positions, rows, block, out):
    """out[i] = the `block` bytes at positions[r] of buffer bufs[shard_of[r]], for r = rows[i] (out is (B, block))."""
    for i in range(rows.shape[0]):
        r = rows[i]
        _copy(bufs[shard_of[r]], positions[r], out[i], block)


@njit
def _copy(src, start, dst, count):
    """dst[:count] = src[start:start + count]."""
    # Unsigned indices: numba then skips the negative-index wraparound test per byte and
    # LLVM vectorises the loop (about 10x faster than signed indexing or slice assignment).
    begin = np.uint64(start)
    for j in range(np.uint64(count)):
        dst[j] = src[begin + j]


@njit
def _varint(buf, pos, end):
    """Decode a protobuf varint at buf[pos]; returns (value, next position) or (0, -1) if truncated."""
    value = np.uint64(0)
    shift = np.uint64(0)
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += np.uint64(7)
        if shift >= np.uint64(64):
            return np.uint64(0), -1
    return np.uint64(0), -1


@njit
def _skip(buf, pos, end, wire_type):
    """Position after a field body of the given wire type, or -1 if it cannot be skipped."""
    if wire_type == 0:
        _, pos = _varint(buf, pos, end)
        return pos
    if wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    elif wire_type == 2:
        length, pos = _varint(buf, pos, end)
        if pos < 0 or length > np.uint64(end - pos):  # unsigned: a huge length cannot wrap negative
            return -1
        pos += np.int64(length)
    else:
        return -1
    return pos if pos <= end else -1


@njit
def _same_bytes(buf, start, length, key):
    if length != key.shape[0]:
        return False
    for j in range(length):
        if buf[start + j] != key[j]:
            return False
    return True


@njit
def _feature_image(buf, pos, end, out_row):
    """Copy the first BytesList value of a Feature at buf[pos:end] into out_row; True when the size fits."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return False
        if tag == 10:  # field 1 (bytes_list), length-delimited
            length, pos = _varint(buf, pos, end)
            if pos < 0 or length > np.uint64(end - pos):
                return False
            list_end = pos + np.int64(length)
            while pos < list_end:
                inner, pos = _varint(buf, pos, list_end)
                if pos < 0:
                    return False
                if inner == 10:  # BytesList.value
                    size, pos = _varint(buf, pos, list_end)
                    if pos < 0 or size > np.uint64(list_end - pos) or np.int64(size) != out_row.shape[0]:
                        return False
                    _copy(buf, pos, out_row, out_row.shape[0])
                    return True
                pos = _skip(buf, pos, list_end, np.int64(inner & np.uint64(7)))
                if pos < 0:
                    return False
            return False
        pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
        if pos < 0:
            return False
    return False


@njit
def _feature_int64(buf, pos, end):
    """First value of the Int64List of a Feature at buf[pos:end]; (value, True) or (0, False)."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return np.int64(0), False
        if tag == 26:  # field 3 (int64_list), length-delimited
            length, pos = _varint(buf, pos, end)
            if pos < 0 or length > np.uint64(end - pos):
                return np.int64(0), False
            list_end = pos + np.int64(length)
            while pos < list_end:
                inner, pos = _varint(buf, pos, list_end)
                if pos < 0:
                    return np.int64(0), False
                if inner == 10:  # packed values
                    _, pos = _varint(buf, pos, list_end)
                    if pos < 0:
                        return np.int64(0), False
                    value, pos = _varint(buf, pos, list_end)
                    return np.int64(value), pos > 0
                if inner == 8:  # one unpacked value
                    value, pos = _varint(buf, pos, list_end)
                    return np.int64(value), pos > 0
                pos = _skip(buf, pos, list_end, np.int64(inner & np.uint64(7)))
                if pos < 0:
                    return np.int64(0), False
            return np.int64(0), False
        pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
        if pos < 0:
            return np.int64(0), False
    return np.int64(0), False


# Kept whole (over 60 lines): one cursor walks the nested messages (Example, Features, entry,
# Feature) and every truncation check returns a status from the same place.
@njit
def _parse_one(buf, start, end, image_key, label_key, out_row):
    """Parse one serialized Example at buf[start:end]; returns (status, label)."""
    got_image = False
    got_label = False
    label = np.int64(0)
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        if pos < 0:
            return TRUNCATED, label
        if tag != 10:  # Example.features
            pos = _skip(buf, pos, end, np.int64(tag & np.uint64(7)))
            if pos < 0:
                return TRUNCATED, label
            continue
        length, pos = _varint(buf, pos, end)
        if pos < 0 or length > np.uint64(end - pos):
            return TRUNCATED, label
        features_end = pos + np.int64(length)
        while pos < features_end:
            tag, pos = _varint(buf, pos, features_end)
            if pos < 0:
                return TRUNCATED, label
            if tag != 10:  # Features.feature map entry
                pos = _skip(buf, pos, features_end, np.int64(tag & np.uint64(7)))
                if pos < 0:
                    return TRUNCATED, label
                continue
            length, pos = _varint(buf, pos, features_end)
            if pos < 0 or length > np.uint64(features_end - pos):
                return TRUNCATED, label
            entry_end = pos + np.int64(length)
            key_start = -1
            key_len = 0
            value_start = -1
            value_end = -1
            while pos < entry_end:
                tag, pos = _varint(buf, pos, entry_end)
                if pos < 0:
                    return TRUNCATED, label
                if tag == 10 or tag == 18:
                    length, pos = _varint(buf, pos, entry_end)
                    if pos < 0 or length > np.uint64(entry_end - pos):
                        return TRUNCATED, label
                    if tag == 10:
                        key_start = pos
                        key_len = np.int64(length)
                    else:
                        value_start = pos
                        value_end = pos + np.int64(length)
                    pos += np.int64(length)
                else:
                    pos = _skip(buf, pos, entry_end, np.int64(tag & np.uint64(7)))
                    if pos < 0:
                        return TRUNCATED, label
            if key_start < 0 or value_start < 0:
                continue
            if _same_bytes(buf, key_start, key_len, image_key):
                if not _feature_image(buf, value_start, value_end, out_row):
                    return BAD_IMAGE, label
                got_image = True
            elif _same_bytes(buf, key_start, key_len, label_key):
                label, ok = _feature_int64(buf, value_start, value_end)
                if not ok:
                    return NO_LABEL, label
                got_label = True
    if not got_image:
        return BAD_IMAGE, label
    if not got_label:
        return NO_LABEL, label
    return OK, label


@njit
def parse_examples(bufs, shard_of, frame_starts, frame_ends, rows, image_key, label_key, images, labels, status):
    """Parse the TFRecord frames of records `rows` into images[i] (flat) and labels[i].

    Record r is the frame bufs[shard_of[r]][frame_starts[r]:frame_ends[r]]: uint64 length,
    uint32 crc, the Example, uint32 crc. status[i] gets a code from this module (OK when
    the record parsed). CRCs are not checked here: whole shards are checked by sha256
    when `verify=True` is asked.
    """
    for i in range(rows.shape[0]):
        r = rows[i]
        buf = bufs[shard_of[r]]
        start = frame_starts[r]
        end = frame_ends[r]
        if start + 16 > end:
            status[i] = BAD_FRAME
            continue
        length = np.int64(0)
        for j in range(8):
            length |= np.int64(buf[start + j]) << np.int64(8 * j)
        if start + 16 + length != end:
            status[i] = BAD_FRAME
            continue
        code, label = _parse_one(buf, start + 12, start + 12 + length, image_key, label_key, images[i])
        status[i] = code
        labels[i] = label


# Status codes of `locate_png` (OK = 0 as above): the sample needs the slow path.
UNUSUAL_TAR = 10  # pax / long-name headers, or a .cls that is not a plain decimal
NO_PNG = 11  # no .png member, or not an 8-bit grayscale non-interlaced PNG of the expected size
MULTI_IDAT = 12  # image data split over several IDAT chunks
NO_CLS = 13  # no .cls member

_PNG_SIGNATURE = np.array([137, 80, 78, 71, 13, 10, 26, 10], np.uint8)


@njit
def _be32(buf, pos):
    return (np.int64(buf[pos]) << 24) | (np.int64(buf[pos + 1]) << 16) | (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])


@njit
def _png_idat(buf, start, size, side):
    """(IDAT data start, length, status) of a PNG at buf[start:start+size] that must be side x side, 8-bit gray."""
    end = start + size
    if size < 8 + 25 + 12:
        return 0, 0, NO_PNG
    for j in range(8):
        if buf[start + j] != _PNG_SIGNATURE[j]:
            return 0, 0, NO_PNG
    pos = start + 8
    # IHDR: length 13, then width, height, bit depth, colour type, compression, filter, interlace.
    if _be32(buf, pos) != 13 or buf[pos + 4] != 73 or buf[pos + 5] != 72 or buf[pos + 6] != 68 or buf[pos + 7] != 82:
        return 0, 0, NO_PNG
    if _be32(buf, pos + 8) != side or _be32(buf, pos + 12) != side or buf[pos + 16] != 8 or buf[pos + 17] != 0 or buf[pos + 20] != 0:
        return 0, 0, NO_PNG
    pos += 25
    idat_start = -1
    idat_len = 0
    while pos + 12 <= end:
        length = _be32(buf, pos)
        is_idat = buf[pos + 4] == 73 and buf[pos + 5] == 68 and buf[pos + 6] == 65 and buf[pos + 7] == 84
        is_iend = buf[pos + 4] == 73 and buf[pos + 5] == 69 and buf[pos + 6] == 78 and buf[pos + 7] == 68
        if pos + 12 + length > end:
            return 0, 0, NO_PNG
        if is_idat:
            if idat_start >= 0:
                return 0, 0, MULTI_IDAT
            idat_start = pos + 8
            idat_len = length
        if is_iend:
            break
        pos += 12 + length
    if idat_start < 0:
        return 0, 0, NO_PNG
    return idat_start, idat_len, OK


# Kept whole (over 60 lines): one cursor walks a sample's tar members, and the PNG and .cls checks
# read at that cursor; every way out of the fast path sets the sample's status in one place.
@njit
def locate_png(bufs, shard_of, sample_starts, sample_ends, rows, side, idat_starts, idat_lens, labels, status):
    """Walk the tar members of samples `rows`: find the PNG's one IDAT chunk and parse the .cls label.

    Sample r spans bufs[shard_of[r]][sample_starts[r]:sample_ends[r]] (its members' headers
    and data). Writes idat_starts[i], idat_lens[i], labels[i]; status[i] is OK or a code
    that sends the sample to the slow path (pillow, full tar header handling), among them
    UNUSUAL_TAR for a member whose size runs past the sample's end: no read leaves the sample.
    """
    for i in range(rows.shape[0]):
        r = rows[i]
        buf = bufs[shard_of[r]]
        pos = sample_starts[r]
        end = sample_ends[r]
        found_png = False
        found_cls = False
        code = OK
        while pos + 512 <= end and code == OK:
            kind = buf[pos + 156]
            size = np.int64(0)
            for j in range(124, 136):
                c = buf[pos + j]
                if c >= 48 and c <= 55:
                    size = size * 8 + (c - 48)
                elif c != 0 and c != 32:
                    code = UNUSUAL_TAR
            if kind != 48 and kind != 0:
                code = UNUSUAL_TAR
                break
            data = pos + 512
            if size > end - data:
                # A member running past its sample (a damaged size field) would send the reads
                # below past the sample, and past the buffer for the last one: the slow path
                # (Python slicing, pillow) decides what the sample holds.
                code = UNUSUAL_TAR
                break
            # extension: after the first '.' following the last '/' of the name
            name_end = 0
            while name_end < 100 and buf[pos + name_end] != 0:
                name_end += 1
            slash = -1
            for j in range(name_end):
                if buf[pos + j] == 47:
                    slash = j
            dot = -1
            for j in range(slash + 1, name_end):
                if buf[pos + j] == 46:
                    dot = j
                    break
            ext_len = name_end - dot - 1
            if dot >= 0 and ext_len == 3 and buf[pos + dot + 1] == 112 and buf[pos + dot + 2] == 110 and buf[pos + dot + 3] == 103:
                idat_start, idat_len, png_code = _png_idat(buf, data, size, side)
                if png_code != OK:
                    code = png_code
                idat_starts[i] = idat_start
                idat_lens[i] = idat_len
                found_png = True
            elif dot >= 0 and ext_len == 3 and buf[pos + dot + 1] == 99 and buf[pos + dot + 2] == 108 and buf[pos + dot + 3] == 115:
                value = np.int64(0)
                digits = 0
                for j in range(size):
                    c = buf[data + j]
                    if c >= 48 and c <= 57:
                        digits += 1
                        if digits <= 18:
                            value = value * 10 + (c - 48)
                    elif c != 10 and c != 32:
                        code = UNUSUAL_TAR
                if digits == 0 or digits > 18:  # more than 18 digits may not fit an int64
                    code = UNUSUAL_TAR
                labels[i] = value
                found_cls = True
            pos = data + ((size + 511) // 512) * 512
        if code == OK and not found_png:
            code = NO_PNG
        if code == OK and not found_cls:
            code = NO_CLS
        status[i] = code


@njit
def png_unfilter(raw, side, out, status):
    """Undo PNG row filters of 8-bit grayscale images: raw (B, side*(side+1)) -> out (B, side*side).

    status[i] is set to NO_PNG for an unknown filter type.
    """
    stride = np.uint64(side + 1)
    width = np.uint64(side)
    for i in range(raw.shape[0]):
        src = raw[i]
        dst = out[i]
        for y in range(np.uint64(side)):
            ft = src[y * stride]
            s0 = y * stride + np.uint64(1)
            d0 = y * width
            up = d0 - width if y > 0 else d0  # previous row (only read when y > 0)
            if ft == 0 or (ft == 2 and y == 0):
                for x in range(width):
                    dst[d0 + x] = src[s0 + x]
            elif ft == 1:
                left = np.int64(0)
                for x in range(width):
                    left = (np.int64(src[s0 + x]) + left) & np.int64(255)
                    dst[d0 + x] = np.uint8(left)
            elif ft == 2:
                for x in range(width):
                    dst[d0 + x] = np.uint8((np.int64(src[s0 + x]) + np.int64(dst[up + x])) & np.int64(255))
            elif ft == 3:
                left = np.int64(0)
                for x in range(width):
                    above = np.int64(dst[up + x]) if y > 0 else np.int64(0)
                    left = (np.int64(src[s0 + x]) + ((left + above) >> np.int64(1))) & np.int64(255)
                    dst[d0 + x] = np.uint8(left)
            elif ft == 4:
                left = np.int64(0)
                corner = np.int64(0)
                for x in range(width):
                    above = np.int64(dst[up + x]) if y > 0 else np.int64(0)
                    p = left + above - corner
                    pa = abs(p - left)
                    pb = abs(p - above)
                    pc = abs(p - corner)
                    pred = left if (pa <= pb and pa <= pc) else (above if pb <= pc else corner)
                    left = (np.int64(src[s0 + x]) + pred) & np.int64(255)
                    dst[d0 + x] = np.uint8(left)
                    corner = above
            else:
                status[i] = NO_PNG
                break
