"""Quality scores of one sequence, computed at ingest and stored beside it (the ``quality_*`` columns).

Why at ingest: every later step (``stats``, ``shard --where``, ``--trim-idle``) needs them, and a
store is read far more often than it is written. Each score is a few whole-array NumPy operations
over the (frames, points, 3) array, so they cost little beside reading the source file (see
benchmarks/ingest.py).

Every distance is relative to the body size: the median shoulder width over the frames (any two
non-hand points named ``*shoulder*``), so pixel and normalized coordinates, near and far signers,
score alike. A layout without shoulders falls back to half the median bounding-box diagonal of the
detected points; a sequence with neither has no jitter and no idle counts (None).

- ``quality_detection``: share of frames in which each component has any detected point.
- ``quality_no_hand_frames`` / ``quality_longest_no_hand``: frames with no hand at all, and the
  longest run of them (None for a layout without hands).
- ``quality_jitter``: median over frames of the mean frame-to-frame displacement of the shoulders
  (points that barely move while signing), in body sizes: detector noise, not signing.
- ``quality_frozen_frames``: frames identical to the previous one (a video that repeated frames,
  or an extractor that reused its last result), frames with nothing detected not counted.
- ``quality_outside_frame``: share of detected points with x or y outside [0, 1] (normalized
  units, or pixels with a known width and height); None when the units are not known.
- ``quality_idle_lead_in`` / ``quality_idle_lead_out``: frames before the hands first move / after
  they last move. A hand moves when its centroid (the mean of its detected points, so point noise
  averages out) travels more than ``IDLE_MOTION`` body sizes in one frame; an absent hand does
  not move. A sequence in which no hand ever moves has lead-in = frames and lead-out = 0.
- ``quality_fps_anomaly``: the fps is missing or outside ``FPS_RANGE`` (a header that lies).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from sltdata.layouts import Layout

IDLE_MOTION = 0.02  # body sizes a hand centroid travels in one frame, below which it is idle
FPS_RANGE = (10.0, 120.0)  # plausible frame rates of sign-language video

QUALITY_NAMES = ("quality_detection", "quality_no_hand_frames", "quality_longest_no_hand", "quality_jitter",
                 "quality_frozen_frames", "quality_outside_frame", "quality_idle_lead_in",
                 "quality_idle_lead_out", "quality_fps_anomaly")


@functools.lru_cache(maxsize=64)
def shoulder_indices(layout: Layout) -> np.ndarray:
    """Global indices of the non-hand points named like a shoulder (MediaPipe, OpenPose, COCO spellings)."""
    out = []
    for c in layout.components:
        if c.name in layout.hand_components:
            continue
        start = layout.offsets[c.name]
        out += [start + i for i, p in enumerate(c.points) if "shoulder" in str(p).lower()]
    idx = np.asarray(out, dtype=np.int64)
    idx.flags.writeable = False  # cached and shared
    return idx


def body_size(xy: np.ndarray, finite: np.ndarray, shoulders: np.ndarray) -> float | None:
    """Median shoulder width over frames, else half the median bounding-box diagonal; None if neither."""
    if shoulders.size >= 2:
        a, b = xy[:, shoulders[0]], xy[:, shoulders[1]]
        width = np.linalg.norm(a - b, axis=-1)
        width = width[np.isfinite(width) & (width > 0)]
        if width.size:
            return float(np.median(width))
    with warnings.catch_warnings():  # frames with nothing detected give NaN, dropped below
        warnings.simplefilter("ignore", RuntimeWarning)
        lo = np.nanmin(np.where(finite[..., None], xy, np.nan), axis=1)
        hi = np.nanmax(np.where(finite[..., None], xy, np.nan), axis=1)
    diag = np.linalg.norm(hi - lo, axis=-1)
    diag = diag[np.isfinite(diag) & (diag > 0)]
    return float(np.median(diag)) / 2 if diag.size else None


def longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    if not flags.any():
        return 0
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


@functools.lru_cache(maxsize=64)
def _hands(layout: Layout) -> tuple[np.ndarray, ...]:
    """Each hand component's global indices (cached: ``Layout.indices`` walks point names)."""
    return tuple(layout.indices(name) for name in layout.hand_components)


def hand_motion(xy: np.ndarray, finite: np.ndarray, layout: Layout) -> np.ndarray:
    """(frames - 1,) the largest distance a hand's centroid travels from frame t-1 to t; 0 where no
    hand is seen in both frames. The centroid uses the points seen in both frames, so a point that
    drops out does not look like motion."""
    motion = np.zeros(max(xy.shape[0] - 1, 0))
    for idx in _hands(layout):
        both = finite[1:, idx] & finite[:-1, idx]  # (F-1, H)
        n = both.sum(axis=1)
        w = both[..., None]
        cur = np.where(w, xy[1:, idx], 0).sum(axis=1)
        prev = np.where(w, xy[:-1, idx], 0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.linalg.norm(cur - prev, axis=-1) / n
        motion = np.maximum(motion, np.where(n > 0, d, 0.0))
    return motion


def idle_counts(motion: np.ndarray, frames: int, threshold: float) -> tuple[int, int]:
    """(lead-in, lead-out): frames before the first move and after the last, from ``hand_motion``."""
    moving = np.flatnonzero(motion > threshold)
    if moving.size == 0:
        return frames, 0
    # motion[t] is the step from frame t to t+1: frame t is the last still one before a move.
    return int(moving[0]), int(frames - 2 - moving[-1])


def frozen_frames(lm: np.ndarray, finite: np.ndarray) -> int:
    """Frames bit-identical to the previous one (NaN equal to NaN), frames with nothing detected not
    counted. A strided sample of the values rules most frames out before the full comparison."""
    if lm.shape[0] < 2:
        return 0
    bits = np.ascontiguousarray(lm).view(np.uint32).reshape(lm.shape[0], -1)
    maybe = np.flatnonzero((bits[1:, ::97] == bits[:-1, ::97]).all(axis=1)) + 1
    if not maybe.size:
        return 0
    same = (bits[maybe] == bits[maybe - 1]).all(axis=1) & finite[maybe].any(axis=1)
    return int(same.sum())


def sequence_quality(landmarks: np.ndarray, layout: Layout, fps: float | None = None, *, units: str | None = None,
                     width: float | None = None, height: float | None = None) -> dict:
    """The ``quality_*`` values of one (frames, points, 3) sequence, as the store columns hold them."""
    lm = np.asarray(landmarks, dtype=np.float32)
    frames = lm.shape[0]
    xy = lm[..., :2]
    finite = np.isfinite(lm[..., 0])  # (F, P): sources write a point's x, y, z NaN together

    detection = {c.name: float(finite[:, layout.offsets[c.name]:layout.offsets[c.name] + len(c.points)]
                               .any(axis=1).mean()) for c in layout.components}
    no_hand_frames = longest = None
    if layout.hand_components:
        no_hand = ~np.logical_or.reduce([finite[:, idx].any(axis=1) for idx in _hands(layout)])
        no_hand_frames, longest = int(no_hand.sum()), longest_run(no_hand)

    shoulders = shoulder_indices(layout)
    size = body_size(xy, finite, shoulders)
    jitter = lead_in = lead_out = None
    if size:
        if shoulders.size and frames > 1:
            step = np.linalg.norm(xy[1:, shoulders] - xy[:-1, shoulders], axis=-1)  # (F-1, S), NaN if unseen
            seen = np.isfinite(step)
            rows = seen.any(axis=1)
            if rows.any():
                per_frame = np.where(seen, step, 0).sum(axis=1)[rows] / seen.sum(axis=1)[rows]
                jitter = float(np.median(per_frame)) / size
        if layout.hand_components:
            lead_in, lead_out = idle_counts(hand_motion(xy, finite, layout) / size, frames, IDLE_MOTION)

    frozen = frozen_frames(lm, finite)

    outside = None
    scale = None
    if units == "normalized":
        scale = np.array([1.0, 1.0])
    elif units == "pixels" and width and height:
        scale = np.array([float(width), float(height)])
    if scale is not None and finite.any():
        v = xy[finite] / scale
        outside = float(((v < 0) | (v > 1)).any(axis=1).mean())

    anomaly = fps is None or not np.isfinite(fps) or not FPS_RANGE[0] <= float(fps) <= FPS_RANGE[1]
    return {"quality_detection": detection, "quality_no_hand_frames": no_hand_frames,
            "quality_longest_no_hand": longest, "quality_jitter": jitter, "quality_frozen_frames": frozen,
            "quality_outside_frame": outside, "quality_idle_lead_in": lead_in, "quality_idle_lead_out": lead_out,
            "quality_fps_anomaly": bool(anomaly)}
