"""gntkit.training: train reference models on gntkit shards, evaluate, predict, export.

Entry points (the CLI only parses arguments and calls these):

- `train(data_dir, out_dir, framework="torch", model="vgg19", ...)` -> summary dict
- `train_arrays(train, val, classes, out_dir, ...)` -> summary dict (in-memory data)
- `evaluate(run_dir, data_dir, split="test", top_k=5)` -> report dict (+ report.md/.json)
- `predict(run_dir, image_paths, top_k=5)` -> one result dict per image
- `export(run_dir, out=None, format=None)` -> path of the exported model

`import gntkit.training` imports neither torch nor tensorflow: each entry point
loads the framework of the run it works on. The modules, one job each:
`config` (TrainConfig: every option, once), `batches` (in-memory batches, data
facts), `schedule` (learning rate, precision), `augment` (the random warp),
`metrics` (early stopping, metrics.csv), `run_folder`, `figures`
(matplotlib), `summaries`, `loop` (the one epoch loop), `trainers` (what both
frameworks' trainers share), the packages `torch_trainer` and `tf_trainer` (each
framework's hooks, one module per concern), `evaluation`, `prediction` and
`exporter` (modules are not named after the functions, so that
`gntkit.training.predict` stays the function after any submodule import).

The library never changes process-wide settings on its own: `gntkit train` tunes
glibc malloc for the training process (gntkit.tools.host_heap) and passes what it
set as `host_malloc`, which run.json records; a program may do the same.
"""

from __future__ import annotations

from gntkit.errors import GntkitError
from gntkit.training.config import (
    TrainConfig,
    check_option_names,
    check_resume_config,
    options_help,
    trainer_module,
)
from gntkit.training.exporter import export_run
from gntkit.training.run_folder import RunFolder

__all__ = ["train", "train_arrays", "evaluate", "predict", "export", "TrainConfig", "trainer_module"]


def _resolve_config(out_dir, options: dict, resume: bool) -> TrainConfig:
    given = {k: v for k, v in options.items() if v is not None}
    if resume:
        run = RunFolder(out_dir)
        info = run.read_run_info()
        stored = TrainConfig.from_json(info["config"], str(run.run_file))
        return check_resume_config(stored, given, out_dir)
    return TrainConfig(**given)


def train(data_dir, out_dir, *, resume: bool = False, overwrite: bool = False, quiet: bool = False,
          host_malloc: str | None = None, **options) -> dict:
    """Train a model on gntkit shards and write a self-contained run folder.

    Args:
        data_dir: a folder written by `gntkit convert` (shards, charset.txt, gntkit.json)
            with fixed-size images.
        out_dir: the run folder to create (or to continue with resume=True).
        resume: continue the run in out_dir from its last checkpoint.
        overwrite: replace an existing run folder.
        quiet: print nothing (train.log still gets every line).
        host_malloc: what the calling program set glibc malloc to, recorded in run.json (the text
            gntkit.tools.host_heap.tune_host_malloc() returns; `gntkit train` calls it). train()
            itself leaves malloc as it is; None records that nothing was said.
        **options: TrainConfig fields (listed below); an option left out or None takes its
            default or, with resume=True, the value stored in the run.

    Returns:
        Summary dict: run_dir, framework, model, parameters, epochs_completed, best_epoch,
        best_val_accuracy, last (metrics row), stopped_early, seconds, file paths.

    Raises:
        OutputExistsError: out_dir exists and neither resume nor overwrite was given.
        GntkitError: an unknown or bad option, missing data, or a resume that changes the architecture.

    Options:
    """
    check_option_names(options)
    if data_dir is None:
        raise GntkitError("train needs a data folder written by gntkit convert, found None.")
    config = _resolve_config(out_dir, options, resume)
    return trainer_module(config.framework).main(config, out_dir, data_dir=data_dir, resume=resume,
                                                 overwrite=overwrite, quiet=quiet, host_malloc=host_malloc)


# The option list of train()'s docstring comes from TrainConfig's fields (one definition).
if train.__doc__:  # None under python -OO
    train.__doc__ += options_help() + "\n"


def train_arrays(train, val, classes, out_dir, *, preprocess=None, resume: bool = False,
                 overwrite: bool = False, quiet: bool = False, host_malloc: str | None = None, **options) -> dict:
    """Train on in-memory arrays instead of shards (small sets, tests, the digits example).

    Args:
        train: (images, labels): uint8 (N, S, S) with ink bright on 0 (as gntkit
            shards store it) and integer class ids.
        val: (images, labels) for validation, or None.
        classes: class names (index = class id) or a gntkit Charset; written to the run.
        out_dir: the run folder.
        preprocess: how the images were made (Preprocess or dict); None = gntkit's
            default Preprocess at this image size. predict() applies it to user images.
        resume, overwrite, quiet, host_malloc: as in `train`.
        **options: any option of `train` (framework, model, epochs, batch_size, lr, ...).

    Returns:
        The summary dict of `train`.

    Raises:
        GntkitError: bad arrays or options; OutputExistsError for an existing run folder.
    """
    if not isinstance(train, (tuple, list)) or len(train) != 2:
        raise GntkitError("train must be a pair (images, labels).")
    if val is not None and (not isinstance(val, (tuple, list)) or len(val) != 2):
        raise GntkitError("val must be a pair (images, labels) or None.")
    check_option_names(options)
    config = _resolve_config(out_dir, options, resume)
    arrays = (train[0], train[1], val[0] if val else None, val[1] if val else None)
    return trainer_module(config.framework).main(
        config, out_dir, arrays=arrays, classes=classes, preprocess=preprocess, resume=resume,
        overwrite=overwrite, quiet=quiet, host_malloc=host_malloc)


def evaluate(run_dir, data_dir, split: str = "test", top_k: int = 5, batch_size: int = 256,
             checkpoint: str = "best", device: str = "auto", write: bool = True, beam: int | None = None) -> dict:
    """Evaluate a run on a split of gntkit shards (a line run: CR, AR, CER); see gntkit.training.evaluation.evaluate_run."""
    from gntkit.training.evaluation import evaluate_run  # in here: keeps numba (gntkit.datasets) off `import gntkit.training`

    return evaluate_run(run_dir, data_dir, split=split, top_k=top_k, batch_size=batch_size,
                        checkpoint=checkpoint, device=device, write=write, beam=beam)


def predict(run_dir, image_paths, top_k: int = 5, checkpoint: str = "best", device: str = "auto",
            photo: bool = True) -> list[dict]:
    """Recognise characters in user images; see gntkit.training.prediction.predict_images."""
    from gntkit.training.prediction import predict_images  # in here: keeps numba (preprocess) off `import gntkit.training`

    return predict_images(run_dir, image_paths, top_k=top_k, checkpoint=checkpoint, device=device, photo=photo)


def export(run_dir, out=None, format: str | None = None, checkpoint: str = "best", overwrite: bool = False):
    """Export a run's model for use without gntkit; see gntkit.training.exporter.export_run.

    Returns:
        pathlib.Path of the artifact (model.pt, model.onnx, or the saved_model folder).
    """
    return export_run(run_dir, out=out, format=format, checkpoint=checkpoint, overwrite=overwrite)
