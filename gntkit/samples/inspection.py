"""`gntkit inspect`: what the sources hold, and every problem in them, without decoding pixels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from gntkit.formats.base import DEFAULT_MAX_SIDE, Problem
from gntkit.formats.salvage import lost_records_words, unknown_record_counts
from gntkit.formats.sources import find_members
from gntkit.progress import ProgressBar
from gntkit.samples.charset import decode_tag, is_symbol_code
from gntkit.samples.stream import native_charset, open_member

# Progress appears only for runs longer than this: a quick survey prints its report alone.
PROGRESS_DELAY = 2.0


@dataclass
class Inspection:
    """Counts and problems for a set of sources.

    Attributes:
        files: per member: name, writer_id, bytes, records, skipped bytes.
        code_counts: tag code -> samples.
        widths, heights: every valid record's bitmap size.
        problems: every damaged region or member found.
        charset: the classes the sources name themselves (IDX labels: MNIST digits, EMNIST's
            mapping), or None where tag codes are GB/ASCII character codes.
    """

    files: list[dict] = field(default_factory=list)
    code_counts: Counter = field(default_factory=Counter)
    widths: list[np.ndarray] = field(default_factory=list)
    heights: list[np.ndarray] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    charset: object = None

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
        if self.charset is not None:  # label values named by the sources' own charset, not character codes
            known = set(self.charset.tag_codes.tolist())
            symbol, chinese = {}, {}
            unknown = {c: n for c, n in self.code_counts.items() if c not in known}
        else:
            symbol = {c: n for c, n in self.code_counts.items() if is_symbol_code(c)}
            unknown = {c: n for c, n in self.code_counts.items() if decode_tag(c) is None}
            chinese = {c: n for c, n in self.code_counts.items() if c not in symbol and c not in unknown}
        widths = np.concatenate(self.widths) if self.widths else np.zeros(0, np.int32)
        heights = np.concatenate(self.heights) if self.heights else np.zeros(0, np.int32)

        def stats(values):
            if values.size == 0:
                return None
            return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}

        formats = Counter(f.get("format", "gnt") for f in self.files)
        return {
            "files": len(self.files),
            "formats": dict(sorted(formats.items())),
            "writers": len({f["writer_id"] for f in self.files if f["writer_id"]}),  # "": a lost stretch of an archive
            "bytes": int(sum(f["bytes"] for f in self.files)),
            "records": self.records,
            "classes": len(self.code_counts) - len(unknown),
            **({"charset": self.charset.name} if self.charset is not None else {}),
            "chinese": {"records": int(sum(chinese.values())), "classes": len(chinese)},
            "symbols": {"records": int(sum(symbol.values())), "classes": len(symbol)},
            "unknown_codes": {f"0x{c:04X}": n for c, n in sorted(unknown.items())},
            "width": stats(widths),
            "height": stats(heights),
            **self._extra_stats(stats),
            "skipped_bytes": int(sum(p.skipped_bytes for p in self.problems)),
            "skipped_records": int(sum(p.skipped_records for p in self.problems)),
            "unknown_record_counts": unknown_record_counts(self.problems),
            "lost": lost_records_words(self.problems),
            "problems": [p.to_json() for p in self.problems],
            "per_file": self.files,
        }


    def _extra_stats(self, stats) -> dict:
        """min / median / max of what formats measure beyond bitmap sizes (POT: strokes and
        points per sample), pooled over the files that report them."""
        names = sorted({name for entry in self.extra for name in entry})
        out = {name if name.endswith(("_per_line", "_per_page")) else f"{name}_per_sample":
               stats(np.concatenate([np.asarray(e[name]) for e in self.extra if name in e])) for name in names}
        pages = [e for e in self.extra if "lines_per_page" in e]
        if pages:  # text pages (DGRL): totals beside the per-page and per-line figures
            out["text_pages"] = {"pages": len(pages), "lines": int(sum(int(np.sum(e["lines_per_page"])) for e in pages)),
                                 "characters": int(sum(int(np.sum(e["characters_per_line"])) for e in pages))}
        return out


def inspect_sources(sources, max_side: int = DEFAULT_MAX_SIDE, progress: bool = False) -> Inspection:
    """Index every member of the sources and collect counts, sizes and all problems.

    Damaged records are skipped (and listed) so that one pass finds every problem.

    Args:
        sources: paths (.gnt files, folders, zips).
        max_side: largest bitmap side accepted as real.
        progress: show progress per member on stderr (bytes, rate, ETA; see gntkit.progress),
            for runs longer than PROGRESS_DELAY seconds.

    Returns:
        Inspection.

    Raises:
        GntkitError: a source that does not exist or holds no GNT files.
    """
    result = Inspection()
    members = find_members(sources, on_error="skip")
    result.charset = native_charset(members)
    with ProgressBar(sum(m.size for m in members), unit="bytes", description="inspect", enabled=progress, delay=PROGRESS_DELAY) as bar:
        for member in members:
            _inspect_member(result, member, max_side)
            bar.update(member.size, records=result.records, members=f"{len(result.files)}/{len(members)}")
    return result


def _inspect_member(result: Inspection, member, max_side: int) -> None:
    """Index one member and add its counts, sizes and problems to result."""
    record_file, problems = open_member(member, on_error="skip", max_side=max_side)
    result.problems.extend(problems)
    entry = {"name": member.name, "format": member.format, "writer_id": member.writer_id, "bytes": member.size, "records": 0,
             "skipped_bytes": int(sum(p.skipped_bytes for p in problems))}
    if record_file is not None:
        entry["records"] = len(record_file)
        # Text lines (DGRL) count the codes of their characters (0xFFFF, unlabelled, shows as unknown).
        codes, counts = np.unique(getattr(record_file.index, "label_codes", record_file.index.tag_codes), return_counts=True)
        result.code_counts.update(dict(zip(codes.tolist(), counts.tolist())))
        result.widths.append(record_file.index.widths)
        result.heights.append(record_file.index.heights)
        stats = getattr(record_file, "inspect_stats", None)
        if stats is not None:  # what a format measures beyond bitmap sizes (strokes, lines)
            result.extra.append(stats())
    result.files.append(entry)


def format_inspection(report: dict) -> str:
    """The JSON report as readable text."""
    lines = [
        f"files      {report['files']} ({report['bytes']:,} bytes), writers {report['writers']}",
        f"records    {report['records']:,} in {report['classes']:,} classes"
        + (f" of charset {report['charset']}" if report.get("charset") else ""),
        f"  chinese  {report['chinese']['records']:,} records, {report['chinese']['classes']:,} classes",
        f"  symbols  {report['symbols']['records']:,} records, {report['symbols']['classes']:,} classes",
    ]
    if report["unknown_codes"]:
        unknown = ", ".join(f"{code} x{n}" for code, n in report["unknown_codes"].items())
        what = f"tag codes outside charset {report['charset']}" if report.get("charset") else "undecodable tag codes"
        lines.append(f"  unknown  {sum(report['unknown_codes'].values()):,} records with {what}: {unknown}")
    for side in ("width", "height"):
        s = report[side]
        if s:
            lines.append(f"{side:<10} min {s['min']}, median {s['median']:g}, max {s['max']}")
    if report.get("text_pages"):
        t = report["text_pages"]
        lines.append(f"text       {t['pages']:,} pages, {t['lines']:,} lines, "
                     f"{t['characters']:,} characters (records above are characters)")
    for key, s in report.items():  # what a format measures beyond bitmap sizes (strokes, points, characters per line)
        if key.endswith(("_per_line", "_per_page")) and s:
            lines.append(f"{key.replace('_', ' '):<10}: min {s['min']}, median {s['median']:g}, max {s['max']}")
        if key.endswith("_per_sample") and s:
            lines.append(f"{key[:-len('_per_sample')]:<10} per sample: min {s['min']}, median {s['median']:g}, max {s['max']}")
    if report["problems"]:
        lines.append(f"problems   {len(report['problems'])} ({report['lost']}, {report['skipped_bytes']:,} bytes):")
        lines.extend(f"  {p['message']}" for p in report["problems"])
    else:
        lines.append("problems   none")
    return "\n".join(lines)
