"""Evaluation of a line run (crnn): CR, AR and CER overall and per writer, the most frequent substitutions.

The run's model reads every line of a split of a text-line conversion; its per-frame scores are
decoded greedily (best path) or by prefix beam search (gntkit.training.ctc), and the readings
are aligned with the transcriptions (gntkit.training.line_metrics: the ICDAR 2013 competition's
correct rate CR and accurate rate AR, and CER = 1 - AR). Writers come from the line keys
("{writer}-P{page}/{line}", the HWDB2.x page names).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gntkit.errors import GntkitError
from gntkit.models.configs import MODEL_CONFIGS
from gntkit.training.config import trainer_module
from gntkit.training.ctc import beam_search, greedy_decode
from gntkit.training.line_data import LineBatches, read_line_split
from gntkit.training.line_metrics import line_metrics

__all__ = ["is_line_run", "decode_lines", "evaluate_line_run", "render_line_markdown", "writer_of"]

EXAMPLES = 10  # lines shown with their reading in the report
LINE_BATCH = 32  # most lines per forward pass: a line holds some 20-40 characters' pixels


def is_line_run(info: dict) -> bool:
    """Whether a run.json describes a line model (crnn)."""
    config = MODEL_CONFIGS.get(info.get("model"))
    return config is not None and config.is_line_model


def writer_of(key: str) -> str:
    """The writer of a line key "{writer}-P{page}/{line}" (the whole page name when it has no "-P")."""
    page = str(key).split("/")[0]
    return page.split("-P")[0]


def decode_lines(log_probs, frames, blank: int, beam: int | None = None) -> list[list[int]]:
    """Class ids of each line of a batch: greedy decoding, or prefix beam search of width `beam`."""
    if beam is None:
        return greedy_decode(log_probs, blank, frames)
    return [ids for ids, _ in beam_search(log_probs, blank, beam, frames)]


def _check_fits(lines, info: dict, data_dir, split: str) -> None:
    if lines.num_classes != info["num_classes"]:
        raise GntkitError(f"{data_dir}: the run was trained on {info['num_classes']} classes, found {lines.num_classes} "
                          f"in split {split!r}; evaluate with lines converted with the run's charset.")
    height = int(lines.images[0].shape[0]) if len(lines) else info["image_size"]
    if height != info["image_size"]:
        raise GntkitError(f"{data_dir}: the run reads lines {info['image_size']} pixels high, found {height} in split "
                          f"{split!r}; convert with --line-height {info['image_size']}.")


def evaluate_line_run(run, info: dict, data_dir, split: str = "test", batch_size: int = 64, checkpoint: str = "best",
                      device: str = "auto", write: bool = True, report_name: str = "report",
                      beam: int | None = None) -> dict:
    """Read every line of a split with a line run's model; return (and write) the report.

    Args:
        run: the RunFolder; info: its run.json.
        data_dir, split: a text-line conversion and the split to read.
        batch_size, checkpoint, device, write, report_name: as gntkit.training.evaluation.evaluate_run.
        beam: None for greedy decoding, or the width of a prefix beam search.

    Returns:
        gntkit.training.line_metrics.line_metrics' dict (cer, correct_rate, accurate_rate, per_writer,
        top_substitutions, ...) with the context: run, data, split, decoding, examples, timing.

    Raises:
        GntkitError: not a line run, a bad beam width, or lines of another charset size or height.
    """
    if not is_line_run(info):
        raise GntkitError(f"{run.path}: beam search decodes text lines, found a run of {info.get('model')} "
                          "(single characters): evaluate without --beam.")
    if beam is not None and (not isinstance(beam, int) or isinstance(beam, bool) or beam < 1):
        raise GntkitError(f"beam must be a whole number of at least 1, found {beam!r}.")
    lines = read_line_split(data_dir, split)
    _check_fits(lines, info, data_dir, split)
    batch_size = min(batch_size, LINE_BATCH)
    classes = run.read_classes()
    module = trainer_module(info["config"]["framework"])
    model, _ = module.load_run_model(run.path, checkpoint, device)
    start = time.perf_counter()
    references, hypotheses = [], []
    for log_probs, frames, (labels, lengths) in module.line_log_probs(model, LineBatches(lines, batch_size, False)):
        for ids, label, length in zip(decode_lines(log_probs, frames, info["num_classes"], beam), labels, lengths):
            references.append([classes[i] for i in label[:int(length)]])
            hypotheses.append([classes[i] for i in ids])
    seconds = time.perf_counter() - start
    report = line_metrics(references, hypotheses, [writer_of(k) for k in lines.keys], top=20)
    report["top_substitutions"] = [{"true": t, "read": r, "count": c} for t, r, c in report["top_substitutions"]]
    report.update(run_dir=str(run.path), data_dir=str(data_dir), split=split, checkpoint=checkpoint,
                  framework=info["config"]["framework"], model=info.get("model"),
                  decoding="greedy" if beam is None else f"beam {beam}", seconds=round(seconds, 3),
                  lines_per_second=round(len(references) / max(seconds, 1e-9), 1),
                  examples=[{"key": k, "truth": "".join(t), "read": "".join(h)}
                            for k, t, h in list(zip(lines.keys, references, hypotheses))[:EXAMPLES]])
    if write:
        for suffix, text in ((".json", json.dumps(report, ensure_ascii=False, indent=1) + "\n"),
                             (".md", render_line_markdown(report))):
            path = Path(run.path) / f"{report_name}{suffix}"
            path.with_name(path.name + ".partial").write_text(text, encoding="utf-8")
            os.replace(path.with_name(path.name + ".partial"), path)
    return report


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_line_markdown(report: dict) -> str:
    """report.md of a line run: the rates, per writer, the most frequent substitutions, a few readings."""
    out = [f"# Evaluation: {report.get('model')} on {report.get('split')} ({report.get('decoding')} decoding)", "",
           "| | |", "|---|---|", f"| lines | {report['lines']:,} |", f"| characters | {report['characters']:,} |",
           f"| CER | {_percent(report['cer'])} |", f"| correct rate CR | {_percent(report['correct_rate'])} |",
           f"| accurate rate AR | {_percent(report['accurate_rate'])} |",
           f"| substitutions / deletions / insertions | {report['substitutions']} / {report['deletions']} / "
           f"{report['insertions']} |", "", "## Per writer", "", "| writer | lines | CER | CR | AR |", "|---|---:|---:|---:|---:|"]
    out += [f"| {w} | {r['lines']} | {_percent(r['cer'])} | {_percent(r['correct_rate'])} | {_percent(r['accurate_rate'])} |"
            for w, r in report.get("per_writer", {}).items()]
    out += ["", "## Most frequent substitutions (true -> read)", "", "| true | read | count |", "|:---:|:---:|---:|"]
    out += [f"| {s['true']} | {s['read']} | {s['count']} |" for s in report["top_substitutions"]]
    out += ["", "## Readings", "", "| line | truth | read |", "|---|---|---|"]
    out += [f"| {e['key']} | {e['truth']} | {e['read']} |" for e in report["examples"]]
    return "\n".join(out) + "\n"
