"""Figures of a run, drawn with matplotlib (headless Agg backend): training curves and evaluation charts.

Characters are labelled with a CJK font when one is installed (Noto Sans CJK,
WenQuanYi, AR PL; on Debian `apt install fonts-noto-cjk` or
`fonts-wqy-microhei`), and with their GB tag code otherwise, so a figure never
shows empty boxes.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

from gntkit.errors import require

__all__ = ["draw_curves", "draw_evaluation", "cjk_font", "character_label"]

# Families tried in order; the first one matplotlib finds is used for characters.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "AR PL UKai CN", "AR PL UMing CN", "AR PL UKai", "AR PL UMing")
TRAIN_COLOR, VAL_COLOR = "#1f77b4", "#d62728"  # matplotlib's tab:blue and tab:red


def _pyplot():
    # matplotlib is imported only when a figure is drawn; Agg needs no display.
    matplotlib = require("matplotlib", "figures", "Drawing training curves")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """Name of an installed font family that covers Chinese characters, or None."""
    _pyplot()
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((family for family in CJK_FAMILIES if family in installed), None)


def character_label(character: str, tag_code: int | None = None) -> str:
    """How a class is labelled in a figure: the character with a CJK font, else its tag code (or escape)."""
    if cjk_font() is not None or character.isascii():
        return character
    if tag_code is not None:
        return f"0x{tag_code:04X}"
    try:
        return "0x" + character.encode("gb18030").hex().upper()
    except UnicodeEncodeError:
        return f"U+{ord(character[0]):04X}" if character else "?"


def _save(fig, path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    return path


def _series(rows, key):
    pairs = [(r["epoch"], r.get(key)) for r in rows]
    return [(e, v) for e, v in pairs if v is not None and math.isfinite(v)]


def draw_curves(rows: list[dict], path, title: str = "") -> Path:
    """Draw loss and accuracy per epoch (train and validation) as a 1000 x 420 PNG.

    Args:
        rows: metrics rows as written to metrics.csv.
        path: PNG file to write (atomically).
        title: drawn above the panels (model and run name).

    Returns:
        The path written.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    try:
        for ax, (name, suffix) in zip(axes, (("loss", "loss"), ("accuracy", "accuracy"))):
            for split, color, label in (("train", TRAIN_COLOR, "train"), ("val", VAL_COLOR, "validation")):
                points = _series(rows, f"{split}_{suffix}")
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, "-o", color=color, linewidth=2, markersize=4, label=label)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.grid(True, color="#e6e6e6")
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[1].set_ylim(0, 1)
        axes[1].yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        axes[1].legend(loc="lower right")
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontsize=10)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def draw_evaluation(report: dict, path, worst: int = 20, pairs: int = 15) -> Path:
    """Draw an evaluation report: the classes with the lowest accuracy and the most confused pairs.

    Args:
        report: a dict from gntkit.training.evaluation.compute_report.
        path: PNG file to write.
        worst: classes shown in the per-class panel.
        pairs: confused pairs shown.

    Returns:
        The path written.
    """
    plt = _pyplot()
    font = cjk_font()
    per_class = sorted((r for r in report["per_class"] if r["samples"]),
                       key=lambda r: (r["accuracy"], -r["samples"]))[:worst]
    confused = report["confused_pairs"][:pairs]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * max(len(per_class), len(confused), 6) + 1.6), dpi=100)
    try:
        ax = axes[0]
        labels = [character_label(r["character"]) for r in per_class]
        ax.barh(range(len(per_class)), [100 * r["accuracy"] for r in per_class], color=TRAIN_COLOR)
        ax.set_yticks(range(len(per_class)), labels, fontfamily=font or "sans-serif")
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("accuracy (%)")
        ax.set_title(f"lowest per-class accuracy (of {len(report['per_class'])} classes)")
        ax = axes[1]
        labels = [f"{character_label(p['true'])} -> {character_label(p['predicted'])}" for p in confused]
        ax.barh(range(len(confused)), [p["count"] for p in confused], color=VAL_COLOR)
        ax.set_yticks(range(len(confused)), labels, fontfamily=font or "sans-serif")
        ax.invert_yaxis()
        ax.set_xlabel("samples")
        ax.set_title("most confused pairs (true -> predicted)")
        fig.suptitle(f"top-1 {100 * report['top1_accuracy']:.2f}% on {report['samples']:,} samples",
                     x=0.01, ha="left", fontsize=10)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)
