"""Per-sample cost of the default ISLR transform pipeline, NumPy per sample vs torch batched vs naive.

    python benchmarks/transforms.py [--sequences 1000] [--batch 512] [--device cpu|cuda] [--repeats 3]

* numpy: ``build_pipeline(cfg)(landmarks, sample_rng(0, key), train=True)`` on one core: select 118
  points, drop empty frames, normalize, truncate/pad to 384, motion features, and every augmentation
  (each at p=1, the worst case; also at the default probabilities and with no augmentation).
* batch: ``BatchAugment(cfg, device=...)`` on padded batches of ``--batch`` raw (B, T, 543, 3) sequences
  already on the device, drawing its own parameters from a torch generator.
* naive: the same steps written the obvious way, per sample (np.nanmean/np.nanstd, np.interp per
  point and coordinate, a Python loop over frames for the affine, jitter and masks, np.diff, np.pad).

Sequences come from ``sltdata.synth`` (the motion model behind ``sltdata synth``), 20-200 frames.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the per-sample paths are measured on one core

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sltdata.layouts import mirror_indices, preset_indices, reference_indices  # noqa: E402
from sltdata.synth import make_gestures, make_signers, render  # noqa: E402
from sltdata.transforms import build_pipeline, load_transform_config, sample_rng  # noqa: E402

AUGS = ("rescale", "flip", "affine", "jitter", "frame_mask", "cutout")
ALL_ON = {"augment": {k: {"p": 1.0} for k in AUGS}}


def make_sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    gestures = make_gestures(50, rng, frames=(20, 200))
    signers = make_signers(8, rng)
    return [render([gestures[i % 50]], signers[i % 8], rng) for i in range(n)]


# --- the obvious per-sample implementation -----------------------------------------------------

SEL = preset_indices("holistic-543", "islr-1st")
NOSE = reference_indices("holistic-543", "nose")[0]
MIRROR = mirror_indices("holistic-543")


def naive_pipeline(lm: np.ndarray, rng: np.random.Generator, max_len: int = 384) -> tuple[np.ndarray, np.ndarray]:
    cfg = load_transform_config(ALL_ON).augment
    x = lm[:, SEL, :2].copy()
    nose = lm[:, NOSE, :2].copy()
    empty = np.isnan(x).all(axis=(1, 2))
    if not empty.all():
        x, nose = x[~empty], nose[~empty]
    # temporal rescale, one np.interp per point and coordinate
    new_len = max(1, int(round(len(x) * rng.uniform(0.5, 1.5))))
    old_t, new_t = np.linspace(0, 1, len(x)), np.linspace(0, 1, new_len)
    x = np.stack([np.stack([np.interp(new_t, old_t, x[:, p, c]) for c in range(2)], -1)
                  for p in range(x.shape[1])], 1).astype(np.float32)
    nose = np.stack([np.stack([np.interp(new_t, old_t, nose[:, p, c]) for c in range(2)], -1)
                     for p in range(nose.shape[1])], 1)
    center = np.nanmean(nose.reshape(-1, 2), axis=0) if not np.isnan(nose).all() else np.nanmean(x.reshape(-1, 2), 0)
    std = np.nanstd(x - center)
    x = (x - center) / std
    x = x[:max_len]
    # flip: swap mirror pairs one by one
    pos = {int(p): i for i, p in enumerate(SEL)}
    flipped = x.copy()
    for i, p in enumerate(SEL):
        flipped[:, i] = x[:, pos[int(MIRROR[p])]]
    flipped[..., 0] *= -1
    x = flipped
    # affine, frame by frame
    a = cfg.affine
    ang = math.radians(rng.uniform(-a.rotate, a.rotate))
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    shear = np.array([[1, rng.uniform(-a.shear, a.shear)], [rng.uniform(-a.shear, a.shear), 1]])
    mat = rot @ shear * rng.uniform(*a.scale)
    c = np.nanmean(x.reshape(-1, 2), axis=0)
    t = rng.uniform(-a.translate, a.translate, 2)
    for f in range(len(x)):
        x[f] = (x[f] - c) @ mat.T + c + t
    # jitter, frame masking, cutout
    for f in range(len(x)):
        x[f] += rng.normal(0, cfg.jitter.sigma, 2)
    frac = rng.uniform(*cfg.frame_mask.fraction)
    for f in range(len(x)):
        if rng.random() < frac:
            x[f] = np.nan
    size = int(len(x) * rng.uniform(*cfg.cutout.length))
    start = rng.integers(0, len(x) - size + 1)
    x[start:start + size] = np.nan
    # motion
    vel = np.diff(x, axis=0, append=x[-1:])
    acc = np.diff(vel, axis=0, append=vel[-1:])
    acc[-2:] = 0
    feats = np.concatenate([x.reshape(len(x), -1), vel.reshape(len(x), -1), acc.reshape(len(x), -1)], -1)
    feats = np.nan_to_num(feats).astype(np.float32)
    mask = np.ones(len(feats), bool)
    pad = max_len - len(feats)
    return np.pad(feats, ((0, pad), (0, 0))), np.pad(mask, (0, pad))


# --- timing ----------------------------------------------------------------------------------

def per_sample_rate(fn, seqs, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for i, lm in enumerate(seqs):
            fn(lm, sample_rng(0, f"seq-{i}"))
        best = min(best, time.perf_counter() - start)
    return len(seqs) / best


def batch_rate(seqs, batch: int, device: str, repeats: int) -> tuple[float, int]:
    import torch

    from sltdata.transforms.torch_ops import BatchAugment

    torch.set_num_threads(os.cpu_count() or 1)  # a batch may use every core
    aug = BatchAugment(load_transform_config(ALL_ON), device=device)
    batches = []
    for start in range(0, 2 * batch, batch):
        chunk = [seqs[(start + i) % len(seqs)] for i in range(batch)]
        t = max(len(s) for s in chunk)
        x = torch.full((batch, t, 543, 3), float("nan"))
        mask = torch.zeros(batch, t, dtype=torch.bool)
        for i, s in enumerate(chunk):
            x[i, :len(s)] = torch.from_numpy(s)
            mask[i, :len(s)] = True
        batches.append((x.to(device), mask.to(device)))
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    aug(*batches[0], gen, train=True)  # warm-up
    sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for x, mask in batches:
            feats, _ = aug(x, mask, gen, train=True)
        sync()
        best = min(best, time.perf_counter() - start)
    return len(batches) * batch / best, torch.get_num_threads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-sequences", type=int, default=200)
    args = ap.parse_args()

    seqs = make_sequences(args.sequences)
    frames = np.array([len(s) for s in seqs])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (other work shares these cores); numpy {np.__version__}")
    print(f"sequences: {len(seqs)} synthetic holistic-543, {frames.min()}-{frames.max()} frames "
          f"(mean {frames.mean():.0f}); pipeline: islr-1st 118 points, x/y, nose+std, max_length 384, "
          f"velocity+acceleration -> (384, {build_pipeline(None).feature_dim})")

    all_on = build_pipeline(ALL_ON)
    default = build_pipeline(None)
    rates = {
        "numpy, all augmentations (p=1)": per_sample_rate(lambda x, r: all_on(x, r, train=True), seqs, args.repeats),
        "numpy, default probabilities": per_sample_rate(lambda x, r: default(x, r, train=True), seqs, args.repeats),
        "numpy, no augmentation (eval)": per_sample_rate(lambda x, r: default(x), seqs, args.repeats),
        "naive, all augmentations": per_sample_rate(naive_pipeline, seqs[:args.naive_sequences], 1),
    }
    for name, rate in rates.items():
        print(f"{name:38s} {rate:10,.0f} samples/s  {1e6 / rate:8.1f} us/sample  (1 core)")
    batch, threads = batch_rate(seqs, args.batch, args.device, args.repeats)
    print(f"{'torch batch ' + args.device + ', all augmentations':38s} {batch:10,.0f} samples/s  "
          f"{1e6 / batch:8.1f} us/sample  (batch {args.batch}, {threads} threads)")
    naive = rates["naive, all augmentations"]
    numpy_rate = rates["numpy, all augmentations (p=1)"]
    print(f"ratios: numpy/naive {numpy_rate / naive:.1f}x, batch/naive {batch / naive:.1f}x, "
          f"batch/numpy {batch / numpy_rate:.1f}x")
    print(f"goal numpy >= 2,000 samples/s per core: {'met' if numpy_rate >= 2000 else 'NOT met'} "
          f"({numpy_rate:,.0f})")
    if args.device.startswith("cuda"):
        print(f"goal batch on GPU >= 100,000 samples/s: {'met' if batch >= 100_000 else 'NOT met'} ({batch:,.0f})")


if __name__ == "__main__":
    main()
