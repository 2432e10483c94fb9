"""The leakage audit of a shard directory: signers in two splits, and near-duplicate sequences across splits.

Why: a score on a split that shares a signer, or a copy of a training clip, with training is not
a score on unseen data. Folds written by ``sltdata shard`` keep participants apart, but shards
written by other tools, merged stores and re-uploads of one clip under two ids do not.

A sequence's signature is a cheap, normalised picture of its motion: the wrists, fingertips
(wrist, thumb, index, middle, ring, pinky tips of each 21-point hand) and the shoulders, elbows
and pose wrists, x/y only; centred on the mid-shoulder point and scaled by the shoulder width
(medians over frames), gaps filled from the nearest detected frame (never-seen points at the
centre), resampled to ``STEPS`` frames (so a re-encode at another frame rate or a ×1.1 time stretch
lands on the same signature), then projected to ``DIM`` numbers by a fixed Gaussian matrix (the
Johnson-Lindenstrauss lemma keeps distances). Each sequence also gets:

- its mirrored signature (x negated, left and right swapped): a mirrored copy matches it;
- signatures of its prefix and suffix windows covering ``WINDOW_FRACTIONS`` of it: one clip cut
  in two matches the prefix (first piece) or the suffix (second piece) of the whole clip, when
  the piece's length is that fraction of the whole's (within ``FRACTION_TOLERANCE``).

Distances are RMS distances in shoulder widths (per coordinate and step), searched in blocks of
``BLOCK`` queries sorted by norm against the targets whose norm is within the threshold (the
triangle inequality rules the rest out), so the cost is at most N² x DIM multiply-adds and usually a
fraction of it; memory is the signatures (float16, ``DIM`` x (2 + windows) per sequence, 1.5 KB)
plus one block of distances.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sltdata.layouts import Layout, mirror_indices
from sltdata.quality import shoulder_indices
from sltdata.shards import ShardError, ShardIndex, iter_samples

STEPS = 16  # frames a signature is resampled to
DIM = 64  # numbers a signature is projected to
WINDOW_FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7)  # prefix/suffix windows for a clip cut in two
FRACTION_TOLERANCE = 0.06  # |piece/whole length - window fraction| a containment match allows
THRESHOLD = 0.035  # RMS distance in shoulder widths below which two sequences are near-duplicates (see tests)
BLOCK = 2048  # queries per distance block
HAND_TIPS = (0, 4, 8, 12, 16, 20)  # wrist and fingertips of a 21-point hand
BODY_WORDS = ("shoulder", "elbow", "wrist")


def signature_points(layout: Layout) -> np.ndarray:
    """Global indices of the points a signature follows, closed under the layout's mirror."""
    out = []
    for c in layout.components:
        start = layout.offsets[c.name]
        if c.name in layout.hand_components:
            out += [start + i for i in (HAND_TIPS if len(c.points) == 21 else range(len(c.points)))]
        else:
            out += [start + i for i, p in enumerate(c.points) if any(w in str(p).lower() for w in BODY_WORDS)]
    return np.asarray(out, dtype=np.int64)


def _fill_gaps(traj: np.ndarray) -> np.ndarray:
    """Fill NaN frames of each point from the previous detected frame, leading ones from the next;
    a point never seen becomes 0 (the centre)."""
    f = traj.shape[0]
    seen = np.isfinite(traj).all(axis=-1)  # (F, S)
    idx = np.where(seen, np.arange(f)[:, None], -1)
    prev = np.maximum.accumulate(idx, axis=0)
    idx_next = np.where(seen, np.arange(f)[:, None], f)
    nxt = np.minimum.accumulate(idx_next[::-1], axis=0)[::-1]
    src = np.where(prev >= 0, prev, nxt)
    never = src >= f
    out = np.take_along_axis(traj, np.clip(src, 0, f - 1)[..., None], axis=0)
    out[never] = 0.0
    return out


def projection(size: int) -> np.ndarray:
    """The fixed (size, DIM) Gaussian projection, scaled so squared norms are kept on average."""
    return (np.random.default_rng(0).standard_normal((size, DIM)) / np.sqrt(DIM)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _plan(layout: Layout) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray]:
    """Per layout, once: the signature points, their mirror order, the shoulders among them, the projection."""
    sel = signature_points(layout)
    mirror = mirror_indices(layout)
    pos = {int(p): i for i, p in enumerate(sel)}
    mirror_sel = np.asarray([pos.get(int(mirror[p]), i) for i, p in enumerate(sel)], dtype=np.int64)
    shoulders = [pos[int(s)] for s in shoulder_indices(layout) if int(s) in pos][:2]
    return sel, mirror_sel, shoulders, projection(STEPS * len(sel) * 2)


def sequence_signatures(landmarks: np.ndarray, layout: Layout) -> np.ndarray:
    """(2 + 2 x len(WINDOW_FRACTIONS), DIM) float32: the signature, the mirrored one, then the prefix
    and suffix windows, each divided by sqrt(STEPS x points x 2) so distances are RMS."""
    sel, mirror_sel, shoulders, proj = _plan(layout)
    xy = np.asarray(landmarks, dtype=np.float32)[:, sel, :2]
    mid, size = np.zeros(2, np.float32), 1.0
    if len(shoulders) == 2:
        left, right = xy[:, shoulders[0]], xy[:, shoulders[1]]
        ok = np.isfinite(left).all(axis=1) & np.isfinite(right).all(axis=1)
        if ok.any():
            mid = np.median((left[ok] + right[ok]) / 2, axis=0)
            size = float(np.median(np.linalg.norm(left[ok] - right[ok], axis=1))) or 1.0
    elif np.isfinite(xy).any():
        seen = xy[np.isfinite(xy).all(axis=-1)]
        mid, size = np.median(seen, axis=0), float(seen.std(axis=0).sum()) or 1.0
    traj = _fill_gaps((xy - mid) / size)
    mirrored = traj[:, mirror_sel] * np.array([-1.0, 1.0], np.float32)
    f = np.asarray(WINDOW_FRACTIONS)
    starts = np.concatenate([[0.0, 0.0], np.zeros_like(f), 1 - f])
    ends = np.concatenate([[1.0, 1.0], f, np.ones_like(f)])
    pos = (starts[:, None] + (ends - starts)[:, None] * np.linspace(0, 1, STEPS)[None]) * (len(traj) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(traj) - 1)
    w = (pos - lo)[..., None, None].astype(np.float32)
    both = np.stack([traj, mirrored])  # view 1 reads the mirrored trajectory, the rest the original
    src = np.zeros(len(starts), np.int64)
    src[1] = 1
    windows = both[src[:, None], lo] * (1 - w) + both[src[:, None], hi] * w  # (views, STEPS, S, 2)
    flat = windows.reshape(len(starts), -1)
    return (flat @ proj) / np.sqrt(flat.shape[1])


@dataclass
class AuditReport:
    participant_overlap: list[dict] = field(default_factory=list)  # {"participant", "splits"}
    near_duplicates: list[dict] = field(default_factory=list)  # {"a", "b", "splits", "distance", "kind"}

    @property
    def clean(self) -> bool:
        return not self.participant_overlap and not self.near_duplicates

    def to_json(self) -> str:
        dups = [{k: d[k] for k in ("a", "b", "splits", "distance")} for d in self.near_duplicates]
        return json.dumps({"participant_overlap": self.participant_overlap, "near_duplicates": dups},
                          ensure_ascii=False)


def participant_overlap(participants: list, splits: list[str]) -> list[dict]:
    seen: dict[str, set] = {}
    for p, s in zip(participants, splits):
        if p is not None:
            seen.setdefault(str(p), set()).add(s)
    return [{"participant": p, "splits": sorted(s)} for p, s in sorted(seen.items()) if len(s) > 1]


def near_duplicates(sigs: np.ndarray, splits: np.ndarray, frames: np.ndarray, keys: list[str],
                    split_names: list[str], threshold: float = THRESHOLD, block: int = BLOCK) -> list[dict]:
    """Pairs of sequences in different splits whose signatures are within ``threshold``.

    ``sigs``: (N, 2 + 2W, DIM) from ``sequence_signatures``; ``splits``: (N,) split codes;
    ``frames``: (N,) lengths. A pair matches whole-to-whole (either one mirrored) or, for a clip cut
    in two, the shorter one whole to a prefix/suffix window of the longer of the matching fraction."""
    n, views, dim = sigs.shape
    w = len(WINDOW_FRACTIONS)
    queries = np.concatenate([sigs[:, 0], sigs[:, 1]])  # every sequence as is and mirrored
    q_owner = np.concatenate([np.arange(n), np.arange(n)])
    q_norm = np.linalg.norm(queries.astype(np.float32), axis=1)
    q_order = np.argsort(q_norm, kind="stable")
    # Targets sorted by norm: by the triangle inequality a query of norm r can only match targets of
    # norm within r +- threshold, a contiguous slice; the search skips everything else.
    targets = sigs[:, [0] + list(range(2, views))].reshape(-1, dim)  # (N * (1 + 2W), DIM), float16 kept
    t_norm = np.linalg.norm(targets.astype(np.float32), axis=1)
    t_order = np.argsort(t_norm, kind="stable")
    targets, t_norm = targets[t_order], t_norm[t_order]
    t_owner = np.repeat(np.arange(n), 1 + 2 * w)[t_order]
    t_fraction = np.tile(np.concatenate([[1.0], WINDOW_FRACTIONS, WINDOW_FRACTIONS]), n)[t_order]
    slack = threshold + 1e-4  # float rounding
    best: dict[tuple[int, int], float] = {}
    for qs in range(0, len(queries), block):
        qi = q_order[qs:qs + block]
        q = queries[qi].astype(np.float32)
        # [q, |q|², 1] . [-2t, 1, |t|²] = |q - t|²: one matrix product, one comparison per block
        q_aug = np.concatenate([q, (q ** 2).sum(axis=1, keepdims=True), np.ones((len(q), 1), np.float32)], axis=1)
        lo, hi = np.searchsorted(t_norm, [q_norm[qi[0]] - slack, q_norm[qi[-1]] + slack])
        for ts in range(lo, hi, 4 * block):
            te = min(ts + 4 * block, hi)
            t = targets[ts:te].astype(np.float32)
            t_aug = np.concatenate([-2 * t, np.ones((len(t), 1), np.float32), (t ** 2).sum(axis=1, keepdims=True)],
                                   axis=1)
            d2 = q_aug @ t_aug.T
            rows = np.flatnonzero(d2.min(axis=1) <= threshold ** 2)  # one pass; matches are rare
            if not rows.size:
                continue
            cand_q, cand_t = np.nonzero(d2[rows] <= threshold ** 2)
            cand_q = rows[cand_q]
            a, b = q_owner[qi[cand_q]], t_owner[ts + cand_t]
            frac = t_fraction[ts + cand_t]
            ok = (splits[a] != splits[b]) & ((frac == 1.0) | (np.abs(frames[a] / frames[b] - frac) <= FRACTION_TOLERANCE))
            dist = np.sqrt(np.maximum(d2[cand_q, cand_t], 0))
            for i, j, d in zip(a[ok].tolist(), b[ok].tolist(), dist[ok].tolist()):
                pair = (i, j) if keys[i] < keys[j] else (j, i)
                if d < best.get(pair, np.inf):
                    best[pair] = d
    out = [{"a": keys[i], "b": keys[j], "splits": [split_names[splits[i]], split_names[splits[j]]],
            "distance": round(float(d), 6)} for (i, j), d in best.items()]
    return sorted(out, key=lambda r: (r["distance"], r["a"], r["b"]))


def audit_shards(path: str | Path, threshold: float = THRESHOLD,
                 progress: Callable[[int], None] | None = None) -> AuditReport:
    """Audit a shard directory (raw landmark shards, ours or another tool's in our format)."""
    index = ShardIndex.open(path)
    if index.transform:
        raise ShardError(f"{index.path}: shards hold transformed features; the near-duplicate audit needs raw "
                         "landmarks (shard without --transform)")
    split_names = list(index.splits)
    code = {s: i for i, s in enumerate(split_names)}
    keys, participants, split_codes, frames, layouts, sigs = [], [], [], [], [], []
    for split, sample in iter_samples(index):  # one sample's landmarks in memory at a time
        arr = sample.arrays["landmarks"]
        if arr.ndim != 3:
            raise ShardError(f"{index.path}: sample {sample.key!r} is not raw (frames, points, 3) landmarks")
        keys.append(sample.key)
        participants.append(sample.meta.get("participant"))
        split_codes.append(code[split])
        frames.append(arr.shape[0])
        layouts.append(sample.meta.get("layout"))
        sigs.append(sequence_signatures(arr, index.layout(sample.meta["layout"])).astype(np.float16))
        if progress is not None:
            progress(1)
    report = AuditReport(participant_overlap=participant_overlap(participants, [split_names[c] for c in split_codes]))
    splits = np.asarray(split_codes)
    frames_arr = np.asarray(frames, dtype=np.float64)
    for layout in sorted(set(layouts), key=str):  # signatures compare only within one layout
        rows = [i for i, name in enumerate(layouts) if name == layout]
        if len(rows) < 2:
            continue
        found = near_duplicates(np.stack([sigs[i] for i in rows]), splits[rows], frames_arr[rows],
                                [keys[i] for i in rows], split_names, threshold)
        report.near_duplicates += found
    report.near_duplicates.sort(key=lambda r: (r["distance"], r["a"], r["b"]))
    return report
