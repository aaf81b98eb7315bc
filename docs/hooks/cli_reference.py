"""mkdocs hook: the CLI reference page is generated from gntkit's typer app at every build.

The page docs/reference/cli.md holds a marker line; this hook replaces it with what
`typer gntkit.cli.main utils docs` would print (typer's own generator, called in process,
so the build needs no `typer` executable on PATH). The reference can therefore never fall
behind the commands and options the CLI really has.
"""

from __future__ import annotations

MARKER = "<!-- gntkit-cli-reference -->"
PAGE = "reference/cli.md"


def cli_reference() -> str:
    """The markdown of every gntkit command and option, under second-level headings."""
    import click
    import typer.cli
    import typer.main

    from gntkit.cli.main import app

    command = typer.main.get_command(app)
    context = click.Context(command, info_name="gntkit")
    text = typer.cli.get_docs_for_click(obj=command, ctx=context, name="gntkit", title="gntkit")
    # Drop typer's own first-level title: the page has its heading.
    return text.split("\n", 1)[1].strip() + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill the marker of the CLI reference page; other pages pass unchanged."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE}: expected the marker line {MARKER!r}, found none.")
    return markdown.replace(MARKER, cli_reference())
