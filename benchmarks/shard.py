"""Shard writing against the tar floor, and loader throughput raw and with the default ISLR transforms.

    python benchmarks/shard.py [--sequences 3000] [--work DIR] [--batch-size 64]

* shard write: ``sltdata.shards.write_shards`` from a synthetic ISLR store (reads the Parquet store,
  assigns folds, writes npy + json members, sha256 while writing, index.json), MB/s of tar bytes.
* floor: the same member bytes, already in memory, written to tars with ``tarfile.addfile`` and
  nothing else (no store read, no hashing, no npy encoding). Reading (decompressing) the store alone
  is printed too, since writing shards cannot avoid it.
* loader: ``sltdata.loader.loader`` over every split, one epoch, samples/s with 1 and 2 DataLoader
  workers; raw landmarks, then the default transform config (``load_transform_config(None)``,
  train=True so augmentations run). The goal is >= 5,000 raw samples/s per worker. In-process
  (num_workers=0) is printed as the reference without worker-to-main transfer.

Best of ``--repeats`` runs for each figure. ``--work DIR`` keeps the synthetic store between runs.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path


def make_store(work: Path, sequences: int) -> Path:
    from sltdata.testing import synth_store

    store = work / "store"
    if (store / "store.json").is_file():
        return store
    t = time.perf_counter()
    store = synth_store("kaggle-islr", work, sequences=sequences, classes=20, participants=20)
    print(f"made a synthetic ISLR store of {sequences} sequences in {time.perf_counter() - t:.1f}s")
    return store


def member_bytes(shard_dir: Path) -> list[tuple[str, bytes]]:
    from sltdata.shards.tar import iter_members

    out = []
    for p in sorted(shard_dir.glob("*.tar")):
        with open(p, "rb") as f:
            out += [(name, data) for name, _, data in iter_members(f)]
    return out


def floor_write(members: list[tuple[str, bytes]], out: Path, per_shard: int) -> int:
    """The same members written with tarfile.addfile, rolled over every ``per_shard`` members."""
    out.mkdir(parents=True, exist_ok=True)
    total, tar, i = 0, None, 0
    for j, (name, data) in enumerate(members):
        if j % per_shard == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(out / f"floor-{i:06d}.tar", "w", format=tarfile.PAX_FORMAT)
            i += 1
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    if tar is not None:
        tar.close()
    return sum(p.stat().st_size for p in out.glob("*.tar"))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def loader_rate(shards: Path, workers: int, transforms, batch_size: int, repeats: int, points=None) -> float:
    from sltdata.loader import loader

    splits = list(json.loads((shards / "index.json").read_text())["splits"])

    def epoch():
        n = 0
        for batch in loader(shards, folds=splits, transforms=transforms, batch_size=batch_size,
                            num_workers=workers, shuffle_buffer=1000, seed=0, train=True, points=points):
            n += len(batch["key"])
        return n

    n = epoch()
    return n / best(epoch, repeats)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequences", type=int, default=3000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sltdata-bench-shard-"))
    work.mkdir(parents=True, exist_ok=True)
    import sklearn.model_selection  # noqa: F401  (import cost is not shard writing)

    from sltdata.shards import write_shards

    store = make_store(work, args.sequences)
    shards = work / "shards"
    per_shard = 250

    def ours():
        write_shards(store, shards, folds=5, test_fraction=0.1, seed=0, max_samples_per_shard=per_shard,
                     overwrite=True)

    ours()  # warm the page cache
    t_ours = best(ours, args.repeats)
    total = sum(p.stat().st_size for p in shards.glob("*.tar"))
    members = member_bytes(shards)
    floor_dir = work / "floor"

    def floor():
        shutil.rmtree(floor_dir, ignore_errors=True)
        floor_write(members, floor_dir, per_shard * 2)

    t_floor = best(floor, args.repeats)
    from sltdata.store import Store

    def read_store():
        for batch in Store(store).iter_batches():
            batch.column("landmarks")

    t_read = best(read_store, args.repeats)
    mb = total / 1e6
    print(f"shard write: {args.sequences} sequences, {mb:.0f} MB of tars")
    print(f"  sltdata write_shards   {mb / t_ours:8.1f} MB/s  ({t_ours:.2f}s)")
    print(f"  floor (tarfile only)   {mb / t_floor:8.1f} MB/s  ({t_floor:.2f}s)")
    print(f"  ratio ours/floor time  {t_ours / t_floor:8.2f}x  (goal <= 1.5x)")
    print(f"  store read alone       {mb / t_read:8.1f} MB/s  ({t_read:.2f}s; zstd Parquet, not in the floor)")
    print(f"  ratio ours/(floor + store read) {t_ours / (t_floor + t_read):5.2f}x")
    del members

    from sltdata.transforms import load_transform_config

    from sltdata.transforms import build_pipeline

    cfg = load_transform_config(None)
    points = build_pipeline(cfg).input_points  # what a GPU run with batched augmentation reads
    print(f"loader: one epoch over all {args.sequences} sequences, batch {args.batch_size}; "
          f"'raw {len(points)} pts' = raw landmarks of the points the default ISLR transforms read "
          "(the trainers' loader when augmentations run on the GPU)")
    for workers in (0, 1, 2):
        raw = loader_rate(shards, workers, None, args.batch_size, args.repeats)
        sel = loader_rate(shards, workers, None, args.batch_size, args.repeats, points=points)
        tf = loader_rate(shards, workers, cfg, args.batch_size, args.repeats)
        if workers == 0:
            print(f"  in-process (num_workers=0): raw {raw:6.0f}   raw {len(points)} pts {sel:6.0f}   "
                  f"default ISLR transforms {tf:6.0f} samples/s")
            continue
        print(f"  {workers} worker(s): raw {raw:6.0f} ({raw / workers:5.0f}/worker)   raw {len(points)} pts {sel:6.0f} "
              f"({sel / workers:5.0f}/worker)   transforms {tf:6.0f} ({tf / workers:5.0f}/worker)   "
              f"samples/s (goal >= 5000 raw/worker)")
    if args.work is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
