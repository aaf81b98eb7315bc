"""`gntkit inspect`: what the sources hold, and every problem in them, without decoding pixels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gntkit.charset import decode_tag, is_symbol_code
from gntkit.formats.gnt import DEFAULT_MAX_SIDE, Problem
from gntkit.sources import find_members
from gntkit.stream import open_member


@dataclass
class Inspection:
    """Counts and problems for a set of sources.

    Attributes:
        files: per member: name, writer_id, bytes, records, skipped bytes.
        code_counts: tag code -> samples.
        widths, heights: every valid record's bitmap size.
        problems: every damaged region or member found.
    """

    files: list[dict] = field(default_factory=list)
    code_counts: Counter = field(default_factory=Counter)
    widths: list[np.ndarray] = field(default_factory=list)
    heights: list[np.ndarray] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Valid records found."""
        return int(sum(self.code_counts.values()))

    @property
    def tag_codes(self) -> np.ndarray:
        """Every distinct tag code seen, sorted."""
        return np.array(sorted(self.code_counts), dtype=np.int64)

    def to_json(self) -> dict:
        """The report as a JSON-able dict (what `inspect --json` prints)."""
        symbol = {c: n for c, n in self.code_counts.items() if is_symbol_code(c)}
        unknown = {c: n for c, n in self.code_counts.items() if decode_tag(c) is None}
        chinese = {c: n for c, n in self.code_counts.items() if c not in symbol and c not in unknown}
        widths = np.concatenate(self.widths) if self.widths else np.zeros(0, np.int32)
        heights = np.concatenate(self.heights) if self.heights else np.zeros(0, np.int32)

        def stats(values):
            if values.size == 0:
                return None
            return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}

        return {
            "files": len(self.files),
            "writers": len({f["writer_id"] for f in self.files}),
            "bytes": int(sum(f["bytes"] for f in self.files)),
            "records": self.records,
            "classes": len(self.code_counts) - len(unknown),
            "chinese": {"records": int(sum(chinese.values())), "classes": len(chinese)},
            "symbols": {"records": int(sum(symbol.values())), "classes": len(symbol)},
            "unknown_codes": {f"0x{c:04X}": n for c, n in sorted(unknown.items())},
            "width": stats(widths),
            "height": stats(heights),
            "skipped_bytes": int(sum(p.skipped_bytes for p in self.problems)),
            "skipped_records": int(sum(p.skipped_records for p in self.problems)),
            "problems": [p.to_json() for p in self.problems],
            "per_file": self.files,
        }


def inspect_sources(sources, max_side: int = DEFAULT_MAX_SIDE) -> Inspection:
    """Index every member of the sources and collect counts, sizes and all problems.

    Damaged records are skipped (and listed) so that one pass finds every problem.

    Args:
        sources: paths (.gnt files, folders, zips).
        max_side: largest bitmap side accepted as real.

    Returns:
        Inspection.

    Raises:
        GntkitError: a source that does not exist or holds no GNT files.
    """
    result = Inspection()
    for member in find_members(sources):
        gnt, problems = open_member(member, on_error="skip", max_side=max_side)
        result.problems.extend(problems)
        entry = {"name": member.name, "writer_id": member.writer_id, "bytes": member.size, "records": 0,
                 "skipped_bytes": int(sum(p.skipped_bytes for p in problems))}
        if gnt is not None:
            entry["records"] = len(gnt)
            codes, counts = np.unique(gnt.index.tag_codes, return_counts=True)
            result.code_counts.update(dict(zip(codes.tolist(), counts.tolist())))
            result.widths.append(gnt.index.widths)
            result.heights.append(gnt.index.heights)
        result.files.append(entry)
    return result


def format_inspection(report: dict) -> str:
    """The JSON report as readable text."""
    lines = [
        f"files      {report['files']} ({report['bytes']:,} bytes), writers {report['writers']}",
        f"records    {report['records']:,} in {report['classes']:,} classes",
        f"  chinese  {report['chinese']['records']:,} records, {report['chinese']['classes']:,} classes",
        f"  symbols  {report['symbols']['records']:,} records, {report['symbols']['classes']:,} classes",
    ]
    if report["unknown_codes"]:
        unknown = ", ".join(f"{code} x{n}" for code, n in report["unknown_codes"].items())
        lines.append(f"  unknown  {sum(report['unknown_codes'].values()):,} records with undecodable tag codes: {unknown}")
    for side in ("width", "height"):
        s = report[side]
        if s:
            lines.append(f"{side:<10} min {s['min']}, median {s['median']:g}, max {s['max']}")
    if report["problems"]:
        lines.append(f"problems   {len(report['problems'])} ({report['skipped_records']} damaged record(s) or member(s), {report['skipped_bytes']:,} bytes):")
        lines.extend(f"  {p['message']}" for p in report["problems"])
    else:
        lines.append("problems   none")
    return "\n".join(lines)
