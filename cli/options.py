"""The command line's building blocks: typer classes whose help shows flags without a value,
the choices, and the options of `gntkit convert` in help panels (the common ones first)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from gntkit.samples.splits import PRESETS
from gntkit.shards.registry import DEFAULT_FORMAT, FORMATS


class _PlainHelp:
    """Help that shows flags without a value and arguments in capitals: typer prints `<bool>`
    beside `--raw` and `--crop/--no-crop`, which reads as if they took one (`--raw true`), and
    `{sources}...` in the usage line."""

    def get_params(self, ctx):
        """The parameters: flags with an empty metavar (the help's type column), arguments named in capitals."""
        params = super().get_params(ctx)
        for param in params:
            if param.metavar is not None:
                continue
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif param.param_type_name == "argument":
                param.metavar = param.name.upper()
        return params


class Command(_PlainHelp, typer.core.TyperCommand):
    """A gntkit command (typer's, with the help of `_PlainHelp`)."""


class Group(_PlainHelp, typer.core.TyperGroup):
    """A gntkit command group (typer's, with the help of `_PlainHelp`)."""


class Typer(typer.Typer):
    """typer.Typer whose commands are `Command`s and groups `Group`s."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, cls=Group, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        """typer.Typer.command, with `Command` as the default command class."""
        return super().command(*args, cls=cls or Command, **kwargs)


class OnError(str, Enum):
    raise_ = "raise"
    skip = "skip"


class OnUnknown(str, Enum):
    drop = "drop"
    error = "error"
    other = "other"


# typer takes a choice as an Enum: the output formats registered when the CLI is imported.
Format = Enum("Format", {name: name for name in FORMATS}, type=str)
FORMAT_DEFAULT = Format(DEFAULT_FORMAT)

_SPLIT_HELP = (f"A preset ({', '.join(PRESETS)}; see docs/casia.md) or ranges 'train=1001-1240,test=1241-1300'. "
               "Default: the format's (GNT: all; MNIST: from the file names).")
_COMPRESSION_HELP = "; ".join(f"{f.name}: {' or '.join(c for c in f.compressions if c)}"
                              for f in FORMATS.values() if len(f.compressions) > 1) + " (default: none)."
_TITLES = [f.title for f in FORMATS.values()]
CONVERT_HELP = ("Convert sources (.gnt and other CASIA / MNIST files, folders, archives) to "
                 f"{', '.join(_TITLES[:-1])} or {_TITLES[-1]} shards with charset and manifest.")


# The options of `gntkit convert`, in help panels: the common ones (typer's "Options" panel) first.
PREPROCESSING, SPLITS, PERFORMANCE, ADVANCED = "Preprocessing", "Splits and charset", "Performance and shards", "Advanced"


def _option(*names: str, panel: str | None = None, **kwargs):
    """typer.Option in a help panel (None: the first, "Options")."""
    return typer.Option(*names, rich_help_panel=panel, **kwargs)


ToOption = Annotated[Format, _option(help="Shard format.")]
OutOption = Annotated[str | None, _option(help="Output folder, or a URL (s3://bucket/prefix, any fsspec URL: "
                                               "uploaded when complete). Default: <source name>-<format> here.")]
NameOption = Annotated[str | None, _option(help="Dataset name in shard file names (default: from the source).")]
SplitOption = Annotated[str | None, _option(help=_SPLIT_HELP)]
CharsetOption = Annotated[str | None, _option(help="gb2312-1 (3,755), gb2312 (6,763), data (every code seen, by code), "
                                                   "or a charset.txt/.json. Default: the format's (GNT: gb2312-1).")]
OverwriteOption = Annotated[bool, _option("--overwrite", help="Replace an existing gntkit output folder.")]
ResumeOption = Annotated[bool, _option(
    "--resume", help="Finish an interrupted run of the same command, keeping its finished shards.")]
QuietOption = Annotated[bool, _option("--quiet", help="No progress on stderr.")]

SizeOption = Annotated[int | None, _option(
    panel=PREPROCESSING, help="Output image side S (S x S canvas). Default: the format's (GNT: 64; MNIST: 28, as stored).")]
RawOption = Annotated[bool, _option("--raw", panel=PREPROCESSING,
                                    help="Keep the original bitmaps losslessly (variable size); no preprocessing.")]
MarginOption = Annotated[int | None, _option(panel=PREPROCESSING, help="Blank border in the canvas, pixels (default S/16 for GNT).")]
CropOption = Annotated[bool | None, _option(
    "--crop/--no-crop", panel=PREPROCESSING, help="Crop to the ink's bounding box before resizing (default: the format's).",
    show_default=False)]
InvertOption = Annotated[bool | None, _option(
    "--invert/--no-invert", panel=PREPROCESSING, help="Ink bright on a 0 background (default: the format's).", show_default=False)]
BinarizeOption = Annotated[str | None, _option(panel=PREPROCESSING,
                                               help="'otsu' or a fixed threshold 0..255 (default: keep grey levels).")]
DenoiseOption = Annotated[bool, _option("--denoise", panel=PREPROCESSING, help="Remove isolated specks.")]
ContrastOption = Annotated[bool, _option("--contrast", panel=PREPROCESSING, help="Stretch each bitmap's grey range.")]
PadOption = Annotated[bool, _option("--pad", panel=PREPROCESSING, help="Resize as tf.image.resize_with_pad (aspect kept, zero "
                                                                       "padding), e.g. MNIST to 224.")]
PenWidthOption = Annotated[float | None, _option(panel=PREPROCESSING,
                                                 help="POT (online strokes): pen width in pixels of the rendered bitmaps.")]
StrokesOption = Annotated[bool, _option(
    "--strokes", panel=PREPROCESSING, help="POT (online strokes): also write each sample's raw points and stroke lengths.")]
LineHeightOption = Annotated[int | None, _option(
    panel=PREPROCESSING, help="DGRL (text lines): height of every line image; width scaled alike (default 64).")]
MaxLineWidthOption = Annotated[int | None, _option(
    panel=PREPROCESSING, help="DGRL (text lines): widest line image; wider lines are squeezed to it (default 2048).")]

ValFractionOption = Annotated[float, _option(panel=SPLITS, help="Move this fraction of the train writers to a 'val' split (seeded).")]
SplitSeedOption = Annotated[int, _option(panel=SPLITS, help="Seed of the validation writers.")]
OnUnknownOption = Annotated[OnUnknown, _option(panel=SPLITS, help="Characters outside the charset: drop and count, error, "
                                                                  "or map to an 'other' class.")]
OnErrorOption = Annotated[OnError, _option(panel=SPLITS, help="Damaged records: raise (exit 2) or skip, count and report (exit 3).")]

ShardRecordsOption = Annotated[int | None, _option(panel=PERFORMANCE, help="Start a new shard after this many records.")]
ShardMbOption = Annotated[float, _option(panel=PERFORMANCE, help="Start a new shard after about this many MB (MiB).")]
CompressionOption = Annotated[str | None, _option(panel=PERFORMANCE, help=_COMPRESSION_HELP)]
WorkersOption = Annotated[int | None, _option(
    panel=PERFORMANCE, help="Files decoded in parallel (default: all cores). Output is identical for any value.")]
ParallelOption = Annotated[str, _option(
    panel=PERFORMANCE, help="How workers run: 'threads' (one process; the kernels release the GIL) or 'processes'.")]
HashSourcesOption = Annotated[bool, _option(
    "--hash-sources/--no-hash-sources", panel=ADVANCED, help="Record every source file's sha256 in the manifest.")]

FontOption = Annotated[Path | None, typer.Option(
    help="Font file for Chinese labels (.ttf, .ttc, .otf). Default: $GNTKIT_FONT, else an installed CJK font.", show_default=False)]


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def evaluation_summary(report: dict, split: str, top_k: int) -> str:
    """What `gntkit evaluate` prints: top-1 and top-k of a character run; CER, CR and AR of a line run."""
    if "cer" in report:
        return (f"{report['lines']:,} lines ({report['characters']:,} characters) of '{split}', {report['decoding']} "
                f"decoding: CER {_percent(report['cer'])}, correct rate {_percent(report['correct_rate'])}, "
                f"accurate rate {_percent(report['accurate_rate'])}")
    return (f"{report['samples']:,} samples of '{split}': top-1 {100 * report['top1_accuracy']:.2f}%, "
            f"top-{top_k} {100 * report['topk_accuracy']:.2f}%")


def prediction_summary(result: dict) -> str:
    """What `gntkit predict` prints for one image: the ranked characters, or a line's text and confidences."""
    if "text" in result:
        confidences = " ".join(f"{c['character']} {c['confidence']:.2f}" for c in result["characters"])
        return f"{result['image']}: {result['text']}  [{confidences}]"
    return f"{result['image']}: " + "  ".join(f"{c['character']} {c['probability']:.3f}" for c in result["predictions"])
