#!/usr/bin/env bash
# The Keras VGG16 transfer-learning tutorial: ImageNet VGG16 convolutions (include_top=False) at 48x48x3,
# every convolution frozen, a new head 4096-4096-dropout-10, SGD. See docs/digits.md.
#
#   bash examples/mnist_vgg16_transfer.sh MNIST_FOLDER WEIGHTS [OUT]
#
# WEIGHTS is Keras' vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (or torchvision's vgg16-397923af.pth),
# a file you already have: gntkit never downloads. Without it the script trains from scratch.
#
# Tutorial step                                          -> gntkit
#   resize MNIST to 48x48, np.dstack([x] * 3) to RGB      -> gntkit convert --size 48 --pad; --channels 3 repeats grey
#                                                            into RGB as batches are made (shards stay one channel)
#   VGG16(weights="imagenet", include_top=False), frozen  -> --model vgg16-transfer --pretrained WEIGHTS --freeze features
#   SGD                                                   -> --optimizer sgd
set -euo pipefail
source "$(dirname "$0")/gntkit_command.sh"
MNIST=${1:?usage: $0 MNIST_FOLDER [WEIGHTS] [OUT]}
WEIGHTS=${2:-}
OUT=${3:-mnist-vgg16-transfer}
EPOCHS=${EPOCHS:-5}
PRETRAINED=()
if [ -n "$WEIGHTS" ]; then PRETRAINED=(--pretrained "$WEIGHTS" --freeze features); fi
"$GNTKIT" convert "$MNIST" --to tfrecord --size 48 --pad --out "$OUT/data" --overwrite
"$GNTKIT" train "$OUT/data" --out "$OUT/run" --overwrite --framework tf --model vgg16-transfer --channels 3 "${PRETRAINED[@]}" \
    --epochs "$EPOCHS" --batch-size 64 --optimizer sgd --lr 0.01 --weight-decay 0 --label-smoothing 0 --no-augment --val-split test
"$GNTKIT" evaluate "$OUT/run" "$OUT/data" --split test
