"""The PyTorch trainer (imports torch): `main()`, `train_one_epoch()`, `validate()`.

The loops take plain iterables of (uint8 images (B, S, S), int64 labels (B,))
batches, numpy arrays or torch tensors; conversion to float (x / 255, one
channel), augmentation and mixed precision happen on the device. `main()` is
the only place that opens shards (through `gntkit.datasets.torch`).

Distributed training: run under `torchrun --nproc_per_node=N` (one process per
GPU); RANK, WORLD_SIZE and LOCAL_RANK come from the environment, gradients are
averaged by DistributedDataParallel (NCCL on GPUs, Gloo on CPUs), metrics are
summed over processes, and only rank 0 writes the run folder. Checkpoints are
read by every process at resume, so multi-node runs need a shared run folder.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training import common
from gntkit.training.common import (
    EarlyStopping,
    RunFolder,
    TrainConfig,
    affine_matrices,
    learning_rate_at,
)

# torch is the one heavy framework of this module; `import gntkit.training` does not load it.
torch = require("torch", "torch", "Training with PyTorch")
F = torch.nn.functional

from gntkit.models.torch import count_parameters, create_model  # noqa: E402  (needs torch first)

__all__ = [
    "main",
    "train_one_epoch",
    "validate",
    "predict_logits",
    "predict_probabilities",
    "load_run_model",
    "resolve_device",
    "Distributed",
]

CHECKPOINT_FORMAT = 1


# --- devices, distribution, precision ------------------------------------------------------

def resolve_device(name: str = "auto", local_rank: int = 0):
    """Turn "auto", "cpu", "cuda", "cuda:1" or "mps" into a torch.device.

    Raises:
        GntkitError: a GPU is asked for and none is available, or the name is unknown.
    """
    if not isinstance(name, str):
        raise GntkitError(f"device must be a string such as 'auto', 'cpu' or 'cuda', found {name!r}.")
    if name == "gpu":  # the TensorFlow spelling, accepted for symmetry
        name = "cuda"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GntkitError(f"Unknown torch device {name!r}: expected auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GntkitError(f"device {name!r} asks for a CUDA GPU, found none on this machine.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise GntkitError(f"device {name!r} asks for Apple MPS, found it unavailable.")
    return device


class Distributed:
    """Process-group facts: rank, world_size, local_rank, device; no-ops when not distributed.

    Created from the torchrun environment (WORLD_SIZE > 1 starts a process group).
    """

    def __init__(self, device_name: str = "auto"):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device_name, self.local_rank)
        self.started_group = False
        if self.world_size > 1:
            dist = torch.distributed
            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                if self.device.type == "cuda":
                    torch.cuda.set_device(self.device)
                dist.init_process_group(backend=backend)
                self.started_group = True

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the run folder."""
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum a few numbers over all processes."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def run_on_main(self, action):
        """Run `action()` on rank 0; a GntkitError it raises is raised on every process (same class)."""
        problem = None
        if self.is_main:
            try:
                action()
            except GntkitError as exc:
                if self.world_size == 1:
                    raise
                problem = exc
        if self.world_size > 1:
            box = [problem]
            torch.distributed.broadcast_object_list(box, src=0)
            problem = box[0]
        if problem is not None:
            raise problem

    def barrier(self) -> None:
        """Wait for every process (no-op when not distributed)."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        """Destroy the process group if this object started it."""
        if self.started_group:
            torch.distributed.destroy_process_group()


def precision_setup(requested: str, device):
    """Return (autocast dtype or None, GradScaler or None, resolved name) for a device."""
    accelerator = device.type == "cuda"
    bf16 = accelerator and torch.cuda.is_bf16_supported()
    resolved = common.resolve_precision(requested, accelerator, bf16)
    if resolved == "fp32":
        return None, None, resolved
    if resolved == "bf16":
        return torch.bfloat16, None, resolved
    return torch.float16, torch.amp.GradScaler("cuda"), resolved


def _autocast(device, dtype):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_model_input(images, device, channels_last: bool = False):
    """uint8 images (B, S, S) (numpy or tensor) -> float (B, 1, S, S) in [0, 1] on `device`.

    The uint8 batch travels to the device and is converted there (4x less to copy).

    Raises:
        GntkitError: the batch is not uint8 (B, S, S).
    """
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.dim() != 3:
        raise GntkitError(f"Image batches must be uint8 (B, S, S), found {x.dtype} {tuple(x.shape)}.")
    x = x.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment_batch(x, matrices):
    """Apply (B, 2, 3) normalised output->input affines to float images (B, C, S, S) on their device."""
    theta = torch.as_tensor(matrices, dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def smoothed_cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean cross entropy in float32 with torch's label smoothing."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def build_optimizer(model, config: TrainConfig):
    """SGD (momentum) / Adam / AdamW with weight decay on weights only (not biases or batch norm)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    lr = config.peak_lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.AdamW(groups, lr=lr)


def _seed_epoch(config: TrainConfig, epoch: int, rank: int) -> None:
    # Dropout and other torch randomness are reseeded every epoch so a resumed run
    # repeats exactly what an uninterrupted one would have done.
    torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, rank]).generate_state(1)[0]))


# --- the loops ------------------------------------------------------------------------------

def train_one_epoch(model, batches, optimizer, config: TrainConfig, *, epoch: int, steps_per_epoch: int,
                    device, autocast_dtype=None, scaler=None, channels_last: bool = False,
                    dist: Distributed | None = None) -> dict:
    """Train one epoch over `batches`; return {"loss", "accuracy", "images", "seconds", "lr", "steps"}.

    The learning rate is set before every step from `learning_rate_at` (global
    step = epoch * steps_per_epoch + i). Loss and accuracy are summed on the
    device and read once at the end (no per-step synchronisation).

    Raises:
        GntkitError: the loss became NaN or infinite (the run diverged).
    """
    rank = dist.rank if dist else 0
    model.train()
    _seed_epoch(config, epoch, rank)
    aug_rng = np.random.default_rng([config.seed, epoch, rank, 7]) if config.augment else None
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    lr = learning_rate_at(config, epoch * steps_per_epoch, steps_per_epoch)
    start = time.perf_counter()
    steps = 0
    for i, (images, labels) in enumerate(batches):
        lr = learning_rate_at(config, epoch * steps_per_epoch + i, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = to_model_input(images, device, channels_last)
        y = torch.as_tensor(labels).to(device, non_blocking=True).long()
        if aug_rng is not None:
            x = augment_batch(x, affine_matrices(aug_rng, x.shape[0]))
        with _autocast(device, autocast_dtype):
            logits = model(x)
        loss = smoothed_cross_entropy(logits, y, config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        n = y.shape[0]
        loss_sum += loss.detach().double() * n
        correct += (logits.detach().argmax(1) == y).sum()
        count += n
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    total_loss, total_correct, total_count = (dist.all_sum([loss_sum.item(), correct.item(), count])
                                              if dist else [loss_sum.item(), correct.item(), count])
    if total_count == 0:
        raise GntkitError(f"Epoch {epoch + 1} saw no training batches: expected a non-empty training split.")
    loss = total_loss / total_count
    if not math.isfinite(loss):
        raise GntkitError(
            f"Training diverged in epoch {epoch + 1}: expected a finite loss, found {loss}; "
            f"lower the learning rate (now {config.peak_lr:g}) or use a batch-norm model."
        )
    return {"loss": loss, "accuracy": total_correct / total_count, "images": int(total_count),
            "seconds": seconds, "lr": lr, "steps": steps}


@torch.no_grad()
def validate(model, batches, *, device, autocast_dtype=None, channels_last: bool = False,
             dist: Distributed | None = None, top_k: int = 5) -> dict:
    """Evaluate on `batches`; return {"loss", "accuracy", "top5", "images"} (plain cross entropy)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    correct_k = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for images, labels in batches:
        x = to_model_input(images, device, channels_last)
        y = torch.as_tensor(labels).to(device, non_blocking=True).long()
        with _autocast(device, autocast_dtype):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        k = min(top_k, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        correct += (top[:, 0] == y).sum()
        correct_k += (top == y[:, None]).any(dim=1).sum()
        count += y.shape[0]
    values = [loss_sum.item(), correct.item(), correct_k.item(), count]
    total_loss, total_correct, total_k, total = dist.all_sum(values) if dist else values
    if total == 0:
        raise GntkitError("The validation split has no samples: expected at least one batch.")
    return {"loss": total_loss / total, "accuracy": total_correct / total, "top5": total_k / total,
            "images": int(total)}


@torch.no_grad()
def predict_logits(model, batches, device=None, autocast_dtype=None, channels_last: bool = False):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    device = device or next(model.parameters()).device
    model.eval()
    for images, labels in batches:
        x = to_model_input(images, device, channels_last)
        with _autocast(device, autocast_dtype):
            logits = model(x)
        yield logits.float().cpu().numpy(), np.asarray(torch.as_tensor(labels).cpu().numpy(), np.int64)


@torch.no_grad()
def predict_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities float32 (N, C) for uint8 images (N, S, S)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(np.ascontiguousarray(images[start:start + batch_size]), device)
        out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# --- checkpoints ------------------------------------------------------------------------------

def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Path, model, optimizer=None, scaler=None, state: dict | None = None) -> None:
    """Write a checkpoint atomically (model weights; optimizer and scaler when given; trainer state)."""
    payload = {"format": CHECKPOINT_FORMAT, "model": _unwrap(model).state_dict(), "state": state or {}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    tmp = path.with_name(path.name + ".partial")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint.

    Raises:
        GntkitError: missing or not a gntkit torch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise GntkitError(f"{path}: expected a torch checkpoint, found no file.")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise GntkitError(f"{path}: expected a torch checkpoint, found an unreadable file ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GntkitError(f"{path}: expected a gntkit torch checkpoint (format {CHECKPOINT_FORMAT}), found something else.")
    return payload


def build_model_for_run(info: dict):
    """Create the (untrained) model a run.json describes."""
    config = TrainConfig.from_json(info["config"])
    return create_model(config.model, info["num_classes"], info["image_size"], info["channels"],
                        batch_norm=config.batch_norm, width=config.width)


def load_run_model(run_dir, which: str = "best", device: str = "cpu"):
    """Load a trained torch model from a run folder, in eval mode on `device`.

    Args:
        run_dir: a folder written by gntkit.training.train(framework="torch").
        which: "best" (falls back to "last" when no best exists) or "last".
        device: torch device name.

    Returns:
        (model, run info dict from run.json).

    Raises:
        GntkitError: not a torch run, or no checkpoint.
    """
    run = RunFolder(run_dir, "torch")
    info = run.read_run_info_of_framework()
    path = run.checkpoint_to_load(which)
    device = resolve_device(device)
    model = build_model_for_run(info)
    model.load_state_dict(load_checkpoint(path, "cpu")["model"])
    return model.to(device).eval(), info


# --- the run ------------------------------------------------------------------------------------

def _open_loaders(config: TrainConfig, data_dir, dist: Distributed):
    """Open train/validation loaders over shards; return (train, val, data facts)."""
    import gntkit.datasets as datasets
    from gntkit.datasets import torch as datasets_torch

    train_set = datasets.open(data_dir, config.train_split)
    available = _available_splits(data_dir)
    val_split = common.pick_val_split(available, config.val_split, config.train_split)
    per_rank = max(1, config.batch_size // dist.world_size)
    eval_batch = max(1, (config.eval_batch_size or 2 * config.batch_size) // dist.world_size)
    train = datasets_torch.make_loader(
        data_dir, config.train_split, per_rank, shuffle=True, seed=config.seed,
        num_workers=config.num_workers, rank=dist.rank, world_size=dist.world_size, drop_last=False)
    val = None
    val_samples = 0
    if val_split is not None:
        val = datasets_torch.make_loader(
            data_dir, val_split, eval_batch, shuffle=False, seed=config.seed,
            num_workers=config.num_workers, rank=dist.rank, world_size=dist.world_size, drop_last=False,
            even="none")  # no padding: each validation sample counted once (only sums are all-reduced)
        val_samples = len(datasets.open(data_dir, val_split))
    facts = common.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
    return train, val, facts


def _available_splits(data_dir) -> list[str]:
    return common.splits_in(data_dir)


def main(config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None, preprocess=None,
         resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train a model with PyTorch and write a run folder; return the summary dict.

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` (names, index = class id) and
    `preprocess` (dict, stored in the run) must be given.

    Raises:
        GntkitError: bad options or data; OutputExistsError for an existing run folder.
    """
    dist = Distributed(config.device)
    try:
        return _main(config, out_dir, dist, data_dir, arrays, classes, preprocess, resume, overwrite, quiet)
    finally:
        dist.close()


def _main(config, out_dir, dist, data_dir, arrays, classes, preprocess, resume, overwrite, quiet):
    device = dist.device
    if data_dir is not None:
        train_batches, val_batches, facts = _open_loaders(config, data_dir, dist)
    else:
        train_batches, val_batches, facts = common.array_sources(
            arrays, classes, preprocess, config, dist.rank, dist.world_size)
    run = RunFolder(out_dir, "torch")
    autocast_dtype, scaler, precision = precision_setup(config.precision, device)
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # speed over bitwise reproducibility on GPUs
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(config.seed)
    model = create_model(config.model, facts["num_classes"], facts["image_size"], 1,
                         batch_norm=config.batch_norm, width=config.width)
    parameters = count_parameters(model)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)

    dist.run_on_main(lambda: run.prepare(resume=resume, overwrite=overwrite))
    resumed = resume

    early = EarlyStopping(config.early_stopping)
    start_epoch = 0
    if resumed:
        payload = load_checkpoint(run.checkpoint_path("last"), device)
        model.load_state_dict(payload["model"])
        if "optimizer" in payload:
            optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and "scaler" in payload:
            scaler.load_state_dict(payload["scaler"])
        start_epoch = int(payload["state"]["epoch"])
        early.load_state(payload["state"]["early_stopping"])
        early.patience = config.early_stopping
    if dist.is_main:
        if resumed:
            rows = run.truncate_metrics(start_epoch)
        else:
            rows = []
            if data_dir is not None:
                run.copy_data_files(data_dir)
            else:
                run.write_charset(classes)
            run.write_preprocess(facts["preprocess"])
        info = common.run_info(config, facts, parameters, precision, dist.world_size, str(device),
                               channels_last, framework_version=torch.__version__)
        run.write_run_info(info)
    dist.barrier()

    if dist.world_size > 1:
        ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        train_model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    else:
        train_model = model

    def log(message):
        if dist.is_main:
            run.log(message, quiet)

    for line in common.startup_messages(
            config, facts, f"torch {torch.__version__}",
            f"device {device}, {dist.world_size} process(es), precision {precision}, "
            f"channels-last {'on' if channels_last else 'off'}",
            val_batches is not None, resumed, start_epoch):
        log(line)

    steps_per_epoch = len(train_batches)
    if steps_per_epoch < 1:
        raise GntkitError("The training split gives no batches: expected at least one sample per process.")
    stopped_early = False
    t0 = time.perf_counter()
    if early.patience is not None and early.bad_epochs >= early.patience:
        stopped_early = True
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        tr = train_one_epoch(train_model, train_batches, optimizer, config, epoch=epoch,
                             steps_per_epoch=steps_per_epoch, device=device, autocast_dtype=autocast_dtype,
                             scaler=scaler, channels_last=channels_last, dist=dist)
        va = (validate(model, val_batches, device=device, autocast_dtype=autocast_dtype,
                       channels_last=channels_last, dist=dist) if val_batches is not None else None)
        row = common.metrics_row(epoch + 1, tr, va)
        monitored = va["accuracy"] if va else tr["accuracy"]
        improved = early.improved(monitored)
        stopped_early = early.step(monitored, epoch + 1) and va is not None
        state = {"epoch": epoch + 1, "early_stopping": early.state(), "config": config.to_json()}
        if dist.is_main:
            save_checkpoint(run.checkpoint_path("last"), model, optimizer, scaler, state)
            if improved:
                save_checkpoint(run.checkpoint_path("best"), model, state=state)
            run.append_metrics(row)
            rows.append(row)
            common.draw_curves(rows, run.curves_file, title=f"{run.path.name}: {config.model} (torch)")
            log(common.format_epoch(row, config.epochs) + ("  *best" if improved else ""))
        if stopped_early:
            log(f"early stopping: no better validation accuracy for {config.early_stopping} epochs")
    dist.barrier()
    rows = common.read_metrics(run.metrics_file)
    return common.summarize(run, config, rows, parameters, stopped_early, time.perf_counter() - t0)
