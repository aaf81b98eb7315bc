"""The TensorFlow trainer (imports tensorflow): `main()`, `train_one_epoch()`, `validate()`.

A custom step (not `model.fit`) so that the schedule, label smoothing, weight
decay, augmentation, metrics, checkpoints and resume mean exactly what they
mean in the torch trainer; the epochs themselves are gntkit.training.loop's.
The steps take (uint8 images (B, S, S), int64 labels (B,)) batches: numpy
arrays, tensors or a `tf.data.Dataset`; conversion to float (x / 255),
augmentation and mixed precision happen on the device inside one compiled step.
On a CPU with one replica the augmentation runs on the host instead, before the
step (`Steps.host_warp`): the torch trainer's draws and a numba kernel
(gntkit.training.augment.random_warp_batch), so both trainers warp a batch alike.

Distribution uses TensorFlow's own engines: `MultiWorkerMirroredStrategy`
when TF_CONFIG names more than one worker, `MirroredStrategy` when more than
one GPU is visible, one device otherwise. Only the chief writes the run
folder (other workers write checkpoints to a temporary folder, as the
strategy requires every worker to take part in saving).

The modules, one concern each: `placement` (strategy, precision, optimizer), `inputs`
(model input and the warp), `steps` (the compiled steps and the loops over them),
`checkpoints`, `inference` (a run's model, logits, probabilities), `data` (the shard
source), `board` (TensorBoard), `lines` (the line model's CTC steps) and `backend` (the hooks of gntkit.training.loop);
`main` is gntkit.training.trainers.trainer_main over `TFBackend`.
"""

from __future__ import annotations

from gntkit.training.tf_trainer.backend import TFBackend
from gntkit.training.tf_trainer.checkpoints import restore_checkpoint, save_checkpoint
from gntkit.training.tf_trainer.inference import build_model_for_run, load_run_model, predict_logits, predict_probabilities
from gntkit.training.tf_trainer.inputs import apply_affine, host_warp, sample_grid, to_model_input, warp_params
from gntkit.training.tf_trainer.lines import TFLineBackend, line_log_probs
from gntkit.training.tf_trainer.placement import Placement, build_optimizer, make_strategy, precision_policy, tf
from gntkit.training.tf_trainer.steps import CALL_SECONDS, MAX_STEPS_PER_CALL, Steps, smoothed_cross_entropy, train_one_epoch, validate
from gntkit.training.trainers import trainer_main

__all__ = [
    "main",
    "train_one_epoch",
    "validate",
    "predict_logits",
    "predict_probabilities",
    "load_run_model",
    "build_model_for_run",
    "make_strategy",
    "precision_policy",
    "build_optimizer",
    "save_checkpoint",
    "restore_checkpoint",
    "Placement",
    "Steps",
    "TFBackend",
    "apply_affine",
    "sample_grid",
    "to_model_input",
    "warp_params",
    "host_warp",
    "smoothed_cross_entropy",
    "CALL_SECONDS",
    "MAX_STEPS_PER_CALL",
    "TFLineBackend",
    "line_log_probs",
    "tf",
]

main = trainer_main(TFBackend, "TensorFlow", TFLineBackend)
