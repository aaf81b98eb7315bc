"""What a pass over the sources read, kept and skipped (`StreamReport`), filled by the sample stream."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gntkit.formats.base import Problem
from gntkit.formats.salvage import lost_records_words, unknown_record_counts
from gntkit.samples.charset import decode_tag


@dataclass
class StreamReport:
    """What a pass over the sources read, kept and skipped; nothing is dropped silently.

    Attributes:
        files: members read.
        records: valid records found.
        kept: samples yielded.
        skipped_records / skipped_bytes: damaged regions and whole damaged members skipped.
        unknown_codes: tag code -> count, for codes that decode to no character.
        outside_codes: tag code -> count, for characters not in the charset.
        dropped: samples dropped because their code is unknown or outside the charset.
        other: samples mapped to the 'other' class.
        problems: every damaged region or member, with its place.
    """

    files: int = 0
    records: int = 0
    kept: int = 0
    skipped_records: int = 0
    skipped_bytes: int = 0
    unknown_codes: Counter = field(default_factory=Counter)
    outside_codes: Counter = field(default_factory=Counter)
    dropped: int = 0
    other: int = 0
    problems: list[Problem] = field(default_factory=list)
    members: list[dict] = field(default_factory=list)
    worker_peak_rss_kb: int = 0

    def merge(self, other: StreamReport) -> None:
        """Add another report's counts to this one."""
        self.files += other.files
        self.records += other.records
        self.kept += other.kept
        self.skipped_records += other.skipped_records
        self.skipped_bytes += other.skipped_bytes
        self.unknown_codes.update(other.unknown_codes)
        self.outside_codes.update(other.outside_codes)
        self.dropped += other.dropped
        self.other += other.other
        self.problems.extend(other.problems)
        self.members.extend(other.members)
        self.worker_peak_rss_kb = max(self.worker_peak_rss_kb, other.worker_peak_rss_kb)

    def count_codes(self, codes) -> None:
        """Count tag codes left out of the charset: those that decode to no character (0xFFFF,
        the unlabelled mark, among them) in unknown_codes, the others in outside_codes."""
        for code, count in zip(*np.unique(codes, return_counts=True)):
            target = self.unknown_codes if decode_tag(int(code)) is None else self.outside_codes
            target[int(code)] += int(count)

    @property
    def lost_anything(self) -> bool:
        """True when a record was skipped or a sample dropped."""
        return bool(self.skipped_records or self.skipped_bytes or self.dropped or self.problems)

    def to_json(self) -> dict:
        """JSON-able form for the manifest."""
        return {
            "files": self.files,
            "records": self.records,
            "kept": self.kept,
            "skipped_records": self.skipped_records,
            "skipped_bytes": self.skipped_bytes,
            "unknown_record_counts": unknown_record_counts(self.problems),
            "dropped_samples": self.dropped,
            "other_samples": self.other,
            "unknown_codes": {f"0x{code:04X}": n for code, n in sorted(self.unknown_codes.items())},
            "outside_charset": {f"0x{code:04X} {decode_tag(code)}": n for code, n in sorted(self.outside_codes.items())},
            "problems": [p.to_json() for p in self.problems],
        }

    def summary(self) -> str:
        """One or two sentences saying what was lost, or that nothing was."""
        parts = []
        if self.skipped_records or self.skipped_bytes or self.problems:
            parts.append(f"skipped {lost_records_words(self.problems)}, {self.skipped_bytes} bytes, in {len(self.problems)} place(s)")
        if self.dropped:
            unknown = sum(self.unknown_codes.values())
            parts.append(f"dropped {self.dropped} sample(s) outside the charset ({unknown} with undecodable tag codes, "
                         f"{len(self.outside_codes)} distinct characters outside it)")
        if self.other:
            parts.append(f"mapped {self.other} sample(s) to the 'other' class")
        if not parts:
            return f"read {self.records} records from {self.files} file(s); nothing skipped or dropped."
        return f"read {self.records} records from {self.files} file(s); " + "; ".join(parts) + "."
