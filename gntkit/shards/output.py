"""Stage 2 of a conversion: the output folder and the shards of each split.

`OutputFolder` prepares the folder (or resumes from its journal of finished shards) and gives
shards their final `-of-N` names; `SplitOutput` rolls one split's samples over shards by
count or size, skipping the shards a resumed run has already; `split_outputs` makes one per
split of a plan, each saving the journal as it finishes a shard.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

import gntkit
from gntkit.errors import GntkitError, OutputExistsError
from gntkit.samples.batch import SampleBatch
from gntkit.shards.digest import shard_size
from gntkit.shards.manifest import JOURNAL, MANIFEST, check_file_name, manifest_path, read_json, shard_name, write_json_atomic
from gntkit.shards.plan import ConversionPlan
from gntkit.shards.registry import OutputFormat, output_format

# Rough per-record overhead (keys, labels, framing) used to size shards by bytes.
_RECORD_OVERHEAD = 96
# Names an "exists and is not empty" message lists before "and N more".
_LISTED_ENTRIES = 5


class ConversionComplete(OutputExistsError):
    """A resumed conversion whose folder is already complete: nothing to do. `exit_code` 0
    tells the command line this is success, not a failure."""

    exit_code = 0


class SplitOutput:
    """Rolls one split's samples over shards by count or size; skips shards the journal has.

    Args:
        split: the split's name; out_dir, name, fmt: where shards go and how they are named.
        writer_class / attrs / compression: the format's ShardWriter and what it is opened with.
        shard_records / shard_bytes: start a new shard after this many records / bytes (None: no limit).
        finished: the journal's entries of this split's finished shards, in order (replayed, not written).
        on_shard_done: called each time a new shard is finished.
    """

    def __init__(self, split, *, out_dir, name, fmt, writer_class, attrs, compression, shard_records, shard_bytes, finished, on_shard_done):
        self.split = split
        self.out_dir, self.name, self.fmt = out_dir, name, fmt
        self.writer_class, self.attrs, self.compression = writer_class, attrs, compression
        self.shard_records, self.shard_bytes = shard_records, shard_bytes
        self.finished = finished  # shard entries from the journal, in order
        self.on_shard_done = on_shard_done
        self.shards: list[dict] = []
        self.index = 0
        self.writer = None
        self.count = 0
        self.size = 0
        self.num_records = 0
        self.class_counts: np.ndarray | None = None

    def _room(self) -> int:
        room = self.shard_records - self.count if self.shard_records else 1 << 62
        return max(room, 0)

    def _full(self) -> bool:
        return (self.shard_records and self.count >= self.shard_records) or (self.shard_bytes and self.size >= self.shard_bytes)

    def _open(self):
        if self.index < len(self.finished):
            self.writer = None  # replaying a shard that is already on disk
            return
        path = self.out_dir / shard_name(self.name, self.split, self.fmt, self.index)
        self.writer = self.writer_class(str(path), split=self.split, attrs=self.attrs, compression=self.compression, compute_sha256=False)

    def _close(self):
        if self.index < len(self.finished):
            entry = self.finished[self.index]
            if entry["records"] != self.count:
                raise GntkitError(
                    f"{entry['file']}: the journal says {entry['records']} records, the replayed stream gives {self.count}; "
                    "the sources or settings changed since the interrupted run: start again with --overwrite."
                )
        else:
            info = self.writer.close()
            entry = {"file": shard_name(self.name, self.split, self.fmt, self.index), "records": int(info["records"]),
                     "bytes": int(info["bytes"]), "sha256": info["sha256"], "index": info.get("index")}
        self.shards.append(entry)
        if len(self.shards) > len(self.finished):
            self.on_shard_done()
        self.writer = None
        self.index += 1
        self.count = 0
        self.size = 0

    def write(self, batch: SampleBatch, num_classes: int) -> None:
        """Add a batch to the split: class counts, and its samples to the current shard(s)."""
        # Text lines have no single class (label -1): count the characters of their sequences.
        labels = batch.meta["label_sequence"] if "label_sequence" in batch.meta else batch.labels
        counts = np.bincount(labels, minlength=num_classes)
        self.class_counts = counts if self.class_counts is None else self.class_counts + counts
        self.num_records += len(batch)
        per_record = (_RECORD_OVERHEAD + np.diff(batch.pixel_offsets) if batch.raw
                      else np.full(len(batch), _RECORD_OVERHEAD + batch.images[0].size))
        start = 0
        while start < len(batch):
            if self.count == 0 and (self.writer is None):
                self._open()
            end = min(len(batch), start + self._room())
            if self.shard_bytes:
                cumulative = self.size + np.cumsum(per_record[start:end])
                over = np.flatnonzero(cumulative >= self.shard_bytes)
                if over.size:
                    end = start + int(over[0]) + 1
            if self.writer is not None:
                self.writer.write(batch.slice(start, end) if (start, end) != (0, len(batch)) else batch)
            self.count += end - start
            self.size += int(per_record[start:end].sum())
            start = end
            if self._full():
                self._close()

    def finish(self) -> None:
        """Close the last shard, if it holds samples."""
        if self.count:
            self._close()

    def abort(self) -> None:
        """Remove the unfinished shard."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None



class OutputFolder:
    """The output folder's life: prepare (or resume), the journal of finished shards, final names.

    Args:
        path: the folder.
        key: the plan's settings key (a resumed run must have the same).
        fmt: the output format (its shards may be folders, OutputFormat.folder); default TFRecord's kind, one file each.
    """

    def __init__(self, path: Path, key: str, fmt: str | OutputFormat = "tfrecord"):
        self.path = Path(path)
        self.key = key
        self.fmt = output_format(fmt)
        self.journal_path = self.path / JOURNAL

    def prepare(self, overwrite: bool, resume: bool) -> dict:
        """Create or clear the folder; return the journal's finished shards per split.

        A folder holding nothing but the journal of a run that finished no shard (one that
        failed early) is taken as empty.

        Raises:
            ConversionComplete: resume of a folder whose conversion is complete.
            OutputExistsError / GntkitError: a folder that must not be touched (the message
                lists what it holds), a journal of other settings, or a damaged journal.
        """
        out_dir = self.path
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputExistsError(f"{out_dir}: expected an output folder, found a file.")
        if out_dir.exists() and self._only_an_empty_journal():
            self.journal_path.unlink()
        if out_dir.exists() and any(out_dir.iterdir()):
            if resume and self.journal_path.is_file():
                return self._resume()
            manifest = manifest_path(out_dir)
            if resume and manifest is not None:
                raise ConversionComplete(f"{out_dir}: this conversion is already complete ({manifest.name} exists); nothing to resume.")
            if not overwrite:
                hint = " or --resume to finish the interrupted run" if self.journal_path.is_file() else ""
                raise OutputExistsError(f"{out_dir}: the output folder exists and is not empty (it holds {self._contents()}): "
                                        f"pass --overwrite to replace it{hint}.")
            if manifest is None and not self.journal_path.is_file():
                raise OutputExistsError(
                    f"{out_dir}: the folder exists and is not a gntkit output (no {MANIFEST} or journal; it holds {self._contents()}), "
                    "so --overwrite will not delete it: choose another folder."
                )
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {}

    def _only_an_empty_journal(self) -> bool:
        """True when the folder holds only gntkit's journal, and it lists no finished shard."""
        if [entry.name for entry in self.path.iterdir()] != [JOURNAL]:
            return False
        try:
            shards = read_json(self.journal_path, "a gntkit resume journal").get("shards")
        except GntkitError:
            return False  # a damaged journal is reported where it is read
        return isinstance(shards, dict) and all(entries == [] for entries in shards.values())

    def _contents(self) -> str:
        """What the folder holds, hidden entries included: a few names and a count."""
        names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in self.path.iterdir())
        listed = ", ".join(names[:_LISTED_ENTRIES])
        more = f" and {len(names) - _LISTED_ENTRIES} more" if len(names) > _LISTED_ENTRIES else ""
        return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}: {listed}{more}"

    def _resume(self) -> dict:
        journal = read_json(self.journal_path, "a gntkit resume journal")
        shards = journal.get("shards")
        if not isinstance(shards, dict) or not all(
                isinstance(v, list) and all(isinstance(e, dict) and {"file", "bytes", "records"} <= e.keys() for e in v)
                for v in shards.values()):
            raise GntkitError(f"{self.journal_path}: expected a resume journal listing finished shards (file, bytes, records), "
                              "found a damaged one: use --overwrite to start again.")
        if journal.get("settings_key") != self.key:
            raise GntkitError(
                f"{self.path}: the interrupted run there used other sources or settings, so it cannot be resumed: "
                "use the same command, or --overwrite to start again."
            )
        for entries in shards.values():
            for entry in entries:
                path = self.path / check_file_name(entry["file"], self.journal_path, "a finished shard's name")
                size = shard_size(path, self.fmt)
                if size != entry["bytes"]:
                    found = f"no {'folder' if self.fmt.folder else 'file'}" if size is None else f"{size} bytes"
                    raise GntkitError(f"{path}: the journal lists this finished shard ({entry['bytes']} bytes) but found {found}: "
                                      "use --overwrite to start again.")
        for leftover in self.path.glob("*.partial"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)  # an unfinished folder shard
            else:
                leftover.unlink()
        return shards

    def save_journal(self, shards: dict) -> None:
        """Record the finished shards of every split (written atomically)."""
        write_json_atomic(self.journal_path, {"settings_key": self.key, "shards": shards})

    def final_names(self, name: str, split: str, fmt: OutputFormat, shards: list[dict]) -> None:
        """Rename a split's shards (and indexes) to `...-of-N` names; updates the entries."""
        total = len(shards)
        for i, entry in enumerate(shards):
            final = shard_name(name, split, fmt, i, total)
            os.replace(self.path / entry["file"], self.path / final)
            if entry.get("index"):
                index_final = final + ".index.npy"
                os.replace(self.path / entry["index"], self.path / index_final)
                entry["index"] = index_final
            entry["file"] = final

    def finish(self, manifest: dict) -> None:
        """Write the manifest (last, atomically) and remove the journal."""
        write_json_atomic(self.path / MANIFEST, manifest)
        self.journal_path.unlink(missing_ok=True)



def split_outputs(plan: ConversionPlan, folder: OutputFolder, finished: dict) -> dict:
    """One SplitOutput per split, each saving the journal when it finishes a shard."""
    attrs = {"gntkit_version": gntkit.__version__, "charset": plan.charset.to_json(), "preprocess": plan.preprocess.to_json(),
             **({"strokes": True} if plan.options.get("strokes") else {}), **({"lines": True} if plan.options.get("lines") else {})}
    writer_class = plan.fmt.writer_class()
    outputs: dict[str, SplitOutput] = {}

    def save_journal():
        folder.save_journal({s: outputs[s].shards if s in outputs else list(finished.get(s, [])) for s in plan.split.names})

    for split_name in plan.split.names:
        outputs[split_name] = SplitOutput(
            split_name, out_dir=folder.path, name=plan.name, fmt=plan.fmt, writer_class=writer_class, attrs=attrs,
            compression=plan.options["compression"], shard_records=plan.options["shard_records"],
            shard_bytes=plan.options["shard_bytes"], finished=finished.get(split_name, []), on_shard_done=save_journal,
        )
    save_journal()
    return outputs
