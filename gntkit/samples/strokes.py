"""Raw strokes of online handwriting (POT) as they travel through the stream, the shards and the loaders.

In a SampleBatch the strokes are ragged meta entries (see SampleBatch.meta):

    points                  int16 (P, 2)  x, y in tablet units, every sample's points back to back
    points_offsets          int64 (N+1,)  sample i's points are points[points_offsets[i]:points_offsets[i+1]]
    stroke_lengths          int16 (S,)    points per stroke (each >= 1), back to back
    stroke_lengths_offsets  int64 (N+1,)  sample i's strokes, delimited the same way

and a sample's stroke lengths add up to its point count. Shards keep them losslessly: ragged
datasets in HDF5, `.npy` members in WebDataset, int16 little-endian bytes in TFRecord (see
each writer's feature_spec). numpy only.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError

#: the SampleBatch.meta entries that carry strokes
STROKE_KEYS = ("points", "points_offsets", "stroke_lengths", "stroke_lengths_offsets")

#: what the manifest's feature spec says about strokes (one text for every shard format)
STROKES_SPEC = {
    "points": "int16 (P, 2): x, y in tablet units, pen-up markers removed",
    "stroke_lengths": "int16 (S,): points per stroke, each >= 1, adding up to P",
}


def _ragged(meta: dict, name: str, n: int, dtype, width: int | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(meta[name])
    offsets = np.asarray(meta[name + "_offsets"])
    shape = (-1, width) if width else (-1,)
    if values.dtype != np.dtype(dtype) or values.ndim != len(shape) or (width and values.shape[1] != width):
        wanted = f"{np.dtype(dtype).name} {'(P, 2)' if width else '(S,)'}"
        raise GntkitError(f"{where}: meta[{name!r}] must be {wanted}, found {values.dtype} {values.shape}.")
    if offsets.dtype.kind not in "iu" or offsets.shape != (n + 1,):
        raise GntkitError(f"{where}: meta[{name + '_offsets'!r}] must be {n + 1} integers, found {offsets.dtype} {offsets.shape}.")
    offsets = offsets.astype(np.int64)
    steps = np.diff(offsets)
    if n and (offsets[0] < 0 or offsets[-1] > len(values) or (steps < 0).any()):
        raise GntkitError(f"{where}: meta[{name + '_offsets'!r}] must rise within [0, {len(values)}], found {offsets[0]}..{offsets[-1]}.")
    first = int(offsets[0]) if n else 0
    return np.ascontiguousarray(values[first:int(offsets[-1]) if n else 0]), offsets - first


def check_strokes(meta, n: int, where: str) -> dict:
    """The strokes of a batch of n samples, checked and rebased so both offsets start at 0.

    Args:
        meta: SampleBatch.meta.
        n: samples in the batch.
        where: the batch, for messages.

    Returns:
        {"points", "points_offsets", "stroke_lengths", "stroke_lengths_offsets"} (see the module docstring).

    Raises:
        GntkitError: a missing entry (a source without strokes, e.g. GNT), a wrong dtype or
            shape, offsets that do not fit, an empty stroke, or stroke lengths that do not add
            up to a sample's point count.
    """
    if not isinstance(meta, dict) or any(key not in meta for key in STROKE_KEYS):
        found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        keys = ", ".join(STROKE_KEYS)
        raise GntkitError(f"{where}: expected raw strokes (meta {keys}) from an online source such as POT, found meta {found}.")
    points, point_offsets = _ragged(meta, "points", n, np.int16, 2, where)
    lengths, stroke_offsets = _ragged(meta, "stroke_lengths", n, np.int16, None, where)
    if lengths.size and lengths.min() < 1:
        raise GntkitError(f"{where}: every stroke must have at least one point, found a stroke length of {int(lengths.min())}.")
    running = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=running[1:])
    sums = running[stroke_offsets[1:]] - running[stroke_offsets[:-1]]
    empty = stroke_offsets[:-1] == stroke_offsets[1:]
    counts = np.diff(point_offsets)
    bad = np.flatnonzero((sums != counts) | empty)
    if bad.size:
        i = int(bad[0])
        strokes = int(stroke_offsets[i + 1] - stroke_offsets[i])
        raise GntkitError(f"{where}: sample {i} has {int(counts[i])} points but its {strokes} stroke(s) add up to {int(sums[i])} "
                          "(every sample needs at least one stroke).")
    return {"points": points, "points_offsets": point_offsets, "stroke_lengths": lengths, "stroke_lengths_offsets": stroke_offsets}


def check_sample_strokes(points, stroke_lengths, where: str) -> None:
    """Check one sample's strokes as a shard reader returns them (verify).

    Raises:
        GntkitError: not int16 (P, 2) and (S,) arrays, an empty stroke, or lengths that do not add up to P.
    """
    points, lengths = np.asarray(points), np.asarray(stroke_lengths)
    if points.dtype != np.int16 or points.ndim != 2 or points.shape[1] != 2 or lengths.dtype != np.int16 or lengths.ndim != 1:
        found = f"{points.dtype} {points.shape} and {lengths.dtype} {lengths.shape}"
        raise GntkitError(f"{where}: expected int16 points (P, 2) and int16 stroke lengths (S,), found {found}.")
    if lengths.size == 0 or lengths.min() < 1 or int(lengths.sum(dtype=np.int64)) != len(points):
        shown = lengths.tolist()[:8]
        raise GntkitError(f"{where}: expected stroke lengths of at least 1 adding up to the {len(points)} points, found {shown}.")


def pad_strokes(samples, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad a batch of samples' strokes into one array, the input online recognisers take.

    Args:
        samples: sequence of (points int16 (P, 2), stroke_lengths (S,)) pairs.
        max_points: pad (or cut) every sample to this many points; the longest sample's count when None.

    Returns:
        (points float32 (B, T, 3): x, y and 1.0 on each stroke's last point (pen up), zeros
         after a sample's end; lengths int64 (B,): points per sample, at most T).

    Raises:
        GntkitError: an empty batch or a max_points below 1.
    """
    if len(samples) == 0:
        raise GntkitError("pad_strokes needs at least one sample, found none.")
    counts = np.array([len(p) for p, _ in samples], np.int64)
    longest = int(counts.max()) if max_points is None else int(max_points)
    if longest < 1:
        raise GntkitError(f"max_points must be at least 1, found {max_points}.")
    out = np.zeros((len(samples), longest, 3), np.float32)
    for i, (points, lengths) in enumerate(samples):
        take = min(len(points), longest)
        out[i, :take, :2] = points[:take]
        ends = np.cumsum(np.asarray(lengths, np.int64)) - 1
        ends = ends[ends < take]
        out[i, ends, 2] = 1.0
    return out, np.minimum(counts, longest)
