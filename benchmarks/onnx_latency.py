"""Latency of the raw-input ONNX model (``sltdata export RUN --format onnx``) per sequence on the CPU,
against Kaggle's ISLR limit of 100 ms per sequence (CPU, one sequence at a time, preprocessing included).

    python benchmarks/onnx_latency.py [--recipes islr-default islr-tiny] [--repeats 20] [--threads 1]
                                      [--realdata ../shared/realdata/islr]

For each recipe the model is built at the recipe's size (weights as initialised: latency does not
depend on their values; 250 classes, as asl-signs has), exported with its preprocessing inside the
graph exactly as a run is, and run by onnxruntime on the real ISLR sequences of ``--realdata`` (or,
without them, on sequences of 16 to 200 frames with NaN points) one at a time. Reports mean / p50 /
p95 ms per sequence over every call and the ratio of p95 to 100 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def sequences(realdata: Path | None) -> tuple[list[np.ndarray], str]:
    if realdata is not None and (realdata / "train_landmark_files").is_dir():
        from sltdata.sources.kaggle_islr import read_islr_landmarks

        seqs = [read_islr_landmarks(p) for p in sorted((realdata / "train_landmark_files").glob("*/*.parquet"))]
        return seqs, f"{len(seqs)} real ISLR sequences ({min(map(len, seqs))}-{max(map(len, seqs))} frames)"
    from sltdata.train.base import DatasetInfo
    from sltdata.train.export import example_landmarks

    info = DatasetInfo(feature_dim=1, layout="holistic-543")
    seqs = [example_landmarks(info, n, seed=n) for n in (16, 32, 64, 100, 200)]
    return seqs, "5 random sequences (16-200 frames)"


def export_recipe(name: str, classes: int, out: Path):
    from sltdata.train.base import DatasetInfo
    from sltdata.train.config import load_config
    from sltdata.train.registry import bundled_config, get_trainer
    from sltdata.transforms import build_pipeline

    trainer = get_trainer("islr")
    cfg = load_config(bundled_config(name), model_class=trainer.config_class)
    pipe = build_pipeline(cfg.transforms)
    info = DatasetInfo(feature_dim=pipe.feature_dim, max_length=pipe.max_length,
                       labels={f"sign{i}": i for i in range(classes)}, layout="holistic-543",
                       transform=pipe.cfg.to_dict())
    model = trainer.build(cfg.model, info).eval()
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    path = trainer.export(model, info, out / f"{name}.onnx", "onnx", cfg.model)
    return path, params, pipe.max_length, time.perf_counter() - t0


def latency(path: Path, seqs: list[np.ndarray], repeats: int, threads: int) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for s in seqs:                                        # warm-up: first calls allocate
        sess.run(None, {"landmarks": s})
    times = []
    for _ in range(repeats):
        for s in seqs:
            t0 = time.perf_counter()
            sess.run(None, {"landmarks": s})
            times.append(time.perf_counter() - t0)
    return np.array(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=["islr-default", "islr-tiny"])
    ap.add_argument("--classes", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (Kaggle's CPU scoring: few)")
    ap.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/realdata/islr")
    args = ap.parse_args()
    seqs, what = sequences(args.realdata)
    print(f"onnxruntime raw-input latency, CPU, {args.threads} thread(s), {what}, {args.repeats} passes")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            path, params, m, export_s = export_recipe(name, args.classes, Path(tmp))
            ms = latency(path, seqs, args.repeats, args.threads)
            p50, p95 = np.percentile(ms, [50, 95])
            print(f"{name} ({params / 1e6:.2f} M params, max_length {m}, {path.stat().st_size / 1e6:.1f} MB, "
                  f"export {export_s:.0f} s): mean {ms.mean():.2f} ms, p50 {p50:.2f} ms, p95 {p95:.2f} ms "
                  f"per sequence -> p95 / 100 ms limit = {p95 / 100:.3f}")


if __name__ == "__main__":
    main()
