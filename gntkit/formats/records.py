"""What every record format shares: a damaged stretch of a file (`Problem`), the counting
part of a record index (`RecordIndexBase`), and the check of a file buffer before a kernel reads it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gntkit.errors import FormatError, GntkitError


@dataclass
class Problem:
    """One damaged stretch of a file: where, what was expected, what was found.

    Attributes:
        path: file (or `archive.zip:member`).
        offset: byte offset where the damage starts.
        expected / found: the check that failed, in words.
        skipped_bytes: bytes dropped to get past it (0 when nothing was skipped).
        skipped_records: records dropped (a damaged region counts as one).
        records_unknown: the records dropped could not be counted (bytes that no format reads,
            a member cut off); skipped_records is 0 then and JSON says null.
    """

    path: str
    offset: int | None
    expected: str
    found: str
    skipped_bytes: int = 0
    skipped_records: int = 0
    records_unknown: bool = False

    def message(self) -> str:
        """The problem as one sentence."""
        return str(FormatError(self.path, self.offset, self.expected, self.found))

    def to_json(self) -> dict:
        """JSON-able form (for manifests and `inspect --json`)."""
        return {
            "path": self.path,
            "offset": self.offset,
            "expected": self.expected,
            "found": self.found,
            "skipped_bytes": self.skipped_bytes,
            "skipped_records": None if self.records_unknown else self.skipped_records,
            "message": self.message(),
        }


class RecordIndexBase:
    """What every format's record index adds to its own columns (a dataclass with at least
    `offsets` and `problems`): its length and the totals of what was skipped."""

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def skipped_bytes(self) -> int:
        """Bytes of the file that lie in skipped damaged regions."""
        return sum(p.skipped_bytes for p in self.problems)

    @property
    def skipped_records(self) -> int:
        """Damaged regions skipped (each at least one record)."""
        return sum(p.skipped_records for p in self.problems)


def check_buffer(buf, what: str) -> np.ndarray:
    """A file's bytes as a contiguous 1-D uint8 array, or a GntkitError naming `what` ("GNT bytes").

    Kernels take such arrays only; this is the check every format wrapper makes before one runs.
    """
    if not isinstance(buf, np.ndarray) or buf.dtype != np.uint8 or buf.ndim != 1:
        raise GntkitError(f"{what} must be a 1-D uint8 numpy array, found {type(buf).__name__} {getattr(buf, 'dtype', '')}.")
    return np.ascontiguousarray(buf)
