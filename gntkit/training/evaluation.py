"""Evaluation reports: top-1/top-k accuracy, per-class accuracy, most-confused pairs.

Computing the report from logits and labels is framework-free (`EvaluationAccumulator`,
`compute_report`); running the model is delegated to the run's trainer module
(`predict_logits`). `evaluate_run` ties the two together and writes
RUN/report.md and RUN/report.json (or a per-split name when asked).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

import gntkit.datasets as datasets
from gntkit.errors import GntkitError
from gntkit.shards.remote import is_url
from gntkit.training.config import trainer_module
from gntkit.training.figures import draw_evaluation
from gntkit.training.line_evaluation import evaluate_line_run, is_line_run
from gntkit.training.run_folder import RunFolder

__all__ = ["EvaluationAccumulator", "compute_report", "render_markdown", "evaluate_run"]

TOP_ROWS = 20  # rows in the "worst classes" and "most confused pairs" tables


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class EvaluationAccumulator:
    """Collects predictions batch by batch in bounded memory (top-k ids per sample, not the logits).

    Args:
        num_classes: number of classes C of the model.
        top_k: k for the top-k accuracy (clipped to C).

    Raises:
        GntkitError: bad num_classes or top_k, or batches of the wrong shape.
    """

    def __init__(self, num_classes: int, top_k: int = 5):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise GntkitError(f"num_classes must be an integer of at least 2, found {num_classes!r}.")
        if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
            raise GntkitError(f"top_k must be a positive integer, found {top_k!r}.")
        self.num_classes = int(num_classes)
        self.top_k = int(min(top_k, num_classes))
        self._labels: list[np.ndarray] = []
        self._top: list[np.ndarray] = []
        self.loss_sum = 0.0

    def update(self, logits, labels) -> None:
        """Add a batch: logits (B, C) floats, labels (B,) class ids."""
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise GntkitError(f"Logits must be (B, {self.num_classes}), found {logits.shape}.")
        if labels.shape != (logits.shape[0],):
            raise GntkitError(f"Labels must be ({logits.shape[0]},), found {labels.shape}.")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise GntkitError(
                f"Labels must be class ids 0..{self.num_classes - 1}, found {labels.min()}..{labels.max()}."
            )
        labels = labels.astype(np.int64)
        # Stable descending order: ties go to the lower class id.
        top = np.argsort(-logits, axis=1, kind="stable")[:, : self.top_k].astype(np.int32)
        self.loss_sum += float(-_log_softmax(logits)[np.arange(len(labels)), labels].sum())
        self._labels.append(labels)
        self._top.append(top)

    @property
    def count(self) -> int:
        """Samples added so far."""
        return int(sum(len(x) for x in self._labels))

    def report(self, classes: list[str] | None = None, **context) -> dict:
        """The report dict (see `compute_report`); `context` entries are added at the top."""
        if self.count == 0:
            raise GntkitError("Nothing to evaluate: expected at least one sample, found none.")
        labels = np.concatenate(self._labels)
        top = np.concatenate(self._top)
        return _build_report(labels, top, self.loss_sum, self.num_classes, self.top_k, classes, context)


def compute_report(logits, labels, classes: list[str] | None = None, top_k: int = 5, **context) -> dict:
    """Evaluation report from all logits (N, C) and labels (N,) at once.

    Returns:
        dict with samples, top1_accuracy, topk_accuracy (k = top_k), loss (mean
        cross entropy), per_class (one row per class: samples, correct, accuracy),
        worst_classes and confused_pairs (the TOP_ROWS most frequent true ->
        predicted mistakes, with their share of the true class's samples).
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise GntkitError(f"Logits must be 2-D (N, C), found shape {logits.shape}.")
    acc = EvaluationAccumulator(logits.shape[1], top_k)
    acc.update(logits, labels)
    return acc.report(classes, **context)


def _name(classes, i: int) -> str:
    return classes[i] if classes is not None else str(i)


def _build_report(labels, top, loss_sum, num_classes, top_k, classes, context) -> dict:
    if classes is not None and len(classes) != num_classes:
        raise GntkitError(f"Expected {num_classes} class names, found {len(classes)}.")
    n = len(labels)
    pred = top[:, 0].astype(np.int64)
    hit1 = pred == labels
    hitk = (top == labels[:, None]).any(axis=1)
    samples = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels[hit1], minlength=num_classes)
    per_class = []
    for c in range(num_classes):
        per_class.append({
            "class_id": c,
            "character": _name(classes, c),
            "samples": int(samples[c]),
            "correct": int(correct[c]),
            "accuracy": round(float(correct[c] / samples[c]), 6) if samples[c] else None,
        })
    seen = [row for row in per_class if row["samples"]]
    worst = sorted(seen, key=lambda r: (r["accuracy"], -r["samples"], r["class_id"]))[:TOP_ROWS]
    wrong = ~hit1
    pair_codes = labels[wrong] * num_classes + pred[wrong]
    codes, counts = np.unique(pair_codes, return_counts=True)
    order = np.lexsort((codes, -counts))[:TOP_ROWS]
    pairs = []
    for j in order:
        t, p = divmod(int(codes[j]), num_classes)
        pairs.append({
            "true_id": t, "true": _name(classes, t),
            "predicted_id": p, "predicted": _name(classes, p),
            "count": int(counts[j]),
            "share_of_true": round(float(counts[j] / samples[t]), 6),
        })
    report = dict(context)
    report.update({
        "samples": int(n),
        "num_classes": int(num_classes),
        "classes_with_samples": int((samples > 0).sum()),
        "top_k": int(top_k),
        "top1_accuracy": round(float(hit1.mean()), 6),
        "topk_accuracy": round(float(hitk.mean()), 6),
        "loss": round(loss_sum / n, 6),
        "errors": int(wrong.sum()),
        "mean_class_accuracy": round(float(np.mean([r["accuracy"] for r in seen])), 6),
        "worst_classes": worst,
        "confused_pairs": pairs,
        "per_class": per_class,
    })
    return report


def render_markdown(report: dict) -> str:
    """The report as readable markdown (summary, worst classes, most confused pairs)."""
    k = report["top_k"]
    lines = [f"# Evaluation: {report.get('model', 'model')} on {report.get('split', 'data')}", ""]
    facts = [("run", report.get("run_dir")), ("data", report.get("data_dir")), ("split", report.get("split")),
             ("checkpoint", report.get("checkpoint")), ("framework", report.get("framework")),
             ("samples", f"{report['samples']:,}"),
             ("classes", f"{report['num_classes']:,} ({report['classes_with_samples']:,} with samples)"),
             ("top-1 accuracy", f"{100 * report['top1_accuracy']:.2f}%"),
             (f"top-{k} accuracy", f"{100 * report['topk_accuracy']:.2f}%"),
             ("mean per-class accuracy", f"{100 * report['mean_class_accuracy']:.2f}%"),
             ("errors", f"{report['errors']:,}"),
             ("mean cross entropy", f"{report['loss']:.4f}"),
             ("seconds", report.get("seconds"))]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in facts if value is not None]
    lines += ["", f"## Lowest per-class accuracy ({len(report['worst_classes'])} classes)", "",
              "| class id | character | samples | correct | accuracy |", "|---:|:---:|---:|---:|---:|"]
    for r in report["worst_classes"]:
        lines.append(f"| {r['class_id']} | {r['character']} | {r['samples']} | {r['correct']} | "
                     f"{100 * r['accuracy']:.1f}% |")
    lines += ["", "## Most confused pairs (true -> predicted)", ""]
    if report["confused_pairs"]:
        lines += ["| true | predicted | count | share of true class |", "|:---:|:---:|---:|---:|"]
        for p in report["confused_pairs"]:
            lines.append(f"| {p['true']} ({p['true_id']}) | {p['predicted']} ({p['predicted_id']}) | "
                         f"{p['count']} | {100 * p['share_of_true']:.1f}% |")
    else:
        lines.append("No mistakes.")
    lines += ["", "Per-class accuracy for every class is in the JSON report (`per_class`).", ""]
    return "\n".join(lines)


def evaluate_run(run_dir, data_dir, split: str = "test", top_k: int = 5, batch_size: int = 256,
                 checkpoint: str = "best", device: str = "auto", write: bool = True,
                 report_name: str = "report", beam: int | None = None) -> dict:
    """Evaluate a run's model on one split of gntkit shards and write the report (a line run: see evaluate_line_run).

    Args:
        run_dir: a run folder written by gntkit.training.train.
        data_dir: a gntkit shard folder with the same charset and image size.
        split: the split to evaluate ("test" by default).
        top_k: k of the top-k accuracy.
        batch_size: images per forward pass.
        checkpoint: "best" or "last".
        device: torch device name, or "auto"/"cpu"/"gpu" for TensorFlow.
        write: write RUN/{report_name}.md, RUN/{report_name}.json and RUN/{report_name}.png
            (lowest per-class accuracies and most confused pairs, drawn with matplotlib).
        report_name: file stem of the report files.
        beam: line runs only: the width of a CTC prefix beam search (None: greedy decoding).

    Returns:
        The report dict (see `compute_report`), with run, data and timing context.

    Raises:
        GntkitError: not a run folder, a missing split, or shards with another charset or image size.
    """
    if checkpoint not in ("best", "last"):
        raise GntkitError(f"checkpoint must be 'best' or 'last', found {checkpoint!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GntkitError(f"batch_size must be a positive integer, found {batch_size!r}.")
    run = RunFolder(run_dir)
    info = run.read_run_info()
    if is_line_run(info) or beam is not None:  # a line run, or --beam given for a character run (refused there)
        return evaluate_line_run(run, info, data_dir, split, batch_size, checkpoint, device, write, report_name, beam)
    framework = info["config"]["framework"]
    classes = run.read_classes()
    shards = datasets.open(data_dir, split)
    _check_shards_fit(shards, info, classes, data_dir, split)
    module = trainer_module(framework)
    model, _ = module.load_run_model(run_dir, checkpoint, device)
    acc = EvaluationAccumulator(info["num_classes"], top_k)
    start = time.perf_counter()
    batches = shards.iter_batches(batch_size, shuffle=False)
    for logits, labels in module.predict_logits(model, batches):
        acc.update(logits, labels)
    seconds = time.perf_counter() - start
    train_pp = run.read_preprocess()
    notes = []
    if {k: v for k, v in train_pp.items() if k != "steps"} != {k: v for k, v in shards.preprocess.items() if k != "steps"}:
        notes.append("the evaluated shards were preprocessed differently from the training shards")
    report = acc.report(
        classes,
        run_dir=str(run.path), data_dir=str(data_dir) if is_url(data_dir) else str(Path(data_dir)), split=split, checkpoint=checkpoint,
        framework=framework, model=info.get("model"), seconds=round(seconds, 3),
        images_per_second=round(acc.count / max(seconds, 1e-9), 1), notes=notes,
    )
    if write:
        _write_text(run.path / f"{report_name}.json", json.dumps(report, ensure_ascii=False, indent=1) + "\n")
        _write_text(run.path / f"{report_name}.md", render_markdown(report))
        draw_evaluation(report, run.path / f"{report_name}.png")
    return report


def _check_shards_fit(shards, info: dict, classes: list, data_dir, split: str) -> None:
    """Raise GntkitError unless the shards have the run's image size and charset."""
    if shards.image_size != info["image_size"]:
        raise GntkitError(
            f"{data_dir}: the run was trained on {info['image_size']}x{info['image_size']} images, "
            f"found {shards.image_size}x{shards.image_size} images in split {split!r}."
        )
    data_classes = list(shards.charset.characters)
    if data_classes != classes:
        first = next((i for i, (a, b) in enumerate(zip(classes, data_classes)) if a != b),
                     min(len(classes), len(data_classes)))
        raise GntkitError(
            f"{data_dir}: the shards' charset differs from the run's ({len(data_classes)} vs {len(classes)} "
            f"classes, first difference at class {first}); evaluate with shards converted with the same charset."
        )


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
