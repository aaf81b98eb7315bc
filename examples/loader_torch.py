"""A complete PyTorch training loop on gntkit shards: make_loader, on-device augmentation, DDP, resume.

    python examples/loader_torch.py                      # synthetic corpus, converted to HDF5 in /tmp
    python examples/loader_torch.py --data hwdb-hdf5 --epochs 20 --device cuda --workers 2
    torchrun --nproc_per_node 2 examples/loader_torch.py --data hwdb-hdf5   # DDP: ranks from torch.distributed

The model is deliberately tiny. The reference VGG trainers (`gntkit train`, gntkit/training/
torch_trainer/, models in gntkit/models/torch.py) use the same loaders with everything a real
run needs (mixed precision, schedules, logging, evaluation reports).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import gntkit.datasets as datasets
from gntkit.datasets.torch import make_loader, random_affine, to_float


def synthetic_shards(folder: Path, to: str = "hdf5") -> Path:
    """Write a small synthetic corpus (20 classes, 6 writers) and convert it: train = 5 writers, test = 1."""
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    out = folder / to
    if not (out / "gntkit.json").is_file():
        if not (folder / "gnt").is_dir():
            write_corpus(folder / "gnt", writers=6, num_classes=20, samples_per_class=8, seed=0)
        convert(folder / "gnt", out, to=to, split="train=1001-1005,test=1006", charset="data",
                preprocess=Preprocess(size=32), overwrite=True)
    return out


def tiny_cnn(num_classes: int, image_size: int) -> torch.nn.Module:
    """Two conv blocks and a linear layer: enough to see the loss fall."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * (image_size // 4) ** 2, num_classes),
    )


def evaluate(model, loader, device) -> tuple[float, int]:
    """(accuracy, samples) over a loader built with even="none": every sample counted exactly once."""
    model.eval()
    correct = total = torch.zeros((), device=device, dtype=torch.int64)
    with torch.no_grad():
        for images, labels in loader:
            predictions = model(to_float(images, mean=0.5, std=0.5)).argmax(1)
            correct = correct + (predictions == labels).sum()
            total = total + len(labels)
    if torch.distributed.is_initialized():
        for value in (correct, total):
            torch.distributed.all_reduce(value)
    model.train()
    return correct.item() / max(total.item(), 1), total.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a gntkit convert output folder (default: a synthetic one)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="per rank")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", type=Path, default=Path(tempfile.gettempdir()) / "gntkit-example-torch.pt")
    parser.add_argument("--save-every", type=int, default=20, help="steps between checkpoints (mid-epoch too)")
    args = parser.parse_args()

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
        torch.distributed.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    device = torch.device(args.device)
    main_rank = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    folder = args.data or synthetic_shards(Path(tempfile.gettempdir()) / "gntkit-example")

    train_set = datasets.open(folder, "train")
    # rank / world_size come from torch.distributed when it is initialised; every rank gets
    # ceil(n / world_size) samples (even="pad"), so all ranks take the same number of steps.
    train = make_loader(train_set, batch_size=args.batch_size, shuffle=True, seed=0, num_workers=args.workers, device=device)
    test_split = "test" if "test" in train_set.splits else None
    test = make_loader(folder, test_split, batch_size=256, shuffle=False, even="none", device=device) if test_split else None

    model = tiny_cnn(train_set.num_classes, train_set.image_size).to(device)
    if torch.distributed.is_initialized():
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)

    if args.checkpoint.is_file():  # resume: model, optimizer and the loader's place in its epoch
        state = torch.load(args.checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        train.load_state_dict(state["loader"])
        if main_rank:
            print(f"resumed at epoch {train.epoch}, batch {train.batch}")

    generator = torch.Generator(device=device).manual_seed(1234 + train.epoch)
    step = 0
    while train.epoch < args.epochs:  # a completed pass advances train.epoch by itself
        epoch, losses = train.epoch, []
        for images, labels in train:  # uint8 (B, S, S) and int64 (B,), already on the device
            x = random_affine(to_float(images, mean=0.5, std=0.5), fill=-1.0, generator=generator)  # background 0 -> -1
            loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if main_rank and step % args.save_every == 0:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "loader": train.state_dict()},
                           args.checkpoint)
        message = f"epoch {epoch}: loss {sum(losses) / max(len(losses), 1):.3f}"
        if test is not None:
            accuracy, samples = evaluate(model, test, device)
            message += f", test accuracy {accuracy:.3f} on {samples} samples"
        if main_rank:
            print(message, flush=True)
    if main_rank:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "loader": train.state_dict()}, args.checkpoint)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
