"""Scale: manifest planning, ingest time and memory as the data grows, Fingerspelling memory per worker.

    python benchmarks/scale.py plan [--rows 100000 1000000 3000000] [--reference-up-to 1000000]
    python benchmarks/scale.py islr [--sizes 2000 4000 8000] [--workers 2]
    python benchmarks/scale.py fs [--sequences 1000] [--frames 150] [--workers 2]

* plan: a kaggle-fingerspelling manifest of N rows over 1,000 files, with 1% of rows pointing at
  missing files, 1% repeated keys and 1% phrases with a character outside the map; the DuckDB
  planner (``sltdata.plan.plan_ingest``) against the reference row loop (``sltdata.ingest.plan_rows``).
* islr: ``sltdata ingest`` of N synthetic ISLR sequences; seconds per sequence and peak RSS, and the
  projected wall time of the full 94,477-sequence set on 1, 8 and 64 workers from the measured cost.
* fs: one wide parquet file of N sequences x F frames; peak RSS and CPU seconds of ``sltdata ingest``
  with 2 workers (threads of one process: the peak per worker is the process's peak over an idle
  interpreter's, halved) against ``pyarrow.parquet.read_table`` of the same file (the read floor).

Each measurement runs in a fresh process; peak RSS is sampled with psutil every 10 ms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ISLR_FULL = 94_477


def measure(code: str) -> dict:
    """Run ``code`` in a fresh Python; its printed JSON plus the peak RSS (MB) psutil saw and the CPU
    seconds (user + system) it used, its threads included: on a shared box CPU time is the figure
    that other jobs do not inflate."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    p, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, p.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.01)
    proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = json.loads(proc.stdout.read().strip().splitlines()[-1])
    return out | {"peak_mb": peak / 2**20, "cpu_seconds": cpu}


# --- plan ---------------------------------------------------------------------------------------

def make_manifest(root: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(0)
    (root / "train_landmarks").mkdir(parents=True, exist_ok=True)
    for f in range(1000):
        (root / "train_landmarks" / f"{f}.parquet").write_bytes(b"")
    file = rng.integers(0, 1000, rows)
    path = np.char.add(np.char.add("train_landmarks/", file.astype(str)), ".parquet")
    missing = rng.random(rows) < 0.01
    path[missing] = np.char.add("train_landmarks/gone-", np.arange(missing.sum()).astype(str))
    key = np.arange(rows).astype(str)
    dup = rng.random(rows) < 0.01
    key[dup] = key[rng.integers(0, rows, dup.sum())]
    phrase = np.array(["hello there", "www.signs.org", "42 main street"])[rng.integers(0, 3, rows)]
    phrase[rng.random(rows) < 0.01] = "caf\u00e9"
    pcsv.write_csv(pa.table({"path": path, "file_id": file.astype(str), "sequence_id": key,
                             "participant_id": (file % 20).astype(str), "phrase": phrase}), root / "train.csv",
                   pcsv.WriteOptions(quoting_style="none"))
    chars = " abcdefghijklmnopqrstuvwxyz0123456789.-+"
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))


PLAN = """
import json, time
from pathlib import Path
from sltdata.ingest import _fingerprint, _load_map, plan_rows
from sltdata.plan import plan_ingest
from sltdata.recipes import load_recipe
from sltdata.sources import get_source
root = Path({root!r}); recipe = load_recipe("kaggle-fingerspelling")
source = get_source(recipe.source)(root, recipe)
chars, _ = _load_map(root, recipe, "text", False)
t = time.perf_counter()
planner = plan_ingest if {planner!r} == "duckdb" else plan_rows
with planner(root, recipe, source, "train.csv", None, chars) as p:
    planned = time.perf_counter() - t
    _fingerprint(recipe, source, p.parts())  # one pass over every part, as ingest makes before it starts
    print(json.dumps({{"seconds": planned, "pass": time.perf_counter() - t - planned, "rows": p.rows,
                      "rejects": len(p.rejects), "parts": len(p.sizes), "planned_rows": sum(p.sizes)}}))
"""


def bench_plan(sizes: list[int], reference_up_to: int) -> None:
    """Planning (manifest scanned, checked, grouped and packed) and one pass over the parts it gives
    (what ingest streams twice: for the fingerprint, then to the workers); peak RSS of the whole, and
    of an interpreter that only imported sltdata.ingest (what "flat" is measured over)."""
    with tempfile.TemporaryDirectory() as tmp:
        idle = measure("import json, sltdata.ingest, sltdata.plan; print(json.dumps({}))")
        print(f"idle interpreter (import sltdata.ingest): {idle['peak_mb']:.0f} MB")
        print(f"{'rows':>9} {'planner':>8} {'plan s':>7} {'pass s':>7} {'peak MB':>8} {'over idle':>9} "
              f"{'rejects':>8} {'parts':>6}")
        for rows in sizes:
            root = Path(tmp) / str(rows)
            make_manifest(root, rows)
            for planner in ("duckdb", "rows") if rows <= reference_up_to else ("duckdb",):
                m = measure(PLAN.format(root=str(root), planner=planner))
                assert m["planned_rows"] + m["rejects"] == m["rows"], m
                print(f"{rows:>9} {planner:>8} {m['seconds']:>7.2f} {m['pass']:>7.2f} {m['peak_mb']:>8.0f} "
                      f"{m['peak_mb'] - idle['peak_mb']:>9.0f} {m['rejects']:>8} {m['parts']:>6}", flush=True)
            shutil.rmtree(root)


# --- islr -----------------------------------------------------------------------------------------

INGEST = """
import json, time
from sltdata.ingest import ingest
t = time.perf_counter()
r = ingest({recipe!r}, {root!r}, {out!r}, workers={workers})
print(json.dumps({{"seconds": time.perf_counter() - t, "stored": r.stored}}))
"""


def bench_islr(sizes: list[int], workers: int) -> None:
    """Wall and CPU seconds per sequence as the data grows. The projection uses CPU seconds per
    sequence (one worker's cost, which other jobs on the box do not inflate) divided by the workers,
    i.e. it assumes ingest parallelises perfectly over parts (it does: parts are independent)."""
    import os

    from sltdata.synth import synth_islr

    with tempfile.TemporaryDirectory() as tmp:
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'sequences':>9} {'seconds':>8} {'ms/seq':>7} {'cpu s':>8} {'cpu ms/seq':>10} {'peak MB':>8} {'load':>5}")
        per_seq, cpu_per_seq = [], []
        for n in sizes:
            root = Path(tmp) / f"islr{n}"
            synth_islr(root, sequences=n, classes=50, participants=20, seed=1)
            m = measure(INGEST.format(recipe="kaggle-islr", root=str(root), out=str(Path(tmp) / f"s{n}"),
                                      workers=workers))
            per_seq.append(m["seconds"] / n)
            cpu_per_seq.append(m["cpu_seconds"] / n)
            print(f"{n:>9} {m['seconds']:>8.2f} {1000 * per_seq[-1]:>7.2f} {m['cpu_seconds']:>8.2f} "
                  f"{1000 * cpu_per_seq[-1]:>10.2f} {m['peak_mb']:>8.0f} {os.getloadavg()[0]:>5.1f}", flush=True)
            shutil.rmtree(root)
            shutil.rmtree(Path(tmp) / f"s{n}")
        print(f"time per sequence, largest / smallest: wall {per_seq[-1] / per_seq[0]:.2f}x, "
              f"CPU {cpu_per_seq[-1] / cpu_per_seq[0]:.2f}x (goal: within 15%)")
        cost = max(cpu_per_seq)  # CPU seconds of one worker per sequence, the worst size measured
        for w in (1, 8, 64):
            print(f"projected {ISLR_FULL} sequences on {w:>2} worker(s): {ISLR_FULL * cost / w / 60:.1f} min "
                  f"({1000 * cost:.2f} CPU ms/sequence)")


# --- fingerspelling -------------------------------------------------------------------------------

FLOOR = """
import json, time, pyarrow.parquet as pq
t = time.perf_counter(); n = pq.read_table({path!r}).num_rows
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": n}}))
"""


def make_fs_file(root: Path, sequences: int, frames: int) -> Path:
    """``sequences`` x ``frames`` random landmarks (they compress as little as real ones), written a
    few hundred sequences at a time so the writer stays small."""
    import numpy as np
    import pyarrow.parquet as pq

    from sltdata.sources.kaggle_fingerspelling import ROW_GROUP_ROWS, write_fingerspelling_parquet

    (root / "train_landmarks").mkdir(parents=True, exist_ok=True)
    rel = "train_landmarks/1.parquet"
    rng = np.random.default_rng(0)
    writer, rows = None, []
    for start in range(0, sequences, 200):
        keys = range(1000 + start, 1000 + min(sequences, start + 200))
        piece = root / "piece.parquet"
        write_fingerspelling_parquet(piece, {str(k): rng.random((frames, 543, 3), dtype=np.float32) for k in keys})
        table = pq.read_table(piece)
        writer = writer or pq.ParquetWriter(root / rel, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        rows += [f"{rel},1,{k},p1,ab" for k in keys]
        piece.unlink()
    writer.close()
    (root / "train.csv").write_text("path,file_id,sequence_id,participant_id,phrase\n" + "\n".join(rows) + "\n")
    (root / "character_to_prediction_index.json").write_text(json.dumps({" ": 0, "a": 1, "b": 2}))
    return root / rel


def bench_fs(sequences: int, frames: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fs"
        path = make_fs_file(root, sequences, frames)
        floor = measure(FLOOR.format(path=str(path)))
        base = measure("import json, sltdata.ingest; print(json.dumps({}))")
        ours = measure(INGEST.format(recipe="kaggle-fingerspelling", root=str(root), out=str(Path(tmp) / "s"),
                                     workers=workers))
        mb = path.stat().st_size / 2**20
        print(f"kaggle-fingerspelling: {sequences} sequences x {frames} frames, one file of {mb:.0f} MB")
        print(f"{'':>6} {'seconds':>8} {'cpu s':>8} {'peak MB':>8}")
        print(f"{'ours':>6} {ours['seconds']:>8.2f} {ours['cpu_seconds']:>8.2f} {ours['peak_mb']:>8.0f}   "
              f"({workers} workers, stored {ours['stored']})")
        print(f"{'floor':>6} {floor['seconds']:>8.2f} {floor['cpu_seconds']:>8.2f} {floor['peak_mb']:>8.0f}")
        print(f"{'idle':>6} {'':>8} {base['cpu_seconds']:>8.2f} {base['peak_mb']:>8.0f}   "
              "(python -c 'import sltdata.ingest')")
        per_worker = (ours["peak_mb"] - base["peak_mb"]) / workers
        cpu = ours["cpu_seconds"] / floor["cpu_seconds"]
        net = (ours["cpu_seconds"] - base["cpu_seconds"]) / floor["cpu_seconds"]
        print(f"peak per worker: {per_worker:.0f} MB over the {base['peak_mb']:.0f} MB of an idle interpreter "
              f"(goal <= 600)")
        print(f"cost over the floor: CPU {cpu:.2f}x ({net:.2f}x less the idle interpreter's imports); wall "
              f"{ours['seconds'] / floor['seconds']:.2f}x, which other jobs on the box inflate (goal <= 2x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("plan")
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    p.add_argument("--reference-up-to", type=int, default=1_000_000,
                   help="run the row loop only for manifests of at most this many rows (it takes ~1 min per million)")
    i = sub.add_parser("islr")
    i.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    i.add_argument("--workers", type=int, default=2)
    f = sub.add_parser("fs")
    f.add_argument("--sequences", type=int, default=1000)
    f.add_argument("--frames", type=int, default=150)
    f.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if a.what == "plan":
        bench_plan(a.rows, a.reference_up_to)
    elif a.what == "islr":
        bench_islr(a.sizes, a.workers)
    else:
        bench_fs(a.sequences, a.frames, a.workers)


if __name__ == "__main__":
    main()
