"""Calibration report: the same statistics for `sltdata synth --realism real` and for real files.

Real: the Kaggle asl-signs parquet files in ``shared/realdata/islr`` (10 sequences, 9 signers) and,
for the whole-set length figures the 10 files cannot give, the 747 files they were taken from
(median 18, min 2, max 272 frames, per ``shared/realdata/PROVENANCE.md``). Synthetic: a
``--realism real`` kaggle-islr set read back through the same reader. Each statistic is printed with
the ratio synthetic/real; the issue's bar is every ratio within 0.5-2x ("=" where both are 0).

    python benchmarks/synth_realism.py [--real shared/realdata] [--sequences 400]

Statistics, each per sequence and then the median (or mean, for shares) over sequences:
lengths; the share of frames where a component is entirely missing; which hand is dominant (the one
detected in more frames); coordinate extremes; mean frame-to-frame displacement of a point (x, y).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sltdata.layouts import HOLISTIC_543  # noqa: E402
from sltdata.sources.kaggle_islr import read_islr_landmarks  # noqa: E402

_OFF = HOLISTIC_543.offsets
_PARTS = {"face": slice(0, 468), "left_hand": slice(_OFF["left_hand"], _OFF["left_hand"] + 21),
          "pose": slice(_OFF["pose"], _OFF["pose"] + 33), "right_hand": slice(_OFF["right_hand"], _OFF["right_hand"] + 21)}
# The 747 real files these 10 come from (PROVENANCE.md); the 10 files alone cannot show the tails.
WHOLE_SET = {"length min": 2.0, "length median": 18.0, "length max": 272.0}


def _missing(seq: np.ndarray, part: str) -> np.ndarray:
    return np.isnan(seq[:, _PARTS[part], 0]).all(axis=1)


def _displacement(seq: np.ndarray, part: str) -> float:
    step = np.linalg.norm(np.diff(seq[:, _PARTS[part], :2], axis=0), axis=-1)
    return float(np.nanmean(step)) if np.isfinite(step).any() else np.nan


def realism_stats(seqs: list[np.ndarray], whole_set: bool = False) -> dict[str, float]:
    """The calibration statistics of a list of holistic-543 sequences (frames, 543, 3)."""
    lengths = np.array([len(s) for s in seqs])
    out = {"length p10": np.percentile(lengths, 10), "length p90": np.percentile(lengths, 90)}
    out.update(WHOLE_SET if whole_set else {"length min": lengths.min(), "length median": np.median(lengths),
                                           "length max": lengths.max()})
    for part in ("face", "pose", "left_hand", "right_hand"):
        out[f"missing share: {part}"] = np.mean([_missing(s, part).mean() for s in seqs])
    left_dominant = np.array([_missing(s, "left_hand").sum() < _missing(s, "right_hand").sum() for s in seqs])
    dom = ["left_hand" if d else "right_hand" for d in left_dominant]
    other = ["right_hand" if d else "left_hand" for d in left_dominant]
    out["missing share: dominant hand"] = np.mean([_missing(s, d).mean() for s, d in zip(seqs, dom)])
    out["missing share: other hand"] = np.mean([_missing(s, o).mean() for s, o in zip(seqs, other)])
    out["missing share: both hands"] = np.mean([(_missing(s, "left_hand") & _missing(s, "right_hand")).mean()
                                               for s in seqs])
    out["left-hand-dominant share"] = left_dominant.mean()
    out["sequences with x < 0"] = np.mean([np.nanmin(s[..., 0]) < 0 for s in seqs])
    for axis, name in ((0, "x"), (1, "y"), (2, "z")):
        out[f"{name} min (median)"] = np.median([np.nanmin(s[..., axis]) for s in seqs]) if name != "x" else np.nan
        out[f"{name} max (median)"] = np.median([np.nanmax(s[..., axis]) for s in seqs])
    del out["x min (median)"]  # straddles 0, where a ratio means nothing: the share with x < 0 says it
    hand_span = [np.nanmax(s[:, _PARTS[d], 1]) - np.nanmin(s[:, _PARTS[d], 1])
                 for s, d in zip(seqs, dom) if not _missing(s, d).all()]
    out["dominant hand y span (median)"] = np.median(hand_span)
    for part in ("face", "pose"):
        out[f"displacement/frame: {part}"] = np.nanmedian([_displacement(s, part) for s in seqs if len(s) > 1])
    out["displacement/frame: dominant hand"] = np.nanmedian(
        [_displacement(s, d) for s, d in zip(seqs, dom) if len(s) > 1])
    return {k: float(v) for k, v in out.items()}


def read_islr_set(root: Path) -> list[np.ndarray]:
    return [read_islr_landmarks(p) for p in sorted(root.glob("train_landmark_files/*/*.parquet"))]


def compare(real: dict[str, float], synth: dict[str, float]) -> list[tuple[str, float, float, float | None]]:
    """(statistic, real, synthetic, ratio) rows; ratio None where both are 0."""
    rows = []
    for k, r in real.items():
        s = synth[k]
        rows.append((k, r, s, None if r == 0 and s == 0 else (s / r if r else np.inf)))
    return rows


def format_table(rows) -> str:
    lines = [f"{'statistic':36s} {'real':>9s} {'synth':>9s} {'ratio':>7s}"]
    for k, r, s, ratio in rows:
        ratio_text = "=" if ratio is None else f"{ratio:.2f}"
        flag = "" if ratio is None or 0.5 <= ratio <= 2 else "  <- outside 0.5-2x"
        lines.append(f"{k:36s} {r:9.4g} {s:9.4g} {ratio_text:>7s}{flag}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "realdata")
    ap.add_argument("--sequences", type=int, default=400)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--participants", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from sltdata.synth import synth

    real = realism_stats(read_islr_set(args.real / "islr"), whole_set=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = synth("kaggle-islr", tmp, seed=args.seed, realism="real", sequences=args.sequences,
                     classes=args.classes, participants=args.participants)
        fake = realism_stats(read_islr_set(root))
    rows = compare(real, fake)
    print(f"kaggle-islr: real = {args.real / 'islr'} (10 files; length min/median/max: the 747-file set), "
          f"synth = --realism real, {args.sequences} sequences, {args.participants} signers, seed {args.seed}")
    print(format_table(rows))
    bad = [k for k, _, _, ratio in rows if ratio is not None and not 0.5 <= ratio <= 2]
    print(f"{len(rows) - len(bad)}/{len(rows)} statistics within 0.5-2x" + (f"; outside: {', '.join(bad)}" if bad else ""))


if __name__ == "__main__":
    main()
