"""`sltdata stats` on a 1,000,000-sequence store: metadata figures in seconds, landmarks never read.

    python benchmarks/stats.py [--rows 1000000] [--payload 256] [--keep DIR] [--skip-naive]

Builds a store-like directory (store.json + Parquet parts written with the store's own settings)
of ``--rows`` sequences: 250 signs with a long-tailed distribution, 21 participants, lengths 1-500
frames. Each row carries ``--payload`` random float32s in its landmarks column (incompressible, so
the column is the bulk of the bytes on disk), standing in for the real landmarks that a
metadata-only answer must not read.

* ours: ``compute_stats(store, landmarks=False)`` (DuckDB over the metadata columns).
* naive: ``pandas.read_parquet`` of the whole store, then value_counts / quantile / groupby —
  what a notebook does; it reads the landmarks column too.
* floor-landmarks: ``pyarrow.parquet.read_table`` of the landmarks column alone: the least any
  approach that touches landmarks pays.

* detection: ``compute_stats(store)`` with detection rates on a second, smaller store of real-sized
  sequences (``--detect`` sequences x 40 frames x 543 points, 10% of points NaN): landmarks streamed
  batch by batch, so peak memory stays flat while the store grows (run at N and 2N).

Each measurement runs in a fresh process; peak memory is that process's max RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_PER_PART = 100_000


def build_store(path: Path, rows: int, payload: int, seed: int = 0) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sltdata.layouts import HOLISTIC_543
    from sltdata.store import META_FILE, SCHEMA, STORE_FORMAT, STORE_VERSION, part_name, write_json_atomic

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    signs = np.array([f"sign{i:03d}" for i in range(250)])
    weights = 1.0 / np.arange(1, 251) ** 0.5
    weights /= weights.sum()
    participants = np.array([f"{10000 + 977 * i}" for i in range(21)])
    parts, total_frames = [], 0
    for j, start in enumerate(range(0, rows, ROWS_PER_PART)):
        n = min(ROWS_PER_PART, rows - start)
        frames = rng.integers(1, 501, n).astype(np.int32)
        total_frames += int(frames.sum())
        values = rng.standard_normal(n * payload).astype(np.float32)
        offsets = np.arange(0, (n + 1) * payload, payload, dtype=np.int32)
        table = pa.Table.from_arrays([
            pa.array([f"{start + i}" for i in range(n)]),
            pa.array(signs[rng.choice(250, n, p=weights)]),
            pa.nulls(n, pa.string()),
            pa.array(participants[rng.integers(0, 21, n)]),
            pa.array(np.full(n, HOLISTIC_543.name)),
            pa.array(np.full(n, "bench")),
            pa.array(np.full(n, 30.0, np.float32)),
            pa.array(frames),
            pa.array(np.full(n, HOLISTIC_543.num_points, np.int32)),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
        ], schema=SCHEMA)
        pq.write_table(table, path / part_name(j), compression="zstd", row_group_size=1024,
                       write_statistics=["key", "label", "participant", "frames"])
        parts.append({"file": part_name(j), "sequences": n, "frames": int(frames.sum())})
    write_json_atomic(path / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True, "recipe": None,
        "layouts": [HOLISTIC_543.to_dict()], "labels": {s: i for i, s in enumerate(signs)}, "characters": None,
        "counts": {"rows": rows, "stored": rows, "rejected": 0, "frames": total_frames}, "parts": parts})
    return path


def run_ours(store: str) -> dict:
    from sltdata.stats import compute_stats

    s = compute_stats(store, landmarks=False)
    return {"sequences": s["sequences"], "classes": s["classes"], "p95": s["length"]["percentiles"]["p95"]}


def run_naive(store: str) -> dict:
    import pandas as pd

    df = pd.concat(pd.read_parquet(p) for p in sorted(Path(store).glob("part-*.parquet")))
    per_class = df["label"].value_counts()
    _ = df.groupby("participant").size(), df["frames"].quantile([0.05, 0.5, 0.95]), (df["frames"] > 384).sum()
    return {"sequences": len(df), "classes": int(per_class.size), "p95": float(df["frames"].quantile(0.95))}


def run_floor(store: str) -> dict:
    import pyarrow.parquet as pq

    n = sum(pq.read_table(p, columns=["landmarks"]).num_rows for p in sorted(Path(store).glob("part-*.parquet")))
    return {"sequences": n}


def build_real_store(path: Path, sequences: int) -> Path:
    from sltdata.sequence import Sequence
    from sltdata.store import META_FILE, STORE_FORMAT, STORE_VERSION, part_name, write_json_atomic, write_part
    from sltdata.layouts import HOLISTIC_543
    from sltdata.testing import fake_landmarks

    path.mkdir(parents=True, exist_ok=True)
    parts = []
    for j, start in enumerate(range(0, sequences, 500)):
        seqs = [Sequence(f"{i}", fake_landmarks(40, seed=i), HOLISTIC_543.name, label=f"s{i % 25}",
                         participant=f"p{i % 7}") for i in range(start, min(start + 500, sequences))]
        write_part(path / part_name(j), seqs)
        parts.append({"file": part_name(j), "sequences": len(seqs), "frames": 40 * len(seqs)})
    write_json_atomic(path / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True, "recipe": None,
        "layouts": [HOLISTIC_543.to_dict()], "labels": None, "characters": None, "parts": parts,
        "counts": {"rows": sequences, "stored": sequences, "rejected": 0, "frames": 40 * sequences}})
    return path


def run_detection(store: str) -> dict:
    from sltdata.stats import compute_stats

    s = compute_stats(store)
    return {"sequences": s["sequences"], "frames": s["detection"]["frames"]}


def child(which: str, store: str) -> None:
    fn = {"ours": run_ours, "naive": run_naive, "floor": run_floor, "detection": run_detection}.get(which)
    if which == "build-real":
        build_real_store(Path(store), int(os.environ["SLTDATA_BENCH_BUILD"]))
        return
    if which == "build":  # also in its own process: Linux keeps ru_maxrss across fork+exec, so a big
        rows, payload = map(int, os.environ["SLTDATA_BENCH_BUILD"].split(","))  # parent would inflate children's
        build_store(Path(store), rows, payload)
        return
    t = time.perf_counter()
    out = fn(store)
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(which: str, store: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", which, str(store)], capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--payload", type=int, default=256, help="float32 values per row in the landmarks column")
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the store here instead of a temp dir")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--detect", type=int, default=1000, help="sequences (x40 frames) for the detection-rate run; 0 = skip")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory() as tmp:
        store = args.keep or Path(tmp) / "store"
        t = time.perf_counter()
        if not (store / "store.json").is_file():
            subprocess.run([sys.executable, __file__, "--child", "build", str(store)], check=True,
                           env={**os.environ, "SLTDATA_BENCH_BUILD": f"{args.rows},{args.payload}"})
        size = sum(p.stat().st_size for p in store.glob("part-*.parquet")) / 2**20
        print(f"store: {args.rows:,} sequences, {args.payload} landmark floats each, {size:.0f} MiB of Parquet "
              f"(built in {time.perf_counter() - t:.1f}s)")
        results = {"ours": measure("ours", store), "floor": measure("floor", store)}
        if not args.skip_naive:
            results["naive"] = measure("naive", store)
        for name, label in (("ours", "ours (compute_stats, metadata only)"),
                            ("floor", "floor: read landmarks column only"),
                            ("naive", "naive: pandas read_parquet + groupby")):
            r = results.get(name)
            if r is None:
                continue
            if "error" in r:
                print(f"{label:40s} failed: {r['error']}")
                continue
            print(f"{label:40s} {r['seconds']:7.2f} s   peak RSS {r['peak_rss_mb']:7.0f} MiB")
        ours = results["ours"]
        if "error" not in ours:
            for name in ("floor", "naive"):
                r = results.get(name)
                if r and "error" not in r:
                    print(f"ours is {r['seconds'] / ours['seconds']:.1f}x faster than {name}")
            print(f"answer: {ours['sequences']:,} sequences, {ours['classes']} classes, p95 length {ours['p95']:g}")

        for n in ([args.detect, 2 * args.detect] if args.detect else []):
            real = Path(tmp) / f"real-{n}"
            subprocess.run([sys.executable, __file__, "--child", "build-real", str(real)], check=True,
                           env={**os.environ, "SLTDATA_BENCH_BUILD": str(n)})
            size = sum(p.stat().st_size for p in real.glob("part-*.parquet")) / 2**20
            r = measure("detection", real)
            if "error" in r:
                print(f"detection on {n} sequences failed: {r['error']}")
                continue
            print(f"detection rates, {n:,} sequences x 40 frames x 543 points ({size:.0f} MiB): {r['seconds']:.2f} s, "
                  f"{r['frames'] / r['seconds']:,.0f} frames/s, peak RSS {r['peak_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
