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

The modules, one concern each: `device` (device, process group, precision), `inputs`
(model input and the warp), `steps` (the step, the optimizer and the loops),
`checkpoints`, `inference` (a run's model, logits, probabilities), `data` (the
DataLoaders over shards), `board` (TensorBoard), `lines` (the line model's CTC steps) and `backend` (the hooks of
gntkit.training.loop); `main` is gntkit.training.trainers.trainer_main over `TorchBackend`.
"""

from __future__ import annotations

from gntkit.training.torch_trainer.backend import TorchBackend
from gntkit.training.torch_trainer.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from gntkit.training.torch_trainer.device import Distributed, bf16_on_cpu, precision_setup, resolve_device, torch
from gntkit.training.torch_trainer.inference import build_model_for_run, load_run_model, predict_logits, predict_probabilities
from gntkit.training.torch_trainer.inputs import augment_batch, random_warp, to_model_input
from gntkit.training.torch_trainer.lines import TorchLineBackend, line_log_probs
from gntkit.training.torch_trainer.steps import TorchSteps, build_optimizer, smoothed_cross_entropy, train_one_epoch, validate
from gntkit.training.trainers import trainer_main

__all__ = [
    "main",
    "train_one_epoch",
    "validate",
    "predict_logits",
    "predict_probabilities",
    "load_run_model",
    "build_model_for_run",
    "resolve_device",
    "precision_setup",
    "bf16_on_cpu",
    "build_optimizer",
    "save_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
    "Distributed",
    "TorchSteps",
    "TorchBackend",
    "to_model_input",
    "augment_batch",
    "random_warp",
    "smoothed_cross_entropy",
    "TorchLineBackend",
    "line_log_probs",
    "torch",
]

main = trainer_main(TorchBackend, "PyTorch", TorchLineBackend)
