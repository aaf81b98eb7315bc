"""The torch steps (`TorchSteps`), the optimizer, and the epoch and validation loops over them."""

from __future__ import annotations

import numpy as np

from gntkit.errors import GntkitError, require
from gntkit.training.config import TrainConfig
from gntkit.training.loop import train_epoch
from gntkit.training.torch_trainer.device import Distributed, autocast
from gntkit.training.torch_trainer.inputs import random_warp, to_model_input

torch = require("torch", "torch", "Training with PyTorch")
F = torch.nn.functional

__all__ = ["TorchSteps", "build_optimizer", "smoothed_cross_entropy", "train_one_epoch", "validate"]


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
        with autocast(self.device, self.autocast_dtype):
            logits = self.forward(x)
        loss = smoothed_cross_entropy(logits, y, self.config.label_smoothing)
        self.update(loss, lr)
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.count += y.shape[0]

    def update(self, loss, lr: float) -> None:
        """Backward pass of `loss`, decoupled weight decay and the optimizer step (with the scaler when fp16)."""
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            # A step GradScaler skips (inf/NaN gradients) skips the weight decay too; decided on the device.
            found_inf = sum(self.scaler._found_inf_per_device(self.optimizer).values())
            self._decay(lr, skip=found_inf)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._decay(lr)
            self.optimizer.step()

    @torch.no_grad()
    def _decay(self, lr: float, skip=None) -> None:
        for group in self.optimizer.param_groups:
            rate = group.get("decoupled_decay", 0.0)
            if rate and group["params"]:
                factor = 1.0 - lr * rate if skip is None else 1.0 - lr * rate * (skip == 0).to(torch.float32)
                torch._foreach_mul_(group["params"], factor)

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
        with autocast(device, autocast_dtype):
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
