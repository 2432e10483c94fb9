"""The cost of checking shards while streaming them (issue 12: goal <= 10% of loader throughput).

    python benchmarks/verify_stream.py [--sequences 2000] [--work DIR] [--batch-size 64] [--repeats 3]

Same shards, same run, each figure with and without the per-member checks (``loader(verify=False)``
skips them; sample counts are checked either way):

* reader: ``sltdata.shards.read.iter_shard`` over every shard, no batching: the checks' cost at its
  largest, since reading tar members is nothing but copying bytes.
* loader, raw landmarks: ``sltdata.loader.loader``, one epoch over every split, in-process and with
  DataLoader workers; the trainers' loader when the augmentations run on the GPU.
* loader, default ISLR transforms (train=True): the trainers' loader on a CPU.
* the old indexes' fallback (the whole shard's sha256 at its end) through the reader, for comparison.

Runs with and without the checks alternate, best of ``--repeats`` each. The cost is the extra CPU
time (this process and its DataLoader workers, ``getrusage``), which other processes' load on a shared
machine does not change the way it changes wall time; samples/s are by wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def make_shards(work: Path, sequences: int) -> Path:
    from sltdata.shards import write_shards
    from sltdata.testing import synth_store

    shards = work / "shards"
    if (shards / "index.json").is_file():
        return shards
    store = work / "store"
    if not (store / "store.json").is_file():
        store = synth_store("kaggle-islr", work, sequences=sequences, classes=20, participants=20)
    write_shards(store, shards, folds=5, max_samples_per_shard=256)
    return shards


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its children that have ended (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def alternate(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """(best wall time, best CPU time) of each function, run in turn ``repeats`` times."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, c = time.perf_counter(), cpu_seconds()
            fn()
            times[k].append((time.perf_counter() - t, cpu_seconds() - c))
    return {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}


def reader_epoch(shards: Path, mode: str) -> int:
    """Every sample of every shard through the one reader; ``mode``: none / members / whole."""
    from sltdata.shards import ShardIndex
    from sltdata.shards.read import iter_shard

    idx, n = ShardIndex.open(shards), 0
    for s in idx.shards:
        entry = {"members": s, "none": None,
                 "whole": {k: v for k, v in s.items() if not k.startswith("member_sums")}}[mode]
        for _ in iter_shard(shards / s["file"], entry=entry):
            n += 1
    return n


def loader_epoch(shards: Path, verify: bool, workers: int, transforms, batch_size: int) -> int:
    from sltdata.loader import loader
    from sltdata.shards import ShardIndex

    n = 0
    for batch in loader(shards, folds=list(ShardIndex.open(shards).splits), transforms=transforms,
                        batch_size=batch_size, num_workers=workers, seed=0, train=True, verify=verify):
        n += len(batch["key"])
    return n


def report(name: str, n: int, off: tuple[float, float], on: tuple[float, float]) -> float:
    cost = on[1] / off[1] - 1
    print(f"  {name:<34} {n / off[0]:9,.0f} -> {n / on[0]:9,.0f} samples/s   "
          f"CPU {1e6 * off[1] / n:6.0f} -> {1e6 * on[1] / n:6.0f} us/sample   cost {cost:+6.1%}")
    return cost


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 1])
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sltdata-verify-bench-"))
    try:
        shards = make_shards(work, args.sequences)
        size = sum(p.stat().st_size for p in shards.glob("*.tar"))
        n = reader_epoch(shards, "none")
        data = b"\0" * (1 << 24)
        t = time.perf_counter()
        for _ in range(8):
            hashlib.sha256(data).digest()
        sha = 8 * len(data) / (time.perf_counter() - t) / 1e6
        print(f"{n} sequences, {size / 1e6:.0f} MB of tars ({size / n / 1e3:.0f} kB a sample); "
              f"sha256 alone {sha:,.0f} MB/s on one core")
        print("without -> with the checks (best of "
              f"{args.repeats}, alternating); cost = extra CPU time:")
        t = alternate({m: (lambda m=m: reader_epoch(shards, m)) for m in ("none", "members", "whole")}, args.repeats)
        report("reader, member checksums", n, t["none"], t["members"])
        report("reader, whole sha256 (old indexes)", n, t["none"], t["whole"])
        costs = {}
        for workers in args.workers:
            t = alternate({v: (lambda v=v: loader_epoch(shards, v, workers, None, args.batch_size))
                           for v in (False, True)}, args.repeats)
            costs[f"raw {workers}w"] = report(f"loader raw, num_workers={workers}", n, t[False], t[True])
        from sltdata.transforms import load_transform_config

        cfg = load_transform_config(None)
        t = alternate({v: (lambda v=v: loader_epoch(shards, v, 0, cfg, args.batch_size)) for v in (False, True)},
                      args.repeats)
        costs["transforms"] = report("loader, default ISLR transforms", n, t[False], t[True])
        worst = max(costs.values())
        print(f"goal: the checks cost <= 10% of loader throughput: {'met' if worst <= 0.10 else 'not met'} "
              f"(worst {worst:+.1%}, {max(costs, key=costs.get)})")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
