"""The main job on built-in sample data: synth -> ingest -> (later steps as they exist).

Each step is a function that takes the working directory and yields the lines it reports, so the
quickstart grows by appending a step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from sltdata import outputs

QUICKSTART_ENTRIES = ("raw", "store", "shards", "runs")  # everything a quickstart writes into --out


# The sample data: `sltdata synth kaggle-islr --realism real` (real captures' lengths, dropouts,
# left-handed signers and signs that differ in one element), so the score says something.
CLASSES, PARTICIPANTS = 10, 10


def run_quickstart(out: Path, sequences: int = 400, seed: int = 0) -> Iterator[str]:
    from sltdata.ingest import ingest
    from sltdata.synth import synth

    out = Path(out)
    outputs.replace(out, "a quickstart directory", only=QUICKSTART_ENTRIES)  # never a directory of someone else's
    t = time.perf_counter()
    raw = synth("kaggle-islr", out / "raw", seed=seed, realism="real", sequences=sequences, classes=CLASSES,
                participants=PARTICIPANTS)
    yield (f"[1] synth: a Kaggle asl-signs-style dataset of {sequences} synthetic sequences ({CLASSES} signs, "
           f"{PARTICIPANTS} signers, some left-handed; calibrated against real captures: lengths, missing hands, "
           f"signs that differ in one element) in {raw} ({time.perf_counter() - t:.1f}s)")
    t = time.perf_counter()
    result = ingest("kaggle-islr", raw, out / "store")
    yield f"[2] ingest: {result.summary()} ({time.perf_counter() - t:.1f}s)"
    t = time.perf_counter()
    from sltdata.shards import write_shards

    index = write_shards(out / "store", out / "shards", folds=5, seed=seed)
    per_split = ", ".join(f"{s} {v['samples']} seq/{v['participants']} signers" for s, v in index.splits.items())
    yield (f"[3] shard: {len(index.shards)} WebDataset shard(s) + index.json in {out / 'shards'}, "
           f"participant-grouped label-stratified folds: {per_split} ({time.perf_counter() - t:.1f}s)")
    t = time.perf_counter()
    from sltdata.stats import compute_stats

    st = compute_stats(out / "store")
    pc, ln, det = st["per_class"], st["length"], st["detection"]
    folds = compute_stats(out / "shards", landmarks=False)["folds"]
    yield (f"[4] stats: {st['sequences']} sequences, {st['frames']} frames, {st['participants']} participants, "
           f"{st['classes']} classes ({pc['min']}-{pc['max']} sequences each); length median {ln['percentiles']['p50']:g}, "
           f"p95 {ln['percentiles']['p95']:g}, max {ln['max']} frames")
    yield (f"    detection: right hand {det['rates']['right_hand']:.0%}, left hand {det['rates']['left_hand']:.0%}, "
           f"no hand {det['rates']['no_hand']:.0%} of frames; no participant in two folds: {folds['participant_disjoint']} "
           f"({time.perf_counter() - t:.1f}s; more: `sltdata stats {out / 'store'} --plots DIR`)")
    t = time.perf_counter()
    try:
        import torch  # noqa: F401
    except ImportError:
        yield "[5] train: skipped (install the `train` extra: pip install -e '.[train]')"
        return
    from sltdata.train.runs import evaluate_run, train

    run = out / "runs" / "islr-tiny"
    train("islr", out / "shards", run, "islr-tiny", val_fold=0)
    metrics, report = evaluate_run(run, out / "shards", split="val")
    chance = 1 / len(index.labels)
    topk = next((k for k in metrics if k.startswith("top") and k.endswith("_accuracy")), None)  # k by class count
    yield (f"[5] train: a tiny CNN+Transformer (`--trainer islr --config islr-tiny`) on folds 1-4, "
           f"validated on fold0's unseen signers: accuracy {metrics['accuracy']:.3f}, "
           + (f"{topk[:-9].replace('top', 'top-')} {metrics[topk]:.3f}, " if topk else "")
           + f"macro F1 {metrics['macro_f1']:.3f} (chance {chance:.3f}) in {time.perf_counter() - t:.0f}s")
    yield ("    the data is synthetic (`sltdata synth --realism real`): the score shows the pipeline learns, "
           "not how a model does on real signers")
    yield f"    run directory {run} (config.yaml, metrics.jsonl, checkpoints/); predictions in {report}"
    yield (f"next: `sltdata export {run} --format onnx`; with the viz extra (pip install -e '.[viz]'): "
           f"`sltdata stats {out / 'store'} --plots figs/`, `sltdata view {out / 'store'} KEY --out seq.gif`")
