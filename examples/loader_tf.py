"""A complete TensorFlow / Keras training loop on gntkit shards: make_dataset, on-device augmentation,
tf.distribute, resume at the last finished epoch.

    python examples/loader_tf.py                          # synthetic corpus, converted to TFRecord in /tmp
    python examples/loader_tf.py --data hwdb-tfrecord --epochs 20

The model is deliberately tiny. The reference VGG trainers (`gntkit train --framework tf`,
gntkit/training/tf_trainer/, models in gntkit/models/tf.py) use the same datasets with
everything a real run needs (mixed precision, schedules, logging, evaluation reports).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import tensorflow as tf

import gntkit.datasets as datasets
from gntkit.datasets.tf import make_dataset

keras = tf.keras


def synthetic_shards(folder: Path, to: str = "tfrecord") -> Path:
    """Write a small synthetic corpus (20 classes, 6 writers) and convert it: train = 5 writers, test = 1."""
    from gntkit.samples.preprocess import Preprocess
    from gntkit.shards.convert import convert
    from gntkit.tools.synth import write_corpus

    out = folder / to
    if not (out / "gntkit.json").is_file():
        if not (folder / "gnt").is_dir():
            write_corpus(folder / "gnt", writers=6, num_classes=20, samples_per_class=8, seed=0)
        convert(folder / "gnt", out, to=to, split="train=1001-1005,test=1006", charset="data",
                preprocess=Preprocess(size=32), overwrite=True)
    return out


def tiny_cnn(num_classes: int, image_size: int) -> keras.Model:
    """uint8 (B, S, S) in, logits out. Scaling and the light random affine run inside the model, on the device."""
    return keras.Sequential([
        keras.Input((image_size, image_size), dtype="uint8"),
        keras.layers.Reshape((image_size, image_size, 1)),
        keras.layers.Rescaling(1 / 127.5, offset=-1.0),  # [0, 255] -> [-1, 1]; background (0) -> -1
        # training-only augmentation; fill with the background value
        keras.layers.RandomRotation(10 / 360, fill_mode="constant", fill_value=-1.0),
        keras.layers.RandomZoom(0.1, fill_mode="constant", fill_value=-1.0),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", fill_value=-1.0),
        keras.layers.Conv2D(32, 3, padding="same"), keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPool2D(),
        keras.layers.Conv2D(64, 3, padding="same"), keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPool2D(),
        keras.layers.Flatten(), keras.layers.Dense(num_classes),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a gntkit convert output folder (default: a synthetic one)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (split over replicas)")
    parser.add_argument("--run", type=Path, default=Path(tempfile.gettempdir()) / "gntkit-example-tf")
    args = parser.parse_args()

    folder = args.data or synthetic_shards(Path(tempfile.gettempdir()) / "gntkit-example")
    train_set = datasets.open(folder, "train")
    strategy = tf.distribute.get_strategy()  # e.g. tf.distribute.MirroredStrategy() for several GPUs
    args.run.mkdir(parents=True, exist_ok=True)
    progress = args.run / "progress.json"
    first_epoch = json.loads(progress.read_text())["epochs_done"] if progress.is_file() else 0

    with strategy.scope():
        model = tiny_cnn(train_set.num_classes, train_set.image_size)
        model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    if first_epoch:
        model.load_weights(args.run / "model.weights.h5")
        print(f"resumed after epoch {first_epoch}")
    if first_epoch >= args.epochs:
        return

    def train_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each input pipeline reads its share (rank = input_pipeline_id); every epoch in the
        # dataset has its own seeded order, the same as gntkit.datasets.torch would give.
        per_replica = context.get_per_replica_batch_size(args.batch_size)
        return make_dataset(folder, "train", per_replica, shuffle=True, seed=0, input_context=context,
                            epoch=first_epoch, num_epochs=args.epochs - first_epoch)

    train = strategy.distribute_datasets_from_function(train_fn)
    steps = train_set.num_batches(args.batch_size)  # batches per epoch, one pipeline
    test = make_dataset(folder, "test", 256, shuffle=False, even="none") if "test" in train_set.splits else None

    class SaveProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save_weights(args.run / "model.weights.h5")
            progress.write_text(json.dumps({"epochs_done": epoch + 1}))

    model.fit(train, epochs=args.epochs, initial_epoch=first_epoch, steps_per_epoch=steps, validation_data=test,
              callbacks=[SaveProgress()], verbose=2, shuffle=False)  # the order is make_dataset's


if __name__ == "__main__":
    main()
