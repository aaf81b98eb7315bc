"""The run folder: every file of one training run, and nothing else writes there.

Layout (a run is self-contained: predict/evaluate/export need nothing else)::

    RUN/run.json          what was trained: TrainConfig, model, classes, image size, data
    RUN/charset.txt       line number = class id (and charset.json when the data had one)
    RUN/preprocess.json   the preprocessing the training images went through
    RUN/gntkit.json       copy of the data's manifest (when trained from shards)
    RUN/metrics.csv       one row per epoch
    RUN/curves.png        loss and accuracy, train and validation (matplotlib)
    RUN/train.log         what was printed
    RUN/tensorboard/      TensorBoard event files (`tensorboard --logdir RUN`)
    RUN/checkpoints/      best.* and last.* (framework formats; see checkpoint_path)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.shards import remote
from gntkit.shards.manifest import MANIFEST, manifest_path
from gntkit.training.config import one_of
from gntkit.training.metrics import METRIC_FIELDS, read_metrics

__all__ = ["RunFolder", "write_json"]


def write_json(path: Path, data) -> None:
    """Write `data` as JSON to `path` atomically (a .partial file renamed into place)."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunFolder:
    """The files of one training run (see the module docstring for the layout).

    Args:
        path: the run folder.
        framework: "torch" or "tf" (decides checkpoint file names).
    """

    RUN_FILE = "run.json"

    def __init__(self, path, framework: str | None = None):
        self.path = Path(path)
        self.framework = framework

    # paths -----------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        """RUN/run.json."""
        return self.path / self.RUN_FILE

    @property
    def metrics_file(self) -> Path:
        """RUN/metrics.csv."""
        return self.path / "metrics.csv"

    @property
    def curves_file(self) -> Path:
        """RUN/curves.png."""
        return self.path / "curves.png"

    @property
    def log_file(self) -> Path:
        """RUN/train.log."""
        return self.path / "train.log"

    @property
    def tensorboard_dir(self) -> Path:
        """RUN/tensorboard (event files of both frameworks)."""
        return self.path / "tensorboard"

    @property
    def checkpoint_dir(self) -> Path:
        """RUN/checkpoints."""
        return self.path / "checkpoints"

    def checkpoint_path(self, which: str) -> Path:
        """Path of checkpoint `which` ("best" or "last").

        torch: `checkpoints/{which}.pt` (one file, torch.save dict). tf:
        `checkpoints/{which}` is a tf.train.Checkpoint prefix (`.index` and
        `.data-*` files next to it).
        """
        one_of("checkpoint", which, ("best", "last"))
        if self.framework == "torch":
            return self.checkpoint_dir / f"{which}.pt"
        if self.framework == "tf":
            return self.checkpoint_dir / which
        raise GntkitError(f"Unknown framework {self.framework!r}: expected torch or tf.")

    def checkpoint_to_load(self, which: str) -> Path:
        """Path of checkpoint `which`; "best" falls back to "last" when no complete best exists."""
        if which == "best" and not self.has_checkpoint("best"):
            which = "last"
        return self.checkpoint_path(which)

    def read_run_info_of_framework(self) -> dict:
        """Read run.json and check that the run was trained with this folder's framework.

        Raises:
            GntkitError: not a run folder, or a run of the other framework.
        """
        info = self.read_run_info()
        found = info["config"].get("framework")
        if found != self.framework:
            raise GntkitError(f"{self.path}: expected a {self.framework} run, found a {found} run.")
        return info

    def has_checkpoint(self, which: str) -> bool:
        """Whether checkpoint `which` was written completely."""
        p = self.checkpoint_path(which)
        if self.framework == "tf":
            return p.with_name(p.name + ".index").is_file() and p.with_name(p.name + ".json").is_file()
        return p.is_file()

    # creation ----------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool) -> bool:
        """Make the folder ready; return True when an earlier run is being resumed.

        Raises:
            OutputExistsError: the folder exists (and is not empty) without resume or overwrite.
            GntkitError: resume asked for but no run or no last checkpoint is there, or both flags.
        """
        if resume and overwrite:
            raise GntkitError("Choose resume or overwrite, not both.")
        exists = self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir()))
        if resume:
            if not self.run_file.is_file():
                raise GntkitError(f"{self.path}: cannot resume, found no {self.RUN_FILE} (no earlier run here).")
            if not self.has_checkpoint("last"):
                raise GntkitError(f"{self.path}: cannot resume, found no last checkpoint in {self.checkpoint_dir} (no epoch "
                                  "finished): start the run again with --overwrite (overwrite=True).")
            return True
        if exists:
            if not overwrite:
                raise OutputExistsError(
                    f"{self.path}: the run folder already exists; pass --resume (resume=True) to continue it "
                    f"or --overwrite (overwrite=True) to replace it."
                )
            if self.path.is_dir() and not self.run_file.is_file() and any(self.path.iterdir()):
                # Never wipe a folder that is not a gntkit run (a typo could name $HOME).
                raise OutputExistsError(
                    f"{self.path}: the folder is not empty and holds no {self.RUN_FILE}; "
                    f"refusing to overwrite something that is not a gntkit run."
                )
            if self.path.is_dir():
                shutil.rmtree(self.path)
            else:
                self.path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        return False

    def write_run_info(self, info: dict) -> None:
        """Write run.json (TrainConfig and what the model was built for)."""
        write_json(self.run_file, info)

    def read_run_info(self) -> dict:
        """Read run.json.

        Raises:
            GntkitError: the folder is not a gntkit run or run.json is broken.
        """
        if not self.run_file.is_file():
            raise GntkitError(f"{self.path}: expected a gntkit run folder, found no {self.RUN_FILE}.")
        try:
            info = json.loads(self.run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise GntkitError(f"{self.run_file}: expected JSON, found a syntax error at line {exc.lineno}.") from None
        for key in ("config", "num_classes", "image_size", "channels"):
            if key not in info:
                raise GntkitError(f"{self.run_file}: expected the field {key!r}, found none.")
        return info

    def copy_data_files(self, data_dir) -> None:
        """Copy charset.txt, charset.json and the manifest (as gntkit.json) of a shard folder (or its URL) into the run."""
        if remote.is_url(data_dir):
            folder = remote.RemoteFolder(str(data_dir))
            manifest = folder.manifest()  # fetches the charset files into folder.local
            (self.path / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            data_dir = folder.local
        data_dir = Path(data_dir)
        for name in ("charset.txt", "charset.json"):
            if (data_dir / name).is_file():
                shutil.copyfile(data_dir / name, self.path / name)
        manifest = manifest_path(data_dir)
        if manifest is not None:
            shutil.copyfile(manifest, self.path / MANIFEST)

    def write_charset(self, classes) -> None:
        """Write charset.txt (and charset.json) from a Charset or a list of class names."""
        if hasattr(classes, "save") and hasattr(classes, "characters"):
            classes.save(self.path)
            return
        names = [str(c) for c in classes]
        for i, name in enumerate(names):
            if not name or "\n" in name or "\r" in name:
                raise GntkitError(f"Class {i} needs a name without line breaks, found {name!r}.")
        (self.path / "charset.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")

    def write_preprocess(self, preprocess: dict) -> None:
        """Write preprocess.json."""
        write_json(self.path / "preprocess.json", preprocess)

    def read_preprocess(self) -> dict:
        """Read preprocess.json.

        Raises:
            GntkitError: the run has no preprocess.json.
        """
        p = self.path / "preprocess.json"
        if not p.is_file():
            raise GntkitError(f"{self.path}: expected preprocess.json in the run folder, found none.")
        return json.loads(p.read_text(encoding="utf-8"))

    def read_classes(self) -> list[str]:
        """Class names from charset.txt (line number = class id).

        Raises:
            GntkitError: the run has no charset.txt.
        """
        p = self.path / "charset.txt"
        if not p.is_file():
            raise GntkitError(f"{self.path}: expected charset.txt in the run folder, found none.")
        lines = p.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines

    # metrics -------------------------------------------------------------------
    def append_metrics(self, row: dict) -> None:
        """Append one epoch to metrics.csv (header written with the first row)."""
        new = not self.metrics_file.is_file()
        with self.metrics_file.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_FIELDS})

    def truncate_metrics(self, last_epoch: int) -> list[dict]:
        """Keep only epochs <= last_epoch (a crash may have left rows past the checkpoint)."""
        rows = [r for r in read_metrics(self.metrics_file) if r["epoch"] <= last_epoch]
        if self.metrics_file.exists():
            self.metrics_file.unlink()
        for r in rows:
            self.append_metrics(r)
        return rows

    def log(self, message: str, quiet: bool = False) -> None:
        """Print a line (unless quiet) and append it to train.log."""
        if not quiet:
            print(message, file=sys.stdout, flush=True)
        with self.log_file.open("a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")
