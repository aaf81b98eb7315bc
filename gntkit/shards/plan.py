"""Stage 1 of a conversion: check the arguments and decide everything before a byte is written.

`plan_conversion` finds the members, chooses the split of every writer, surveys the charset
once (shared with the stream) and settles the preprocessing (`resolve_preprocess`: the
sources' format defaults under the settings the user gave, as `preprocess_settings` builds
them from command-line values). gntkit.shards.convert runs the later stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

from gntkit.errors import GntkitError, require
from gntkit.formats import get_format, source_suffixes
from gntkit.formats.dgrl import DEFAULT_LINE_HEIGHT, DEFAULT_MAX_LINE_WIDTH
from gntkit.formats.sources import Member, find_members
from gntkit.samples.charset import Charset
from gntkit.samples.lines import is_line_member
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.splits import SplitPlan, parse_split
from gntkit.samples.stream import PARALLEL_CHOICES, check_choice, plan_charset
from gntkit.shards.registry import DEFAULT_FORMAT, OutputFormat, output_format


def _first_source(sources) -> Path:
    return Path(list(sources)[0] if not isinstance(sources, (str, Path)) else sources)


def _strip_suffixes(name: str) -> str:
    while name.lower().endswith(source_suffixes()):
        name = name[: name.rindex(".")]
    return name


def default_name(sources) -> str:
    """Dataset name from the first source: `HWDB1.1trn_gnt.zip` -> "hwdb1.1trn_gnt"."""
    name = _strip_suffixes(_first_source(sources).name)
    name = "".join(c if c.isalnum() or c in "._" else "_" for c in name.lower()).strip("._")
    return name or "gnt"


def default_output(sources, to: str) -> Path:
    """Default output folder: `<source name>-<format>` in the current folder."""
    return Path.cwd() / f"{_strip_suffixes(_first_source(sources).name)}-{to}"



@dataclasses.dataclass
class ConversionPlan:
    """Everything decided before a byte is written (the output of `plan_conversion`).

    Attributes:
        sources: the paths as given.
        members: every source file, in stream order.
        out_dir: the local output folder (a staging folder when `upload_to` is set).
        upload_to: the URL the finished conversion goes to, or None.
        name: dataset name used in shard names.
        fmt: the output format.
        split: the split plan; assignment: writer id -> split name.
        charset: the classes (surveyed once for "data").
        preprocess: the preprocessing applied to every bitmap.
        options: the remaining settings (on_error, on_unknown, shard sizes, workers, ...).
    """

    sources: list
    members: list[Member]
    out_dir: Path
    upload_to: str | None
    name: str
    fmt: OutputFormat
    split: SplitPlan
    assignment: dict
    charset: Charset
    preprocess: object
    options: dict

    def settings_key(self) -> str:
        """A digest of every setting that shapes the shards (resume checks it)."""
        o = self.options
        settings = {
            "sources": [str(Path(s).resolve()) for s in self.sources], "members": [(m.name, m.size) for m in self.members],
            "to": self.fmt.name, "name": self.name, "split": self.split.to_json(), "charset": self.charset.to_json(),
            "preprocess": self.preprocess.to_json(), "on_error": o["on_error"], "on_unknown": o["on_unknown"],
            "shard_records": o["shard_records"], "shard_bytes": o["shard_bytes"], "compression": o["compression"],
            "batch_size": o["batch_size"], "max_side": o["max_side"],
            **({"strokes": True} if o.get("strokes") else {}),  # absent otherwise: earlier journals still match
            **({"lines": True} if o.get("lines") else {}),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def resolve_preprocess(members: list[Member], preprocess=None):
    """The preprocessing for these members: a Preprocess as given, or the members' format
    defaults (`PREPROCESS_DEFAULTS` of the format module) updated with the options the user
    set (a dict whose None values mean "the format's default").

    Raises:
        GntkitError: a bad setting, or formats whose defaults disagree with nothing given.
    """
    if isinstance(preprocess, Preprocess):
        return preprocess
    if preprocess is not None and not isinstance(preprocess, dict):
        raise GntkitError("preprocess must be a gntkit.samples.preprocess.Preprocess or a dict of its settings, "
                          f"found {type(preprocess).__name__}.")
    chosen = {k: v for k, v in (preprocess or {}).items() if v is not None}
    defaults = {}
    for name in sorted({m.format for m in members}):
        own = dict(getattr(get_format(name), "PREPROCESS_DEFAULTS", {}))
        clash = {k for k in own.keys() & defaults.keys() if own[k] != defaults[k]} - chosen.keys()
        if clash:
            raise GntkitError(f"The sources mix formats whose default preprocessing differs in {', '.join(sorted(clash))}: "
                              "set it explicitly (e.g. --size).")
        defaults.update(own)
    if chosen.get("raw"):
        return Preprocess(**chosen)
    try:
        return Preprocess(**{**defaults, **chosen})
    except TypeError as exc:
        raise GntkitError(f"preprocess: expected settings of gntkit.samples.preprocess.Preprocess, found {exc}.") from None


def _default_split(members: list[Member]) -> str:
    splits = {getattr(get_format(name), "DEFAULT_SPLIT", "all") for name in {m.format for m in members}}
    return splits.pop() if len(splits) == 1 else "all"


def _check_options(fmt: OutputFormat, options: dict) -> None:
    """Raise GntkitError on a bad option or combination, before anything is written."""
    check_choice("parallel", options["parallel"], PARALLEL_CHOICES)
    compression = options.get("compression")
    if compression not in fmt.compressions:
        accepted = " or ".join(c for c in fmt.compressions if c)
        raise GntkitError(f"compression: {fmt.title} shards take {accepted + ' or none' if accepted else 'no compression'}, "
                          f"found {compression!r}.")
    if fmt.requires:
        require(fmt.requires, fmt.requires, f"Writing {fmt.title} shards")
    for key in ("shard_records", "shard_bytes"):
        if options[key] is not None and (not isinstance(options[key], int) or options[key] < 1):
            raise GntkitError(f"{key} must be a whole number of at least 1, found {options[key]!r}.")
    if int(options["batch_size"]) < 1:
        raise GntkitError(f"batch_size must be at least 1, found {options['batch_size']}.")


def _check_strokes_sources(members: list[Member]) -> None:
    """Raise GntkitError unless every member's format carries raw strokes (HAS_STROKES)."""
    without = sorted({m.format for m in members if not getattr(get_format(m.format), "HAS_STROKES", False)})
    if without:
        first = next(m for m in members if m.format in without)
        kinds = ", ".join(f.upper() for f in without)
        raise GntkitError(f"--strokes needs online sources with strokes (POT), found {kinds} files such as {first.name}.")


def plan_conversion(sources, out_dir=None, *, to: str = DEFAULT_FORMAT, name: str | None = None, split=None,
                    val_fraction: float = 0.0, split_seed: int = 0, charset=None, preprocess=None, **options) -> ConversionPlan:
    """Check the arguments and decide everything (see gntkit.shards.convert.convert for them).

    Raises:
        GntkitError: bad arguments, sources or charset.
    """
    fmt = output_format(to)
    _check_options(fmt, options)
    source_list = [sources] if isinstance(sources, (str, Path)) else list(sources)
    members = find_members(source_list, on_error=options["on_error"])
    if options.get("strokes"):
        _check_strokes_sources(members)
    if _line_sources(members):
        options["lines"] = True
    plan = split if isinstance(split, SplitPlan) else parse_split(split or _default_split(members), val_fraction, split_seed)
    assignment = plan.assign([m for m in members if m.writer_id])  # "": a lost stretch of an archive, no writer
    charset_obj = plan_charset(charset, members, on_error=options["on_error"], on_unknown=options["on_unknown"],
                               max_side=options["max_side"])
    upload_to = None
    if out_dir is not None and "://" in str(out_dir):
        if options.get("resume"):
            raise GntkitError(f"{out_dir}: --resume works on local folders only; convert to a local folder, then upload it.")
        upload_to = str(out_dir)
        out_dir = Path(tempfile.mkdtemp(prefix="gntkit-upload-"))
        options["overwrite"] = True
    out = Path(out_dir) if out_dir is not None else default_output(source_list, fmt.name)
    settings = resolve_preprocess(members, preprocess)
    if options.get("lines") and not settings.raw and settings.line_height is None:  # the manifest says which height
        settings = dataclasses.replace(settings, line_height=DEFAULT_LINE_HEIGHT,
                                       max_line_width=settings.max_line_width or DEFAULT_MAX_LINE_WIDTH)
    return ConversionPlan(source_list, members, out, upload_to, name or default_name(source_list), fmt, plan, assignment,
                          charset_obj, settings, options)


def _line_sources(members: list[Member]) -> bool:
    """True when the members are text lines (DGRL); raise GntkitError when lines and single characters are mixed."""
    kinds = {is_line_member(m) for m in members}
    if len(kinds) > 1:
        first = next(m for m in members if is_line_member(m))
        raise GntkitError(f"Text lines ({first.name}) and single characters cannot share one dataset (label sequences vs one class per "
                          "sample): convert them separately.")
    return kinds == {True}



def preprocess_settings(size: int | None = None, raw: bool = False, margin: int | None = None, crop: bool | None = None,
                        invert: bool | None = None, binarize: str | int | None = None, denoise: bool = False, contrast: bool = False,
                        **more) -> dict:
    """The preprocessing settings a user set, as the dict `resolve_preprocess` takes (None: the
    sources' format default), from command-line style values.

    Args:
        size / margin / crop / invert / denoise / contrast: Preprocess settings (False: the default).
        raw: keep the original bitmaps; only the `more` settings that are set go with it.
        binarize: "otsu", a threshold 0..255 (int or digits), or None.
        more: further Preprocess settings (pen_width, pad, line_height, ...).

    Raises:
        GntkitError: a binarize value that is neither "otsu" nor a threshold.
    """
    threshold = None
    if binarize is not None:
        if binarize != "otsu" and not str(binarize).isdigit():
            raise GntkitError(f"--binarize must be 'otsu' or a threshold 0..255, found {binarize!r}.")
        threshold = binarize if binarize == "otsu" else int(binarize)
    if raw:
        return {"raw": True, **{k: v for k, v in more.items() if v is not None}}
    return {"size": size, "margin": margin, "crop": crop, "invert": invert, "binarize": threshold,
            "denoise": denoise or None, "contrast": contrast or None, **more}
