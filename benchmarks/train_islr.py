"""Training throughput of the default `islr` model (CNN+Transformer, dim 192) with the real loader and
transforms, and which part is the bottleneck.

    python benchmarks/train_islr.py [--device cpu|cuda] [--batch 512] [--max-length 384] [--steps 3]
                                    [--sequences 2048] [--workers 0]

Measured in one run, on the same data (``sltdata synth kaggle-islr`` -> ingest -> shard):

* loader alone: ``sltdata.loader.loader`` reading raw padded (B, T, 543, 3) batches from the shards
  (what the loop reads when augmentations run on the device);
* augment alone: ``BatchAugment`` (normalize, select the islr-1st points, pad to --max-length, motion
  features, every default augmentation) on those batches, on --device;
* loader + CPU transforms: the loader doing the NumPy pipeline per sample instead (augment_on: loader);
* model alone: forward + backward + AdamW step on resident (B, T, D) tensors, bf16 autocast on CUDA;
* end to end: ``sltdata.train.loop.fit`` on the shards for --steps optimizer steps (the loop's own
  samples/s, first step excluded).

The ISLR goal (issue 6) is >= 20,000 samples/s on one H100 with the loader never the limit.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def make_shards(work: Path, sequences: int) -> Path:
    from sltdata.testing import synth_store
    from sltdata.testing.train import islr_shards

    store = synth_store("kaggle-islr", work, sequences=sequences, classes=30, participants=8)
    return islr_shards(store, work / "shards", folds=4, max_samples_per_shard=256)


def time_loader(shards: Path, batch: int, transforms, workers: int, max_batches: int) -> tuple[float, int, list]:
    from sltdata.loader import loader

    kept, n, t0 = [], 0, time.perf_counter()
    for i, b in enumerate(loader(shards, folds=None, transforms=transforms, batch_size=batch, num_workers=workers,
                                 seed=0, epoch=0, target="label", train=True, drop_last=True)):
        n += len(b["key"])
        if len(kept) < 2:
            kept.append(b)
        if i + 1 >= max_batches:
            break
    return rate(n, time.perf_counter() - t0), n, kept


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps (after a warm-up micro-batch)")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="gradient-accumulation micro-batch (default: --batch on CUDA, 64 on CPU, where a "
                         "512 x 384 batch's activations need more than 20 GB)")
    ap.add_argument("--sequences", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    micro = args.micro_batch or (args.batch if device.type == "cuda" else min(64, args.batch))
    accum = max(1, args.batch // micro)

    from sltdata.train.base import DatasetInfo
    from sltdata.train.config import load_config
    from sltdata.train.loop import autocast, fit
    from sltdata.train.optim import build_optimizer
    from sltdata.transforms import load_transform_config
    from sltdata.transforms.torch_ops import BatchAugment
    from trainers.islr import ISLRConfig, ISLRModel, ISLRTrainer

    tcfg = load_transform_config({"max_length": args.max_length})
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}), batch {args.batch}, max length {args.max_length}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        shards = make_shards(Path(tmp), args.sequences)
        print(f"data: {args.sequences} synth ISLR sequences sharded in {time.perf_counter() - t0:.1f} s")
        batches = max(1, args.sequences * 3 // 4 // args.batch)

        raw_rate, n, kept = time_loader(shards, args.batch, None, args.workers, batches)
        print(f"loader alone (raw padded batches, {args.workers} workers): {raw_rate:,.0f} samples/s ({n} samples)")
        cpu_rate, n, _ = time_loader(shards, args.batch, tcfg, args.workers, batches)
        print(f"loader + NumPy transforms per sample ({args.workers} workers): {cpu_rate:,.0f} samples/s")

        aug = BatchAugment(tcfg, layout="holistic-543", device=device)
        g = torch.Generator(device=device).manual_seed(0)
        lm, mask = kept[0]["landmarks"].to(device), kept[0]["mask"].to(device)
        aug(lm, mask, generator=g, train=True)
        sync(device)
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            feats, fmask = aug(lm, mask, generator=g, train=True)
        sync(device)
        aug_rate = rate(reps * args.batch, time.perf_counter() - t0)
        print(f"BatchAugment alone on {device}: {aug_rate:,.0f} samples/s -> features {tuple(feats.shape)}")

        info = DatasetInfo(feature_dim=feats.shape[-1], max_length=args.max_length, labels={str(i): i for i in range(250)})
        cfg = load_config({"model": {}}, model_class=ISLRConfig)
        model = ISLRModel(cfg.model, info.feature_dim, 250).to(device)
        params = sum(p.numel() for p in model.parameters())
        opt = build_optimizer(model, cfg.train)
        step_model = torch.compile(model) if args.compile else model
        x = torch.randn(micro, args.max_length, info.feature_dim, device=device)
        m = torch.ones(micro, args.max_length, dtype=torch.bool, device=device)
        y = torch.randint(0, 250, (micro,), device=device)
        trainer = ISLRTrainer()
        batch = {"features": x, "mask": m, "target": y}
        with autocast(device, "auto"):  # warm-up (allocator, kernels, compile)
            trainer.loss(step_model, batch, cfg.model).backward()
        opt.zero_grad(set_to_none=True)
        sync(device)
        t0 = time.perf_counter()
        for i in range(args.steps):
            for _ in range(accum):
                with autocast(device, "auto"):
                    loss = trainer.loss(step_model, batch, cfg.model)
                (loss / accum).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)
        elapsed = time.perf_counter() - t0
        model_rate = rate(args.steps * accum * micro, elapsed)
        print(f"model alone (cnn-transformer dim 192, {params / 1e6:.2f} M params, fwd+bwd+AdamW, "
              f"{accum} x {micro} per step): {model_rate:,.0f} samples/s ({elapsed / args.steps:.2f} s/step)")

        run = Path(tmp) / "run"
        rc = load_config({"train": {"max_steps": args.steps, "epochs": 1, "log_every": 1, "device": str(device),
                                    "compile": args.compile, "grad_accum": accum},
                          "data": {"batch_size": micro, "num_workers": args.workers},
                          "transforms": {"max_length": args.max_length}}, model_class=ISLRConfig)
        from sltdata.train.data import ShardData
        data = ShardData(shards, rc, "label")
        fit(ISLRTrainer(), rc, data, run)
        steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(x)]
        e2e = steps[-1]["samples_per_s"]  # the loop's own figure: samples / time since the epoch began
        print(f"end to end (loop: loader -> {'device' if data.device_aug else 'loader'} transforms -> model, "
              f"{accum} x {micro} per step), {steps[-1]['step']} steps: {e2e:,.0f} samples/s")

        feed = 1 / (1 / raw_rate + 1 / aug_rate)  # serial on one process with 0 workers
        print(f"feed (loader then BatchAugment, serial): {feed:,.0f} samples/s vs model {model_rate:,.0f} samples/s "
              f"-> bottleneck: {'model' if model_rate < feed else 'loader/augment'} "
              f"(model / feed = {model_rate / feed:.2f})")
        print(f"ISLR epoch (94,477 sequences) at the end-to-end rate: {94_477 / e2e:,.1f} s; "
              f"goal on one H100: >= 20,000 samples/s")


if __name__ == "__main__":
    main()
