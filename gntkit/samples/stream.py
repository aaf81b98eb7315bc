"""The one stream of samples: sources + charset + preprocessing -> SampleBatch.

Every writer and adapter consumes `iter_batches` (or the shards it produced). Order is
global and deterministic: members by writer id, records by position in the file, the
same whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gntkit.errors import CharsetError, FormatError, GntkitError
from gntkit.formats import get_format
from gntkit.formats.base import DEFAULT_MAX_SIDE, ON_ERROR_CHOICES, Problem
from gntkit.formats.salvage import lost_member_problem
from gntkit.formats.sources import Member, find_members
from gntkit.samples.batch import SampleBatch
from gntkit.samples.charset import ON_UNKNOWN_CHOICES, Charset, builtin, describe_tag, resolve
from gntkit.samples.lines import is_line_member, label_lines, line_batches
from gntkit.samples.report import StreamReport
from gntkit.samples.transform import preprocess_chosen
from gntkit.samples.workers import WorkerLost, ordered_map

DEFAULT_BATCH_SIZE = 2048


def check_choice(name: str, value: str, choices) -> None:
    """Raise GntkitError unless value is one of choices."""
    if value not in choices:
        raise GntkitError(f"{name} must be one of {', '.join(choices)}, found {value!r}.")


def open_member(member: Member, on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> tuple[object | None, list[Problem]]:
    """Read, index and validate one member with its format's module.

    Returns:
        (record file, problems). With on_error="skip" a member that cannot be read at all
        gives (None, [problem]); damaged records are listed in the file's index.

    Raises:
        FormatError: damaged data with on_error="raise".
    """
    try:
        buf = member.read()
        # Companions (an IDX images file's labels file) go only to formats that pair files.
        extra = {"companions": member.companions} if member.companions else {}
        record_file = member.format_module().open_file(buf, member.name, on_error=on_error, max_side=max_side, **extra)
    except FormatError as exc:
        if on_error == "raise":
            raise
        # A damaged archive member (or an empty file) cannot be read at all: skip it whole, counting what it held.
        return None, [lost_member_problem(member, exc, max_side)]
    return record_file, list(record_file.index.problems)


def survey_codes(members, on_error: str = "raise", max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Every tag code of every valid record of the members (headers only, no pixels).

    Raises:
        FormatError: the first damaged record or member with on_error="raise".
    """
    codes = []
    for member in members:
        record_file, _ = open_member(member, on_error, max_side)
        if record_file is not None:  # text lines: every character's code
            codes.append(record_file.index.label_codes if is_line_member(member) else record_file.index.tag_codes)
    return np.concatenate(codes) if codes else np.zeros(0, np.uint16)


def native_charset(members) -> Charset | None:
    """The charset sources of one format name themselves (their format's `native_charset`), or None."""
    formats = {m.format for m in members}
    native = getattr(get_format(formats.pop()), "native_charset", None) if len(formats) == 1 else None
    if native is None:
        return None
    spec = native(members)  # a gntkit.formats.base.CharsetSpec
    return Charset(spec.name, list(spec.tag_codes), list(spec.characters), spec.order) if spec.tag_codes else builtin(spec.name)


def plan_charset(spec, members, *, codes: np.ndarray | None = None, on_error: str = "raise", on_unknown: str = "drop",
                 max_side: int = DEFAULT_MAX_SIDE) -> Charset:
    """The charset a pass over the members uses: the one step behind convert, open and preview.

    Args:
        spec: a Charset, a built-in name, a charset file, "data" (survey the tag codes of the
            members once, then every decodable code in code order), or None for the sources'
            own default (their format's native charset, else its DEFAULT_CHARSET).
        members: from gntkit.formats.sources.find_members.
        codes: the members' tag codes when the caller has surveyed them already.
        on_error, max_side: as for iter_batches (used by the survey).
        on_unknown: "other" appends the catch-all class.

    Raises:
        CharsetError, FormatError, GntkitError: as the charset or the survey finds them.
    """
    formats = sorted({m.format for m in members})
    # A format whose labels name their own classes (MNIST's digits, EMNIST's mapping): its tag
    # codes are labels, not GB codes, so "the classes in the data" are its own charset too.
    native = native_charset(members) if spec is None or (isinstance(spec, str) and spec == "data") else None
    if native is not None:
        return native.with_other() if on_unknown == "other" else native
    if spec is None:
        defaults = sorted({get_format(name).DEFAULT_CHARSET for name in formats})
        if len(defaults) != 1:
            raise GntkitError(f"Sources of formats {', '.join(formats)} have different default charsets ({', '.join(defaults)}): "
                              "choose one with --charset.")
        spec = defaults[0]
    if isinstance(spec, str) and spec == "data":
        charset = resolve("data", codes if codes is not None else survey_codes(members, on_error, max_side))
    else:
        charset = resolve(spec)
    return charset.with_other() if on_unknown == "other" else charset


def label_records(record_file, charset: Charset, on_unknown: str, report: StreamReport) -> np.ndarray:
    """Class id of every valid record of a file; -1 for records to drop.

    Raises:
        CharsetError: a code outside the charset with on_unknown="error".
    """
    codes = record_file.index.tag_codes
    labels = charset.classes_of_codes(codes)
    missing = np.flatnonzero(labels < 0)
    if missing.size == 0:
        return labels
    if on_unknown == "error":
        i = int(missing[0])
        raise CharsetError(
            f"{record_file.path} record {int(record_file.index.record_numbers[i])} at byte {int(record_file.index.offsets[i])}: "
            f"expected a character in charset {charset.name!r}, found {describe_tag(int(codes[i]))}."
        )
    report.count_codes(codes[missing])
    if on_unknown == "other":
        if not charset.has_other:
            raise GntkitError(f"on_unknown='other' needs a charset with an 'other' class (Charset.with_other()), found {charset!r}.")
        labels[missing] = len(charset) - 1
        report.other += int(missing.size)
    else:
        report.dropped += int(missing.size)
    return labels


def member_batches(member: Member, charset: Charset, preprocess=None, on_error: str = "raise",
                   on_unknown: str = "drop", batch_size: int = DEFAULT_BATCH_SIZE,
                   max_side: int = DEFAULT_MAX_SIDE, report: StreamReport | None = None,
                   hash_members: bool | str = False, serial: bool = False) -> Iterator[SampleBatch]:
    """The samples of one member as SampleBatches (see iter_batches for the arguments).

    serial=True runs the kernels on the calling thread only (for callers that are threads
    of a pool themselves: numba's parallel launches are not safe from many threads with
    every threading layer, and a pool already fills the cores).
    """
    report = report if report is not None else StreamReport()
    record_file, problems = open_member(member, on_error, max_side)
    report.files += 1
    entry = {"name": member.name, "writer_id": member.writer_id, "bytes": member.size,
             "records": 0 if record_file is None else len(record_file), "kept": 0}
    if record_file is not None and (hash_members is True or (hash_members == "archived" and member.archive)):
        entry["sha256"] = hashlib.sha256(record_file.buf).hexdigest()
    report.members.append(entry)
    report.problems.extend(problems)
    report.skipped_records += sum(p.skipped_records for p in problems)
    report.skipped_bytes += sum(p.skipped_bytes for p in problems)
    if record_file is None:
        return
    report.records += len(record_file)
    if is_line_member(member):
        yield from line_batches(member, record_file, charset, preprocess, on_unknown, batch_size, report, entry)
        return
    labels = label_records(record_file, charset, on_unknown, report)
    kept = np.flatnonzero(labels >= 0)
    report.kept += int(kept.size)
    entry["kept"] = int(kept.size)
    for start in range(0, kept.size, batch_size):
        yield _batch_of(member, record_file, kept[start:start + batch_size], labels, charset, preprocess, serial)


def _batch_of(member: Member, record_file, chosen: np.ndarray, labels: np.ndarray, charset: Charset, preprocess,
              serial: bool) -> SampleBatch:
    """One SampleBatch of the chosen records of a member (raw bitmaps or preprocessed images)."""
    index = record_file.index
    batch_labels = labels[chosen].astype(np.int64)
    common = dict(
        keys=[f"{member.key_base}/{n}" for n in index.record_numbers[chosen].tolist()],
        writer_ids=[member.writer_id] * len(chosen),
        tag_codes=index.tag_codes[chosen].copy(),
        labels=batch_labels,
        characters=[charset.characters[i] for i in batch_labels.tolist()],
    )
    extras = getattr(record_file, "batch_extras", None)
    if extras is not None:  # what a format carries beyond the image (text lines, strokes)
        common["meta"] = extras(chosen)
    if preprocess is None or preprocess.raw:
        pixels, pixel_offsets = record_file.gather(chosen, serial=serial)
        return SampleBatch(**common, heights=index.heights[chosen].copy(), widths=index.widths[chosen].copy(), pixels=pixels,
                           pixel_offsets=pixel_offsets)
    images = preprocess_chosen(record_file, chosen, preprocess, serial=serial)
    size = images.shape[1]
    return SampleBatch(**common, heights=np.full(len(chosen), size, np.int32), widths=np.full(len(chosen), size, np.int32), images=images)


def resolve_members(sources, on_error: str = "raise") -> list[Member]:
    """Members as given, or found from paths (see gntkit.formats.sources.find_members)."""
    if isinstance(sources, (list, tuple)) and sources and all(isinstance(s, Member) for s in sources):
        return list(sources)
    return find_members(sources, on_error=on_error)


def _worker_init():
    # The processes already use every core: numba threads inside each would only contend.
    import numba

    numba.set_num_threads(1)


def _member_job(member, charset, preprocess, on_error, on_unknown, batch_size, max_side, hash_members, serial=False):
    import resource

    report = StreamReport()
    batches = list(member_batches(member, charset, preprocess, on_error, on_unknown, batch_size, max_side, report, hash_members, serial))
    report.worker_peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return batches, report


PARALLEL_CHOICES = ("threads", "processes")


def iter_batches(sources, charset: Charset, preprocess=None, *, on_error: str = "raise", on_unknown: str = "drop",
                 batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1, parallel: str = "threads",
                 max_side: int = DEFAULT_MAX_SIDE, report: StreamReport | None = None,
                 hash_members: bool | str = False) -> Iterator[SampleBatch]:
    """Decode every sample of the sources, in global order, as SampleBatches.

    Args:
        sources: paths (source files, folders, archives) or Members from find_members.
        charset: the classes; see gntkit.samples.charset.
        preprocess: a gntkit.samples.preprocess.Preprocess, or None / raw for original bitmaps.
        on_error: "raise" on the first damaged record, or "skip" it and count it.
        on_unknown: characters outside the charset: "drop" and count, "error", or map to
            "other" (the charset must end with the 'other' class).
        batch_size: samples per batch at most (batches never span two files).
        workers: files decoded in parallel; output is the same for any value.
        parallel: with workers > 1, "threads" (default: one process, the kernels release
            the GIL, batches are not copied between processes; on 2 cores measured faster)
            or "processes" (worker interpreters, each with one numba thread).
        max_side: largest bitmap side accepted as real.
        report: a StreamReport to fill with counts and problems.
        hash_members: also record each member's sha256 in report.members: True for all,
            "archived" for members inside zips only (convert hashes plain files itself).

    Yields:
        SampleBatch in global order.

    Raises:
        FormatError, CharsetError, GntkitError: bad input, named with file and offset.
    """
    check_choice("on_error", on_error, ON_ERROR_CHOICES)
    check_choice("on_unknown", on_unknown, ON_UNKNOWN_CHOICES)
    check_choice("parallel", parallel, PARALLEL_CHOICES)
    if hash_members not in (True, False, "archived"):
        raise GntkitError(f"hash_members must be True, False or 'archived', found {hash_members!r}.")
    if not isinstance(charset, Charset):
        raise GntkitError(f"charset must be a gntkit Charset, found {type(charset).__name__}.")
    if int(batch_size) < 1 or int(workers) < 1:
        raise GntkitError(f"batch_size and workers must be at least 1, found {batch_size} and {workers}.")
    members = resolve_members(sources, on_error)
    report = report if report is not None else StreamReport()
    if workers == 1 or len(members) == 1:
        for member in members:
            yield from member_batches(member, charset, preprocess, on_error, on_unknown, batch_size, max_side, report, hash_members)
        return
    args = (charset, preprocess, on_error, on_unknown, batch_size, max_side, hash_members)
    yield from _pooled_batches(members, args, workers, parallel, report)


def _pooled_batches(members: list[Member], args: tuple, workers: int, parallel: str, report: StreamReport) -> Iterator[SampleBatch]:
    """iter_batches with workers > 1: members decoded in a pool, yielded in member order."""
    if parallel == "threads":
        args = args + (True,)  # serial kernels: the pool's threads are the parallelism
    jobs = ((member, *args) for member in members)
    results = ordered_map(_member_job, jobs, workers=workers, parallel=parallel, initializer=_worker_init)
    try:
        for batches, member_report in results:
            report.merge(member_report)
            yield from batches
    except WorkerLost as lost:
        raise GntkitError(f"The decoding stopped: {lost} (ended by the system, for want of memory perhaps); "
                          "pass fewer workers or parallel='threads'.") from None
    finally:
        results.close()


@dataclass(frozen=True)
class Sample:
    """One decoded sample.

    Attributes:
        key: "{writer_id}/{record_index}", unique in the source.
        writer_id: from the file name.
        tag_code: the 2-byte code as stored (high byte first).
        character: the character the code stands for.
        label: class id in the charset (-1 for a text line).
        image: uint8 (height, width) bitmap (255 background), or (S, S) when preprocessed
            (a text line: its height and own width).
        label_sequence: for a text line (DGRL), int64 class ids of its characters (character
            then holds the transcription); None for single characters.
    """

    key: str
    writer_id: str
    tag_code: int
    character: str
    label: int
    image: np.ndarray
    label_sequence: np.ndarray | None = None


class Source:
    """Sources opened for reading: `len()`, per-sample iteration and batch iteration.

    Args:
        sources: source files, folders, archives (or a list of them), or Members.
        charset: a Charset, a built-in name, "data" (every decodable code found, by code),
            a charset file, or None for the sources' default (see plan_charset).
        preprocess: None for original bitmaps, or a gntkit.samples.preprocess.Preprocess.
        on_error / on_unknown / max_side: as for iter_batches.

    Opening indexes every member once (headers only: fast, and it finds every damaged
    record up front); the pixels are read again, one member at a time, when iterating.
    """

    def __init__(self, sources, charset="data", preprocess=None, *, on_error: str = "raise", on_unknown: str = "drop",
                 max_side: int = DEFAULT_MAX_SIDE):
        check_choice("on_error", on_error, ON_ERROR_CHOICES)
        check_choice("on_unknown", on_unknown, ON_UNKNOWN_CHOICES)
        self.members = resolve_members(sources, on_error)
        self.preprocess = preprocess
        self.on_error, self.on_unknown, self.max_side = on_error, on_unknown, max_side
        self.report = StreamReport()
        all_codes = survey_codes(self.members, on_error, max_side)
        self.charset = plan_charset(charset, self.members, codes=all_codes, on_error=on_error, on_unknown=on_unknown, max_side=max_side)
        if any(is_line_member(m) for m in self.members):
            self._length = self._count_lines()
            return
        labels = self.charset.classes_of_codes(all_codes)
        if on_unknown == "error" and (labels < 0).any():
            list(self.batches())  # raises the CharsetError naming the file and record
        self._length = int((labels >= 0).sum()) if on_unknown != "other" else len(labels)

    def _count_lines(self) -> int:
        """Text lines iteration yields (raises the CharsetError of on_unknown="error")."""
        total = 0
        for member in self.members:
            record_file, _ = open_member(member, self.on_error, self.max_side)
            if record_file is not None:
                total += int(label_lines(record_file, self.charset, self.on_unknown, StreamReport())[1].sum())
        return total

    def __len__(self) -> int:
        """Samples that iteration yields (records in the charset, or all with on_unknown='other')."""
        return self._length

    def batches(self, batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 1) -> Iterator[SampleBatch]:
        """SampleBatches in global order (fills self.report)."""
        self.report = StreamReport()
        return iter_batches(self.members, self.charset, self.preprocess, on_error=self.on_error, on_unknown=self.on_unknown,
                            batch_size=batch_size, workers=workers, max_side=self.max_side, report=self.report)

    def __iter__(self) -> Iterator[Sample]:
        for batch in self.batches():
            sequences, offsets = batch.meta.get("label_sequence"), batch.meta.get("label_sequence_offsets")
            for i in range(len(batch)):
                sequence = sequences[offsets[i]:offsets[i + 1]] if sequences is not None else None
                yield Sample(batch.keys[i], batch.writer_ids[i], int(batch.tag_codes[i]), batch.characters[i],
                             int(batch.labels[i]), batch.image(i), sequence)



def open_source(sources, charset="data", preprocess=None, **options) -> Source:
    """Open sources for reading; see Source."""
    return Source(sources, charset, preprocess, **options)
