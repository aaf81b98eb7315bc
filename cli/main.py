"""The `gntkit` command line: each command parses its options and calls library code.

Exit codes: 0 success (also when the only samples dropped are text lines holding a character
the source leaves unlabelled, tag code 0xFFFF: expected, still counted and reported); 1 an
internal error (a bug in gntkit, said so); 2 bad input or a failed check (one sentence on
stderr, no traceback); 3 finished, but damaged records were skipped or samples outside the
charset dropped (counted in the output); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

import gntkit
from gntkit.cli import Interrupted, commands_loaded
from gntkit.cli.options import (
    CONVERT_HELP,
    FORMAT_DEFAULT,
    BinarizeOption,
    CharsetOption,
    CompressionOption,
    ContrastOption,
    CropOption,
    DenoiseOption,
    FontOption,
    HashSourcesOption,
    InvertOption,
    LineHeightOption,
    MarginOption,
    MaxLineWidthOption,
    NameOption,
    OnError,
    OnErrorOption,
    OnUnknown,
    OnUnknownOption,
    OutOption,
    OverwriteOption,
    PadOption,
    ParallelOption,
    PenWidthOption,
    QuietOption,
    RawOption,
    ResumeOption,
    ShardMbOption,
    ShardRecordsOption,
    SizeOption,
    SplitOption,
    SplitSeedOption,
    StrokesOption,
    ToOption,
    Typer,
    ValFractionOption,
    WorkersOption,
    evaluation_summary,
    prediction_summary,
)
from gntkit.errors import GntkitError
from gntkit.samples.charset import BUILTIN_CHARSETS, builtin, resolve
from gntkit.shards.registry import FORMATS
from gntkit.tools.host_heap import tune_host_malloc
from gntkit.training import evaluate as run_evaluate
from gntkit.training import export as run_export
from gntkit.training import predict as run_predict

# The commands that read sources or shards import their library module when they run: it loads
# numba (and the preview command Pillow), which adds about 1 s to `gntkit --help` (measured on a
# busy 2-core machine: 0.8-1.3 s with these imports inside the commands, 1.9-2.4 s at the top).

# TensorFlow's C++ start-up chatter would bury the one-sentence messages of the CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_SKIPPED = 3



app = Typer(
    name="gntkit",
    help="Read CASIA HWDB .gnt handwriting archives exactly and fast, convert them to "
    f"{' / '.join(f.title for f in FORMATS.values())} shards, and train reference models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
charset_app = Typer(help="List, show and export the built-in charsets.", no_args_is_help=True)
app.add_typer(charset_app, name="charset")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gntkit {gntkit.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print gntkit's version and exit.")] = False,
):
    """gntkit's own options, before the command."""


def fail(message: str, code: int = EXIT_BAD_INPUT):
    """Print one sentence to stderr and exit with code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# What an interrupt leaves behind, said by the command that was interrupted (after "interrupted").
INTERRUPTED = "."
INTERRUPTED_CONVERSION = ("; partial shards keep their .partial names and are not taken as complete: "
                          "the same command with --resume finishes the conversion.")
INTERRUPTED_TRAINING = ("; the run folder keeps the checkpoint of the last finished epoch, if one finished: "
                        "the same command with --resume continues from it, --overwrite starts again.")


def run(call: Callable, interrupted: str = INTERRUPTED):
    """Call library code; bad input becomes one sentence and exit code 2, never a traceback;
    Ctrl-C or SIGTERM says so and what the command leaves behind (`interrupted`), exit 130 or 143."""
    try:
        return call()
    except GntkitError as exc:
        if getattr(exc, "exit_code", None) == 0:  # nothing left to do (a resumed conversion that is complete): not a failure
            typer.echo(str(exc))
            raise typer.Exit(0) from None
        fail(str(exc))
    except (KeyboardInterrupt, Interrupted) as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the message
        fail(f"{_interrupt_words(exc)}{interrupted}", getattr(exc, "exit_code", 130))
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"{where}{exc.strerror or exc}.")
    except Exception as exc:  # not bad input: a bug in gntkit, and said to be one
        if os.environ.get("GNTKIT_DEBUG"):
            raise
        fail(f"internal error, a bug in gntkit, not a problem with your input: {type(exc).__name__}: {exc}. "
             "Please report it with the command; GNTKIT_DEBUG=1 shows the traceback.", EXIT_BUG)


Sources = Annotated[list[Path], typer.Argument(help="Sources: .gnt and other CASIA / MNIST files, folders of them, "
                                                    "or archives (read in place).", show_default=False)]


@app.command()
def inspect(
    sources: Sources,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    on_error: Annotated[OnError, typer.Option(
    help="raise: exit 2 when any problem is found; skip: report problems, exit 3.")] = OnError.raise_,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr (shown for runs over 2 s).")] = False,
):
    """Report files, writers, records, classes, Chinese vs symbol counts, bitmap sizes and every problem found."""
    from gntkit.samples.inspection import format_inspection, inspect_sources  # numba: off `gntkit --help`

    report = run(lambda: inspect_sources(sources, progress=not quiet)).to_json()
    typer.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else format_inspection(report))
    if report["problems"]:
        if on_error == OnError.raise_:
            first = report["problems"][0]["message"]
            fail(f"{len(report['problems'])} problem(s) found; the first: {first} (use --on-error skip to accept them)")
        raise typer.Exit(EXIT_SKIPPED)


@charset_app.command("list")
def charset_list():
    """List the built-in charsets."""
    for name, description in BUILTIN_CHARSETS.items():
        size = f"{len(builtin(name)):>5}" if name != "data" else "    -"
        typer.echo(f"{name:<13} {size}  {description}")


@charset_app.command("show")
def charset_show(
    name: Annotated[str, typer.Argument(help="Built-in name (gb2312-1, gb2312) or a charset.txt / charset.json path.")],
    limit: Annotated[int, typer.Option(help="Show at most this many classes (0: all).")] = 40,
):
    """Show a charset's classes: class id, tag code, character."""
    charset = run(lambda: resolve(name))
    typer.echo(f"{charset.name}: {len(charset)} classes, {charset.order}")
    count = len(charset) if limit <= 0 else min(limit, len(charset))
    for i in range(count):
        typer.echo(f"{i:>5}  0x{int(charset.tag_codes[i]):04X}  {charset.characters[i]}")
    if count < len(charset):
        typer.echo(f"... {len(charset) - count} more (use --limit 0 for all)")


@charset_app.command("export")
def charset_export(
    name: Annotated[str, typer.Argument(help="Built-in name (gb2312-1, gb2312) or a charset file.")],
    out: Annotated[Path, typer.Argument(help="Folder to write charset.txt and charset.json into (created).")],
):
    """Write a charset as charset.txt (line number = class id) and charset.json (with tag codes)."""
    charset = run(lambda: resolve(name))
    paths = run(lambda: charset.save(out, overwrite=False))
    typer.echo(f"wrote {len(charset)} classes to {paths[0]} and {paths[1]}")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create with one file per writer (dgrl: per page).")],
    writers: Annotated[int, typer.Option(help="Number of writer files.")] = 4,
    first_writer: Annotated[int, typer.Option(help="Id of the first writer.")] = 1001,
    classes: Annotated[int, typer.Option(help="Chinese classes (spread over GB2312 level 1).")] = 20,
    samples_per_class: Annotated[int, typer.Option(help="Samples of each class per writer.")] = 2,
    style: Annotated[str, typer.Option(help="c: Chinese only (NNNN-c.gnt); f: with ASCII symbols (NNNN-f.gnt).")] = "c",
    symbols: Annotated[int, typer.Option(help="Symbol classes in f-style files.")] = 10,
    seed: Annotated[int, typer.Option(help="Everything is deterministic in the seed.")] = 0,
    zip_name: Annotated[str | None, typer.Option("--zip", help="Pack the files into this zip inside OUT.")] = None,
    format: Annotated[str, typer.Option("--format", help="gnt (offline bitmaps, 1001-c.gnt), pot (online strokes, 1001.pot) or "
                                                          "dgrl (text-line pages, 1001-P01.dgrl).")] = "gnt",
    font: Annotated[str | None, typer.Option(help="Draw real characters from this font file ('auto': an installed CJK font) under each "
                                                  "writer's distortions.")] = None,
    pages: Annotated[int, typer.Option(help="dgrl: pages per writer.")] = 2,
    lines: Annotated[int, typer.Option(help="dgrl: text lines per page.")] = 8,
):
    """Write a synthetic corpus in a real CASIA layout: character-like glyphs composed from radicals with per-writer styles (no download)."""  # noqa: E501 - `gntkit --help` keeps a docstring's line breaks
    from gntkit.tools.synth_pages import write_synthetic  # numba: off `gntkit --help`

    paths = run(lambda: write_synthetic(out, writers=writers, first_writer=first_writer, num_classes=classes,
                                        samples_per_class=samples_per_class, style=style, num_symbols=symbols, seed=seed,
                                        zip_name=zip_name, font=font, format=format, pages=pages, lines=lines))
    typer.echo(f"wrote {len(paths)} file(s) to {out}")


def _command_line() -> str | None:
    """The command as typed, for the manifest (None when not run as `gntkit`)."""
    return shlex.join(["gntkit", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("gntkit") else None


# What `--raw true` leaves behind as a source: a flag's value that reads as a path.
_FLAG_VALUES = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _check_no_flag_values(sources: list[Path]) -> None:
    """Exit 2 naming the cause when a missing source reads as a flag's value (`--raw true`)."""
    for source in sources:
        if str(source).lower() in _FLAG_VALUES and not source.exists():
            fail(f"{source}: expected a source file or folder, found a word that reads as a flag's value: flags such as --raw, "
                 "--denoise or --resume take no value (write --raw, not --raw true).")


def _convert_exit_code(manifest: dict) -> int:
    """0, or EXIT_SKIPPED when a damaged record was skipped or a sample dropped, except for text lines
    dropped only for characters the source leaves unlabelled (0xFFFF): an expected, documented drop."""
    if not manifest["lost_anything"]:
        return 0
    skipped = manifest["skipped"]
    damaged = skipped["skipped_records"] or skipped["skipped_bytes"] or skipped["problems"]
    only_unlabelled = not skipped["outside_charset"] and set(skipped["unknown_codes"]) <= {"0xFFFF"}
    return EXIT_SKIPPED if damaged or not only_unlabelled else 0


@app.command(help=CONVERT_HELP)
def convert(
    sources: Sources,
    to: ToOption = FORMAT_DEFAULT,
    out: OutOption = None,
    name: NameOption = None,
    split: SplitOption = None,
    charset: CharsetOption = None,
    overwrite: OverwriteOption = False,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
    size: SizeOption = None,
    raw: RawOption = False,
    margin: MarginOption = None,
    crop: CropOption = None,
    invert: InvertOption = None,
    binarize: BinarizeOption = None,
    denoise: DenoiseOption = False,
    contrast: ContrastOption = False,
    pad: PadOption = False,
    pen_width: PenWidthOption = None,
    strokes: StrokesOption = False,
    line_height: LineHeightOption = None,
    max_line_width: MaxLineWidthOption = None,
    val_fraction: ValFractionOption = 0.0,
    split_seed: SplitSeedOption = 0,
    on_unknown: OnUnknownOption = OnUnknown.drop,
    on_error: OnErrorOption = OnError.raise_,
    workers: WorkersOption = None,
    parallel: ParallelOption = "threads",
    shard_records: ShardRecordsOption = None,
    shard_mb: ShardMbOption = 128.0,
    compression: CompressionOption = None,
    hash_sources: HashSourcesOption = True,
):
    """Convert sources to shards of one output format with charset and manifest (help: CONVERT_HELP)."""
    _check_no_flag_values(sources)
    from gntkit.tools import compile_ahead  # no numpy or numba: the helper starts before they load

    if not (raw or pad):  # on a cold numba cache, preprocessing kernels compile in a helper from now on
        # Preprocess.edits, spelled out: importing gntkit.samples.preprocess loads numba, which would
        # delay the helper's start by the time this saves.
        compile_ahead.start_preprocess_helper(edited=bool(contrast or denoise or binarize is not None))
    from gntkit.shards import convert as conversion  # numba: off `gntkit --help`

    def call():
        settings = conversion.preprocess_settings(size, raw, margin, crop, invert, binarize, denoise, contrast, pen_width=pen_width,
                                                  pad=pad or None, line_height=line_height, max_line_width=max_line_width)
        with compile_ahead.helpers_cancelled_on_error():
            return conversion.convert(
                sources, out, to=to.value, name=name, split=split, val_fraction=val_fraction, split_seed=split_seed, charset=charset,
                preprocess=settings, on_error=on_error.value, on_unknown=on_unknown.value, shard_records=shard_records,
                shard_bytes=int(shard_mb * 1024 * 1024) if shard_mb else None, compression=compression, workers=workers,
                parallel=parallel, overwrite=overwrite, resume=resume, progress=not quiet, hash_sources=hash_sources, strokes=strokes,
                before_write=compile_ahead.before_convert, command=_command_line())

    manifest = run(call, INTERRUPTED_CONVERSION)
    typer.echo(conversion.conversion_summary(manifest))
    raise typer.Exit(_convert_exit_code(manifest))


@app.command()
def verify(
    # str, not Path: Path would turn a URL's `//` into `/`.
    folder: Annotated[str, typer.Argument(help="A folder written by `gntkit convert`, or its URL (https://, s3://, gs://, "
                                               "any fsspec URL).")],
    decode: Annotated[bool, typer.Option(help="Decode every record with the format's stock reader (--no-decode: "
                                              "sizes and checksums only).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr (shown for runs over 2 s).")] = False,
):
    """Re-check every shard against the manifest (count, sha256) and decode every record with the stock reader."""
    from gntkit.shards.verify import verify as run_verify  # numba: off `gntkit --help`

    summary = run(lambda: run_verify(folder, decode=decode, progress=not quiet))
    splits = ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items())
    typer.echo(f"ok: {summary['shards']} shard(s), {summary['records']:,} records ({splits}) match the manifest")


@app.command()
def warmup(
    formats: Annotated[list[str] | None, typer.Option("--format", help="Shard format to warm (repeatable; default: every format whose "
                                                                       "package is installed).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print only the summary line.")] = False,
):
    """Compile (or load from numba's cache) every kernel the commands use, ahead of the first real run: for images and clusters."""
    def report(stage):
        if not quiet:
            typer.echo(f"{stage.name:<26} {stage.seconds:6.1f} s  compiled {stage.compiled:>3}, "
                       f"loaded {stage.loaded:>3} kernel signature(s)")

    from gntkit.tools import warmup as warming  # numba and every stage: off `gntkit --help`

    stages = run(lambda: warming.warmup(formats, on_stage=report))
    compiled, loaded = sum(s.compiled for s in stages), sum(s.loaded for s in stages)
    typer.echo(f"ok: {compiled} kernel signature(s) compiled, {loaded} loaded, in {sum(s.seconds for s in stages):.1f} s; cache: "
               f"{warming.cache_folder() or 'none (NUMBA_DISABLE_JIT=1)'}")


@app.command()
def preview(
    source: Annotated[list[Path], typer.Argument(help="GNT sources, or a folder written by `gntkit convert`.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("preview.png"),
    count: Annotated[int, typer.Option(help="Samples in the grid.")] = 48,
    columns: Annotated[int, typer.Option(help="Cells per row.")] = 8,
    split: Annotated[str | None, typer.Option(help="Split to show, for a converted folder.")] = None,
    stages: Annotated[int, typer.Option(help="Also show the preprocessing stages of this many samples (GNT sources).")] = 0,
    size: Annotated[int, typer.Option(help="Image side S for the stages view.")] = 64,
    binarize: Annotated[str | None, typer.Option(help="'otsu' or a threshold, for the stages view.")] = None,
    denoise: Annotated[bool, typer.Option("--denoise", help="Include denoising in the stages view.")] = False,
    contrast: Annotated[bool, typer.Option("--contrast", help="Include contrast stretching in the stages view.")] = False,
    font: FontOption = None,
):
    """Draw a grid of samples with their labels (and optionally the preprocessing stages) to a PNG."""
    from gntkit.tools.preview import preview as run_preview  # numba and Pillow: off `gntkit --help`

    result = run(lambda: run_preview(source, out, count=count, columns=columns, split=split, stages=stages,
                                     preprocess={"size": size, "crop": True, "invert": True, "binarize": binarize, "denoise": denoise,
                                                 "contrast": contrast}, font=font))
    typer.echo(f"wrote {result['path']}: {result['samples']} samples")
    if result["font_notice"]:
        typer.echo(f"note: {result['font_notice']}", err=True)


@app.command()
def demo(
    out: Annotated[Path, typer.Argument(help="Folder to create for the sample corpus and its conversions.")] = Path("gntkit-demo"),
    workers: Annotated[int | None, typer.Option(help="Conversion processes (default: all cores).")] = None,
    font: FontOption = None,
):
    """Run the main job on a built-in generated sample (no download): generate, inspect, convert to all formats, verify, preview."""
    from gntkit.tools.demo import run_demo  # numba: off `gntkit --help`

    run(lambda: run_demo(out, workers=workers, font=font, log=typer.echo))


# gntkit train's options are TrainConfig's fields (gntkit.training.cli_options builds them).
from gntkit.training.cli_options import with_train_options  # noqa: E402


@app.command()
@with_train_options
def train(
    data: Annotated[Path, typer.Argument(help="A `gntkit convert` folder: fixed-size characters, or .dgrl text lines (--model crnn).")],
    out: Annotated[Path, typer.Option(help="Run folder to create (checkpoints, metrics, curves, TensorBoard logs, charset).")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Print nothing (train.log still gets every line).")] = False,
    **options,
):
    """Train a reference model on converted shards; every option below is a gntkit.training.TrainConfig field.

    Tunes glibc malloc for the process first, so step memory stays mapped (GNTKIT_HOST_MALLOC=keep leaves it alone).
    """
    from gntkit.training import train as run_train

    host_malloc = tune_host_malloc()
    summary = run(lambda: run_train(data, out, resume=resume, overwrite=overwrite, quiet=quiet,
                                    host_malloc=host_malloc, **options), INTERRUPTED_TRAINING)
    best = summary.get("best_val_accuracy")
    best_text = f"best validation accuracy {best:.4f} (epoch {summary.get('best_epoch')})" if best is not None else "no validation split"
    typer.echo(f"run {summary['run_dir']}: {summary['epochs_completed']} epoch(s), {best_text}")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `gntkit train`.")],
    data: Annotated[str, typer.Argument(help="A folder written by `gntkit convert`, or its URL (https://, s3://, gs://, any fsspec URL).")],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    top_k: Annotated[int, typer.Option(help="Also report top-k accuracy.")] = 5,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    beam: Annotated[int | None, typer.Option(help="Line runs: CTC prefix beam search of this width (default: greedy).")] = None,
):
    """Top-1 / top-k accuracy, per-class accuracy and the most confused pairs; for a line run (crnn) CER, CR and AR
    overall and per writer and the most frequent substitutions (report.md and report.json in the run)."""
    report = run(lambda: run_evaluate(run_dir, data, split=split, top_k=top_k, checkpoint=checkpoint, device=device, beam=beam))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        typer.echo(evaluation_summary(report, split, top_k))
        typer.echo(f"  wrote {Path(run_dir) / 'report.md'} and report.json")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `gntkit train`.")],
    images: Annotated[list[Path], typer.Argument(help="Photos or scans of single handwritten characters (PNG, JPEG...), "
                                                      "or of written lines for a line run (crnn).")],
    top_k: Annotated[int, typer.Option(help="Characters to list per image.")] = 5,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda...")] = "auto",
    photo: Annotated[bool, typer.Option(
    "--photo/--no-photo",
        help="Add contrast stretch, Otsu threshold and speck removal for photos (--no-photo: exactly the run's preprocessing).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """Recognise handwritten characters (or, with a crnn run, lines) in your own images (same preprocessing as training, photo-robust)."""
    results = run(lambda: run_predict(run_dir, images, top_k=top_k, checkpoint=checkpoint, device=device, photo=photo))
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=1))
        return
    for result in results:
        typer.echo(prediction_summary(result))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `gntkit train`.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the exported model.")] = None,
    format: Annotated[str | None, typer.Option(help="torchscript or onnx (torch runs), savedmodel (tf runs).")] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export.")] = False,
):
    """Export a run's model (TorchScript/ONNX or SavedModel), loadable without gntkit."""
    path = run(lambda: run_export(run_dir, out=out, format=format, checkpoint=checkpoint, overwrite=overwrite))
    typer.echo(f"wrote {path}")


commands_loaded()


def main():
    """Console-script entry point."""
    try:
        app()
    except (KeyboardInterrupt, Interrupted) as exc:  # outside a command's library call
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        typer.echo(f"error: {_interrupt_words(exc)}; nothing was left half-written.", err=True)
        sys.exit(getattr(exc, "exit_code", 130))


def _interrupt_words(exc: BaseException) -> str:
    return "terminated" if getattr(exc, "signum", None) == signal.SIGTERM else "interrupted"


if __name__ == "__main__":
    sys.exit(main())
