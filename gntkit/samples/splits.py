"""Splits by writer: named presets, explicit writer-id ranges, the archive names, a seeded
validation fraction.

Where each preset's writer numbers come from, and which of them are uncertain, is in
docs/casia.md ("Splits"). Presets of two kinds:

- ranges: a writer goes to the split whose writer-number range holds it ("hwdb1.1");
- rules: a function of the writer id and of where its files came from (the outermost archive,
  or the path the user gave), for sets whose test writers are not one range ("hwdb1.0": the
  download names say Train or Test) or that mix databases ("icdar2013").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from gntkit.errors import GntkitError
from gntkit.formats.sources import writer_sort_key

_HWDB11 = "train = writers 1001-1240, test = writers 1241-1300 (the HWDB1.1 split of the literature)"
_BY_ARCHIVE = "train / test from the names of the archives or folders the files came from (Train or trn / Test or tst)"
# The splits the literature and the CASIA downloads use (docs/casia.md says where each comes from).
PRESETS = {
    "all": "one split, 'all', holding every writer",
    "hwdb1.1": _HWDB11,
    "olhwdb1.1": f"{_HWDB11}; the online set has the same writers",
    "hwdb1.0": f"writers 1-420; {_BY_ARCHIVE} (its 84 test writers are not one range)",
    "olhwdb1.0": f"writers 1-420; {_BY_ARCHIVE}",
    "hwdb1.2": f"{_BY_ARCHIVE} (writer numbers not checked: unconfirmed)",
    "olhwdb1.2": f"{_BY_ARCHIVE} (writer numbers not checked: unconfirmed)",
    "hwdb2.x": f"HWDB2.0-2.2 text pages: {_BY_ARCHIVE}",
    "competition": "every writer in 'test' (the ICDAR 2013 competition set: 60 writers, test only)",
    "archive": _BY_ARCHIVE,
    "files": "train / test from each file's own name, as its format reads it (MNIST: train-..., t10k-... = test)",
    "icdar2013": "train = HWDB1.0 + HWDB1.1, train and test (writers 1-420, 1001-1300); "
                 "test = the ICDAR 2013 competition set (writers C001-C060 or files from a *competition* archive)",
}
_PRESET_RANGES = {"hwdb1.1": "train=1001-1240,test=1241-1300", "olhwdb1.1": "train=1001-1240,test=1241-1300"}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TRAIN_NAME = re.compile(r"train|trn", re.IGNORECASE)
_TEST_NAME = re.compile(r"test|tst", re.IGNORECASE)
_COMPETITION_WRITER = re.compile(r"[Cc]\d+")


def split_from_name(path) -> str | None:
    """'train' or 'test' from an archive or folder name (`Gnt1.1TrainPart1.zip`, `HWDB1.1tst_gnt.zip`),
    or None when the name says neither or both. Only the last path component is looked at, so a
    parent folder named `tests` says nothing."""
    base = PurePath(str(path)).name
    train, test = bool(_TRAIN_NAME.search(base)), bool(_TEST_NAME.search(base))
    return None if train == test else ("train" if train else "test")


def _split_from_origins(writer: str, origins: tuple, spec: str) -> str:
    """The one split that the names of a writer's archives (or folders) agree on."""
    if origins is None:
        raise GntkitError(f"--split {spec!r} decides by the archive each writer's file came from, and writer {writer} was given "
                          "without one: pass the members (objects with .writer_id and .archive), not bare writer ids.")
    found = {}
    for origin in origins:
        path = PurePath(str(origin))
        found[str(origin)] = split_from_name(path) or split_from_name(path.parent)
    names = set(found.values())
    if len(names) != 1 or None in names:
        shown = ", ".join(f"{o} ({s or 'neither'})" for o, s in found.items())
        raise GntkitError(f"Writer {writer} comes from {shown}: --split {spec!r} expected archive or folder names saying "
                          "Train/trn or Test/tst, all alike; rename them or give explicit ranges like 'train=1-336,test=337-420'.")
    return names.pop()


def _in_ranges(writer: str, spans, spec: str, what: str) -> None:
    number = writer_sort_key(writer)[0]
    if not writer.isdigit() or not any(a <= number <= b for a, b in spans):
        shown = " or ".join(f"{a}-{b}" for a, b in spans)
        raise GntkitError(f"Writer {writer} is not one of {what} (writer numbers {shown}) that --split {spec!r} expects.")


def _rule_by_archive(spans=None, what=""):
    def rule(writer: str, origins, spec: str) -> str:
        if spans:
            _in_ranges(writer, spans, spec, what)
        return _split_from_origins(writer, origins, spec)
    return rule


def _rule_competition(writer: str, origins, spec: str) -> str:
    return "test"


def _rule_icdar2013(writer: str, origins, spec: str) -> str:
    """HWDB1.0 and HWDB1.1 (numeric ids 1-420, 1001-1300) train; competition writers (C001...) test."""
    from_competition = any("competition" in PurePath(str(o)).name.lower() for o in origins or ())
    if _COMPETITION_WRITER.fullmatch(writer) or from_competition:
        return "test"
    _in_ranges(writer, [(1, 420), (1001, 1300)], spec, "the HWDB1.0 or HWDB1.1 writers")
    return "train"


def _rule_files(writer: str, members, spec: str) -> str:
    """The split each of a writer's files names itself (the format's split_of: MNIST's train-/t10k-)."""
    if not members:
        raise GntkitError(f"--split {spec!r} decides by each file's name, and writer {writer} was given without its files: "
                          "pass the members (from gntkit.formats.sources.find_members), not bare writer ids.")
    names = set()
    for member in members:
        split_of = getattr(member.format_module(), "split_of", None)
        if split_of is None:
            raise GntkitError(f"{member.name}: --split {spec!r} needs a format whose file names say the split, "
                              f"found a {member.format.upper()} file: use 'all', a preset or writer ranges.")
        names.add(split_of(member))
    if len(names) != 1:
        shown = ", ".join(sorted(names))
        raise GntkitError(f"Writer {writer}'s files name different splits ({shown}): expected one; give them separately.")
    return names.pop()


_LEVEL_1_0 = [(1, 420)]
# preset -> (rule, split names in order)
_PRESET_RULES = {
    "hwdb1.0": (_rule_by_archive(_LEVEL_1_0, "the HWDB1.0 writers"), ("train", "test")),
    "olhwdb1.0": (_rule_by_archive(_LEVEL_1_0, "the OLHWDB1.0 writers"), ("train", "test")),
    "hwdb1.2": (_rule_by_archive(), ("train", "test")),
    "olhwdb1.2": (_rule_by_archive(), ("train", "test")),
    "hwdb2.x": (_rule_by_archive(), ("train", "test")),
    "archive": (_rule_by_archive(), ("train", "test")),
    "competition": (_rule_competition, ("test",)),
    "icdar2013": (_rule_icdar2013, ("train", "test")),
    "files": (_rule_files, ("train", "test")),  # gets the writer's members, not their origins (see assign)
}


def _writer_origins(writers) -> dict:
    """writer id -> tuple of origins (archive, else file path) or None, from writer ids or members."""
    if isinstance(writers, (str, bytes)) or not hasattr(writers, "__iter__"):
        raise GntkitError(f"Expected a list of writer ids or members, found {type(writers).__name__}.")
    origins: dict = {}
    for item in writers:
        if isinstance(item, str):
            origins.setdefault(item, None)
            continue
        writer = getattr(item, "writer_id", None)
        if not isinstance(writer, str):
            raise GntkitError(f"Expected a writer id (str) or a member with a str .writer_id, found {item!r}.")
        # The outermost archive's name says Train/Test for the downloads; for a plain file, its
        # path (its folder's name is checked too: `Gnt1.1Test/1241-f.gnt`).
        origin = getattr(item, "archive", None) or getattr(item, "name", None) or getattr(item, "source", None)
        known = origins.get(writer) or ()
        origins[writer] = known + ((str(origin),) if origin is not None else ())
    return origins


@dataclass(frozen=True)
class SplitPlan:
    """Which split each writer goes to.

    Attributes:
        spec: the split as the user gave it (recorded in the manifest).
        ranges: split name -> list of inclusive (first, last) writer numbers; empty for "all"
            and for rule presets.
        val_fraction: fraction of the train split's writers moved to "val".
        seed: seed of that choice.
        rule: the rule preset (a key of PRESETS) deciding per writer, or "" for ranges.
    """

    spec: str
    ranges: dict
    val_fraction: float = 0.0
    seed: int = 0
    rule: str = ""

    @property
    def names(self) -> list[str]:
        """Split names in a fixed order."""
        if self.rule:
            names = list(_PRESET_RULES[self.rule][1])
        else:
            names = list(self.ranges) if self.ranges else ["all"]
        if self.val_fraction:
            names.append("val")
        return names

    def assign(self, writers) -> dict[str, str]:
        """writer id -> split name.

        Args:
            writers: writer ids (str), or members (objects with `.writer_id`, and `.archive`
                (the outermost archive's path or None) and `.source` (the path the user gave)).
                Rule presets that decide by archive names ("archive", "hwdb1.0", ...) need members.

        Raises:
            GntkitError: a writer that falls in no range, or in two; one a rule cannot place.
        """
        if not isinstance(writers, (str, bytes)) and hasattr(writers, "__iter__"):
            writers = list(writers)  # read twice for the "files" rule
        origins = _writer_origins(writers)
        if self.rule == "files":  # decided by the files themselves: the rule needs the members
            origins = {w: tuple(m for m in writers if not isinstance(m, str) and m.writer_id == w) for w in origins}
        writer_ids = sorted(origins, key=writer_sort_key)
        assignment = {}
        for writer in writer_ids:
            assignment[writer] = self._split_of(writer, origins[writer])
        if self.val_fraction:
            self._move_to_val(writer_ids, assignment)
        return assignment

    def _split_of(self, writer: str, origins) -> str:
        if self.rule:
            return _PRESET_RULES[self.rule][0](writer, origins, self.spec)
        if not self.ranges:
            return "all"
        number = writer_sort_key(writer)[0]
        hits = [name for name, spans in self.ranges.items() if any(a <= number <= b for a, b in spans)]
        if len(hits) != 1:
            found = "no split" if not hits else f"splits {' and '.join(hits)}"
            raise GntkitError(f"Writer {writer} falls in {found} of --split {self.spec!r}: expected exactly one; widen or fix the ranges.")
        return hits[0]

    def _move_to_val(self, writer_ids: list[str], assignment: dict) -> None:
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

    def to_json(self) -> dict:
        """JSON-able form for the manifest."""
        record = {"spec": self.spec, "ranges": {k: [list(s) for s in v] for k, v in self.ranges.items()},
                  "val_fraction": self.val_fraction, "seed": self.seed}
        if self.rule:
            record["rule"] = PRESETS[self.rule]
        return record


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
    if not isinstance(spec, str):
        raise GntkitError(f"--split must be a preset name or ranges (str), found {type(spec).__name__}.")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise GntkitError(f"--val-fraction must be in [0, 1), found {val_fraction}.")
    if spec in _PRESET_RULES:
        if val_fraction and "train" not in _PRESET_RULES[spec][1]:
            raise GntkitError(f"--split {spec!r} has no train split to take --val-fraction {val_fraction} from.")
        return SplitPlan(spec, {}, float(val_fraction), int(seed), rule=spec)
    text = _PRESET_RANGES.get(spec, spec)
    if text == "all":
        return SplitPlan(spec, {}, float(val_fraction), int(seed))
    ranges = _parse_ranges(spec, text)
    if val_fraction and "val" in ranges:
        raise GntkitError(f"--split {spec!r} already names a 'val' split: drop --val-fraction or rename it.")
    return SplitPlan(spec, ranges, float(val_fraction), int(seed))


def _parse_ranges(spec: str, text: str) -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for part in text.split(","):
        name, _, spans = part.strip().partition("=")
        if not _NAME_RE.match(name) or not spans:
            raise GntkitError(
                f"--split {spec!r}: expected 'all', a preset ({', '.join(PRESETS)}) or ranges like 'train=1001-1240,test=1241-1300', "
                f"found {part!r}."
            )
        for span in spans.split("+"):
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", span)
            if not match:
                raise GntkitError(f"--split {spec!r}: expected a writer range like 1001-1240, found {span!r}.")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise GntkitError(f"--split {spec!r}: range {span!r} ends before it starts.")
            ranges.setdefault(name, []).append((first, last))
    return ranges
