"""What a member dropped whole held: the records lost with it, counted where its bytes can be read.

A member is dropped whole (with on_error="skip") when its archive's CRC check fails, its
data are cut off or damaged, or its format cannot read it at all. Its bytes are usually still
there: a CRC failure leaves every byte decodable, so the member is indexed with its format
anyway and its records are counted. Where the bytes cannot be decoded whole or no format
reads them, the count is unknown and the problem says so, with the bytes lost.
"""

from __future__ import annotations

from gntkit.errors import FormatError, GntkitError
from gntkit.formats.base import Problem
from gntkit.formats.sources import Member


def count_records(buf, member: Member, max_side: int) -> int | None:
    """Records the member's bytes hold (valid plus damaged), by its format; None when it cannot read them."""
    extra = {"companions": member.companions} if member.companions else {}
    try:
        record_file = member.format_module().open_file(buf, member.name, on_error="skip", max_side=max_side, **extra)
    except GntkitError:
        return None
    return len(record_file) + int(record_file.index.skipped_records)


def lost_member_problem(member: Member, exc: FormatError, max_side: int) -> Problem:
    """The Problem of a member dropped whole because of `exc`, counting the records it held.

    Args:
        member: the member (a lost stretch of an archive, see Member.lost, or a member whose
            read or indexing raised `exc`).
        exc: why it was dropped.
        max_side: as for the format's open_file.
    """
    loss = member.lost
    found = exc.found
    if loss is not None:
        found = f"{found}; lost {loss.words()}"
        size = max(loss.lost_bytes, 0)
        if loss.members == 0:
            return Problem(exc.path, exc.offset, exc.expected, f"{found}: no record", skipped_bytes=size, skipped_records=0)
        buf = member.read_unchecked() if loss.name is not None and loss.members == 1 else None
    else:
        buf = member.read_unchecked()
        size = member.size if member.size >= 0 else (len(buf) if buf is not None else 0)
        if buf is None and exc.offset is not None and exc.found.endswith("(truncated)"):
            # A file cut short: its stored size (gzip's ISIZE trailer) is whatever bytes the cut
            # left at its end; the bytes there are the file's, up to the cut.
            size = exc.offset
    records = count_records(buf, member, max_side) if buf is not None and len(buf) else None
    if records is None:
        return Problem(exc.path, exc.offset, exc.expected, f"{found}: an unknown number of records in {size:,} bytes",
                       skipped_bytes=size, records_unknown=True)
    return Problem(exc.path, exc.offset, exc.expected, f"{found}: {records} record(s) in {size:,} bytes",
                   skipped_bytes=size, skipped_records=records)


def lost_records_words(problems) -> str:
    """What the problems lost, in words: "12 damaged record(s)", "an unknown number of records
    in 4,096 unreadable bytes", or both joined by "and"."""
    known = sum(p.skipped_records for p in problems if not p.records_unknown)
    unknown = [p for p in problems if p.records_unknown]
    parts = [f"{known} damaged record(s)"] if known or not unknown else []
    if unknown:
        parts.append(f"an unknown number of records in {sum(p.skipped_bytes for p in unknown):,} unreadable bytes")
    return " and ".join(parts)


def unknown_record_counts(problems) -> int:
    """How many of the problems lost an unknown number of records."""
    return sum(1 for p in problems if p.records_unknown)
