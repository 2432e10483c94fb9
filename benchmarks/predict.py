"""`sltdata predict` speed: sequences/s from a store (CPU, or --device cuda), against the model-only
floor (the same batches' features already made, only the forward pass timed); and the app's
end-to-end seconds for a 2-second video (extraction, preprocessing, prediction, skeleton GIF: what
the page's upload handler does, without the browser's upload).

The run is trained here for one epoch on a small synth store (speed does not depend on the
weights); ``--config islr-default`` measures the default model (384 frames), ``islr-tiny`` the tiny one.

    python benchmarks/predict.py [--sequences 1000] [--config islr-default] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def make_run(work: Path, config: str, device: str) -> Path:
    from sltdata.testing import synth_store
    from sltdata.testing.train import islr_shards, recipe
    from sltdata.train.runs import train

    store = synth_store("kaggle-islr", work / "train", sequences=64, classes=6, participants=4)
    shards = islr_shards(store, work / "shards", folds=2)
    cfg = recipe(config, train={"epochs": 1, "device": device}, data={"batch_size": 16})
    train("islr", shards, work / "run", cfg, val_fold=0)
    return work / "run"


def predict_rate(run: Path, store: Path, n: int, batch_size: int, device: str) -> tuple[float, float]:
    """(predict sequences/s end to end, model-only sequences/s on the same batches)."""
    import torch

    from sltdata.predict import Predictor, read_inputs

    p = Predictor(run, device=device)
    p.predict([store], batch_size=batch_size, keys=None)  # warm-up (also reads the store once)
    start = time.perf_counter()
    result = p.predict([store], batch_size=batch_size)
    total = time.perf_counter() - start
    assert len(result.records) == n and not result.failures

    from sltdata.loader import collate

    items = [x for x in read_inputs([store])]
    batches = []
    for i in range(0, n, batch_size):
        samples = [{"key": it.key, "meta": {}, "landmarks": f, "mask": m}
                   for it in items[i:i + batch_size] for f, m in [p.features(it)]]
        b = collate(samples, None, None, None)
        batches.append((b["landmarks"].to(p.device), b["mask"].to(p.device)))
    with torch.no_grad():
        start = time.perf_counter()
        for x, m in batches:
            p.model(x, m)
        if p.device.type == "cuda":
            torch.cuda.synchronize()
        floor = time.perf_counter() - start
    return n / total, n / floor


def app_seconds(run: Path, work: Path, device: str, repeats: int = 3) -> tuple[float, int]:
    """Median seconds of the app's upload handler on a 2-second (50 frames at 25 fps) video."""
    from sltdata.app import Demo
    from sltdata.testing.video import astronaut, write_clip

    clip = write_clip(work / "clip.mp4", astronaut(), frames=50, fps=25.0)
    demo = Demo(run, device=device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        items, record = demo.analyse_path(clip)
        demo.animation(items[0], record["predictions"][0]["label"])
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], len(items[0].landmarks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=1000)
    ap.add_argument("--config", default="islr-default")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-app", action="store_true", help="skip the app figure (needs extract + app extras)")
    args = ap.parse_args()

    from sltdata.testing import synth_store

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = make_run(work, args.config, args.device)
        store = synth_store("kaggle-islr", work / "bench", sequences=args.sequences, classes=6, participants=6)
        rate, floor = predict_rate(run, store, args.sequences, args.batch_size, args.device)
        print(f"predict ({args.config}, {args.device}, batch {args.batch_size}): {args.sequences} sequences")
        print(f"  end to end   {rate:9.1f} seq/s   ({1000 / rate:6.2f} ms/seq)")
        print(f"  model only   {floor:9.1f} seq/s   (end to end / model only = {rate / floor:.2f})")
        if not args.no_app:
            secs, frames = app_seconds(run, work, args.device)
            print(f"app upload handler, 2-second video ({frames} frames): {secs:.2f} s end to end (median of 3)")


if __name__ == "__main__":
    main()
