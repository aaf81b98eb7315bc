"""`gntkit demo`: the main job on a built-in generated sample, no download.

Writes a small synthetic HWDB-style corpus (real GNT layout, -f files with symbols, in a
zip like the CASIA downloads), inspects it, converts it to every registered shard format with
the HWDB-style writer split, verifies every output and draws a preview grid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gntkit.errors import OutputExistsError
from gntkit.samples.inspection import format_inspection, inspect_sources
from gntkit.shards.convert import convert
from gntkit.shards.registry import FORMATS
from gntkit.shards.verify import verify
from gntkit.tools.preview import label_font, preview
from gntkit.tools.synth import write_corpus


def run_demo(out_dir: str | Path, *, writers: int = 8, classes: int = 40, samples_per_class: int = 3,
             workers: int | None = None, font: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Generate a sample corpus, then inspect, convert (to every format of gntkit.shards.registry), verify, preview.

    Args:
        out_dir: folder to create (must not exist or be empty).
        writers / classes / samples_per_class: size of the generated corpus.
        workers: conversion processes (default: all cores).
        font: a font file for the preview's Chinese labels (see gntkit.tools.preview.label_font).
        log: where progress lines go.

    Returns:
        {"corpus": zip path, "outputs": {format: folder}, "preview": png path, "records": n}.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir}: the demo folder exists and is not empty; remove it or name another.")
    label_font(font)  # a font file that cannot be read stops the demo before anything is written
    (corpus,) = write_corpus(out_dir / "download", writers=writers, first_writer=1001, num_classes=classes,
                             samples_per_class=samples_per_class, style="f", num_symbols=10, seed=0, zip_name="Gnt1.1Sample.zip")
    log(f"1. generated {corpus} ({writers} writers, {classes} Chinese + 10 symbol classes)")
    log("2. gntkit inspect:")
    report = inspect_sources(corpus).to_json()
    log("   " + format_inspection(report).replace("\n", "\n   "))
    last_train = 1000 + max(1, writers * 3 // 4)
    split = f"train=1001-{last_train},test={last_train + 1}-{1000 + writers}"
    outputs = {}
    for to in (name for name, fmt in FORMATS.items() if fmt.loadable):  # the formats gntkit trains from
        target = out_dir / f"sample-{to}"
        manifest = convert(corpus, target, to=to, split=split, charset="data", workers=workers,
                           command=f"gntkit convert {corpus} --to {to} --split {split} --charset data --out {target}")
        splits = ", ".join(f"{k} {v['num_records']}" for k, v in manifest["splits"].items())
        log(f"3. converted to {to}: {target} ({splits}; {manifest['stats']['seconds']:.2f} s)")
        summary = verify(target)
        log(f"4. verified {to}: {summary['shards']} shard(s), {summary['records']} records match the manifest")
        outputs[to] = str(target)
    grid = preview(corpus, out_dir / "preview.png", count=40, stages=4, font=font)
    log(f"5. preview grid with preprocessing stages: {grid['path']}")
    if grid["font_notice"]:
        log(f"   note: {grid['font_notice']}")
    trainable = outputs.get("hdf5") or next(iter(outputs.values()))  # every format trains; the hint names HDF5
    log(f"next: gntkit train {trainable} --framework torch --model cnn3 --epochs 5 --optimizer adam --out {out_dir / 'run'}")
    return {"corpus": str(corpus), "outputs": outputs, "preview": grid["path"], "records": report["records"]}
