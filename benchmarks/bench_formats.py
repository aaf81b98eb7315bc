"""Benchmark: reading the source formats (POT, DGRL, ALZ, IDX) beside named baselines, same run.

ALZ section: every member of an ALZip archive of GNT files (the old HWDB1.1 train download's
layout), read in archive order with gntkit's AlzContainer (streamed, CRC-checked), from a file
and nested in a zip, beside two baselines:

- `per-member loop`: the plain Python reader of the tests (gntkit/tools/reference/alz.py): the whole archive
  read into memory, struct-parsed, each member inflated with one zlib.decompress call;
- `unalz CLI`: Debian's unalz extracting the archive to disk (skipped when it is not installed).

The bzip2 rows use ALZip's bzip2 variant: gntkit's numba kernels beside the plain-Python decoder
of the tests (gntkit/tools/reference/alz.py) and unalz (C).
Prints a table of MB/s of member data (uncompressed). A benchmark, not a test.

    python benchmarks/bench_formats.py alz --records 20000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from corpus import make_corpus  # noqa: E402
from gntkit.containers.alz import AlzContainer  # noqa: E402
from gntkit.tools.fixtures.alz import Member, alz_bytes, alz_bzip2, zero_bzip2_crc  # noqa: E402
from gntkit.tools.reference.alz import naive_bzip2_blocks, read_archive  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _gntkit_read(opener, path: str) -> int:
    total = 0
    with AlzContainer(opener, path) as alz:
        for name, _ in alz.entries():
            total += len(alz.read(name))
    return total


def _naive_read(path: Path) -> int:
    entries, reason = read_archive(path.read_bytes())
    assert reason is None
    return sum(len(e["data"]) for e in entries if e["data"] is not None)


def _unalz(path: Path) -> int:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["unalz", "-d", out, str(path)], check=True, capture_output=True)
        return sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())


def bench_alz(work: Path, records: int, repeat: int) -> list[tuple]:
    corpus = make_corpus(work / "corpus", records=records, writers=8, zip_too=False)
    files = sorted(Path(corpus["folder"]).glob("*.gnt"))
    rows = []
    deflated = work / "deflate.alz"
    deflated.write_bytes(alz_bytes([Member(f"gnt/{p.name}", p.read_bytes(), method=2) for p in files]))
    nested = work / "HWDB1.1trn_gnt.zip"
    with zipfile.ZipFile(nested, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(deflated, "HWDB1.1trn_gnt.alz")
    size = sum(p.stat().st_size for p in files)
    holder = zipfile.ZipFile(nested)
    cases = [
        ("deflate, file", "gntkit AlzContainer", lambda: _gntkit_read(lambda: open(deflated, "rb"), str(deflated))),
        ("deflate, in a zip", "gntkit AlzContainer", lambda: _gntkit_read(lambda: holder.open("HWDB1.1trn_gnt.alz"), "nested")),
        ("deflate, file", "per-member loop (naive_alz)", lambda: _naive_read(deflated)),
    ]
    if shutil.which("unalz"):
        cases.append(("deflate, file", "unalz CLI to disk", lambda: _unalz(deflated)))
    for case, reader, fn in cases:
        seconds, total = _best(fn, repeat)
        assert total == size, (case, reader, total, size)
        rows.append((case, reader, size, seconds))
    holder.close()
    # ALZip's bzip2 variant: one member of one block (Debian's unalz extracts a bzip2 member only when
    # its block CRC is 0, see gntkit.tools.fixtures.alz.zero_bzip2_crc; one block keeps that possible).
    sample = zero_bzip2_crc(files[0].read_bytes()[:700_000])
    bzipped = work / "bzip2.alz"
    bzipped.write_bytes(alz_bytes([Member("gnt/one.gnt", sample, method=1)]))
    stream = alz_bzip2(sample)
    bz_cases = [("bzip2, file", "gntkit AlzContainer", lambda: _gntkit_read(lambda: open(bzipped, "rb"), str(bzipped))),
                ("bzip2, in memory", "plain-Python decoder (naive_alz)", lambda: len(b"".join(naive_bzip2_blocks(stream))))]
    if shutil.which("unalz"):
        bz_cases.append(("bzip2, file", "unalz CLI to disk", lambda: _unalz(bzipped)))
    for case, reader, fn in bz_cases:
        seconds, total = _best(fn, repeat)
        assert total == len(sample)
        rows.append((case, reader, len(sample), seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["alz"], help="which format to measure")
    parser.add_argument("--records", type=int, default=20_000, help="GNT records in the archive (about 5 KB each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is shown")
    parser.add_argument("--work", type=Path, default=None, help="folder for the corpus and archives (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_formats_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = bench_alz(work, args.records, args.repeat)
    print(f"{'archive':<20} {'reader':<30} {'MB':>8} {'seconds':>9} {'MB/s':>8}")
    for case, reader, size, seconds in rows:
        print(f"{case:<20} {reader:<30} {size / 1e6:>8.1f} {seconds:>9.3f} {size / 1e6 / seconds:>8.1f}")


if __name__ == "__main__":
    main()
