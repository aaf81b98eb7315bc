"""The kernel-running part of gntkit.tools.compile_ahead: the command's and the helper's shares of
the preprocessing callees, the helper's compile of the preprocessing kernel, and a warm-up shard for
the writer. Kept apart so that compile_ahead itself loads no numpy or numba until it must."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from gntkit.jit import no_compile_notice
from gntkit.kernels.preprocess import column_has_ink, combine_pass, gather_pass, resize_taps, row_has_ink
from gntkit.samples.batch import SampleBatch
from gntkit.samples.preprocess import Preprocess
from gntkit.samples.transform import preprocess_records, set_before_kernels
from gntkit.shards.registry import get_writer_class

__all__ = ["call_command_share", "call_helper_share", "compile_preprocessing", "set_before_kernels", "write_warm_shard"]


def call_command_share() -> None:
    """The command's share of the callees (gather_pass, resize_taps, the ink tests), with the kernel's types."""
    with no_compile_notice():
        # 2 rows of 4 values, 2 outputs of 2 taps each: every read and write is inside the arrays.
        start = np.array([0, 1], np.uint64)
        weight = np.full(8, 0.5, np.float32)
        target = np.empty(4, np.float32)
        image = np.frombuffer(bytes(range(16)), np.uint8)  # read-only, as the kernel passes the image
        gather_pass(image, 4, 0, 2, 2, start, weight, 2, target)
        gather_pass(image.astype(np.float32), 4, 0, 2, 2, start, weight, 2, target)
        resize_taps(4, 2, 0, start, weight)  # 3 taps of 2 outputs: weight[0:6]
        square = image.reshape(4, 4)
        row_has_ink(square, 0)
        column_has_ink(square, 0, 0, 4)


def call_helper_share() -> None:
    """The helper's share of the callees (combine_pass, both signatures), with the kernel's types."""
    start = np.zeros(2, np.uint64)
    weight = np.full(4, 0.25, np.float32)
    target = np.empty(8, np.float32)
    sums = np.empty(4, np.float64)
    image = np.frombuffer(bytes(range(16)), np.uint8)  # read-only, as the kernel passes the image
    # rows of stride 4, 4 values from column 0, 2 taps, outputs 0..1: reads image[0:8], writes target[0:8]
    combine_pass(image, 4, 0, 4, 2, start, weight, 2, 0, 2, target, sums)
    combine_pass(image.astype(np.float32), 4, 0, 4, 2, start, weight, 2, 0, 2, target, sums)


def write_warm_shard(fmt: str, image_size: int, compression: str | None) -> None:
    """Write a two-sample shard of `fmt` in a temporary folder, so that its writer's kernels compile now."""
    # Two samples with the types of gntkit.samples.stream's fixed-size batches.
    batch = SampleBatch(keys=["1001/0", "1001/1"], writer_ids=["1001", "1001"], tag_codes=np.array([0xB0A1, 0xB0A2], np.uint16),
                        labels=np.array([0, 1], np.int64), characters=["啊", "阿"], heights=np.full(2, image_size, np.int32),
                        widths=np.full(2, image_size, np.int32), images=np.zeros((2, image_size, image_size), np.uint8))
    writer_class = get_writer_class(fmt)
    attrs = {"gntkit_version": "warm-up", "charset": "{}", "preprocess": "{}"}
    with no_compile_notice(), tempfile.TemporaryDirectory(prefix="gntkit-warm-writer-") as tmp:
        with writer_class(os.path.join(tmp, "warm"), split="train", attrs=attrs, compression=compression) as writer:
            writer.write(batch)
            writer.close()


def compile_preprocessing(edited: bool) -> None:
    """The helper's work: preprocess a few bitmaps with the argument types of a real run."""
    # Bitmaps as a reader passes them: read-only bytes of the file, int64 starts, int32 sides.
    # Both resampling paths (shrinking and enlarging) run, as real handwriting needs both.
    heights = np.array([90, 20], np.int32)
    widths = np.array([70, 30], np.int32)
    starts = np.array([0, 90 * 70], np.int64)
    buffer = np.full(90 * 70 + 20 * 30, 255, np.uint8)
    buffer[100:200] = 0
    buffer = np.frombuffer(buffer.tobytes(), np.uint8)
    settings = Preprocess(contrast=True, binarize="otsu", denoise=True) if edited else Preprocess()
    preprocess_records(buffer, starts, heights, widths, settings, serial=True)
