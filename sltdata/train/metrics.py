"""Metrics that more than a trainer needs: the text trainers score with them and
``sltdata.testing.text`` scores its trivial baselines with the same function, so a baseline and a
model are measured alike. They live in the library because ``sltdata`` never imports ``trainers``."""

from __future__ import annotations

import numpy as np


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """The Fingerspelling competition's score, 1 - sum(Levenshtein distance) / sum(reference length),
    plus the mean per-sequence character error rate and the exact-match rate (rapidfuzz distances)."""
    from rapidfuzz.distance import Levenshtein

    dist = np.array([Levenshtein.distance(p, r) for p, r in zip(predictions, references)], dtype=np.float64)
    lens = np.array([len(r) for r in references], dtype=np.float64)
    return {"score": float(1.0 - dist.sum() / max(lens.sum(), 1.0)),
            "cer": float(np.mean(dist / np.maximum(lens, 1.0))) if len(dist) else 0.0,
            "exact_match": float(np.mean(dist == 0)) if len(dist) else 0.0}
