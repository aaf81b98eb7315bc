"""The text-line recognizer (`crnn` in gntkit.models.configs) in PyTorch (imports torch).

`CRNN(config, num_classes, line_height)` takes float lines (N, C, H, W) in [0, 1] (ink bright,
as the conversion stores them, divided by 255) and, optionally, each line's width in pixels;
it returns logits (N, T, num_classes + 1), T = W // 4 frames, CTC's blank last. Frames past a
line's own width (`frames(widths)`) are padding: the GRU skips them (packed sequences), so a
line reads the same whatever the batch it is in. gntkit.models.crnn_tf builds the same network.
"""

from __future__ import annotations

from gntkit.errors import GntkitError, require
from gntkit.models.configs import ModelConfig, feature_layers, line_frames

# torch is the one heavy framework this module uses; `import gntkit` never loads it.
torch = require("torch", "torch", "Building PyTorch models")
nn = torch.nn


def init_layers(model) -> None:
    """He-normal convolutions, Glorot-uniform dense layers, batch norm at 1 and 0, zero biases: keras'
    defaults, which gntkit.models.tf and gntkit.models.crnn_tf keep, for every model gntkit builds."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

__all__ = ["CRNN", "init_layers"]


class CRNN(nn.Module):
    """Convolutions over the line height, rows averaged, a bidirectional GRU along the width, a dense layer.

    Attributes:
        config, num_classes, image_size (the line height), channels, batch_norm: the build arguments.
        features, recurrent (nn.GRU, bidirectional, batch first), classifier (nn.Linear).
    """

    def __init__(self, config: ModelConfig, num_classes: int, image_size: int, channels: int = 1,
                 batch_norm: bool | None = None):
        super().__init__()
        if not config.is_line_model:
            raise GntkitError(f"CRNN needs a line model of the table (crnn), found {config.name}.")
        bn = config.batch_norm if batch_norm is None else bool(batch_norm)
        self.config, self.num_classes, self.image_size = config, num_classes, image_size
        self.channels, self.batch_norm = channels, bn
        layers: list = []
        c_in = channels
        for step in feature_layers(config):
            if step[0] == "max":
                layers.append(nn.MaxPool2d(2, 2))
            elif step[0] == "hmax":
                layers.append(nn.MaxPool2d((2, 1), (2, 1)))
            elif step[0] == "relu":
                layers.append(nn.ReLU(inplace=True))
            else:
                layers.append(nn.Conv2d(c_in, step[1], config.kernel_size, padding=config.kernel_size // 2,
                                        bias=config.conv_has_bias(bn)))
                if bn:
                    layers.append(nn.BatchNorm2d(step[1]))
                c_in = step[1]
        self.features = nn.Sequential(*layers)
        self.recurrent = nn.GRU(c_in, config.recurrent, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * config.recurrent, num_classes + 1)
        self._init_weights()

    def _init_weights(self) -> None:
        # keras' defaults, which gntkit.models.crnn_tf keeps: He-normal convolutions, Glorot-uniform
        # input kernels and dense layer, orthogonal recurrent kernels, zero biases.
        init_layers(self)
        for name, p in self.recurrent.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(p)
            else:
                nn.init.zeros_(p)

    def frames(self, widths):
        """Frames (int64 tensor) of lines `widths` pixels wide (at least 1 each)."""
        return line_frames(self.config, torch.as_tensor(widths, dtype=torch.int64)).clamp(min=1)

    def forward(self, x, widths=None):
        """Map lines (N, C, H, W) (and widths (N,), None: every line fills W) to logits (N, W // 4, num_classes + 1).

        The convolutions follow the autocast around the call; the GRU and the dense layer compute in
        float32 (the logits too), as in TensorFlow's mixed policies.
        """
        x = self.features(x).mean(dim=2)  # (N, C, T): the rows left are averaged
        x = x.transpose(1, 2).float()  # (N, T, C)
        steps = x.shape[1]
        frames = (torch.full((x.shape[0],), steps, dtype=torch.int64) if widths is None
                  else self.frames(widths).cpu().clamp(max=steps))
        with torch.autocast(x.device.type, enabled=False):
            packed = nn.utils.rnn.pack_padded_sequence(x, frames, batch_first=True, enforce_sorted=False)
            out, _ = self.recurrent(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
            return self.classifier(out)
