"""Build (once, cached on disk) a large synthetic corpus in the real GNT layout for benchmarks.

Rendering a glyph costs about 2 milliseconds, so a 100,000+ record corpus reuses a pool
of rendered samples: every record is a real GNT record with HWDB-like sizes (mean about
68 x 75 pixels, about 5 KB), and the file layout, sizes and record count are what the
benchmarks measure. Usage: `python benchmarks/corpus.py OUT --records 100000`.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from gntkit.formats.gnt import encode_records
from gntkit.tools.synth import chinese_codes, render_glyph

POOL = 4000


def make_corpus(out_dir, records: int = 100_000, writers: int = 40, classes: int = 500, seed: int = 0, zip_too: bool = True) -> dict:
    """Write `writers` files `1001-c.gnt`... holding `records` records in all (and a zip of them).

    Returns:
        {"folder": path, "zip": path or None, "records": n, "bytes": total gnt bytes}.
    """
    out_dir = Path(out_dir)
    stamp = out_dir / "corpus.json"
    wanted = {"records": records, "writers": writers, "classes": classes, "seed": seed, "zip": zip_too}
    if stamp.is_file():
        cached = json.loads(stamp.read_text())
        # A cached corpus with a zip also serves a request without one.
        if cached["params"] == wanted or (not zip_too and cached["params"] == {**wanted, "zip": True}):
            return cached["result"]
    folder = out_dir / "gnt"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.gnt"):
        old.unlink()
    rng = np.random.default_rng(seed)
    codes = chinese_codes(classes)
    pool_codes = [codes[i % classes] for i in range(POOL)]
    pool = [render_glyph(code, rng) for code in pool_codes]
    per_writer = np.full(writers, records // writers)
    per_writer[: records % writers] += 1
    total = 0
    for w, count in enumerate(per_writer):
        picks = rng.integers(0, POOL, size=int(count))
        data = encode_records([pool_codes[i] for i in picks], [pool[i] for i in picks])
        (folder / f"{1001 + w}-c.gnt").write_bytes(data)
        total += len(data)
    zip_path = None
    if zip_too:
        zip_path = out_dir / "corpus_gnt.zip"
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in sorted(folder.glob("*.gnt")):
                archive.write(path, arcname=path.name)
    result = {"folder": str(folder), "zip": str(zip_path) if zip_path else None, "records": records, "bytes": total}
    stamp.write_text(json.dumps({"params": wanted, "result": result}))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=40)
    args = parser.parse_args()
    print(make_corpus(args.out, args.records, args.writers))
