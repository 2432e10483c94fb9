"""Ingest of a dataset root on an S3-protocol server: the driver downloading the root whole first
(as before) against the lazy mirror (manifest and label map downloaded, each landmark file fetched
by the part that reads it).

    python benchmarks/remote.py [--sequences 2000] [--part-size 64] [--workers 2]

The server is moto's, in a process of its own on 127.0.0.1: its requests cost what a local HTTP
server's cost (and it shares the two cores with the ingest), not what a real bucket's do, so the
figures say where the time goes (how long the first part waits), not what S3 would take. Both runs
write the same store (checked).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from engine import digest  # benchmarks/engine.py: a store's bytes as one hash


def run(url: str, out: Path, part_size: int, workers: int, lazy: bool) -> dict:
    """One ingest; seconds until the first part starts (planning done) and in all."""
    from sltdata import fs, ingest as ingest_module

    first: list[float] = []
    real_run_part = ingest_module._run_part
    real_input_dir = fs.input_dir

    def run_part(*a):
        first.append(time.perf_counter())
        return real_run_part(*a)

    def whole(url, lazy=None):  # the mirror as it was: everything downloaded first
        return real_input_dir(url)
    ingest_module._run_part = run_part
    if not lazy:
        fs.input_dir = whole
    try:
        t = time.perf_counter()
        result = ingest_module.ingest("kaggle-islr", url, out, part_size=part_size, workers=workers)
        total = time.perf_counter() - t
    finally:
        ingest_module._run_part = real_run_part
        fs.input_dir = real_input_dir
    return {"first_part_s": min(first) - t, "total_s": total, "stored": result.stored, "digest": digest(out)}


@contextmanager
def moto_process(name: str):
    """``s3://NAME`` on moto's server in a process of its own (in this one it would take the GIL from
    the ingest it serves); endpoint and fake keys through the environment, as a user sets them."""
    import os
    import socket
    import subprocess
    import sys

    import s3fs

    from sltdata import fs
    from sltdata.testing.s3 import FAKE_KEYS

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(FAKE_KEYS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        s3, _ = fs.url_to_fs(f"s3://{name}")
        s3.mkdir(name)
        yield f"s3://{name}"
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--part-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    from sltdata import fs
    from sltdata.synth import synth

    with tempfile.TemporaryDirectory() as tmp, moto_process("bench") as bucket:
        raw = synth("kaggle-islr", Path(tmp) / "raw", sequences=a.sequences, classes=50, participants=20, seed=1)
        size = sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
        files = sum(1 for p in raw.rglob("*") if p.is_file())
        fs.upload_dir(raw, f"{bucket}/raw")
        print(f"{a.sequences} ISLR sequences: {files} files, {size / 2**20:.1f} MB on the server; "
              f"parts of {a.part_size}, {a.workers} worker threads")
        print(f"{'mirror':>7} {'first part s':>12} {'total s':>8}")
        results = {}
        for lazy in (False, True, False, True):  # interleaved, best of two each
            r = run(f"{bucket}/raw", Path(tmp) / f"out-{lazy}-{time.monotonic_ns()}", a.part_size, a.workers, lazy)
            name = "lazy" if lazy else "whole"
            print(f"{name:>7} {r['first_part_s']:>12.2f} {r['total_s']:>8.2f}", flush=True)
            best = results.get(name)
            results[name] = r if best is None or r["total_s"] < best["total_s"] else best
        same = len({r["digest"] for r in results.values()}) == 1
        print(f"best of two: whole {results['whole']['total_s']:.2f} s (first part after "
              f"{results['whole']['first_part_s']:.2f} s), lazy {results['lazy']['total_s']:.2f} s (first part after "
              f"{results['lazy']['first_part_s']:.2f} s); stores identical: {same}")


if __name__ == "__main__":
    main()
