"""The documentation: the mkdocs site builds with --strict, the CLI reference is generated from the
typer app, and the front page and the results page keep their size limits and speak only of the
software as it is."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from gntkit.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HISTORY_WORDS = re.compile(r"\bsessions?\b|issue [0-9]+|this task", re.IGNORECASE)


def _load_hook():
    spec = importlib.util.spec_from_file_location("cli_reference_hook", DOCS / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(group, prefix="gntkit"):
    """Every command path of the CLI ("gntkit convert", "gntkit charset list", ...)."""
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        yield path, command
        if hasattr(command, "commands"):
            yield from _commands(command, path)


def test_cli_reference_names_every_command_and_option():
    text = _load_hook().cli_reference()
    for path, command in _commands(typer.main.get_command(app)):
        assert f"`{path}`" in text, f"CLI reference lacks {path}"
        for param in command.params:
            for option in param.opts:
                if option.startswith("--"):
                    assert option in text, f"CLI reference lacks {path} {option}"


def test_site_builds_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]'); the test extra installs it")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    cli_page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "gntkit convert" in cli_page and "--on-error" in cli_page
    assert "gntkit-cli-reference" not in cli_page
    api_page = (site / "api" / "datasets" / "index.html").read_text(encoding="utf-8")
    assert "make_loader" in api_page and "ShardSet" in api_page


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120
    long_rows = [line for line in lines if line.startswith("|") and len(line) > 160]
    assert not long_rows, long_rows
    # The README's test command is the one CI runs (.ci/run keeps it identical).
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv .venv"))
    assert test_command in lines
    assert any(line.startswith("python3 -m venv .venv") and "gntkit demo" in line for line in lines[:12])


def test_benchmarks_page_size():
    assert len((DOCS / "benchmarks.md").read_text(encoding="utf-8").splitlines()) <= 300


def test_no_page_speaks_of_development_history():
    pages = sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]
    found = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}" for page in pages
             for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if HISTORY_WORDS.search(line)]
    assert not found, "\n".join(found)
