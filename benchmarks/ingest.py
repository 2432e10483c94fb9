"""Ingest throughput against a naive baseline and the pyarrow floor, and peak memory as data doubles.

    python benchmarks/ingest.py [--islr 2000] [--fs-files 20] [--fs-per-file 200] [--workers 2] [--qc-only]

* ours: ``sltdata.ingest.ingest`` (validation, reshape, zstd Parquet store, rejects report).
* naive: what public Kaggle notebooks do: pandas ``read_csv`` + ``iterrows``, ``pd.read_parquet`` per
  sequence (ISLR) or per file then a boolean filter per sequence (Fingerspelling), reshape with
  ``.values.reshape``; results kept in a list, nothing written.
* floor: ``pyarrow.parquet.read_table`` of the same files into memory, nothing else.
* QC: ours with and without the quality scores (``ingest(..., quality=False)``), best of 3 each,
  alternating; the overhead goal is <= 15%.

Each measurement runs in a fresh process; peak memory is that process's max RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_islr_naive(root: Path) -> int:
    import numpy as np
    import pandas as pd

    out = []
    for _, row in pd.read_csv(root / "train.csv").iterrows():
        data = pd.read_parquet(root / row["path"], columns=["x", "y", "z"])
        out.append(data.values.reshape(len(data) // 543, 543, 3).astype(np.float32))
    return sum(len(a) for a in out)


def run_fs_naive(root: Path) -> int:
    import numpy as np
    import pandas as pd

    frames = 0
    meta = pd.read_csv(root / "train.csv")
    for path, rows in meta.groupby("path", sort=False):
        df = pd.read_parquet(root / path)
        cols = [c for c in df.columns if c[:2] in ("x_", "y_", "z_")]
        for _, row in rows.iterrows():
            seq = df[df["sequence_id"] == row["sequence_id"]]
            arr = seq[cols].values.astype(np.float32).reshape(len(seq), 3, 543).transpose(0, 2, 1)
            frames += len(arr)
    return frames


def run_floor(root: Path, manifest: str) -> int:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rows = 0
    for path in dict.fromkeys(pcsv.read_csv(root / manifest).column("path").to_pylist()):
        rows += pq.read_table(root / path).num_rows
    return rows


def run_ours(root: Path, recipe: str, workers: int, quality: bool = True) -> int:
    from sltdata.ingest import ingest

    with tempfile.TemporaryDirectory() as d:
        r = ingest(recipe, root, Path(d) / "store", workers=workers, quality=quality)
        return r.stored


def peak_rss_mb() -> float:
    """This process's own high-water RSS. (getrusage's ru_maxrss survives exec on Linux, so a child
    would report its parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    root = Path(args.root)
    t = time.perf_counter()
    if args.what in ("ours", "ours-noqc"):
        n = run_ours(root, args.recipe, args.workers, quality=args.what == "ours")
    elif args.what == "floor":
        n = run_floor(root, "train.csv")
    elif args.recipe == "kaggle-islr":
        n = run_islr_naive(root)
    else:
        n = run_fs_naive(root)
    dt = time.perf_counter() - t
    rss = peak_rss_mb()
    print(json.dumps({"seconds": dt, "n": n, "peak_mb": rss}))


def measure(what: str, root: Path, recipe: str, workers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", what, "--root", str(root), "--recipe", recipe,
                          "--workers", str(workers)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def frames_of(root: Path, recipe: str) -> tuple[int, int]:
    from sltdata.ingest import ingest

    with tempfile.TemporaryDirectory() as d:
        r = ingest(recipe, root, Path(d) / "s")
        from sltdata.store import Store

        return r.stored, Store(Path(d) / "s").meta["counts"]["frames"]


def report(name: str, root: Path, recipe: str, workers: int) -> None:
    seqs, frames = frames_of(root, recipe)
    print(f"\n{name}: {seqs} sequences, {frames} frames")
    results = {w: measure(w, root, recipe, workers) for w in ("ours", "naive", "floor")}
    ours1 = measure("ours", root, recipe, 1)
    print(f"{'':10} {'seq/s':>10} {'frames/s':>12} {'seconds':>8} {'peak MB':>8}")
    for label, r in [("ours", results["ours"]), ("ours(1w)", ours1), ("naive", results["naive"]),
                     ("floor", results["floor"])]:
        print(f"{label:10} {seqs / r['seconds']:10.0f} {frames / r['seconds']:12.0f} {r['seconds']:8.2f} {r['peak_mb']:8.0f}")
    print(f"speed-up over naive: {results['naive']['seconds'] / results['ours']['seconds']:.1f}x (goal >= 5x); "
          f"cost over the floor: {results['ours']['seconds'] / results['floor']['seconds']:.2f}x (goal <= 2x)")


def qc_seconds(root: Path, recipe: str) -> tuple[float, int]:
    """CPU seconds of ``sequence_quality`` alone over every sequence of the ingested store (1 thread)."""
    from sltdata.ingest import ingest
    from sltdata.quality import sequence_quality
    from sltdata.store import Store

    with tempfile.TemporaryDirectory() as d:
        ingest(recipe, root, Path(d) / "s", quality=False)
        store = Store(Path(d) / "s")
        seqs = list(store)
        t = time.process_time()
        for s in seqs:
            sequence_quality(s.landmarks, store.layout(s.layout), s.fps)
        return time.process_time() - t, len(seqs)


def report_qc(name: str, root: Path, recipe: str, workers: int, repeats: int = 3) -> None:
    """Ingest time with and without the quality scores (best of ``repeats``, alternating), and the
    scores' own CPU time against a 1-worker ingest (steadier on a shared machine)."""
    on, off = [], []
    for _ in range(repeats):
        off.append(measure("ours-noqc", root, recipe, workers)["seconds"])
        on.append(measure("ours", root, recipe, workers)["seconds"])
    print(f"{name}: ingest {min(off):.2f} s without QC, {min(on):.2f} s with QC ({workers} workers, best of "
          f"{repeats}): QC adds {100 * (min(on) / min(off) - 1):+.1f}% (goal <= 15%)")
    qc, n = qc_seconds(root, recipe)
    one = min(measure("ours-noqc", root, recipe, 1)["seconds"] for _ in range(repeats))
    print(f"{name}: the scores alone take {qc:.2f} CPU s for {n} sequences ({1000 * qc / n:.2f} ms each), "
          f"{100 * qc / one:.1f}% of a 1-worker ingest without QC ({one:.2f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--islr", type=int, default=2000)
    p.add_argument("--fs-files", type=int, default=20)
    p.add_argument("--fs-per-file", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--qc-only", action="store_true", help="Only measure what the quality scores add to ingest.")
    p.add_argument("--child"), p.add_argument("--root"), p.add_argument("--recipe")
    args = p.parse_args()
    if args.child:
        args.what = args.child
        return child(args)
    from sltdata.synth import synth

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        print("synthesizing...", flush=True)
        islr = synth("kaggle-islr", d / "islr", sequences=args.islr, classes=20, participants=20)
        islr2 = synth("kaggle-islr", d / "islr2", sequences=2 * args.islr, classes=20, participants=20, seed=1)
        fs = synth("kaggle-fingerspelling", d / "fs", files=args.fs_files, sequences_per_file=args.fs_per_file,
                   supplemental_files=0)
        report_qc("kaggle-islr", islr, "kaggle-islr", args.workers)
        report_qc("kaggle-fingerspelling", fs, "kaggle-fingerspelling", args.workers)
        if args.qc_only:
            return
        report("kaggle-islr", islr, "kaggle-islr", args.workers)
        report("kaggle-fingerspelling", fs, "kaggle-fingerspelling", args.workers)
        a, b = measure("ours", islr, "kaggle-islr", args.workers), measure("ours", islr2, "kaggle-islr", args.workers)
        print(f"\npeak memory, kaggle-islr ingest: {a['peak_mb']:.0f} MB for {args.islr} sequences, "
              f"{b['peak_mb']:.0f} MB for {2 * args.islr} ({b['peak_mb'] / a['peak_mb']:.2f}x when the data doubles)")


if __name__ == "__main__":
    main()
