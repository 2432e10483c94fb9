"""`sltdata audit` cost: signatures per sequence, the near-duplicate search as N grows, peak memory.

    python benchmarks/audit.py [--sizes 5000 10000 20000] [--shard-sequences 1000] [--target 100000]

* stream: ``audit_shards`` on a real shard directory of synthetic sequences (read + signature +
  search), per sequence.
* search: ``near_duplicates`` on synthetic signatures: random directions with the norms of real
  signatures of 300 rendered synthetic sequences (norms are what the search prunes on), N x N; the
  time grows at most as N², so the projection to ``--target`` sequences is time(N) x (target / N)²
  (an upper bound: pruning keeps a fixed share of the pairs).
* memory: each size runs in a fresh process; its peak RSS, and the signatures' own bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_search(n: int) -> dict:
    import numpy as np

    from sltdata.audit import DIM, WINDOW_FRACTIONS, near_duplicates

    from sltdata.audit import sequence_signatures
    from sltdata.layouts import HOLISTIC_543
    from sltdata.synth import make_gestures, make_signers, render

    rng = np.random.default_rng(0)
    signers = make_signers(20, rng)
    real = np.stack([sequence_signatures(render([g], signers[i % 20], rng), HOLISTIC_543)
                     for i, g in enumerate(make_gestures(300, rng))])  # (300, views, DIM)
    views = 2 + 2 * len(WINDOW_FRACTIONS)
    norms = np.linalg.norm(real, axis=2)[rng.integers(0, len(real), (n, views)), np.arange(views)]
    dirs = rng.standard_normal((n, views, DIM), dtype=np.float32)
    sigs = (dirs / np.linalg.norm(dirs, axis=2, keepdims=True) * norms[..., None]).astype(np.float16)
    splits = rng.integers(0, 5, n)
    frames = rng.integers(16, 200, n).astype(np.float64)
    keys = [f"k{i:07d}" for i in range(n)]
    t = time.perf_counter()
    found = near_duplicates(sigs, splits, frames, keys, [f"fold{i}" for i in range(5)])
    return {"n": n, "seconds": time.perf_counter() - t, "found": len(found), "peak_mb": peak_rss_mb(),
            "signature_mb": sigs.nbytes / 2**20}


def child_stream(n: int) -> dict:
    import numpy as np

    from sltdata.audit import audit_shards
    from sltdata.layouts import HOLISTIC_543
    from sltdata.sequence import Sequence
    from sltdata.shards import write_shards
    from sltdata.synth import make_gestures, make_signers, render
    from sltdata.testing.stores import store_from_sequences

    rng = np.random.default_rng(0)
    gestures, signers = make_gestures(n, rng), make_signers(20, rng)
    seqs = [Sequence(key=f"s{i:06d}", landmarks=render([g], signers[i % 20], rng), layout=HOLISTIC_543.name,
                     participant=f"p{i % 20}") for i, g in enumerate(gestures)]
    with tempfile.TemporaryDirectory() as d:
        store = store_from_sequences(seqs, Path(d) / "store")
        write_shards(store, Path(d) / "shards", folds=4, test_fraction=0.0)
        t = time.perf_counter()
        report = audit_shards(Path(d) / "shards")
        dt = time.perf_counter() - t
    return {"n": n, "seconds": dt, "found": len(report.near_duplicates), "peak_mb": peak_rss_mb()}


def run(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(n)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    p.add_argument("--shard-sequences", type=int, default=1000)
    p.add_argument("--target", type=int, default=100_000)
    p.add_argument("--child"), p.add_argument("--n", type=int)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child_search(args.n) if args.child == "search" else child_stream(args.n)))
        return
    s = run("stream", args.shard_sequences)
    per_seq = s["seconds"] / s["n"]
    print(f"stream: {s['n']} sequences read, signed and searched in {s['seconds']:.2f} s "
          f"({1000 * per_seq:.2f} ms each; {s['found']} near-duplicates among distinct synthetic sequences), "
          f"peak {s['peak_mb']:.0f} MB")
    print(f"{'N':>8} {'search s':>9} {'peak MB':>8} {'sigs MB':>8} {'found':>6}")
    rows = [run("search", n) for n in args.sizes]
    for r in rows:
        print(f"{r['n']:8d} {r['seconds']:9.2f} {r['peak_mb']:8.0f} {r['signature_mb']:8.1f} {r['found']:6d}")
    big = rows[-1]
    search = big["seconds"] * (args.target / big["n"]) ** 2
    stream = per_seq * args.target
    sig_mb = big["signature_mb"] * args.target / big["n"]
    print(f"projected for {args.target} sequences: search {search / 60:.1f} min + reading and signing "
          f"{stream / 60:.1f} min (the 1000-sequence stream time includes its own small search) = "
          f"{(search + stream) / 60:.1f} min; signatures {sig_mb:.0f} MB, peak about "
          f"{big['peak_mb'] - big['signature_mb'] + sig_mb:.0f} MB")


if __name__ == "__main__":
    main()
