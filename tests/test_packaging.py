"""Packaging: light `import gntkit`, the CLI installs as gntkit.cli (no top-level `cli`)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "torch", "h5py", "webdataset")


def test_import_gntkit_stays_light():
    code = (
        "import sys, gntkit, gntkit.samples.stream, gntkit.tools.synth, gntkit.samples.inspection, gntkit.shards.writer, "
        "gntkit.datasets, gntkit.training;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_wheel_has_no_top_level_cli(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("gntkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert "cli" not in top_level
    assert "gntkit/cli/main.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gntkit = gntkit.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _extra(extras: dict, name: str) -> set[str]:
    """Requirement names an extra installs, following gntkit[...] self-references."""
    import re

    names = set()
    for requirement in extras[name]:
        own = re.fullmatch(r"gntkit\[([\w,-]+)\]", requirement)
        if own:
            for inner in own.group(1).split(","):
                names |= _extra(extras, inner)
        else:
            names.add(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower())
    return names


def test_the_all_extra_installs_no_test_tools():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    tools = {"pytest", "hypothesis", "pytest-timeout", "ruff", "import-linter", "moto", "datasets", "mkdocs"}
    assert not _extra(extras, "all") & tools
    assert {"tensorflow", "torch", "h5py", "webdataset", "fsspec", "matplotlib", "tensorboard"} <= _extra(extras, "all")
    assert tools <= _extra(extras, "test") and _extra(extras, "all") | _extra(extras, "test") <= _extra(extras, "dev")
