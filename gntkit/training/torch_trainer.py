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

import os
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training import batches as batch_facts
from gntkit.training.augment import AUGMENT, affine_matrices, elastic_offsets, sampling_grid, upsample_matrix
from gntkit.training.config import TrainConfig, pick_val_split
from gntkit.training.loop import Backend, run_training, train_epoch
from gntkit.training.run_folder import RunFolder
from gntkit.training.schedule import cpu_has_bf16, resolve_precision

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
    "TorchSteps",
    "TorchBackend",
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


def bf16_on_cpu() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX) and torch's oneDNN can use it."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        supported = bool(mkldnn._is_mkldnn_bf16_supported()) if mkldnn is not None else False
    except (AttributeError, RuntimeError):
        supported = False
    return supported and torch.backends.mkldnn.is_available() and cpu_has_bf16()


def precision_setup(requested: str, device):
    """Return (autocast dtype or None, GradScaler or None, resolved name) for a device.

    "auto" is bf16 on GPUs that have it and on CPUs with native bf16 (`bf16_on_cpu`),
    fp16 with loss scaling on other GPUs, fp32 on other CPUs.
    """
    accelerator = device.type == "cuda"
    bf16 = torch.cuda.is_bf16_supported() if accelerator else (device.type == "cpu" and bf16_on_cpu())
    resolved = resolve_precision(requested, accelerator, bf16)
    if resolved == "fp32":
        return None, None, resolved
    if resolved == "bf16":
        return torch.bfloat16, None, resolved
    return torch.float16, torch.amp.GradScaler("cuda"), resolved


def _autocast(device, dtype):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_model_input(images, device, channels_last: bool = False, channels: int = 1):
    """uint8 images (B, S, S) (numpy or tensor) -> float (B, channels, S, S) in [0, 1] on `device`.

    The uint8 batch travels to the device and is converted there (4x less to copy);
    a model of several channels gets the gray image in each.

    Raises:
        GntkitError: the batch is not uint8 (B, S, S).
    """
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.dim() != 3:
        raise GntkitError(f"Image batches must be uint8 (B, S, S), found {x.dtype} {tuple(x.shape)}.")
    x = x.to(device, non_blocking=True).unsqueeze(1).float().div_(255.0)
    if channels > 1:
        x = x.expand(-1, channels, -1, -1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _pixel_centres(size: int, dtype, device):
    """(S*S, 3) rows (x, y, 1) of the normalised pixel centres, row-major as affine_grid makes them."""
    centres = (torch.arange(size, dtype=dtype, device=device) * 2 + 1) / size - 1
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(size * size, 3)


def augment_batch(x, matrices, offsets=None):
    """Warp float images (B, C, S, S) on their device (bilinear, zero fill).

    The sampling grid is what `F.affine_grid(align_corners=False)` gives plus the
    elastic field, made with plain matrix products: torch's affine_grid and an
    einsum for the field took 10 and 65 ms of a 64-image 64x64 batch on the 2-core
    CPU, these products well under 1 ms.

    Args:
        x: the images.
        matrices: (B, 2, 3) normalised output->input affines (gntkit.training.augment.affine_matrices).
        offsets: None or (B, G, G, 2) elastic control displacements (augment.elastic_offsets).

    Returns:
        The warped images, same shape and dtype.
    """
    b, size = x.shape[0], x.shape[-1]
    theta = torch.as_tensor(matrices, dtype=x.dtype, device=x.device)
    grid = (_pixel_centres(size, x.dtype, x.device) @ theta.transpose(1, 2)).reshape(b, size, size, 2)
    if offsets is not None:
        offsets = torch.as_tensor(offsets, dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)  # (B, 2, G, G)
        up = torch.as_tensor(upsample_matrix(size, offsets.shape[-1]), dtype=x.dtype, device=x.device)
        grid = grid + (up @ offsets @ up.T).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_warp(x, rng: np.random.Generator, rank: int = 0, world_size: int = 1):
    """Augment float images (B, C, S, S) with warps drawn from `rng` for the whole global batch.

    Every process draws the warps of all B x world_size samples and keeps its
    share (rank::world_size, the samples it holds), so a distributed run warps
    each sample as one process would.
    """
    total = x.shape[0] * world_size
    matrices = affine_matrices(rng, total)[rank::world_size]
    offsets = (elastic_offsets(rng, total, x.shape[-1])[rank::world_size]
               if AUGMENT.elastic_pixels > 0 else None)
    if x.device.type != "cpu":
        return augment_batch(x, matrices, offsets)
    # On a CPU the grid is made with numpy (augment.sampling_grid): 1 ms where torch's small
    # multi-threaded ops took 20-50 ms for 64 images of 64x64 on the busy 2-core machine.
    grid = torch.from_numpy(sampling_grid(matrices, offsets, x.shape[-1])).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def smoothed_cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean cross entropy in float32 with torch's label smoothing."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def build_optimizer(model, config: TrainConfig):
    """SGD (momentum) / Adam / AdamW over the trainable parameters.

    Weight decay is not the optimizer's: `TorchSteps` applies it decoupled
    (w *= 1 - lr x weight_decay before each step, as torch's AdamW does) to the
    weights of the first param group only (matrices and kernels; biases and
    batch norm are the second group), so it means the same for every optimizer
    and in TensorFlow. "adam" and "adamw" are therefore the same update.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "decoupled_decay": config.weight_decay},
              {"params": no_decay, "decoupled_decay": 0.0}]
    lr = config.peak_lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=0.0)
    return torch.optim.Adam(groups, lr=lr, weight_decay=0.0)


def _seed_epoch(config: TrainConfig, epoch: int, rank: int) -> None:
    # Dropout and other torch randomness are reseeded every epoch so a resumed run
    # repeats exactly what an uninterrupted one would have done.
    torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, rank]).generate_state(1)[0]))


# --- the loops ------------------------------------------------------------------------------

class TorchSteps:
    """The step hooks of gntkit.training.loop for one torch model and optimizer.

    Args:
        model: the module to train (DistributedDataParallel-wrapped when distributed).
        optimizer: from `build_optimizer`.
        config: the TrainConfig (augment, label_smoothing, weight_decay, seed, compile).
        device, autocast_dtype, scaler, channels_last: from `precision_setup` and the run.
        dist: a Distributed, or None for one process.
        channels: input channels of the model.
    """

    def __init__(self, model, optimizer, config: TrainConfig, device, autocast_dtype=None, scaler=None,
                 channels_last: bool = False, dist: Distributed | None = None, channels: int = 1):
        self.model, self.optimizer, self.config, self.device = model, optimizer, config, device
        self.autocast_dtype, self.scaler, self.channels_last = autocast_dtype, scaler, channels_last
        self.dist, self.channels = dist, channels
        self.rank = dist.rank if dist else 0
        self.world_size = dist.world_size if dist else 1
        # torch.compile traces the forward and backward once (tens of seconds on a CPU), then runs fused kernels.
        self.forward = torch.compile(model) if config.compile else model
        self.epoch = 0

    def begin_epoch(self, epoch: int) -> None:
        """Train mode, reseed dropout, zero the running sums."""
        self.model.train()
        self.epoch = epoch
        _seed_epoch(self.config, epoch, self.rank)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.count = 0

    def distribute(self, batches):
        """Batches as they come (DistributedDataParallel splits nothing: each process has its share)."""
        return batches

    def train_step(self, images, labels, lr: float, index: int) -> None:
        """One optimizer step on a batch; `index` is the batch's position in the epoch (seeds augmentation)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = to_model_input(images, self.device, self.channels_last, self.channels)
        y = torch.as_tensor(labels).to(self.device, non_blocking=True).long()
        if self.config.augment:
            rng = np.random.default_rng([self.config.seed, self.epoch, index, 7])
            x = random_warp(x, rng, self.rank, self.world_size)
        with _autocast(self.device, self.autocast_dtype):
            logits = self.forward(x)
        loss = smoothed_cross_entropy(logits, y, self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self._decay(lr)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.count += y.shape[0]

    @torch.no_grad()
    def _decay(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            rate = group.get("decoupled_decay", 0.0)
            if rate and group["params"]:
                torch._foreach_mul_(group["params"], 1.0 - lr * rate)

    def totals(self, reduce: bool) -> list[float]:
        """[loss sum, correct, count] of this epoch so far; summed over processes when `reduce`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        values = [self.loss_sum.item(), self.correct.item(), self.count]
        return self.dist.all_sum(values) if reduce and self.dist else values


def train_one_epoch(model, batches, optimizer, config: TrainConfig, *, epoch: int, steps_per_epoch: int,
                    device, autocast_dtype=None, scaler=None, channels_last: bool = False,
                    dist: Distributed | None = None, progress=None) -> dict:
    """Train one epoch over `batches`; return {"loss", "accuracy", "images", "seconds", "lr", "steps"}.

    The epoch is gntkit.training.loop.train_epoch over a `TorchSteps`.

    Raises:
        GntkitError: no batches, or the loss became NaN or infinite (the run diverged).
    """
    steps = TorchSteps(model, optimizer, config, device, autocast_dtype, scaler, channels_last, dist)
    return train_epoch(steps, batches, config, epoch=epoch, steps_per_epoch=steps_per_epoch, progress=progress)


@torch.no_grad()
def validate(model, batches, *, device, autocast_dtype=None, channels_last: bool = False,
             dist: Distributed | None = None, top_k: int = 5, channels: int = 1) -> dict:
    """Evaluate on `batches`; return {"loss", "accuracy", "top5", "images"} (plain cross entropy)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    correct_k = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for images, labels in batches:
        x = to_model_input(images, device, channels_last, channels)
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


def _model_channels(model) -> int:
    return int(getattr(_unwrap(model), "channels", 1))


@torch.no_grad()
def predict_logits(model, batches, device=None, autocast_dtype=None, channels_last: bool = False):
    """Yield (float32 logits numpy (B, C), labels numpy (B,)) for each batch of (images, labels)."""
    device = device or next(model.parameters()).device
    model.eval()
    for images, labels in batches:
        x = to_model_input(images, device, channels_last, _model_channels(model))
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
        x = to_model_input(np.ascontiguousarray(images[start:start + batch_size]), device,
                           channels=_model_channels(model))
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
    val_split = pick_val_split(available, config.val_split, config.train_split)
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
    facts = batch_facts.data_facts(train_set, data_dir, config.train_split, val_split, val_samples)
    return train, val, facts


def _available_splits(data_dir) -> list[str]:
    return batch_facts.splits_in(data_dir)


class _TorchBoard:
    """TensorBoard event files through torch.utils.tensorboard.SummaryWriter."""

    def __init__(self, logdir):
        require("tensorboard", "tensorboard", "Writing TensorBoard logs")
        # Note: when TensorFlow is installed, tensorboard's event writer imports it into this process.
        # Forcing tensorboard's TF stub instead (its `tensorboard.compat.notf` switch) would break any
        # later TensorFlow use of tensorboard in the same process, so it is not done.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def scalars(self, values: dict, step: int) -> None:
        """Write each value under its tag at `step` and flush."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def images(self, tag: str, images, step: int) -> None:
        """Write uint8 images (N, S, S) as one image grid."""
        self.writer.add_images(tag, np.asarray(images, np.uint8)[:, None], step, dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class TorchBackend(Backend):
    """gntkit.training.loop hooks for PyTorch: device and processes, model, checkpoints, TensorBoard."""

    framework = "torch"

    def __init__(self, config: TrainConfig):
        self.config = config
        self.dist = Distributed(config.device)
        self.device = device = self.dist.device
        self.is_main, self.world_size = self.dist.is_main, self.dist.world_size
        self.autocast_dtype, self.scaler, self.precision = precision_setup(config.precision, device)
        # channels-last is what oneDNN's and cuDNN's fast bf16/fp16 convolutions read.
        default_last = device.type == "cuda" or (device.type == "cpu" and self.precision == "bf16")
        self.channels_last = default_last if config.channels_last is None else config.channels_last
        self.version = torch.__version__
        self.label = f"torch {torch.__version__}"
        self.device_name = str(device)
        self.device_text = (f"device {device}, {self.world_size} process(es), precision {self.precision}, "
                            f"channels-last {'on' if self.channels_last else 'off'}"
                            + (", compiled" if config.compile else ""))

    def open_shards(self, config, data_dir):
        """Train and validation DataLoaders over shards, and the data facts."""
        return _open_loaders(config, data_dir, self.dist)

    def rank_share(self):
        """(rank, world size): each process trains on its share of in-memory arrays."""
        return self.dist.rank, self.world_size

    def build(self, config, facts) -> int:
        """Create the model (seeded), apply pretrained weights, move it, make the optimizer and steps."""
        device = self.device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # speed over bitwise reproducibility on GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        model = create_model(config.model, facts["num_classes"], facts["image_size"], config.channels,
                             batch_norm=config.batch_norm, width=config.width)
        if config.pretrained is not None:
            _apply_pretrained(model, config)
        parameters = count_parameters(model)
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        train_model = model
        if self.world_size > 1:
            ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            train_model = torch.nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        self.steps = TorchSteps(train_model, self.optimizer, config, device, self.autocast_dtype, self.scaler,
                                self.channels_last, self.dist, config.channels)
        return parameters

    def validate(self, batches) -> dict:
        """Validation in float32 (no autocast), so it equals what `gntkit evaluate` reports for the checkpoint."""
        return validate(self.model, batches, device=self.device, autocast_dtype=None,
                        channels_last=self.channels_last, dist=self.dist, channels=self.config.channels)

    def save(self, folder, which, state, with_optimizer) -> None:
        """Main process: checkpoints/{which}.pt (with optimizer and scaler for "last")."""
        if self.is_main:
            save_checkpoint(Path(folder) / f"{which}.pt", self.model, self.optimizer if with_optimizer else None,
                            self.scaler if with_optimizer else None, state)

    def load(self, path, with_optimizer) -> dict:
        """Restore model, optimizer and scaler from a checkpoint file; return its trainer state."""
        payload = load_checkpoint(path, self.device)
        self.model.load_state_dict(payload["model"])
        if with_optimizer and "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
        if with_optimizer and self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        return payload["state"]

    def tensorboard(self, logdir):
        """A SummaryWriter-backed writer."""
        return _TorchBoard(logdir)

    @torch.no_grad()
    def augmented_preview(self, images) -> np.ndarray:
        """uint8 (N, S, S): images after one random warp (as in training)."""
        x = to_model_input(images, self.device)
        if self.config.augment:
            x = random_warp(x, np.random.default_rng([self.config.seed, 99]))
        return (x[:, 0] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    def on_main(self, action) -> None:
        """Rank 0 runs `action`; its GntkitError is raised everywhere."""
        self.dist.run_on_main(action)

    def barrier(self) -> None:
        """Wait for every process."""
        self.dist.barrier()

    def close(self) -> None:
        """Destroy the process group this backend started."""
        self.dist.close()


def _apply_pretrained(model, config: TrainConfig) -> None:
    """Load `config.pretrained` into `model` through gntkit.models.torch.apply_pretrained."""
    import gntkit.models.torch as models_torch

    apply = getattr(models_torch, "apply_pretrained", None)
    if apply is None:
        raise GntkitError("pretrained weights need gntkit.models.torch.apply_pretrained, found none in this "
                          "gntkit version.")
    apply(model, config.pretrained, config.freeze, config.channels)


def main(config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None, preprocess=None,
         resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train a model with PyTorch and write a run folder; return the summary dict.

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` (names, index = class id) and
    `preprocess` (dict, stored in the run) must be given.

    Raises:
        GntkitError: bad options or data; OutputExistsError for an existing run folder.
    """
    backend = TorchBackend(config)
    try:
        return run_training(backend, config, out_dir, data_dir=data_dir, arrays=arrays, classes=classes,
                            preprocess=preprocess, resume=resume, overwrite=overwrite, quiet=quiet)
    finally:
        backend.close()
