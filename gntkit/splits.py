"""Splits by writer: named presets, explicit writer-id ranges, a seeded validation fraction."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from gntkit.errors import GntkitError
from gntkit.sources import writer_sort_key

# The splits the literature uses (see casia-formats.md).
PRESETS = {
    "all": "one split, 'all', holding every writer",
    "hwdb1.1": "train = writers 1001-1240, test = writers 1241-1300 (the HWDB1.1 split of the literature)",
}
_PRESET_RANGES = {"hwdb1.1": "train=1001-1240,test=1241-1300"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SplitPlan:
    """Which split each writer goes to.

    Attributes:
        spec: the split as the user gave it (recorded in the manifest).
        ranges: split name -> list of inclusive (first, last) writer numbers; empty for "all".
        val_fraction: fraction of the train split's writers moved to "val".
        seed: seed of that choice.
    """

    spec: str
    ranges: dict
    val_fraction: float = 0.0
    seed: int = 0

    @property
    def names(self) -> list[str]:
        """Split names in a fixed order."""
        names = list(self.ranges) if self.ranges else ["all"]
        if self.val_fraction:
            names.append("val")
        return names

    def assign(self, writer_ids) -> dict[str, str]:
        """writer id -> split name.

        Raises:
            GntkitError: a writer that falls in no range, or in two.
        """
        writer_ids = sorted(set(writer_ids), key=writer_sort_key)
        assignment = {}
        for writer in writer_ids:
            number = writer_sort_key(writer)[0]
            if not self.ranges:
                assignment[writer] = "all"
                continue
            hits = [name for name, spans in self.ranges.items() if any(a <= number <= b for a, b in spans)]
            if len(hits) != 1:
                found = "no split" if not hits else f"splits {' and '.join(hits)}"
                raise GntkitError(f"Writer {writer} falls in {found} of --split {self.spec!r}: expected exactly one; widen or fix the ranges.")
            assignment[writer] = hits[0]
        if self.val_fraction:
            source = "train" if "train" in self.names else "all"
            pool = [w for w in writer_ids if assignment[w] == source]
            count = int(round(len(pool) * self.val_fraction))
            if count < 1 or count >= len(pool):
                raise GntkitError(
                    f"--val-fraction {self.val_fraction} of the {len(pool)} writers in '{source}' gives {count} validation writers: "
                    "expected at least one, and at least one left for training."
                )
            chosen = np.random.default_rng(self.seed).choice(len(pool), size=count, replace=False)
            for i in chosen:
                assignment[pool[int(i)]] = "val"
        return assignment

    def to_json(self) -> dict:
        """JSON-able form for the manifest."""
        return {"spec": self.spec, "ranges": {k: [list(s) for s in v] for k, v in self.ranges.items()},
                "val_fraction": self.val_fraction, "seed": self.seed}


def parse_split(spec: str = "all", val_fraction: float = 0.0, seed: int = 0) -> SplitPlan:
    """A SplitPlan from a preset name or ranges like "train=1001-1240,test=1241-1300".

    Args:
        spec: "all", a preset name (see PRESETS), or `name=first-last[+first-last...]` pairs
            separated by commas.
        val_fraction: fraction (0..1) of the train (or all) split's writers to move to "val".
        seed: seed of the validation choice.

    Raises:
        GntkitError: malformed ranges, unknown preset, bad fraction.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise GntkitError(f"--val-fraction must be in [0, 1), found {val_fraction}.")
    text = _PRESET_RANGES.get(spec, spec)
    if text == "all":
        return SplitPlan(spec, {}, float(val_fraction), int(seed))
    ranges: dict[str, list[tuple[int, int]]] = {}
    for part in text.split(","):
        name, _, spans = part.strip().partition("=")
        if not _NAME_RE.match(name) or not spans:
            raise GntkitError(
                f"--split {spec!r}: expected 'all', a preset ({', '.join(PRESETS)}) or ranges like 'train=1001-1240,test=1241-1300', found {part!r}."
            )
        for span in spans.split("+"):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", span)
            if not match:
                raise GntkitError(f"--split {spec!r}: expected a writer range like 1001-1240, found {span!r}.")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise GntkitError(f"--split {spec!r}: range {span!r} ends before it starts.")
            ranges.setdefault(name, []).append((first, last))
    if val_fraction and "val" in ranges:
        raise GntkitError(f"--split {spec!r} already names a 'val' split: drop --val-fraction or rename it.")
    return SplitPlan(spec, ranges, float(val_fraction), int(seed))
