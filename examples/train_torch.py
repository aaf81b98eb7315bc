"""VGG19 on CASIA HWDB1.1 with PyTorch: convert, train, evaluate, predict, export.

With the real data (see docs/training.md for the downloads):

    python examples/train_torch.py --hwdb ~/casia      # holds Gnt1.1TrainPart1.zip,
                                                         # Gnt1.1TrainPart2.zip, Gnt1.1Test.zip
    torchrun --nproc_per_node=4 examples/train_torch.py --hwdb ~/casia   # 4 GPUs, DDP

Without it (--demo), the same steps run on a small generated corpus in the real GNT layout
(20 classes, writers numbered like HWDB1.1), with a narrow VGG so that a CPU finishes in a
few minutes. The demo shows the workflow; its accuracy says nothing about HWDB1.1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gntkit.training as training
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.convert import convert


def prepare_data(args) -> Path:
    """Convert once: HWDB1.1 writer split (train 1001-1240, test 1241-1300), 5% of the train
    writers held out as 'val' for model selection, so the test split stays untouched."""
    data = args.work / f"hwdb1.1-{args.size}"
    if (data / "gntkit.json").is_file():
        return data
    if args.demo:
        from gntkit.tools.synth import write_corpus

        sources = [args.work / "gnt-train", args.work / "gnt-test"]
        write_corpus(sources[0], writers=12, first_writer=1001, num_classes=20, samples_per_class=4, seed=1)
        write_corpus(sources[1], writers=3, first_writer=1241, num_classes=20, samples_per_class=4, seed=2)
        val_fraction, charset = 0.2, "data"
    else:
        sources = [args.hwdb / name for name in ("Gnt1.1TrainPart1.zip", "Gnt1.1TrainPart2.zip", "Gnt1.1Test.zip")]
        missing = [str(s) for s in sources if not s.is_file()]
        if missing:
            raise SystemExit(f"missing download(s): {', '.join(missing)} (see docs/training.md)")
        val_fraction, charset = 0.05, "gb2312-1"  # the 3,755 GB2312 level-1 classes
    convert(sources, data, to="tfrecord", split="hwdb1.1", val_fraction=val_fraction, charset=charset,
            preprocess=Preprocess(size=args.size), progress=True)
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--hwdb", type=Path, help="folder with the three Gnt1.1 zips")
    where.add_argument("--demo", action="store_true", help="generated data, narrow model, CPU-sized")
    parser.add_argument("--work", type=Path, default=Path("hwdb-work"), help="shards and runs go here")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("images", nargs="*", type=Path, help="your own character images to recognise")
    args = parser.parse_args(argv)
    main_process = int(os.environ.get("RANK", "0")) == 0

    args.work.mkdir(parents=True, exist_ok=True)
    if main_process:
        data = prepare_data(args)
    else:  # other torchrun processes wait for rank 0's conversion
        data = args.work / f"hwdb1.1-{args.size}"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if __import__("torch").cuda.is_available() else "gloo")
        dist.barrier()  # the trainer reuses this process group

    options = dict(model="vgg19", epochs=args.epochs, batch_size=args.batch_size, optimizer="sgd", lr=0.02,
                   weight_decay=5e-4, schedule="cosine", warmup_epochs=1, label_smoothing=0.1, augment=True,
                   early_stopping=8)
    if args.demo:  # VGG19's layers at 1/8 width with batch norm: trains on a CPU
        options.update(model="vgg19_bn", width=0.125, epochs=min(args.epochs, 15), batch_size=32, lr=0.05,
                       label_smoothing=0.0, augment=False, early_stopping=None)
    run_dir = args.work / "run-torch-vgg19"
    summary = training.train(data, run_dir, framework="torch", resume=args.resume,
                             overwrite=not args.resume and args.demo, **options)
    if not main_process:
        return
    print(f"best validation accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}")

    report = training.evaluate(run_dir, data, split="test")
    print(f"test: top-1 {100 * report['top1_accuracy']:.2f}%  top-5 {100 * report['topk_accuracy']:.2f}% "
          f"on {report['samples']:,} samples; report in {run_dir / 'report.md'}")
    for pair in report["confused_pairs"][:5]:
        print(f"  {pair['true']} read as {pair['predicted']}: {pair['count']} times")

    if args.images:
        for result in training.predict(run_dir, args.images, top_k=5):
            print(result["image"], " ".join(f"{p['character']}:{p['probability']:.3f}" for p in result["predictions"]))

    path = training.export(run_dir, overwrite=True)  # TorchScript; format="onnx" with onnx installed
    print(f"exported {path} (load with torch.jit.load; input uint8 (N, {args.size}, {args.size}))")


if __name__ == "__main__":
    main()
