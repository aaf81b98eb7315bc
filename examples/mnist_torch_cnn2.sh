#!/usr/bin/env bash
# The PyTorch 2-conv MNIST tutorial (conv 1->4, 4->8, dense 392->512, dropout 0.4, 206,682 parameters;
# the tutorial reports about 97.4% validation accuracy) with gntkit, in PyTorch. See docs/digits.md.
#
#   bash examples/mnist_torch_cnn2.sh MNIST_FOLDER [OUT]
#   EPOCHS=3 bash examples/mnist_torch_cnn2.sh MNIST_FOLDER      # a quick CPU run (a few minutes)
#
# Tutorial step                                          -> gntkit
#   torchvision MNIST + ToTensor, per-sample Dataset      -> gntkit convert to HDF5; batches read whole from shards
#   validation 4,000 / test 6,000 carved from t10k        -> t10k is the test split and validates (splits go by file)
#   Adam 1e-4, batch 128, log-softmax + NLL, best by val  -> the same optimizer, rate and batch; best.* kept
set -euo pipefail
source "$(dirname "$0")/gntkit_command.sh"
MNIST=${1:?usage: $0 MNIST_FOLDER [OUT]}
OUT=${2:-mnist-torch-cnn2}
EPOCHS=${EPOCHS:-10}
"$GNTKIT" convert "$MNIST" --to hdf5 --out "$OUT/data" --overwrite
"$GNTKIT" train "$OUT/data" --out "$OUT/run" --overwrite --framework torch --model cnn2-tutorial --epochs "$EPOCHS" \
    --batch-size 128 --optimizer adam --lr 0.0001 --schedule constant --weight-decay 0 --label-smoothing 0 --no-augment \
    --val-split test
"$GNTKIT" evaluate "$OUT/run" "$OUT/data" --split test
if [ -n "${DIGIT:-}" ]; then "$GNTKIT" predict "$OUT/run" "$DIGIT" --top-k 3; fi
