"""Reading photos of written lines with a line run (crnn): the text and a confidence per character.

A photo (dark ink on light paper, any size) goes through gntkit.samples.photos.prepare_line
(contrast, paper cleaned, cropped to the ink, scaled as the conversion scales its lines), then
through the run's model. Greedy decoding reads the best class of every frame; a character's
confidence is the highest probability it has over the frames of its run in the best path.
"""

from __future__ import annotations

import os

import numpy as np

from gntkit.errors import GntkitError
from gntkit.samples.photos import load_image, prepare_line
from gntkit.samples.preprocess import Preprocess
from gntkit.training.config import trainer_module
from gntkit.training.line_data import LineBatches

__all__ = ["read_best_path", "prepare_line_images", "predict_lines"]


def read_best_path(log_probs: np.ndarray, blank: int) -> list[tuple[int, float]]:
    """(class id, confidence) of each character of one line's (T, C + 1) log-probs by greedy decoding.

    Consecutive frames of the same class are one character (a blank separates repeats); its
    confidence is the largest probability of that class over those frames.
    """
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2 or not 0 <= blank < log_probs.shape[1]:
        raise GntkitError(f"Expected (T, C) log-probs with the blank in the class axis, found {log_probs.shape}.")
    path = log_probs.argmax(axis=1)
    best = np.exp(log_probs.max(axis=1))
    out: list[tuple[int, float]] = []
    previous = blank
    for c, p in zip(path.tolist(), best.tolist()):
        if c != blank and c == previous:
            out[-1] = (c, max(out[-1][1], p))
        elif c != blank:
            out.append((c, p))
        previous = c
    return out


class _Photos:
    """Prepared line photos as a LineSet-like object (`batches`, `num_classes`, `len`)."""

    def __init__(self, images, num_classes: int):
        self.images, self.num_classes = images, num_classes

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size, *, shuffle=False, seed=0, epoch=0, drop_last=False):
        """One line per batch (photos differ in width): (images (1, H, W), widths, labels, label_lengths)."""
        for image in self.images:
            yield image[None], np.array([image.shape[1]], np.int64), np.zeros((1, 1), np.int64), np.zeros(1, np.int64)


def prepare_line_images(images, preprocess_json: dict, photo: bool = True) -> list[np.ndarray]:
    """Load and prepare line photos (paths or uint8 arrays) as the run's lines (see prepare_line).

    Raises:
        GntkitError: one sentence naming the image when it cannot be read or holds no ink.
    """
    settings = Preprocess.from_json(preprocess_json)
    out = []
    for i, item in enumerate(images):
        name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"image {i}"
        if isinstance(item, (str, os.PathLike)) and not os.path.isfile(name):
            raise GntkitError(f"{name} cannot be read as an image (no such file).")
        if not isinstance(item, (str, os.PathLike, np.ndarray)):
            raise GntkitError(f"Image {i} must be a file path or a uint8 array, found {type(item).__name__}.")
        try:
            out.append(prepare_line(load_image(name) if isinstance(item, (str, os.PathLike)) else item, settings, photo))
        except GntkitError as exc:
            raise GntkitError(f"{name}: {str(exc)[0].lower()}{str(exc)[1:]}") from None
    return out


def predict_lines(run, info: dict, images, names, checkpoint: str = "best", device: str = "auto",
                  photo: bool = True) -> list[dict]:
    """Read each line photo with a line run: {"image", "text", "characters": [{"character", "class_id",
    "confidence"}]} per image.

    Raises:
        GntkitError: an unreadable or blank image, or a charset that does not fit the run.
    """
    classes = run.read_classes()
    prepared = prepare_line_images(images, run.read_preprocess(), photo)
    module = trainer_module(info["config"]["framework"])
    model, _ = module.load_run_model(run.path, checkpoint, device)
    results = []
    photos = _Photos(prepared, info["num_classes"])
    for name, (log_probs, frames, _) in zip(names, module.line_log_probs(model, LineBatches(photos, 1, False))):
        read = read_best_path(log_probs[0, :int(frames[0])], info["num_classes"])
        results.append({"image": name, "text": "".join(classes[c] for c, _ in read),
                        "characters": [{"character": classes[c], "class_id": int(c), "confidence": round(float(p), 6)}
                                       for c, p in read]})
    return results
