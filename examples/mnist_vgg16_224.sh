#!/usr/bin/env bash
# The "VGG16 in tf.keras on MNIST at 224x224" tutorial: MNIST resized with tf.image.resize_with_pad to
# 224x224x1, VGG16 with 10 classes (134,300,362 parameters, as the tutorial's summary prints). A GPU job:
# one epoch of 60,000 images at 224x224 through VGG16 takes hours on a CPU. See docs/digits.md.
#
#   bash examples/mnist_vgg16_224.sh MNIST_FOLDER [OUT]
#   SIZE=32 WIDTH=0.25 EPOCHS=2 bash examples/mnist_vgg16_224.sh MNIST_FOLDER   # the same pipeline, CPU-sized
#
# Tutorial step                                     -> gntkit
#   tf.image.resize_with_pad(x, 224, 224) per batch -> gntkit convert --size 224 --pad, once (tested against TF)
#   VGG16(weights=None, input (224,224,1), 10)      -> --model vgg16 (same layers and parameter count)
set -euo pipefail
source "$(dirname "$0")/gntkit_command.sh"
MNIST=${1:?usage: $0 MNIST_FOLDER [OUT]}
OUT=${2:-mnist-vgg16-224}
SIZE=${SIZE:-224}
WIDTH=${WIDTH:-1}
EPOCHS=${EPOCHS:-5}
"$GNTKIT" convert "$MNIST" --to tfrecord --size "$SIZE" --pad --out "$OUT/data" --overwrite
"$GNTKIT" train "$OUT/data" --out "$OUT/run" --overwrite --framework tf --model vgg16 --width "$WIDTH" --epochs "$EPOCHS" \
    --batch-size 64 --optimizer adam --lr 0.0001 --weight-decay 0 --label-smoothing 0 --no-augment --val-split test
"$GNTKIT" evaluate "$OUT/run" "$OUT/data" --split test
