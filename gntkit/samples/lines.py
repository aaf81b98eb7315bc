"""Text lines (DGRL) as they travel through the stream, the shards and the loaders.

A text-line sample has a variable-width image (one height after preprocessing), a label
SEQUENCE and its transcription. In a SampleBatch (see line_batch_of):

    labels                  int64 (N,)    -1: a line has no single class
    characters              list of N str: the transcription
    meta["text"]            list of N str: the transcription (UTF-8 in shards)
    meta["label_sequence"]  int64 (L,)    class ids in the charset, every line's back to back
    meta["label_sequence_offsets"] int64 (N+1,)
    meta["writer"], meta["page"]: lists of N str; meta["line"]: int64 (N,)

and the text is the charset's characters of the label sequence. Shards keep `text` and
`label_sequence` (see each writer's feature_spec: `{key}.txt` and `{key}.labels.npy` in
WebDataset, a bytes feature `text` and an int64 list `label_sequence` in TFRecord, a
variable-length UTF-8 dataset `text` and ragged `label_sequence` in HDF5).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from gntkit.errors import CharsetError, GntkitError
from gntkit.formats.sources import Member
from gntkit.samples.batch import SampleBatch
from gntkit.samples.charset import Charset, describe_tag
from gntkit.samples.line_images import preprocess_line_records
from gntkit.samples.report import StreamReport

#: the SampleBatch.meta entries a line shard needs
LINE_KEYS = ("text", "label_sequence", "label_sequence_offsets")

#: what the manifest's feature spec says about text lines (one text for every shard format)
LINES_SPEC = {
    "text": "the line's transcription, UTF-8: the charset's characters of label_sequence",
    "label_sequence": "int64 class ids in the charset, one per character (CTC targets); label is -1",
    "image": "variable width at the preprocessing's line_height (raw: the scan's own size)",
}


def check_lines(meta, n: int, where: str) -> dict:
    """The text and label sequences of a batch of n lines, checked, offsets rebased to 0.

    Args:
        meta: SampleBatch.meta.
        n: samples in the batch.
        where: the batch, for messages.

    Returns:
        {"text": list of n str, "label_sequence": int64 (L,), "label_sequence_offsets": int64 (n+1,)}.

    Raises:
        GntkitError: a missing entry (a source of single characters), a text that is not a
            str, a wrong dtype or shape, offsets that do not rise within the values, or a
            negative class id.
    """
    if not isinstance(meta, dict) or any(key not in meta for key in LINE_KEYS):
        found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise GntkitError(f"{where}: expected text lines (meta {', '.join(LINE_KEYS)}) from a source such as DGRL, found meta {found}.")
    text = list(meta["text"])
    if len(text) != n or any(type(t) is not str for t in text):
        raise GntkitError(f"{where}: meta['text'] must be {n} str, found {len(text)} entries of "
                          f"{sorted({type(t).__name__ for t in text})}.")
    values = np.asarray(meta["label_sequence"])
    offsets = np.asarray(meta["label_sequence_offsets"])
    if values.ndim != 1 or (values.size and values.dtype.kind not in "iu") or offsets.shape != (n + 1,) or offsets.dtype.kind not in "iu":
        raise GntkitError(f"{where}: meta['label_sequence'] must be 1-D integers with {n + 1} offsets, "
                          f"found {values.dtype} {values.shape} and {offsets.shape}.")
    offsets = offsets.astype(np.int64)
    if n and (offsets[0] < 0 or offsets[-1] > len(values) or (np.diff(offsets) < 0).any()):
        raise GntkitError(f"{where}: meta['label_sequence_offsets'] must rise within [0, {len(values)}], "
                          f"found {offsets[0]}..{offsets[-1]}.")
    first = int(offsets[0]) if n else 0
    values = np.ascontiguousarray(values[first:int(offsets[-1]) if n else 0], dtype=np.int64)
    if values.size and values.min() < 0:
        raise GntkitError(f"{where}: class ids in meta['label_sequence'] must be at least 0, found {int(values.min())}.")
    return {"text": text, "label_sequence": values, "label_sequence_offsets": offsets - first}


def pad_lines(images, widths=None, pad_value: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Variable-width line images of one height as one padded batch.

    Args:
        images: 2-D uint8 arrays of equal height.
        pad_value: the value right of each line (0: the background after inversion).

    Returns:
        (uint8 (B, H, W_max), int64 (B,) widths).

    Raises:
        GntkitError: no images, or images of different heights.
    """
    images = list(images)
    if not images:
        raise GntkitError("pad_lines needs at least one line image, found none.")
    heights = {im.shape[0] for im in images}
    if len(heights) != 1:
        raise GntkitError(f"Line images of one batch must share one height (the conversion's line_height), found {sorted(heights)}.")
    widths = np.array([im.shape[1] for im in images], np.int64)
    out = np.full((len(images), heights.pop(), int(widths.max())), pad_value, np.uint8)
    for b, image in enumerate(images):
        out[b, :, :image.shape[1]] = image
    return out, widths


def is_line_member(member: Member) -> bool:
    """True when the member's records are text lines (its format's SAMPLE_KIND is "line", e.g. DGRL)."""
    return getattr(member.format_module(), "SAMPLE_KIND", "character") == "line"


def label_lines(record_file, charset: Charset, on_unknown: str, report: StreamReport) -> tuple[np.ndarray, np.ndarray]:
    """Class ids of every character of every valid line of a file, and which lines to keep.

    A character is unknown when its code is the unlabelled mark 0xFFFF, decodes to nothing or
    lies outside the charset. on_unknown="drop" drops a line with any unknown character (counted
    in report.dropped, its characters in unknown_codes / outside_codes); "other" keeps it with
    those characters as the charset's 'other' class (lines counted in report.other); "error"
    raises naming the file, line, character and byte.

    Returns:
        (classes int64 aligned with index.label_codes, keep bool per line).

    Raises:
        CharsetError: an unknown character with on_unknown="error".
        GntkitError: on_unknown="other" with a charset without the 'other' class.
    """
    index = record_file.index
    codes = index.label_codes
    classes = charset.classes_of_codes(codes).astype(np.int64)
    # 0xFFFF marks a character left unlabelled: never a class, even where it is the 'other' class's code.
    missing = (classes < 0) | (codes == 0xFFFF)
    line_of = np.repeat(np.arange(len(index)), np.diff(index.label_offsets))
    bad_lines = np.zeros(len(index), bool)
    bad_lines[line_of[missing]] = True
    if not missing.any():
        return classes, ~bad_lines
    if on_unknown == "error":
        j = int(np.flatnonzero(missing)[0])
        line = int(line_of[j])
        position = j - int(index.label_offsets[line])
        raise CharsetError(
            f"{record_file.path} line {int(index.record_numbers[line])} character {position} at byte "
            f"{int(index.offsets[line]) + 4 + 2 * position}: "
            f"expected a character in charset {charset.name!r}, found {describe_tag(int(codes[j]))}."
        )
    report.count_codes(codes[missing])
    if on_unknown == "other":
        if not charset.has_other:
            raise GntkitError(f"on_unknown='other' needs a charset with an 'other' class (Charset.with_other()), found {charset!r}.")
        classes[missing] = len(charset) - 1
        report.other += int(bad_lines.sum())
        return classes, np.ones(len(index), bool)
    report.dropped += int(bad_lines.sum())
    return classes, ~bad_lines


def line_batches(member: Member, record_file, charset: Charset, preprocess, on_unknown: str, batch_size: int,
                  report: StreamReport, entry: dict) -> Iterator[SampleBatch]:
    """The text lines of one member as SampleBatches (see line_batch_of); counts go to report and entry."""
    classes, keep = label_lines(record_file, charset, on_unknown, report)
    kept = np.flatnonzero(keep)
    report.kept += int(kept.size)
    entry["kept"] = int(kept.size)
    for start in range(0, kept.size, batch_size):
        yield line_batch_of(member, record_file, kept[start:start + batch_size], classes, charset, preprocess)


def line_batch_of(member: Member, record_file, chosen: np.ndarray, classes: np.ndarray, charset: Charset, preprocess) -> SampleBatch:
    """One SampleBatch of text lines: variable-width images (pixels + pixel_offsets, raw or at the
    line height), labels -1 (a line has no single class), characters = the transcription, and
    meta "label_sequence" (int64 class ids, ragged with "label_sequence_offsets"), "text" (the
    transcription: the charset's characters of those ids), "label_codes" (ragged, as stored),
    "writer", "page", "line"."""
    index = record_file.index
    meta = record_file.batch_extras(chosen)
    starts, ends = index.label_offsets[chosen], index.label_offsets[chosen + 1]
    sequence = np.concatenate([classes[a:b] for a, b in zip(starts.tolist(), ends.tolist())]) if len(chosen) else np.zeros(0, np.int64)
    names = charset.characters
    texts = ["".join([names[c] for c in classes[a:b].tolist()]) for a, b in zip(starts.tolist(), ends.tolist())]
    meta.update(label_sequence=sequence.astype(np.int64), label_sequence_offsets=meta["label_codes_offsets"].copy(), text=texts)
    common = dict(
        keys=[f"{member.key_base}/{n}" for n in index.record_numbers[chosen].tolist()],
        writer_ids=[member.writer_id] * len(chosen),
        tag_codes=np.zeros(len(chosen), np.uint16),
        labels=np.full(len(chosen), -1, np.int64),
        characters=list(texts),
        meta=meta,
    )
    if preprocess is None or preprocess.raw:
        pixels, pixel_offsets = record_file.gather(chosen)
        return SampleBatch(**common, heights=index.heights[chosen].copy(), widths=index.widths[chosen].copy(), pixels=pixels,
                           pixel_offsets=pixel_offsets)
    pixels, pixel_offsets, heights, widths = preprocess_line_records(record_file, chosen, preprocess)
    return SampleBatch(**common, heights=heights, widths=widths, pixels=pixels, pixel_offsets=pixel_offsets)
