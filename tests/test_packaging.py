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
