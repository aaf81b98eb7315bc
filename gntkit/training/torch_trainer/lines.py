"""Training and running the line model (crnn) with torch: CTC steps, validation by CER, per-frame log-probs.

The batches are gntkit.training.line_data.LineBatches' ((images, widths), (labels, label_lengths)).
The loss is torch's CTC (blank = the charset's size, frames = each line's width // 4), summed over
a line and averaged over the batch's lines. "accuracy" of a line run is the accurate rate
AR = 1 - CER of greedy decoding (gntkit.training.line_metrics), on training and validation batches.
"""

from __future__ import annotations

from gntkit.errors import require
from gntkit.training.line_data import LinePreviews, edit_totals, line_sources, validation_totals
from gntkit.training.torch_trainer.backend import TorchBackend
from gntkit.training.torch_trainer.device import autocast
from gntkit.training.torch_trainer.inputs import to_model_input
from gntkit.training.torch_trainer.steps import TorchSteps

torch = require("torch", "torch", "Training with PyTorch")
F = torch.nn.functional

__all__ = ["TorchLineSteps", "TorchLineBackend", "ctc_losses", "line_log_probs", "validate_lines"]


def ctc_losses(logits, frames, labels, label_lengths):
    """Per-line CTC loss (float32) of logits (B, T, C + 1); impossible alignments count 0 (zero_infinity)."""
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, C + 1)
    return F.ctc_loss(log_probs, labels, frames, label_lengths, blank=logits.shape[-1] - 1, reduction="none",
                      zero_infinity=True)


def _forward(model, inputs, device, channels: int):
    """(logits (B, T, C + 1), frames (B,) on the device, images batch size) of ((images, widths))."""
    images, widths = inputs
    x = to_model_input(images, device, channels=channels)
    widths = torch.as_tensor(widths)
    logits = model(x, widths)
    frames = model.frames(widths).clamp(max=logits.shape[1]).to(device)
    return logits, frames


class TorchLineSteps(TorchSteps):
    """TorchSteps for line batches: the CTC loss, and the greedy reading's edits counted on the host."""

    def begin_epoch(self, epoch: int) -> None:
        """Train mode, reseed, zero the sums (lines, loss, edits and characters)."""
        super().begin_epoch(epoch)
        self.paths: list = []
        self.edits = self.characters = 0

    def train_step(self, inputs, targets, lr: float, index: int) -> None:
        """One optimizer step on a batch of lines (no augmentation: the warp is for single characters)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        labels, lengths = (torch.as_tensor(t).to(self.device).long() for t in targets)
        with autocast(self.device, self.autocast_dtype):
            logits, frames = _forward(self.forward, inputs, self.device, self.channels)
        losses = ctc_losses(logits, frames, labels, lengths)
        self.update(losses.mean(), lr)
        self.loss_sum += losses.detach().double().sum()
        self.count += int(labels.shape[0])
        self.paths.append((logits.detach().argmax(-1), frames, labels, lengths))

    def totals(self, reduce: bool) -> list[float]:
        """[loss sum, lines x accurate rate, lines] of this epoch so far (paths decoded here, on the host)."""
        for paths, frames, labels, lengths in self.paths:
            edits, characters = edit_totals(paths.cpu().numpy(), frames.cpu().numpy(), labels.cpu().numpy(),
                                            lengths.cpu().numpy(), int(self.model_classes))
            self.edits, self.characters = self.edits + edits, self.characters + characters
        self.paths = []
        rate = 1.0 - self.edits / self.characters if self.characters else 0.0
        return [self.loss_sum.item(), self.count * rate, self.count]

    @property
    def model_classes(self) -> int:
        """CTC's blank index (the model's num_classes)."""
        return getattr(self.model, "module", self.model).num_classes


@torch.no_grad()
def line_log_probs(model, batches, device=None, autocast_dtype=None):
    """Yield (float32 log-probs numpy (B, T, C + 1), frames (B,), targets) per batch of LineBatches."""
    device = device or next(model.parameters()).device
    model.eval()
    channels = int(getattr(model, "channels", 1))
    for inputs, targets in batches:
        with autocast(device, autocast_dtype):
            logits, frames = _forward(model, inputs, device, channels)
        yield F.log_softmax(logits.float(), -1).cpu().numpy(), frames.cpu().numpy(), targets


@torch.no_grad()
def validate_lines(model, batches, device) -> dict:
    """{"loss" (mean CTC per line), "accuracy" (AR = 1 - CER), "top5": None, "cer", "images" (lines)} in float32."""
    def summed():
        for log_probs, frames, (labels, lengths) in line_log_probs(model, batches, device):
            losses = ctc_losses(torch.from_numpy(log_probs), torch.from_numpy(frames), torch.as_tensor(labels), torch.as_tensor(lengths))
            yield float(losses.double().sum()), log_probs, frames, labels, lengths

    return validation_totals(summed())


class TorchLineBackend(LinePreviews, TorchBackend):
    """TorchBackend for line conversions and line models: LineBatches, CTC steps, validation by CER."""

    def __init__(self, config):
        super().__init__(config)
        # channels-last only when asked: the lines' widths vary from batch to batch
        self.channels_last = bool(config.channels_last)
        self.device_text = self.device_text.replace("channels-last on", f"channels-last {'on' if self.channels_last else 'off'}")

    def open_shards(self, config, data_dir):
        """Train and validation LineBatches and the data facts (one process)."""
        return line_sources(config, data_dir, self.world_size)

    def device_batches(self, batches):
        """Line batches as they are (the steps copy each to the device)."""
        return batches

    def build(self, config, facts) -> int:
        """The model and optimizer as for images, with line steps."""
        parameters = super().build(config, facts)
        self.steps = TorchLineSteps(self.model, self.optimizer, config, self.device, self.autocast_dtype, self.scaler,
                                    False, self.dist, config.channels)
        return parameters

    def validate(self, batches) -> dict:
        """Validation in float32: mean CTC loss per line, and the CER of greedy decoding."""
        return validate_lines(self.model, batches, self.device)
