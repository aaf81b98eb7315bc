"""Text lines (DGRL) as they travel through the stream, the shards and the loaders.

A text-line sample has a variable-width image (one height after preprocessing), a label
SEQUENCE and its transcription. In a SampleBatch (see gntkit.samples.stream.line_batch_of):

    labels                  int64 (N,)    -1: a line has no single class
    characters              list of N str: the transcription
    meta["text"]            list of N str: the transcription (UTF-8 in shards)
    meta["label_sequence"]  int64 (L,)    class ids in the charset, every line's back to back
    meta["label_sequence_offsets"] int64 (N+1,)
    meta["writer"], meta["page"]: lists of N str; meta["line"]: int64 (N,)

and the text is the charset's characters of the label sequence. Shards keep `text` and
`label_sequence` (see each writer's feature_spec: `{key}.txt` and `{key}.labels.npy` in
WebDataset, a bytes feature `text` and an int64 list `label_sequence` in TFRecord, a
variable-length UTF-8 dataset `text` and ragged `label_sequence` in HDF5). numpy only.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError

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


def text_of(label_sequence, characters) -> str:
    """The transcription a label sequence stands for, given the charset's characters.

    Raises:
        GntkitError: a class id outside the charset.
    """
    ids = np.asarray(label_sequence, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(characters)):
        raise GntkitError(f"class ids must lie in [0, {len(characters)}), found {int(ids.min())}..{int(ids.max())}.")
    return "".join(characters[i] for i in ids.tolist())


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
