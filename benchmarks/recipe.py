"""What each element of the islr recipe is worth, measured on `--realism real` synthetic signs.

One data set (``sltdata synth kaggle-islr --realism real`` -> ingest -> 5 participant-grouped folds);
every variant trains on folds 1-4 and is scored on fold 0's unseen signers, with ``--seeds`` seeds
each; printed as mean ± std accuracy next to the majority-class baseline and chance.

    python benchmarks/recipe.py --small --classes 10 --participants 10 --sequences 400 --jobs 2   # 2-core CPU
    python benchmarks/recipe.py --classes 50 --participants 20 --sequences 2000 --epochs 60
    python benchmarks/recipe.py --mirror            # the mirror: right-handed signers in, left-handed scored

Variants: the default recipe (``islr-default``: flip, affine, rescale, jitter, frame masking,
cutout and spatial mask augmentation, late dropout, AWP); with all augmentation off; with the
mirror (flip) off; with late dropout off; with AWP off; with the spatial mask off; and
the 3-seed ensemble (the default's seeds, logits averaged here: there is no ``sltdata ensemble``).
With ``--small`` the model is small (dim 64, one stage, 64 frames) and the recipe's epoch-based
starts (late dropout, AWP) and AWP's step are scaled to it (``small_overrides``).

``--mirror`` measures the mirror where it matters: islr-tiny trained on the right-handed signers of a
set whose signers are half left-handed, scored on the left-handed ones, with no mirror, the flip
augmentation, and ``normalize.handedness: right``.
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
    # islr-default already masks a random square (augment.spatial_mask.p 0.5, the solution's), so
    # the ablation takes it away.
    "no spatial mask": ["transforms.augment.spatial_mask.p=0"],
}


def small_overrides(epochs: int) -> list[str]:
    """islr-default's recipe on a model small enough for a 2-core CPU, every element kept and scaled.

    Measured (benchmarks/README.md): the previous small setting (dim 32, batch 32, 12 epochs, AWP and
    late dropout from epoch 2) ran 72 optimizer steps, and AWP started before the model had learned
    anything; the loss never left chance. So: batch 16 and 30 epochs (~600 steps on 400 sequences);
    AWP and late dropout from the recipe's 15/120 of the run; and AWP's step, a fixed norm ``lambda``
    per weight tensor (``sltdata.train.optim.awp_perturb``), scaled by sqrt(dim / 192) so that it moves
    a dim-64 model's weights by the same fraction as the recipe's dim-192 ones (a tensor's norm grows
    with the square root of its size)."""
    dim = 64
    start = max(1, round(epochs * 15 / 120))
    return [f"model.dim={dim}", "model.stages=1", "model.conv_per_stage=2", "model.kernel_size=5", "model.heads=4",
            "transforms.max_length=64", "data.batch_size=16", "data.shuffle_buffer=256", "data.num_workers=0",
            "train.lr=0.003", f"train.epochs={epochs}", f"train.awp_lambda={0.2 * (dim / 192) ** 0.5:.3f}",
            f"train.awp_start_epoch={start}", f"model.late_dropout_start_epoch={start}", "train.early_stopping=null"]


def make_data(work: Path, sequences: int, classes: int, participants: int, left_handed: float, seed: int) -> Path:
    from sltdata.ingest import ingest
    from sltdata.shards import write_shards
    from sltdata.synth import synth

    raw = synth("kaggle-islr", work / "raw", seed=seed, realism="real", sequences=sequences, classes=classes,
                participants=participants, left_handed=left_handed)
    ingest("kaggle-islr", raw, work / "store")
    write_shards(work / "store", work / "shards", folds=5, seed=seed)
    return work / "shards"


def val_logits(run: Path, shards: Path, splits: tuple[str, ...] = ("val",)) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of a run's best checkpoint on ``splits`` of ``shards`` (by default fold 0 of
    its own shards: the unseen signers)."""
    from sltdata.train.data import ShardData
    from sltdata.train.loop import evaluate
    from sltdata.train.runs import load_run

    import torch

    trainer, cfg, info, model = load_run(run)
    data = ShardData(shards, cfg, trainer.target)
    data.use_run_maps(info, trainer.target)
    parts = [evaluate(trainer, model, data, split, cfg, torch.device("cpu"))[1] for split in splits]
    return (np.concatenate([o["logits"].numpy() for o in parts]),
            np.concatenate([o["target"].numpy() for o in parts]))


def only_flip(p: float) -> list[str]:
    """Overrides that leave the mirror (``augment.flip``) as the one augmentation, at ``p``.

    Every probability is spelled out: on a config with ``augment: false`` (islr-tiny) an override of
    ``transforms.augment.flip.p`` alone replaces the ``false`` and brings back every default
    augmentation with it."""
    from sltdata.transforms.config import AugmentConfig

    return [f"transforms.augment.{f.name}.p={p if f.name == 'flip' else 0}" for f in dataclasses.fields(AugmentConfig)]


# The mirror on the setup where it matters: trained on right-handed signers, scored on left-handed ones.
MIRROR_VARIANTS = {
    "no flip": only_flip(0),
    "flip p=0.5": only_flip(0.5),
    "handedness: right": [*only_flip(0), "transforms.normalize.handedness=right"],
}


def signer_hands(store: Path) -> dict[str, bool]:
    """{participant: left-handed}: a signer's dominant hand is the one detected in more frames over
    all their sequences (``normalize.handedness``'s rule per sequence, here per signer). Nothing in
    the data names handedness, as in the real files."""
    from sltdata.store import Store

    st = Store(store)
    frames: dict[str, np.ndarray] = {}
    for seq in st:
        layout = st.layout(seq.layout)
        seen = [np.count_nonzero(~np.isnan(seq.landmarks[:, layout.indices(hand), 0]).all(1))
                for hand in ("left_hand", "right_hand")]
        frames[seq.participant] = frames.get(seq.participant, np.zeros(2)) + seen
    return {p: bool(n[0] > n[1]) for p, n in frames.items()}


def make_handed_data(work: Path, sequences: int, classes: int, participants: int, seed: int) -> tuple[Path, Path]:
    """(right-handed shards, left-handed shards) of one ``--realism real`` set, half its signers left-handed.

    The right-handed signers get 5 signer-grouped folds (train on 1-4; fold 0, unseen right-handed
    signers, picks the best checkpoint); the left-handed ones get 2 folds, both scored, none trained on."""
    import csv

    from sltdata.ingest import ingest
    from sltdata.shards import write_shards
    from sltdata.synth import synth

    raw = synth("kaggle-islr", work / "raw", seed=seed, realism="real", sequences=sequences, classes=classes,
                participants=participants, left_handed=0.5)
    ingest("kaggle-islr", raw, work / "store")
    lefty = signer_hands(work / "store")
    with open(raw / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for hand, left in (("right", False), ("left", True)):
        with open(raw / f"train-{hand}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(r for r in rows if lefty[r["participant_id"]] == left)
        ingest("kaggle-islr", raw, work / f"store-{hand}", manifest=f"train-{hand}.csv")
        write_shards(work / f"store-{hand}", work / f"shards-{hand}", folds=2 if left else 5, seed=seed)
        out.append(work / f"shards-{hand}")
    return out[0], out[1]


def run_mirror(work: Path, variants: dict[str, list[str]], seeds: list[int], config: str, base: list[str],
               right: Path, left: Path, log=lambda line: print(line, flush=True),
               ) -> dict[str, list[tuple[float, float]]]:
    """Train every variant on the right-handed signers; {variant: [(accuracy on unseen right-handed
    signers, accuracy on the left-handed signers) per seed]}."""
    from sltdata.train.runs import train

    results: dict[str, list] = {}
    for name, extra in variants.items():
        for seed in seeds:
            t = time.perf_counter()
            run = work / "runs" / f"{name.replace(' ', '-').replace(':', '')}-s{seed}"
            train("islr", right, run, config, overrides=[*base, *extra, f"train.seed={seed}"], val_fold=0)
            scores = (accuracy(*val_logits(run, right)), accuracy(*val_logits(run, left, ("fold0", "fold1"))))
            results.setdefault(name, []).append(scores)
            log(f"  {name:18s} seed {seed}: right-handed {scores[0]:.3f}  left-handed {scores[1]:.3f} "
                f"({time.perf_counter() - t:.0f}s)")
    return results


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


def train_and_score(shards: Path, run: Path, config: str, overrides: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """One run (in a worker process with ``--jobs``): its fold-0 logits, targets and seconds."""
    import torch

    from sltdata.train.runs import train

    torch.set_num_threads(1)  # one core per run: --jobs runs side by side
    t = time.perf_counter()
    train("islr", shards, run, config, overrides=overrides, val_fold=0)
    return (*val_logits(run, shards), time.perf_counter() - t)


def run_variants(shards: Path, work: Path, variants: dict[str, list[str]], seeds: list[int], config: str,
                 base: list[str], log=lambda line: print(line, flush=True), jobs: int = 1,
                 ) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Train every variant with every seed, ``jobs`` runs at a time; {variant: [(logits, targets) per seed]}."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Seed-major: a run cut short still has every variant at its first seeds.
    tasks = [(name, seed, work / "runs" / f"{name.replace(' ', '-')}-s{seed}", [*base, *extra, f"train.seed={seed}"])
             for seed in seeds for name, extra in variants.items()]
    done: dict[int, tuple] = {}

    def record(i: int, out: tuple) -> None:
        done[i] = out
        log(f"  {tasks[i][0]:18s} seed {tasks[i][1]}: accuracy {accuracy(*out[:2]):.3f} ({out[2]:.0f}s)")

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            futures = {pool.submit(train_and_score, shards, run, config, ov): i
                       for i, (_, _, run, ov) in enumerate(tasks)}
            for f in as_completed(futures):
                record(futures[f], f.result())
    else:
        for i, (_, _, run, ov) in enumerate(tasks):
            record(i, train_and_score(shards, run, config, ov))
    results: dict[str, list] = {name: [] for name in variants}
    for i, (name, _, _, _) in enumerate(tasks):
        results[name].append(done[i][:2])
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
    ap.add_argument("--mirror", action="store_true", help="the mirror setup (islr-tiny, 10 signs, 12 signers)")
    ap.add_argument("--small", action="store_true",
                    help="a dim-64 model, 30 epochs, the recipe's elements scaled (a 2-core CPU)")
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--participants", type=int, default=20)
    ap.add_argument("--sequences", type=int, default=None, help="default: classes x participants")
    ap.add_argument("--left-handed", type=float, default=0.3, help="share of left-handed signers")
    ap.add_argument("--epochs", type=int, default=None, help="default: 30 with --small, the recipe's otherwise")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side, one core each")
    ap.add_argument("--work", type=Path, default=Path("recipe-bench"))
    args = ap.parse_args()
    sequences = args.sequences or args.classes * args.participants
    shutil.rmtree(args.work, ignore_errors=True)
    if args.mirror:
        return mirror_main(args.work, list(range(args.seeds)))
    t0 = time.perf_counter()
    shards = make_data(args.work, sequences, args.classes, args.participants, args.left_handed, seed=0)
    print(f"data: {sequences} --realism real sequences, {args.classes} signs, {args.participants} signers "
          f"({args.left_handed:.0%} left-handed), 5 signer-grouped folds; scored on fold 0 "
          f"({time.perf_counter() - t0:.0f}s)")
    variants = dict(VARIANTS)
    base = small_overrides(args.epochs or 30) if args.small else ([f"train.epochs={args.epochs}"] if args.epochs else [])
    results = run_variants(shards, args.work, variants, list(range(args.seeds)), "islr-default", base, jobs=args.jobs)
    majority, chance = majority_accuracy(shards)
    print(f"\nislr recipe ablations ({'--small: dim-64 model, ' if args.small else ''}"
          f"{args.epochs or (30 if args.small else 'the recipe')} epochs, {args.seeds} seeds), accuracy on unseen signers:")
    print(format_results(results, majority, chance))


def mirror_main(work: Path, seeds: list[int]) -> None:
    right, left = make_handed_data(work, sequences=360, classes=10, participants=12, seed=0)
    print("data: 360 --realism real sequences, 10 signs, 12 signers (6 left-handed); islr-tiny trained on the "
          "right-handed signers' folds 1-4")
    results = run_mirror(work, MIRROR_VARIANTS, seeds, "islr-tiny", [], right, left)
    print(f"\naccuracy ({len(seeds)} seeds, mean ± std)  unseen right-handed signers  left-handed signers")
    for name, scores in results.items():
        a = np.array(scores)
        print(f"{name:20s} {a[:, 0].mean():.3f} ± {a[:, 0].std():.3f}            "
              f"{a[:, 1].mean():.3f} ± {a[:, 1].std():.3f}  ({' '.join(f'{x:.3f}' for x in a[:, 1])})")


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
