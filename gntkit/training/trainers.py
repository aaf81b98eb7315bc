"""What the torch and TensorFlow trainers share: their `main`, and the model of a run.

Each framework's trainer package (gntkit.training.torch_trainer, gntkit.training.tf_trainer)
provides a `Backend` (gntkit.training.loop) and its models module (gntkit.models.torch,
gntkit.models.tf); the framework-free parts of training with them live here once:
`trainer_main` makes the `main()` of a trainer, `build_model` creates the model a
TrainConfig describes (with its pretrained weights), `model_for_run` the model of a run folder.
"""

from __future__ import annotations

from gntkit.errors import GntkitError
from gntkit.models.configs import get_config
from gntkit.training.config import TrainConfig
from gntkit.training.line_data import check_model_fits_data
from gntkit.training.loop import run_training

__all__ = ["trainer_main", "build_model", "model_for_run"]

_MAIN_DOC = """Train a model with {framework} and write a run folder; return the summary dict.

    Either `data_dir` (gntkit shards) or `arrays` = (train_images, train_labels,
    val_images, val_labels) with `classes` (names, index = class id) and
    `preprocess` (dict, stored in the run) must be given. `host_malloc` is what the
    caller set glibc malloc to (gntkit.tools.host_heap), recorded in run.json.

    Raises:
        GntkitError: bad options or data; OutputExistsError for an existing run folder.
    """


def trainer_main(backend_class, framework: str, line_backend_class=None):
    """The `main(config, out_dir, ...)` of a trainer whose loop hooks are `backend_class(config)`.

    Args:
        backend_class: a gntkit.training.loop.Backend subclass taking the TrainConfig.
        framework: the framework's name for the docstring ("PyTorch", "TensorFlow").
        line_backend_class: the Backend of line models on text-line conversions (crnn on .dgrl
            pages), chosen when the data folder holds text lines (gntkit.training.line_data).

    Returns:
        A function that creates the backend, runs gntkit.training.loop.run_training with it
        and closes it (also when training fails).
    """

    def main(config: TrainConfig, out_dir, *, data_dir=None, arrays=None, classes=None, preprocess=None,
             resume: bool = False, overwrite: bool = False, quiet: bool = False,
             host_malloc: str | None = None) -> dict:
        """Train with a new backend_class(config) and write a run folder (the docstring is set below)."""
        lines = check_model_fits_data(config.model, data_dir) if data_dir is not None else False
        if data_dir is None and get_config(config.model).is_line_model:
            raise GntkitError(f"--model {config.model} reads text lines: train it on a conversion of .dgrl pages, "
                              "not on in-memory character arrays.")
        backend = (line_backend_class if lines else backend_class)(config)
        try:
            return run_training(backend, config, out_dir, data_dir=data_dir, arrays=arrays, classes=classes,
                                preprocess=preprocess, resume=resume, overwrite=overwrite, quiet=quiet,
                                host_malloc=host_malloc)
        finally:
            backend.close()

    main.__doc__ = _MAIN_DOC.format(framework=framework)
    return main


def build_model(models, config: TrainConfig, num_classes: int, image_size: int, **framework_options):
    """Create the model `config` describes with a framework's models module, pretrained weights applied.

    Args:
        models: gntkit.models.torch or gntkit.models.tf (their create_model and apply_pretrained).
        config: the run's TrainConfig (model, width, batch_norm, channels, pretrained, freeze).
        num_classes, image_size: from the data.
        **framework_options: passed on to create_model (TensorFlow's dtype_policy).

    Raises:
        GntkitError: the model does not fit the data, or the pretrained weights do not fit the model.
    """
    model = models.create_model(config.model, num_classes, image_size, config.channels,
                                batch_norm=config.batch_norm, width=config.width, **framework_options)
    if config.pretrained is not None:
        models.apply_pretrained(model, config.pretrained, config.freeze, config.channels)
    return model


def model_for_run(models, info: dict, **framework_options):
    """Create the (untrained) model a run.json describes with a framework's models module."""
    config = TrainConfig.from_json(info["config"])
    return models.create_model(config.model, info["num_classes"], info["image_size"], info["channels"],
                               batch_norm=config.batch_norm, width=config.width, **framework_options)
