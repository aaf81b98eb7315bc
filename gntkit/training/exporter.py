"""Export a run's model so it can be used without gntkit.

- torch runs: TorchScript (`model.pt`, load with `torch.jit.load`; the default) or
  ONNX (`model.onnx`, needs the `onnx` and `onnxscript` packages).
- tf runs: a SavedModel folder (`saved_model/`, load with `tf.saved_model.load`;
  signature `serving_default`).

Every exported model takes what gntkit shards hold, uint8 images (N, S, S) with
ink bright on 0 (apply RUN/preprocess.json to raw images first), and returns
float32 class probabilities (N, C). The export folder also holds charset.txt
(line number = class id), preprocess.json and export.json describing this.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from gntkit.errors import GntkitError, OutputExistsError
from gntkit.training.config import trainer_module
from gntkit.training.line_evaluation import is_line_run
from gntkit.training.run_folder import RunFolder

__all__ = ["export_run", "FORMATS"]

FORMATS = {"torch": ("torchscript", "onnx"), "tf": ("savedmodel",)}
ARTIFACT = {"torchscript": "model.pt", "onnx": "model.onnx", "savedmodel": "saved_model"}


def export_run(run_dir, out=None, format: str | None = None, checkpoint: str = "best",
               overwrite: bool = False) -> Path:
    """Export the model of a run folder.

    Args:
        run_dir: a run folder written by gntkit.training.train.
        out: folder to write (default RUN/export-{format}).
        format: "torchscript" (torch default), "onnx" (torch) or "savedmodel" (tf default).
        checkpoint: "best" or "last".
        overwrite: replace an existing export folder.

    Returns:
        Path of the exported model (model.pt / model.onnx file, or the saved_model folder).

    Raises:
        GntkitError: not a run, a line run (crnn: its per-frame scores are not the class
            probabilities of one image that the exported signature returns), a format the run's
            framework cannot write, or a missing optional package.
        OutputExistsError: the export folder exists and overwrite is False.
    """
    run = RunFolder(run_dir)
    info = run.read_run_info()
    if is_line_run(info):
        raise GntkitError(f"{run.path}: export writes single-character classifiers (uint8 (N, S, S) in, class "
                          f"probabilities out), found a text-line run of {info.get('model')}: use `gntkit predict` "
                          "or load its checkpoint with gntkit.")
    framework = info["config"]["framework"]
    format = _chosen_format(run, framework, format)
    if checkpoint not in ("best", "last"):
        raise GntkitError(f"checkpoint must be 'best' or 'last', found {checkpoint!r}.")
    out = _export_folder(Path(out) if out is not None else run.path / f"export-{format}", overwrite)
    if format == "onnx":
        _require_onnx()
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / ARTIFACT[format]
    try:
        if framework == "torch":
            _export_torch(run, info, checkpoint, format, artifact)
        else:
            _export_tf(run, info, checkpoint, artifact)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.copyfile(run.path / "charset.txt", out / "charset.txt")
    shutil.copyfile(run.path / "preprocess.json", out / "preprocess.json")
    _write_export_json(out / "export.json", info, format, artifact, checkpoint)
    return artifact


def _chosen_format(run: RunFolder, framework: str, format: str | None) -> str:
    """The export format: the framework's default for None; raise for one the framework cannot write."""
    formats = FORMATS.get(framework)
    if formats is None:
        raise GntkitError(f"{run.path}: expected a torch or tf run, found framework {framework!r}.")
    format = format or formats[0]
    if format not in formats:
        raise GntkitError(
            f"A {framework} run exports as {' or '.join(formats)}, found format {format!r}."
        )
    return format


def _export_folder(out: Path, overwrite: bool) -> Path:
    """`out`, emptied when `overwrite` allows; raise OutputExistsError for a non-empty one otherwise."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{out}: the export folder already exists; pass overwrite to replace it.")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


def _write_export_json(path: Path, info: dict, format: str, artifact: Path, checkpoint: str) -> None:
    """export.json: what the artifact takes and returns, and how to load it."""
    size, classes = info["image_size"], info["num_classes"]
    path.write_text(json.dumps({
        "format": format,
        "artifact": artifact.name,
        "framework": info["config"]["framework"],
        "model": info.get("model"),
        "checkpoint": checkpoint,
        "input": {"name": "images", "dtype": "uint8", "shape": ["N", size, size],
                  "meaning": "preprocessed images (preprocess.json), ink bright on a 0 background"},
        "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", classes],
                   "meaning": "softmax over classes; class id = line number in charset.txt (0-based)"},
        "usage": _usage(format),
    }, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _usage(format: str) -> str:
    if format == "torchscript":
        return "torch.jit.load('model.pt')(images_uint8_tensor)  # -> probabilities"
    if format == "onnx":
        return "onnxruntime.InferenceSession('model.onnx').run(None, {'images': images_uint8})[0]"
    return "tf.saved_model.load('saved_model').signatures['serving_default'](images=images_uint8)['probabilities']"


def _require_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise GntkitError(
            f"ONNX export needs the {' and '.join(repr(m) for m in missing)} package(s), which are not "
            f"installed: run `pip install onnx onnxscript`, or export TorchScript (the default)."
        )


def _export_torch(run: RunFolder, info: dict, checkpoint: str, format: str, artifact: Path) -> None:
    torch_trainer = trainer_module("torch")  # imports torch, which only this export needs
    torch = torch_trainer.torch
    model, _ = torch_trainer.load_run_model(run.path, checkpoint, "cpu")
    channels = int(info.get("channels", 1))

    class Probabilities(torch.nn.Module):
        """uint8 (N, S, S) -> float32 probabilities (N, C)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            """uint8 (N, S, S) images -> probabilities."""
            x = images.to(torch.float32).div(255.0).unsqueeze(1)
            if channels > 1:  # a model for 3-channel (pretrained) input gets the gray image in each
                x = x.expand(-1, channels, -1, -1)
            return torch.softmax(self.net(x).float(), dim=1)

    wrapper = Probabilities(model).eval()
    for p in wrapper.parameters():
        p.requires_grad_(False)  # inference only: outputs need no autograd graph
    size = info["image_size"]
    example = torch.zeros((2, size, size), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        if format == "torchscript":
            # Recent torch marks TorchScript deprecated in favour of torch.export, but a .pt
            # TorchScript file is still what torch.jit.load, libtorch (C++) and mobile load.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
            traced = torch.jit.trace(wrapper, example)
            torch.jit.save(traced, str(artifact))
        else:
            torch.onnx.export(wrapper, (example,), str(artifact), input_names=["images"],
                              output_names=["probabilities"],
                              dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
                              dynamo=False)


def _export_tf(run: RunFolder, info: dict, checkpoint: str, artifact: Path) -> None:
    tf_trainer = trainer_module("tf")  # imports tensorflow, which only this export needs
    tf = tf_trainer.tf
    model, _ = tf_trainer.load_run_model(run.path, checkpoint)
    size, channels = info["image_size"], int(info.get("channels", 1))

    class Serving(tf.Module):
        """uint8 (N, S, S) -> {"probabilities": float32 (N, C)}."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, size, size], tf.uint8, name="images")])
        def serve(self, images):
            """The serving_default signature."""
            x = tf_trainer.to_model_input(images, channels)
            return {"probabilities": tf.nn.softmax(tf.cast(self.net(x, training=False), tf.float32))}

    module = Serving(model)
    tf.saved_model.save(module, str(artifact), signatures={"serving_default": module.serve})
