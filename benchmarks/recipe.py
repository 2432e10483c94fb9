"""What each element of the islr recipe is worth, measured on `--realism real` synthetic signs.

One data set (``sltdata synth kaggle-islr --realism real`` -> ingest -> 5 participant-grouped folds);
every variant trains on folds 1-4 and is scored on fold 0's unseen signers, with ``--seeds`` seeds
each; printed as mean ± std accuracy next to the majority-class baseline and chance.

    python benchmarks/recipe.py --small             # islr-tiny-sized models, few epochs: a 2-core CPU
    python benchmarks/recipe.py --classes 50 --participants 20 --sequences 2000 --epochs 60

Variants: the default recipe (``islr-default``: flip, affine, rescale, jitter, frame masking and
cutout augmentation, late dropout, AWP); with all augmentation off; with the mirror (flip) off;
with late dropout off; with AWP off; plus the spatial mask when the transform config has one; and
the 3-seed ensemble (the default's seeds, logits averaged here: there is no ``sltdata ensemble``).
With ``--small`` the model is islr-tiny-sized (dim 32, one stage) and the recipe's epoch-based
starts (late dropout, AWP) are scaled to the shorter run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {
    "default": [],
    "no augmentation": ["transforms.augment=false"],
    "no mirror": ["transforms.augment.flip.p=0"],
    "no late dropout": ["model.late_dropout=0"],
    "no AWP": ["train.awp_lambda=0"],
}


def spatial_mask_override() -> list[str] | None:
    """The override that turns a spatial mask augmentation on, when the transform config has one."""
    from sltdata.transforms.config import AugmentConfig

    names = [f.name for f in dataclasses.fields(AugmentConfig) if "spatial" in f.name]
    return [f"transforms.augment.{names[0]}.p=0.5"] if names else None


def small_overrides(epochs: int) -> list[str]:
    """islr-default's recipe on an islr-tiny-sized model, its epoch-based starts scaled to ``epochs``."""
    start = max(1, round(epochs * 15 / 120))
    return ["model.dim=32", "model.stages=1", "model.conv_per_stage=2", "model.kernel_size=5", "model.heads=2",
            "transforms.max_length=64", "data.batch_size=32", "data.shuffle_buffer=256", "data.num_workers=0",
            "train.lr=0.003", f"train.epochs={epochs}", f"train.awp_start_epoch={start}",
            f"model.late_dropout_start_epoch={start}", "train.early_stopping=null"]


def make_data(work: Path, sequences: int, classes: int, participants: int, left_handed: float, seed: int) -> Path:
    from sltdata.ingest import ingest
    from sltdata.shards import write_shards
    from sltdata.synth import synth

    raw = synth("kaggle-islr", work / "raw", seed=seed, realism="real", sequences=sequences, classes=classes,
                participants=participants, left_handed=left_handed)
    ingest("kaggle-islr", raw, work / "store")
    write_shards(work / "store", work / "shards", folds=5, seed=seed)
    return work / "shards"


def val_logits(run: Path, shards: Path) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of a run's best checkpoint on fold 0 (the unseen signers)."""
    from sltdata.train.data import ShardData
    from sltdata.train.loop import evaluate
    from sltdata.train.runs import load_run

    import torch

    trainer, cfg, info, model = load_run(run)
    data = ShardData(shards, cfg, trainer.target)
    data.use_run_maps(info, trainer.target)
    _, outputs = evaluate(trainer, model, data, "val", cfg, torch.device("cpu"))
    return outputs["logits"].numpy(), outputs["target"].numpy()


def majority_accuracy(shards: Path, val_fold: int = 0) -> tuple[float, float]:
    """(accuracy on fold ``val_fold`` of always answering the training folds' most common sign, chance)."""
    from collections import Counter

    from sltdata.shards import ShardIndex, fold_name, iter_samples

    index = ShardIndex.open(shards)
    labels: dict[bool, Counter] = {True: Counter(), False: Counter()}
    for split, sample in iter_samples(index, arrays=False):
        labels[split == fold_name(val_fold)][sample.meta["label"]] += 1
    majority = labels[False].most_common(1)[0][0]
    return labels[True][majority] / sum(labels[True].values()), 1 / len(index.labels)


def run_variants(shards: Path, work: Path, variants: dict[str, list[str]], seeds: list[int], config: str,
                 base: list[str], log=lambda line: print(line, flush=True)) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Train every variant with every seed; {variant: [(logits, targets) per seed]}."""
    from sltdata.train.runs import train

    results: dict[str, list] = {}
    for name, extra in variants.items():
        for seed in seeds:
            t = time.perf_counter()
            run = work / "runs" / f"{name.replace(' ', '-')}-s{seed}"
            train("islr", shards, run, config, overrides=[*base, *extra, f"train.seed={seed}"], val_fold=0)
            results.setdefault(name, []).append(val_logits(run, shards))
            acc = float((results[name][-1][0].argmax(1) == results[name][-1][1]).mean())
            log(f"  {name:18s} seed {seed}: accuracy {acc:.3f} ({time.perf_counter() - t:.0f}s)")
    return results


def accuracy(logits: np.ndarray, target: np.ndarray) -> float:
    return float((logits.argmax(1) == target).mean())


def ensemble_accuracy(runs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Accuracy of the seeds' averaged softmax (every run scores the same samples in the same order)."""
    probs = [np.exp(lg - lg.max(1, keepdims=True)) for lg, _ in runs]
    probs = [p / p.sum(1, keepdims=True) for p in probs]
    return accuracy(np.mean(probs, axis=0), runs[0][1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="islr-tiny-sized model and few epochs (a 2-core CPU)")
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--participants", type=int, default=20)
    ap.add_argument("--sequences", type=int, default=None, help="default: classes x participants")
    ap.add_argument("--left-handed", type=float, default=0.3, help="share of left-handed signers")
    ap.add_argument("--epochs", type=int, default=None, help="default: 20 with --small, the recipe's otherwise")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("recipe-bench"))
    args = ap.parse_args()
    sequences = args.sequences or args.classes * args.participants
    shutil.rmtree(args.work, ignore_errors=True)
    t0 = time.perf_counter()
    shards = make_data(args.work, sequences, args.classes, args.participants, args.left_handed, seed=0)
    print(f"data: {sequences} --realism real sequences, {args.classes} signs, {args.participants} signers "
          f"({args.left_handed:.0%} left-handed), 5 signer-grouped folds; scored on fold 0 "
          f"({time.perf_counter() - t0:.0f}s)")
    variants = dict(VARIANTS)
    mask = spatial_mask_override()
    if mask:
        variants["+ spatial mask"] = mask
    base = small_overrides(args.epochs or 20) if args.small else ([f"train.epochs={args.epochs}"] if args.epochs else [])
    results = run_variants(shards, args.work, variants, list(range(args.seeds)), "islr-default", base)
    majority, chance = majority_accuracy(shards)
    print(f"\nislr recipe ablations ({'--small: islr-tiny-sized model, ' if args.small else ''}"
          f"{args.epochs or (20 if args.small else 'the recipe')} epochs, {args.seeds} seeds), accuracy on unseen signers:")
    print(format_results(results, majority, chance))


def format_results(results: dict, majority: float, chance: float) -> str:
    lines = [f"{'variant':20s} {'mean':>6s} {'std':>6s}"]
    for name, runs in results.items():
        accs = [accuracy(lg, tg) for lg, tg in runs]
        lines.append(f"{name:20s} {np.mean(accs):6.3f} {np.std(accs):6.3f}")
    if len(results.get("default", [])) > 1:
        lines.append(f"{len(results['default'])}-seed ensemble{'':4s} {ensemble_accuracy(results['default']):6.3f}")
    lines.append(f"{'majority class':20s} {majority:6.3f}   (chance {chance:.3f})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
