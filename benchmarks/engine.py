"""What the Ray engine costs over the local engine on the same ingest work, both on 2 local CPUs.

    python benchmarks/engine.py [--sequences 2000] [--part-size 64] [--cpus 2] [--repeats 3]

* local: ``ingest(..., engine=LocalEngine(cpus))``: threads (pyarrow and numpy release the GIL).
* ray: ``ingest(..., engine=RayEngine())`` on ``ray.init(num_cpus=cpus)``: one task per part.
  Cluster start-up is a one-off and reported apart; each timed run starts after a warm-up run, so
  the workers exist and have imported sltdata (as on a cluster that runs more than one job).

Both write the same bytes (checked here too); the figure is the wall time ratio ray / local.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path


def digest(store: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(store.iterdir()):
        if p.is_file() and p.name != ".sltdata.lock":
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def timed(raw: Path, out: Path, part_size: int, engine) -> float:
    from sltdata.ingest import ingest

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    ingest("kaggle-islr", raw, out, part_size=part_size, engine=engine)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--part-size", type=int, default=64)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    from sltdata.engine import LocalEngine, RayEngine
    from sltdata.synth import synth

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = synth("kaggle-islr", tmp / "raw", sequences=args.sequences, seed=0)
        local = LocalEngine(args.cpus)
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        on_ray = RayEngine()
        startup = time.perf_counter() - t
        timed(raw, tmp / "warm", args.part_size, on_ray)  # workers started, sltdata imported
        times = {"local": [], "ray": []}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
            times["local"].append(timed(raw, tmp / "local", args.part_size, local))
            times["ray"].append(timed(raw, tmp / "ray", args.part_size, on_ray))
        same = digest(tmp / "local") == digest(tmp / "ray")
        ray.shutdown()
    best = {k: min(v) for k, v in times.items()}
    parts = -(-args.sequences // args.part_size)
    print(json.dumps({
        "sequences": args.sequences, "parts": parts, "cpus": args.cpus, "repeats": args.repeats,
        "ray_cluster_start_s": round(startup, 2),
        "local_s": round(best["local"], 3), "ray_s": round(best["ray"], 3),
        "local_ms_per_sequence": round(1000 * best["local"] / args.sequences, 3),
        "ray_ms_per_sequence": round(1000 * best["ray"] / args.sequences, 3),
        "ray_over_local": round(best["ray"] / best["local"], 3),
        "all_times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "same_bytes": same,
    }, indent=2))


if __name__ == "__main__":
    main()
