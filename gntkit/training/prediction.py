"""Recognise characters in users' own images with a trained run.

An image (photo or scan of one handwritten character, dark ink on light
paper, any size, RGB or grey, PNG or JPEG) goes through the run's own
preprocessing (RUN/preprocess.json: size, margin, crop, invert), by default
with the photo steps switched on (contrast stretch, Otsu threshold, speck
removal, as `Preprocess.for_photos`), then through the model; the result is the
top-k characters with probabilities.

A run trained on MNIST-family IDX data (its copy of the manifest lists `source_formats`
["idx"]) prepares drawings as MNIST was built instead (gntkit.samples.photos.prepare_digit:
threshold, fit the ink into 20 x 20, centre by mass in 28 x 28), then the run's settings.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from gntkit.errors import GntkitError
from gntkit.samples.photos import load_image, prepare_digit, preprocess_image
from gntkit.samples.preprocess import Preprocess
from gntkit.shards.manifest import LEGACY_MANIFEST, MANIFEST, read_json
from gntkit.training.config import trainer_module
from gntkit.training.line_evaluation import is_line_run
from gntkit.training.line_prediction import predict_lines
from gntkit.training.run_folder import RunFolder

__all__ = ["photo_settings", "prepare_images", "predict_images", "top_k_results", "digit_style"]


def digit_style(run_dir) -> str | None:
    """The digit style of a run: "mnist" or "emnist" when its data came from IDX sources of handwriting
    (not Fashion-MNIST's photos), as its copy of the data manifest (RUN/gntkit.json, or dataset_info.json in older runs) says; else None.

    Raises:
        GntkitError: a copy of the manifest that is not readable JSON.
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        path = Path(run_dir) / LEGACY_MANIFEST  # a run that copied the manifest under its older name
    if not path.is_file():
        return None
    manifest = read_json(path, "the run's copy of the data manifest")
    name = str((manifest.get("charset") or {}).get("name", ""))
    if manifest.get("source_formats") != ["idx"] or name.startswith("fashion-mnist"):
        return None
    return "emnist" if name.startswith("emnist") else "mnist"


def photo_settings(preprocess_json: dict, photo: bool = True):
    """The Preprocess for user images: the run's settings, plus the photo steps when `photo`.

    Raises:
        GntkitError: the run was trained on raw (variable-size) images or the settings are invalid.
    """
    settings = Preprocess.from_json(preprocess_json)
    if settings.raw:
        raise GntkitError("The run's preprocessing is raw (no fixed size): expected a fixed-size run to predict with.")
    if photo:
        binarize = settings.binarize if settings.binarize is not None else "otsu"
        settings = dataclasses.replace(settings, contrast=True, binarize=binarize, denoise=True)
    return settings


def prepare_images(images, preprocess_json: dict, photo: bool = True, digits: str | None = None) -> np.ndarray:
    """Load and preprocess user images into the model's input: uint8 (N, S, S), ink bright on 0.

    Args:
        images: file paths, or uint8 arrays (H, W) grey / (H, W, 3|4) RGB(A) with dark ink on light paper.
        preprocess_json: the run's preprocess.json content.
        photo: add contrast stretch, Otsu threshold and speck removal (see `photo_settings`).
        digits: "mnist" or "emnist": prepare each image as that data set was built
            (gntkit.samples.photos.prepare_digit), then with the run's settings; `photo` does not
            apply (the preparation thresholds itself). None: the run's preprocessing.

    Raises:
        GntkitError: one sentence naming the image when it cannot be read or holds no ink.
    """
    settings = photo_settings(preprocess_json, photo)
    out = np.empty((len(images), settings.size, settings.size), np.uint8)
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            name = f"image {i}"
            array = item
        elif isinstance(item, (str, os.PathLike)):
            name = os.fspath(item)
            if not os.path.isfile(name):
                raise GntkitError(f"{name} cannot be read as an image (no such file).")
            array = load_image(name)
        else:
            raise GntkitError(f"Image {i} must be a file path or a uint8 array, found {type(item).__name__}.")
        try:
            result = (prepare_digit(array, Preprocess.from_json(preprocess_json), style=digits) if digits
                      else preprocess_image(array, settings))
        except GntkitError as exc:
            raise GntkitError(f"{name}: {str(exc)[0].lower()}{str(exc)[1:]}") from None
        ink = result if settings.invert else 255 - result
        if int(ink.max()) == 0:
            raise GntkitError(f"{name} has no ink left after preprocessing (a blank or nearly uniform image).")
        out[i] = result
    return out


def top_k_results(probabilities: np.ndarray, classes: list[str], top_k: int) -> list[list[dict]]:
    """Top-k (character, class_id, probability) per row of a probability matrix."""
    k = min(top_k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[{"character": classes[c], "class_id": int(c), "probability": round(float(row[c]), 6)}
             for c in idx] for row, idx in zip(probabilities, order)]


def predict_images(run_dir, image_paths, top_k: int = 5, checkpoint: str = "best", device: str = "auto",
                   photo: bool = True) -> list[dict]:
    """Top-k characters with probabilities for each user image.

    Args:
        run_dir: a run folder written by gntkit.training.train.
        image_paths: one path or a list of paths (uint8 arrays are accepted too).
        top_k: how many candidates per image.
        checkpoint: "best" or "last".
        device: torch device name, or "auto"/"cpu"/"gpu" for TensorFlow.
        photo: apply the photo steps (contrast, Otsu, speck removal) on top of the run's preprocessing.

    Returns:
        One dict per image: {"image": path or "image i", "predictions": [{"character",
        "class_id", "probability"}, ...] best first}. A line run (crnn) reads photos of
        written lines instead: {"image", "text", "characters": [{"character", "class_id",
        "confidence"}, ...]} (gntkit.training.line_prediction).

    Raises:
        GntkitError: not a run folder, an unreadable or empty image, or a bad top_k.
    """
    if isinstance(image_paths, (str, os.PathLike, np.ndarray)):
        image_paths = [image_paths]
    image_paths = list(image_paths)
    if not image_paths:
        raise GntkitError("predict needs at least one image, found none.")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise GntkitError(f"top_k must be a positive integer, found {top_k!r}.")
    if checkpoint not in ("best", "last"):
        raise GntkitError(f"checkpoint must be 'best' or 'last', found {checkpoint!r}.")
    run = RunFolder(run_dir)
    info = run.read_run_info()
    names = [os.fspath(p) if isinstance(p, (str, os.PathLike)) else f"image {i}" for i, p in enumerate(image_paths)]
    if is_line_run(info):  # photos of written lines: the text and per-character confidences
        return predict_lines(run, info, image_paths, names, checkpoint, device, photo)
    classes = run.read_classes()
    if len(classes) != info["num_classes"]:
        raise GntkitError(f"{run.path}: charset.txt has {len(classes)} classes, expected {info['num_classes']}.")
    images = prepare_images(image_paths, run.read_preprocess(), photo, digits=digit_style(run_dir))
    module = trainer_module(info["config"]["framework"])
    model, _ = module.load_run_model(run_dir, checkpoint, device)
    probabilities = module.predict_probabilities(model, images)
    return [{"image": name, "predictions": preds}
            for name, preds in zip(names, top_k_results(probabilities, classes, top_k))]
