"""Decoding CTC outputs in numpy: greedy (best path) and prefix beam search.

A line model gives, for every frame, scores over the charset's classes plus CTC's blank
(gntkit.datasets.lines: `blank = num_classes`). Scores are logits or log-probabilities: beam
search normalises each frame with a log-softmax (which leaves log-probabilities unchanged),
and greedy decoding only compares them. For probabilities, pass `np.log(p)`.

Greedy decoding takes the best class per frame, merges repeats and drops blanks. Prefix beam
search (Hannun et al., 2014) keeps the `beam_width` most probable label prefixes, each with the
probability of its paths ending in a blank and in its last label, and sums over all paths of a
prefix; with a beam as wide as the number of possible prefixes it finds the most probable
labelling. Both take one line (T, C) or a batch (N, T, C) with optional frame counts per line.
"""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError

__all__ = ["greedy_decode", "beam_search", "log_softmax"]


def _check(scores, blank: int, lengths) -> tuple[np.ndarray, np.ndarray, bool]:
    """(scores as float64 (N, T, C), frame counts (N,), whether one line was given)."""
    array = np.asarray(scores)
    if array.ndim not in (2, 3) or array.dtype.kind not in "fiu" or 0 in array.shape[-1:]:
        raise GntkitError(f"CTC scores must be a (T, C) or (N, T, C) array of numbers, found {array.dtype} {array.shape}.")
    single = array.ndim == 2
    array = array[None] if single else array
    n, frames, classes = array.shape
    if not 0 <= int(blank) < classes:
        raise GntkitError(f"CTC blank index must be in 0..{classes - 1} (the class axis), found {blank}.")
    if lengths is None:
        counts = np.full(n, frames, np.int64)
    else:
        counts = np.atleast_1d(np.asarray(lengths))
        if counts.shape != (n,) or counts.dtype.kind not in "iu" or (n and (counts.min() < 0 or counts.max() > frames)):
            raise GntkitError(f"CTC lengths must be {n} frame counts in 0..{frames}, found {counts.dtype} {counts.shape}.")
    return array.astype(np.float64, copy=False), counts.astype(np.int64), single


def log_softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(softmax(scores)) along an axis, computed stably (log-probabilities come back unchanged)."""
    scores = np.asarray(scores, np.float64)
    shifted = scores - scores.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def greedy_decode(scores, blank: int, lengths=None) -> list:
    """Best-path decoding: the best class per frame, repeats merged, blanks dropped.

    Args:
        scores: (T, C) for one line or (N, T, C) for a batch; logits, log-probabilities or probabilities.
        blank: the blank's index on the class axis.
        lengths: frames per line of a batch (N,), for padded batches (None: all T frames).

    Returns:
        The class ids (a list of int) of the line, or a list of them per line of a batch.

    Raises:
        GntkitError: scores of another shape, a blank outside the class axis, or lengths that do not fit.
    """
    array, counts, single = _check(scores, blank, lengths)
    best = array.argmax(axis=2)
    decoded = []
    for path, count in zip(best, counts.tolist()):
        path = path[:count]
        keep = np.ones(len(path), bool)
        keep[1:] = path[1:] != path[:-1]
        decoded.append([int(c) for c in path[keep & (path != blank)]])
    return decoded[0] if single else decoded


def beam_search(scores, blank: int, beam_width: int = 10, lengths=None) -> list:
    """Prefix beam search: the most probable labelling the beam finds, and its log-probability.

    Args:
        scores: (T, C) or (N, T, C) logits or log-probabilities (normalised per frame here).
        blank: the blank's index on the class axis.
        beam_width: prefixes kept after each frame; at each frame only the beam_width best
            classes (and the blank) extend them.
        lengths: frames per line of a batch (None: all T frames).

    Returns:
        (class ids, log-probability) of the line, or a list of them per line of a batch.
        Prefixes of equal probability are ranked by their class ids, so the result is deterministic.

    Raises:
        GntkitError: as greedy_decode, or a beam width below 1.
    """
    if int(beam_width) < 1:
        raise GntkitError(f"CTC beam width must be at least 1, found {beam_width}.")
    array, counts, single = _check(scores, blank, lengths)
    results = [_beam_one(log_softmax(line[:count]), int(blank), int(beam_width)) for line, count in zip(array, counts.tolist())]
    return results[0] if single else results


def _beam_one(log_probs: np.ndarray, blank: int, beam_width: int) -> tuple[list, float]:
    """Prefix beam search over one line's (T, C) log-probabilities."""
    beams = {(): (0.0, -np.inf)}  # prefix -> (log P(paths ending in blank), log P(paths ending in its last label))
    top = min(beam_width, log_probs.shape[1])
    for frame in log_probs:
        candidates = np.argsort(-frame, kind="stable")[:top].tolist()
        if blank not in candidates:
            candidates.append(blank)
        grown: dict = {}
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            for c in candidates:
                p = frame[c]
                if c == blank:
                    _add(grown, prefix, total + p, -np.inf)
                elif prefix and prefix[-1] == c:
                    _add(grown, prefix + (c,), -np.inf, p_blank + p)  # a repeat needs a blank between
                    _add(grown, prefix, -np.inf, p_label + p)  # the same label continued
                else:
                    _add(grown, prefix + (c,), -np.inf, total + p)
        ranked = sorted(grown.items(), key=lambda item: (-np.logaddexp(*item[1]), item[0]))
        beams = dict(ranked[:beam_width])
    prefix, (p_blank, p_label) = min(beams.items(), key=lambda item: (-np.logaddexp(*item[1]), item[0]))
    return list(prefix), float(np.logaddexp(p_blank, p_label))


def _add(beams: dict, prefix: tuple, p_blank: float, p_label: float) -> None:
    old_blank, old_label = beams.get(prefix, (-np.inf, -np.inf))
    beams[prefix] = (np.logaddexp(old_blank, p_blank), np.logaddexp(old_label, p_label))
