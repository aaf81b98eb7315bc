"""gntkit's hand-written pieces beside the well-kept library doing the same job, end to end.

Each piece is timed inside a whole conversion (`gntkit.shards.convert.convert` with its default
settings: 64 x 64, SHA-256 of sources and shards) of one generated corpus, once with gntkit's own
code and once with the library swapped in by monkeypatching in the child process:

    sha256    multi-buffer SHA-256 kernel (gntkit.kernels.sha256) vs hashlib on threads   (tfrecord)
    crc32c    CRC32C inside the frame kernel (gntkit.kernels.crc32c) vs google-crc32c     (tfrecord)
    protobuf  Example encoder kernel (gntkit.shards.tfrecord) vs the protobuf package,
              SerializeToString(deterministic=True)                                         (tfrecord)
    png       fixed-Huffman PNG encoder (gntkit.kernels.png) vs zlib level 1 and Pillow   (webdataset)
    tar       tar layout kernel (gntkit.shards.webdataset) vs tarfile (USTAR, same fields)  (webdataset)

Every run is a fresh process that first converts one source file untimed (numba's cache and
the imports are not what this compares), then times the whole corpus. Runs alternate
(hand-written, library, library, hand-written, ...) over several rounds; the table reports each
side's median seconds and the median of the per-round ratios (library / hand-written: the two runs
of a round share the machine's load). A piece keeps its place when the conversion is at least
1.3x faster with it. "same bytes" says whether both sides wrote identical shards.

The swaps below are written against the modules of commit 76e71c7, which carries all five pieces
(SHA-256 is hashlib in gntkit since): --ref (default 76e71c7) checks that commit out into a
temporary git worktree and the runs import gntkit from there.

    python benchmarks/bench_handwritten.py --records 100000 --writers 40 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from corpus import make_corpus

ROOT = Path(__file__).resolve().parent.parent
HAND, LIBRARY = "hand-written", "library"
#: piece -> (output format, the library it is compared with, the module that must exist for the hand-written side)
PIECES = {
    "sha256": ("tfrecord", "hashlib on threads", "gntkit.kernels.sha256"),
    "crc32c": ("tfrecord", "google-crc32c", "gntkit.kernels.crc32c"),
    "protobuf": ("tfrecord", "protobuf (upb)", "gntkit.shards.tfrecord"),
    "protobuf+crc32c": ("tfrecord", "protobuf + google-crc32c", "gntkit.shards.tfrecord"),
    "png": ("webdataset", "zlib level 1", "gntkit.kernels.png"),
    "png-pillow": ("webdataset", "Pillow (compress_level 1)", "gntkit.kernels.png"),
    "tar": ("webdataset", "tarfile", "gntkit.shards.webdataset"),
}
KEEP_RATIO = 1.3
#: The commit whose modules the swaps patch.
REF = "76e71c7"


# --------------------------------------------------------------------------- the library sides
def _mask(crc: int) -> int:
    """TFRecord's CRC mask."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _mask_array(crcs):
    """TFRecord's CRC mask of a uint32 array, as little-endian uint32."""
    import numpy as np

    crcs = crcs.astype(np.uint64)
    return ((((crcs >> 15) | (crcs << 17)) & 0xFFFFFFFF) + 0xA282EAD8 & 0xFFFFFFFF).astype("<u4")


def swap_sha256(variant: str) -> None:
    """Shards and sources hashed by the lanes kernel (hand-written) or hashlib (library), both on convert's threads."""
    from gntkit.shards import digest

    check = digest._check
    chosen = "lanes" if variant == HAND else "hashlib"
    digest._check = lambda method, threads, count: check(chosen if count >= digest.MIN_JOBS_FOR_LANES else "hashlib", threads, count)


def swap_crc32c(variant: str) -> None:
    """The frame kernel without its CRCs, then google-crc32c over each length field and Example."""
    if variant == HAND:
        return
    import types

    import google_crc32c
    import numba

    from gntkit.shards import tfrecord

    @numba.njit
    def no_crc(out, pos, start, end):
        return None

    kernel = tfrecord._write_frames.py_func
    frames_only = numba.njit(types.FunctionType(kernel.__code__, {**kernel.__globals__, "_put_masked_crc": no_crc}))
    value = google_crc32c.value

    def write_frames(*args):
        frames_only(*args)
        sizes, offsets, out = args[-3], args[-2], args[-1]
        view = memoryview(out)
        frames = out.tobytes()  # google_crc32c.value reads bytes only (no memoryview, no array)
        for start, size in zip(offsets[:-1].tolist(), sizes.tolist()):
            end = start + 12 + size
            view[start + 8:start + 12] = _mask(value(frames[start:start + 8])).to_bytes(4, "little")
            view[end:end + 4] = _mask(value(frames[start + 12:end])).to_bytes(4, "little")

    tfrecord._write_frames = write_frames


def _example_class():
    """tf.train.Example's message class, built from its .proto description with the protobuf package alone."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="gntkit_bench_example.proto", package="tensorflow", syntax="proto3")

    def message(name, fields):
        described = proto.message_type.add(name=name)
        for number, field_name, kind, label, type_name in fields:
            described.field.add(name=field_name, number=number, type=kind, label=label, **({"type_name": type_name} if type_name else {}))
        return described

    for name, kind in (("BytesList", field.TYPE_BYTES), ("FloatList", field.TYPE_FLOAT), ("Int64List", field.TYPE_INT64)):
        message(name, [(1, "value", kind, field.LABEL_REPEATED, "")])
    feature = message("Feature", [(number, name, field.TYPE_MESSAGE, field.LABEL_OPTIONAL, f".tensorflow.{kind}")
                                  for number, name, kind in ((1, "bytes_list", "BytesList"), (2, "float_list", "FloatList"),
                                                             (3, "int64_list", "Int64List"))])
    feature.oneof_decl.add(name="kind")
    for described in feature.field:
        described.oneof_index = 0
    features = message("Features", [(1, "feature", field.TYPE_MESSAGE, field.LABEL_REPEATED, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    message("Example", [(1, "features", field.TYPE_MESSAGE, field.LABEL_OPTIONAL, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def swap_protobuf(variant: str, google_crc: bool = False) -> None:
    """Examples serialized by protobuf (deterministic), framed with gntkit's CRC32C batch kernel or google-crc32c."""
    if variant == HAND:
        return
    import google_crc32c
    import numpy as np

    from gntkit.kernels.crc32c import crc32c_batch
    from gntkit.shards import tfrecord

    example_class = _example_class()

    def serialize_batch(batch, pixels, strokes=None):
        datas = []
        pixel_bytes, offsets = pixels.pixels, pixels.offsets.tolist()
        for i, (height, width, label, tag_code) in enumerate(zip(np.asarray(pixels.heights).tolist(), np.asarray(pixels.widths).tolist(),
                                                                 np.asarray(batch.labels).tolist(), np.asarray(batch.tag_codes).tolist())):
            example = example_class()
            feature = example.features.feature
            feature["image"].bytes_list.value.append(pixel_bytes[offsets[i]:offsets[i + 1]].tobytes())
            feature["height"].int64_list.value.append(height)
            feature["width"].int64_list.value.append(width)
            feature["label"].int64_list.value.append(label)
            feature["tag_code"].int64_list.value.append(tag_code)
            feature["character"].bytes_list.value.append(batch.characters[i].encode("utf-8"))
            feature["writer_id"].bytes_list.value.append(batch.writer_ids[i].encode("utf-8"))
            feature["key"].bytes_list.value.append(batch.keys[i].encode("utf-8"))
            datas.append(example.SerializeToString(deterministic=True))
        n = len(datas)
        if google_crc:
            parts = []
            for data in datas:
                length = len(data).to_bytes(8, "little")
                parts += (length, _mask(google_crc32c.value(length)).to_bytes(4, "little"), data,
                          _mask(google_crc32c.value(data)).to_bytes(4, "little"))
        else:
            sizes = np.array([len(d) for d in datas], np.int64)
            data_offsets = np.zeros(n + 1, np.int64)
            np.cumsum(sizes, out=data_offsets[1:])
            heads = np.zeros(n, [("length", "<u8"), ("crc", "<u4")])
            heads["length"] = sizes
            heads["crc"] = _mask_array(crc32c_batch(heads["length"].copy().view(np.uint8), np.arange(n + 1, dtype=np.int64) * 8))
            tails = _mask_array(crc32c_batch(np.frombuffer(b"".join(datas), np.uint8), data_offsets)).tobytes()
            heads = heads.tobytes()
            parts = []
            for i, data in enumerate(datas):
                parts += (heads[12 * i:12 * i + 12], data, tails[4 * i:4 * i + 4])
        frame_offsets = np.zeros(n + 1, np.int64)
        np.cumsum([len(d) + 16 for d in datas], out=frame_offsets[1:])
        return np.frombuffer(b"".join(parts), np.uint8), frame_offsets

    tfrecord.serialize_batch = serialize_batch


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib

    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(body, zlib.crc32(kind)).to_bytes(4, "big")


def swap_png(variant: str, pillow: bool = False) -> None:
    """PNGs from zlib level 1 (filter 0 rows, IHDR / IDAT / IEND as gntkit writes them) or from Pillow."""
    if variant == HAND:
        return
    import io
    import zlib

    import numpy as np
    from PIL import Image

    from gntkit.shards import webdataset

    def encode_pngs_ragged(pixels, offsets, heights, widths):
        pngs = []
        for start, height, width in zip(np.asarray(offsets)[:-1].tolist(), heights.tolist(), widths.tolist()):
            image = pixels[start:start + height * width].reshape(height, width)
            if pillow:
                stream = io.BytesIO()
                Image.fromarray(image).save(stream, format="PNG", compress_level=1)
                pngs.append(stream.getvalue())
                continue
            rows = np.zeros((height, width + 1), np.uint8)
            rows[:, 1:] = image
            header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 0, 0, 0, 0))
            pngs.append(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
                        + _png_chunk(b"IEND", b""))
        png_offsets = np.zeros(len(pngs) + 1, np.int64)
        np.cumsum([len(p) for p in pngs], out=png_offsets[1:])
        return np.frombuffer(b"".join(pngs), np.uint8), png_offsets

    webdataset.encode_pngs_ragged = encode_pngs_ragged


def swap_tar(variant: str) -> None:
    """Each batch's members added with tarfile.TarFile.addfile (USTAR, mode 0o444, mtime 0, owner 0 / "")."""
    if variant == HAND:
        return
    import io
    import tarfile

    import numpy as np

    from gntkit.shards import webdataset

    def write_samples(template, template_sum, names, name_offsets, suffixes, suffix_offsets, data, data_offsets, starts, out):
        stream = io.BytesIO()
        archive = tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8")
        names, suffixes, view = names.tobytes(), suffixes.tobytes(), memoryview(data)
        suffix_list = [suffixes[a:b].decode("ascii") for a, b in zip(suffix_offsets[:-1].tolist(), suffix_offsets[1:].tolist())]
        name_offsets, data_offsets = name_offsets.tolist(), data_offsets.tolist()
        for i in range(len(name_offsets) - 1):
            key = names[name_offsets[i]:name_offsets[i + 1]].decode("utf-8")
            for j, suffix in enumerate(suffix_list):
                info = tarfile.TarInfo(key + suffix)
                info.size, info.mode, info.mtime = data_offsets[j][i + 1] - data_offsets[j][i], 0o444, 0
                archive.addfile(info, io.BytesIO(view[data_offsets[j][i]:data_offsets[j][i + 1]]))
        out[:] = np.frombuffer(stream.getbuffer(), np.uint8)

    webdataset._write_samples = write_samples


SWAPS = {"sha256": swap_sha256, "crc32c": swap_crc32c, "protobuf": swap_protobuf,
         "protobuf+crc32c": lambda variant: swap_protobuf(variant, google_crc=True), "png": swap_png,
         "png-pillow": lambda variant: swap_png(variant, pillow=True), "tar": swap_tar}


# --------------------------------------------------------------------------- runs
def child(piece: str, variant: str, warm_source: str, source: str, out: str, to: str) -> None:
    """In a fresh process: apply the swap, convert one file untimed, then time the whole corpus."""
    import shutil
    import time

    from gntkit.shards.convert import convert

    SWAPS[piece](variant)
    shutil.rmtree(out, ignore_errors=True)
    convert(warm_source, out, to=to, overwrite=True)
    shutil.rmtree(out)
    start, cpu = time.perf_counter(), time.process_time()
    manifest = convert(source, out, to=to)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    shards = [shard["sha256"] for split in manifest["splits"].values() for shard in split["shards"]]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "shards": shards}))


def timed_run(code_root: Path, piece: str, variant: str, warm_source: str, source: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{code_root}{os.pathsep}{Path(__file__).parent}"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", piece, variant, warm_source, source, str(out),
                           PIECES[piece][0]], env=env, cwd=code_root, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{piece} / {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(code_root: Path, pieces: list[str], rounds: int, corpus: dict, work: Path) -> dict:
    """{(piece, variant): [runs]} with the variants alternated, starting side swapped each round."""
    warm_source = str(sorted(Path(corpus["folder"]).glob("*.gnt"))[0])
    results: dict = {}
    for round_ in range(rounds):
        for piece in pieces:
            order = (HAND, LIBRARY) if round_ % 2 == 0 else (LIBRARY, HAND)
            for variant in order:
                run = timed_run(code_root, piece, variant, warm_source, corpus["folder"], work / f"out-{piece}")
                results.setdefault((piece, variant), []).append(run)
                print(f"  round {round_ + 1}: {piece:<15} {variant:<12} {run['seconds']:6.2f} s", flush=True)
    return results


def print_table(results: dict, pieces: list[str]) -> None:
    """One row per piece: each side's median seconds and the median of the per-round ratios (library / hand-written)."""
    print(f"| {'piece':<15} | {'format':<10} | {'library':<25} | {'hand-written s':>14} | {'library s':>9} | {'ratios':<17} | "
          f"{'median':>6} | {'same bytes':>10} | {'verdict':<7} |")
    print(f"|{'-' * 17}|{'-' * 12}|{'-' * 27}|{'-' * 16}|{'-' * 11}|{'-' * 19}|{'-' * 8}|{'-' * 12}|{'-' * 9}|")
    for piece in pieces:
        hand, library = results[(piece, HAND)], results[(piece, LIBRARY)]
        ratios = [lib["seconds"] / own["seconds"] for own, lib in zip(hand, library)]  # same round: same load
        ratio = statistics.median(ratios)
        same = all(r["shards"] == hand[0]["shards"] for r in hand + library)
        verdict = "keep" if ratio >= KEEP_RATIO else "library"
        to, name, _ = PIECES[piece]
        print(f"| {piece:<15} | {to:<10} | {name:<25} | {statistics.median(r['seconds'] for r in hand):>14.2f} | "
              f"{statistics.median(r['seconds'] for r in library):>9.2f} | {', '.join(f'{r:.2f}' for r in ratios):<17} | "
              f"{ratio:>5.2f}x | {'yes' if same else 'no':>10} | {verdict:<7} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/gntkit-bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pieces", default=",".join(PIECES))
    parser.add_argument("--ref", default=REF, help="import gntkit from this commit (a tree that carries the hand-written pieces)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still removes its worktree
    if args.child:
        child(*args.child)
        return
    corpus = make_corpus(args.workdir, records=args.records, writers=args.writers, zip_too=False)
    work = Path(args.workdir)
    with tempfile.TemporaryDirectory(prefix="gntkit-handwritten-") as tmp:
        code_root = Path(tmp) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(code_root), args.ref], cwd=ROOT, check=True)
        try:
            pieces = args.pieces.split(",")
            print(f"corpus: {corpus['records']:,} records, {corpus['bytes'] / 1e6:,.0f} MB in {args.writers} files; "
                  f"code: {args.ref}; {os.cpu_count()} cores; {args.rounds} alternated rounds")
            results = measure(code_root, pieces, args.rounds, corpus, work)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(code_root)], cwd=ROOT, check=True)
    print_table(results, pieces)


if __name__ == "__main__":
    main()
