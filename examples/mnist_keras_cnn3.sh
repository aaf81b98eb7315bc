#!/usr/bin/env bash
# The Keras 3-conv MNIST tutorial (Conv 32-64-64, dense 64, 93,322 parameters; the tutorial reports
# about 99% test accuracy after 7 epochs) with gntkit, in TensorFlow. See docs/digits.md.
#
#   bash examples/mnist_keras_cnn3.sh MNIST_FOLDER [OUT]       # the folder of the four MNIST .gz files
#   EPOCHS=2 bash examples/mnist_keras_cnn3.sh MNIST_FOLDER      # a quick CPU run (a few minutes)
#
# Tutorial step                                   -> gntkit
#   keras.datasets.mnist.load_data(), x / 255      -> gntkit convert (IDX as stored, 28x28; /255 in the trainer)
#   5,000 validation images from the training set -> the t10k test split validates (splits go by file)
#   RMSprop, batch 32, 7 epochs, best checkpoint   -> Adam 1e-3 (gntkit has no RMSprop), batch 32, best.* kept
#   accuracy / loss curves                          -> RUN/curves.png, RUN/metrics.csv
#   predict a drawn digit (invert, threshold 150)  -> gntkit predict (invert, threshold, fit 20x20, centre by mass)
set -euo pipefail
source "$(dirname "$0")/gntkit_command.sh"
MNIST=${1:?usage: $0 MNIST_FOLDER [OUT]}
OUT=${2:-mnist-keras-cnn3}
EPOCHS=${EPOCHS:-7}
"$GNTKIT" convert "$MNIST" --to tfrecord --out "$OUT/data" --overwrite
"$GNTKIT" train "$OUT/data" --out "$OUT/run" --overwrite --framework tf --model cnn3 --epochs "$EPOCHS" --batch-size 32 \
    --optimizer adam --lr 0.001 --weight-decay 0 --label-smoothing 0 --no-augment --val-split test
"$GNTKIT" evaluate "$OUT/run" "$OUT/data" --split test
if [ -n "${DIGIT:-}" ]; then "$GNTKIT" predict "$OUT/run" "$DIGIT" --top-k 3; fi
