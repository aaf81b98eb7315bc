"""Text-line recognition metrics: the ICDAR 2013 competition's correct and accurate rates, the
character error rate, per writer, and the most frequent substitutions. numpy only.

Each recognised line is aligned with its ground truth by edit distance. Over N ground-truth
characters with Se substitutions, De deletions and Ie insertions:

    correct rate   CR  = (N - De - Se) / N
    accurate rate  AR  = (N - De - Se - Ie) / N
    error rate     CER = (Se + De + Ie) / N = 1 - AR

Several alignments can have the fewest edits ("ab" read as "ba": two substitutions, or a
deletion and an insertion), and CR depends on which. Here the alignment has the fewest edits
and, among those, the fewest deletions + insertions, which fixes Se, De and Ie for every pair
of strings. Lines are strings or sequences of class ids; totals are summed over lines before
the ratios are taken (the competition's way), overall and per writer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gntkit.errors import GntkitError

__all__ = ["Alignment", "align", "LineErrors", "line_metrics"]


@dataclass(frozen=True)
class Alignment:
    """The edits between a ground truth and a recognised line.

    Attributes:
        substitutions, deletions, insertions: the counts Se, De, Ie.
        substituted: (ground-truth item, recognised item) of each substitution, in line order.
    """

    substitutions: int
    deletions: int
    insertions: int
    substituted: tuple = ()

    @property
    def edits(self) -> int:
        """The edit distance: Se + De + Ie."""
        return self.substitutions + self.deletions + self.insertions


def _costs(reference: list, hypothesis: list) -> tuple[np.ndarray, int]:
    """The alignment cost table (len(reference)+1, len(hypothesis)+1) and the weight of one edit.

    A cost is edits * weight + deletions and insertions, so the smallest cost has the fewest
    edits and then the fewest deletions + insertions; each row is one vectorised pass.
    """
    n, m = len(reference), len(hypothesis)
    weight = n + m + 1  # more than any count of deletions + insertions
    indel = weight + 1
    codes: dict = {}  # each distinct item -> a small int, so that a row compares as one array
    hyp = np.array([codes.setdefault(h, len(codes)) for h in hypothesis], np.int64)
    costs = np.empty((n + 1, m + 1), np.int64)
    costs[0] = np.arange(m + 1) * indel
    steps = np.arange(m + 1) * indel
    for i in range(1, n + 1):
        diagonal = costs[i - 1, :-1] + np.where(hyp == codes.get(reference[i - 1], -1), 0, weight)
        best = np.empty(m + 1, np.int64)
        best[0] = costs[i - 1, 0] + indel
        best[1:] = np.minimum(diagonal, costs[i - 1, 1:] + indel)
        # insertions along the row: costs[i, j] = min over k <= j of best[k] + (j - k) * indel
        costs[i] = np.minimum.accumulate(best - steps) + steps
    return costs, weight


def align(reference, hypothesis) -> Alignment:
    """Align a recognised line with its ground truth (strings, or sequences of class ids).

    Returns:
        The Alignment with the fewest edits and, among those, the fewest deletions + insertions.
    """
    reference, hypothesis = list(reference), list(hypothesis)
    costs, weight = _costs(reference, hypothesis)
    indel = weight + 1
    i, j, substituted, counts = len(reference), len(hypothesis), [], Counter()
    while i or j:  # walk back along a cheapest path: match or substitution first, then deletion, then insertion
        if i and j:
            same = reference[i - 1] == hypothesis[j - 1]
            if costs[i, j] == costs[i - 1, j - 1] + (0 if same else weight):
                if not same:
                    substituted.append((reference[i - 1], hypothesis[j - 1]))
                    counts["s"] += 1
                i, j = i - 1, j - 1
                continue
        if i and costs[i, j] == costs[i - 1, j] + indel:
            counts["d"] += 1
            i -= 1
        else:
            counts["i"] += 1
            j -= 1
    return Alignment(counts["s"], counts["d"], counts["i"], tuple(reversed(substituted)))


@dataclass
class LineErrors:
    """Error totals over lines: N ground-truth characters and the edits Se, De, Ie."""

    lines: int = 0
    characters: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    substituted: Counter = field(default_factory=Counter)

    def add(self, reference, alignment: Alignment) -> None:
        """Count one aligned line."""
        self.lines += 1
        self.characters += len(reference)
        self.substitutions += alignment.substitutions
        self.deletions += alignment.deletions
        self.insertions += alignment.insertions
        self.substituted.update(alignment.substituted)

    def rates(self) -> dict:
        """{"cer", "correct_rate", "accurate_rate", "characters", "lines", "substitutions", "deletions", "insertions"};
        the rates are None when there are no ground-truth characters."""
        n = self.characters
        wrong = self.substitutions + self.deletions
        return {"cer": (wrong + self.insertions) / n if n else None, "correct_rate": (n - wrong) / n if n else None,
                "accurate_rate": (n - wrong - self.insertions) / n if n else None, "characters": n, "lines": self.lines,
                "substitutions": self.substitutions, "deletions": self.deletions, "insertions": self.insertions}


def line_metrics(references, hypotheses, writers=None, top: int = 10) -> dict:
    """CR, AR and CER of recognised lines, overall and per writer, with the most frequent substitutions.

    Args:
        references: the ground-truth lines (strings or sequences of class ids).
        hypotheses: the recognised lines, one per reference.
        writers: the writer of each line (None: no per-writer figures).
        top: how many of the most frequent substitutions to list.

    Returns:
        LineErrors.rates() of all lines, plus "per_writer" ({writer: rates}, writers in sorted
        order; absent without writers) and "top_substitutions" ([ground truth, recognised, count],
        most frequent first, ties in the order of the items).

    Raises:
        GntkitError: lists of different lengths.
    """
    references, hypotheses = list(references), list(hypotheses)
    writers = None if writers is None else list(writers)
    if len(hypotheses) != len(references) or (writers is not None and len(writers) != len(references)):
        found = f"{len(references)} references, {len(hypotheses)} hypotheses" + (f", {len(writers)} writers" if writers is not None else "")
        raise GntkitError(f"Line metrics need one hypothesis (and writer) per reference, found {found}.")
    overall, per_writer = LineErrors(), {}
    for k, (reference, hypothesis) in enumerate(zip(references, hypotheses)):
        alignment = align(reference, hypothesis)
        overall.add(reference, alignment)
        if writers is not None:
            per_writer.setdefault(writers[k], LineErrors()).add(reference, alignment)
    result = overall.rates()
    if writers is not None:
        result["per_writer"] = {w: per_writer[w].rates() for w in sorted(per_writer, key=str)}
    ranked = sorted(overall.substituted.items(), key=lambda item: (-item[1], str(item[0])))
    result["top_substitutions"] = [[truth, read, count] for (truth, read), count in ranked[:top]]
    return result
