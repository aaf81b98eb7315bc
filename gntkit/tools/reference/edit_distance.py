"""Plain references for gntkit.training.line_metrics and gntkit.training.ctc: the textbook
edit distance, every alignment of two short sequences, and CTC by summing over every path."""

import itertools
import math


def levenshtein(a, b) -> int:
    """The edit distance by the textbook table, one cell at a time."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def alignments(a, b):
    """(substitutions, deletions, insertions) of every alignment of a with b (exponential: short inputs only)."""
    if not a and not b:
        yield 0, 0, 0
        return
    if a and b:
        for s, d, i in alignments(a[1:], b[1:]):
            yield s + (a[0] != b[0]), d, i
    if a:
        for s, d, i in alignments(a[1:], b):
            yield s, d + 1, i
    if b:
        for s, d, i in alignments(a, b[1:]):
            yield s, d, i + 1


def chosen_alignment(a, b) -> tuple[int, int, int]:
    """The alignment line_metrics documents: fewest edits, then fewest deletions + insertions."""
    return min(alignments(list(a), list(b)), key=lambda c: (sum(c), c[1] + c[2]))


def collapse(path, blank: int) -> tuple:
    """A CTC path's labelling: repeats merged, blanks dropped."""
    return tuple(c for k, c in enumerate(path) if c != blank and (k == 0 or path[k - 1] != c))


def labelling_log_probs(probs, blank: int) -> dict:
    """log P(labelling) for every labelling of a (T, C) probability table, summed over all C**T paths."""
    totals: dict = {}
    frames, classes = len(probs), len(probs[0])
    for path in itertools.product(range(classes), repeat=frames):
        p = math.prod(probs[t][c] for t, c in enumerate(path))
        key = collapse(path, blank)
        totals[key] = totals.get(key, 0.0) + p
    return {key: math.log(p) for key, p in totals.items()}
