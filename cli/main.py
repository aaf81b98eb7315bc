"""The `gntkit` command line: each command parses its options and calls library code.

Exit codes: 0 success; 2 bad input or a failed check (one sentence on stderr, no
traceback); 3 finished, but records were skipped or samples dropped (counted in the
output); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from gntkit.errors import GntkitError

EXIT_BAD_INPUT = 2
EXIT_SKIPPED = 3

app = typer.Typer(
    name="gntkit",
    help="Read CASIA HWDB .gnt handwriting archives exactly and fast, convert them to TFRecord / HDF5 / "
    "WebDataset shards, and train reference models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
charset_app = typer.Typer(help="List, show and export the built-in charsets.", no_args_is_help=True)
app.add_typer(charset_app, name="charset")


class OnError(str, Enum):
    raise_ = "raise"
    skip = "skip"


class OnUnknown(str, Enum):
    drop = "drop"
    error = "error"
    other = "other"


def fail(message: str, code: int = EXIT_BAD_INPUT):
    """Print one sentence to stderr and exit with code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(call: Callable):
    """Call library code; bad input becomes one sentence and exit code 2, never a traceback."""
    try:
        return call()
    except GntkitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; partial outputs keep their .partial names and are not taken as complete.", 130)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"{where}{exc.strerror or exc}.")


Sources = Annotated[list[Path], typer.Argument(help="GNT sources: .gnt files, folders of them, or .zip archives (read in place).", show_default=False)]


@app.command()
def inspect(
    sources: Sources,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    on_error: Annotated[OnError, typer.Option(help="raise: exit 2 when any problem is found; skip: report problems, exit 3.")] = OnError.raise_,
):
    """Report files, writers, records, classes, Chinese vs symbol counts, bitmap sizes and every problem found."""
    from gntkit.inspection import format_inspection, inspect_sources

    report = run(lambda: inspect_sources(sources)).to_json()
    typer.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else format_inspection(report))
    if report["problems"]:
        if on_error == OnError.raise_:
            first = report["problems"][0]["message"]
            fail(f"{len(report['problems'])} problem(s) found; the first: {first} (use --on-error skip to accept them)")
        raise typer.Exit(EXIT_SKIPPED)


@charset_app.command("list")
def charset_list():
    """List the built-in charsets."""
    from gntkit.charset import BUILTIN_CHARSETS, builtin

    for name, description in BUILTIN_CHARSETS.items():
        size = f"{len(builtin(name)):>5}" if name != "data" else "    -"
        typer.echo(f"{name:<10} {size}  {description}")


@charset_app.command("show")
def charset_show(
    name: Annotated[str, typer.Argument(help="Built-in name (gb2312-1, gb2312) or a charset.txt / charset.json path.")],
    limit: Annotated[int, typer.Option(help="Show at most this many classes (0: all).")] = 40,
):
    """Show a charset's classes: class id, tag code, character."""
    from gntkit.charset import resolve

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
    from gntkit.charset import resolve

    charset = run(lambda: resolve(name))

    def save():
        out.mkdir(parents=True, exist_ok=True)
        for existing in ("charset.txt", "charset.json"):
            if (out / existing).exists():
                raise GntkitError(f"{out / existing}: the file already exists; choose another folder.")
        return charset.save(out)

    paths = run(save)
    typer.echo(f"wrote {len(charset)} classes to {paths[0]} and {paths[1]}")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create with one .gnt file per writer.")],
    writers: Annotated[int, typer.Option(help="Number of writer files.")] = 4,
    first_writer: Annotated[int, typer.Option(help="Id of the first writer.")] = 1001,
    classes: Annotated[int, typer.Option(help="Chinese classes (spread over GB2312 level 1).")] = 20,
    samples_per_class: Annotated[int, typer.Option(help="Samples of each class per writer.")] = 2,
    style: Annotated[str, typer.Option(help="c: Chinese only (NNNN-c.gnt); f: with ASCII symbols (NNNN-f.gnt).")] = "c",
    symbols: Annotated[int, typer.Option(help="Symbol classes in f-style files.")] = 10,
    seed: Annotated[int, typer.Option(help="Everything is deterministic in the seed.")] = 0,
    zip_name: Annotated[Optional[str], typer.Option("--zip", help="Pack the files into this zip inside OUT.")] = None,
):
    """Write a synthetic corpus in the real GNT layout (learnable glyphs, no fonts, no download)."""
    from gntkit.synth import write_corpus

    paths = run(lambda: write_corpus(out, writers=writers, first_writer=first_writer, num_classes=classes,
                                     samples_per_class=samples_per_class, style=style, num_symbols=symbols,
                                     seed=seed, zip_name=zip_name))
    typer.echo(f"wrote {len(paths)} file(s) to {out}")


def main():
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
