"""The small pure steps of a transform pipeline, on one sequence: arrays in, arrays out.

Every step takes ``x`` float32 (coords, frames, points), coordinate-major, with NaN where a point
was not detected, and returns a new array; none mutates its input. Coordinate-major because NumPy
is slow on a trailing axis of 2 or 3 (a (frames, points, 2) array broadcast against a centre or
reduced over frames and points runs 10-100x slower than the same work on contiguous planes). Random steps take their random numbers as explicit
arguments (an ``AugmentDraw``), never a generator, so the batched torch path (``torch_ops``) can be fed
the very same numbers and checked against this one. The formulas here (float64 statistics, float32
arithmetic in a fixed order) are mirrored operation for operation in ``torch_ops``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sltdata.transforms.config import AugmentConfig


# --- temporal ----------------------------------------------------------------------------------

def drop_frames(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Frames where ``keep``; all frames when none would be kept (an empty sequence helps nobody)."""
    return x[:, keep] if keep.any() and not keep.all() else x


def fill_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolate each point's runs of missing frames up to ``max_gap`` long.

    Runs at the start or end (no detection on one side) are left missing: extrapolating a hand that
    has not yet appeared invents motion.
    """
    n = x.shape[1]
    if max_gap <= 0 or n < 3:
        return x
    valid = ~np.isnan(x[0])  # (F, P)
    t = np.arange(n)[:, None]
    prev = np.maximum.accumulate(np.where(valid, t, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(valid, t, n)[::-1], axis=0)[::-1]
    fill = ~valid & (prev >= 0) & (nxt < n) & (nxt - prev - 1 <= max_gap)
    if not fill.any():
        return x
    p = np.clip(prev, 0, n - 1)
    q = np.clip(nxt, 0, n - 1)
    w = ((t - prev) / np.maximum(nxt - prev, 1)).astype(np.float32)
    cols = np.arange(x.shape[2])[None, :]
    xp, xq = x[:, p, cols], x[:, q, cols]
    return np.where(fill, xp + w * (xq - xp), x)


def interpolate_frames(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling to ``length`` frames, first and last frames kept exactly (align corners)."""
    n = x.shape[1]
    if length == n or n == 0:
        return x
    pos = np.arange(length, dtype=np.float64) * (n - 1) / max(length - 1, 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)[:, None]
    a, b = x[:, i0], x[:, i1]
    return np.where(w > 0, a + w * (b - a), a)  # where: a NaN neighbour at weight 0 stays out


def fit_length(x: np.ndarray, max_length: int | None, resize: bool) -> np.ndarray:
    if max_length is None or x.shape[1] <= max_length:
        return x
    return interpolate_frames(x, max_length) if resize else x[:, :max_length]


def crop_start(n: int, max_length: int, position: float) -> int:
    """First frame of a ``max_length`` window in ``n`` frames, ``position`` in [0, 1) choosing among
    the ``n - max_length + 1`` possible starts (float64 product, floored: the torch twin repeats it)."""
    return int(math.floor(position * (n - max_length + 1))) if n > max_length else 0


def crop(x: np.ndarray, max_length: int | None, position: float) -> np.ndarray:
    """A random ``max_length`` window of a longer sequence (ISLR 1st place trains on random crops; a
    cut that always keeps the first frames never shows the model how long signs end)."""
    if max_length is None or x.shape[1] <= max_length:
        return x
    start = crop_start(x.shape[1], max_length, position)
    return x[:, start:start + max_length]


def rescaled_length(n: int, factor: float) -> int:
    return 0 if n == 0 else max(1, int(np.round(n * factor)))


# --- normalization -----------------------------------------------------------------------------

def masked_mean(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Float64 mean per coordinate of the valid points of v (C, F, k), and how many there are."""
    valid = ~np.isnan(v[0])
    count = np.count_nonzero(valid)
    if count == 0:
        return np.zeros(v.shape[0]), 0
    return np.where(valid, v, 0).reshape(v.shape[0], -1).sum(1, dtype=np.float64) / count, count


def sequence_center(x: np.ndarray, candidates: list[np.ndarray], n_selected: int) -> np.ndarray:
    """The centre: mean of the first candidate point set with any detection, else of all selected
    points, else the origin. One centre per sequence, so the signer's motion is kept."""
    for idx in candidates:
        c, count = masked_mean(x[:, :, idx])
        if count:
            return c
    return masked_mean(x[:, :, :n_selected])[0]


def sequence_scale(x: np.ndarray, center: np.ndarray, mode: str, n_selected: int,
                   shoulders: np.ndarray | None) -> float:
    """Std of all valid selected x/y around the centre, or mean shoulder width (falls back to std)."""
    if mode == "none":
        return 1.0
    if mode == "shoulders" and shoulders is not None:
        s = x[:2, :, shoulders].astype(np.float64)  # (2, F, 2)
        ok = ~np.isnan(s[0]).any(1)
        if ok.any():
            d = s[:, ok, 0] - s[:, ok, 1]
            width = float(np.sqrt((d * d).sum(0)).mean())
            if width > 0 and math.isfinite(width):
                return width
    d = x[:2, :, :n_selected] - center[:2, None, None].astype(np.float32)
    valid = ~np.isnan(d[0])
    count = np.count_nonzero(valid)
    if count == 0:
        return 1.0
    std = math.sqrt(float(np.where(valid, d * d, 0).sum(dtype=np.float64)) / (2 * count))
    return std if std > 0 and math.isfinite(std) else 1.0


def normalize(x: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    return (x - center.astype(np.float32)[:, None, None]) / np.float32(scale)


# --- spatial augmentations ---------------------------------------------------------------------

def flip(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """True mirror: x -> -x (coordinates are centred by now) and each point takes its mirror
    partner's place, so a left hand becomes a right hand. Applying it twice is the identity."""
    out = x[:, :, perm]
    np.negative(out[0], out=out[0])
    return out


def hand_frames(landmarks: np.ndarray, x_columns: np.ndarray) -> int:
    """Frames of raw (F, P*3) landmarks where the hand whose x columns these are has any detection."""
    return int(np.count_nonzero(~np.isnan(landmarks[:, x_columns]).all(1)))


def mirror_for_handedness(left_frames: int, right_frames: int, handedness: str) -> bool:
    """Whether a sequence is mirrored to sign with ``handedness``'s hand: when the other hand is
    detected in strictly more frames (the Fingerspelling 2nd place's rule: the dominant hand is the one
    the detector sees most). A tie, both hands absent included, is left as it is."""
    if handedness == "right":
        return left_frames > right_frames
    if handedness == "left":
        return right_frames > left_frames
    return False


def affine_matrix(rotate_deg: float, scale: float, shear_x: float, shear_y: float,
                  tx: float, ty: float) -> np.ndarray:
    """(2, 3) float64 [A | t] with A = rotation @ shear @ scale, then the translation t."""
    r = math.radians(rotate_deg)
    cos, sin = math.cos(r), math.sin(r)
    return np.array([[(cos - sin * shear_y) * scale, (cos * shear_x - sin) * scale, tx],
                     [(sin + cos * shear_y) * scale, (sin * shear_x + cos) * scale, ty]])


def affine_offset(matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """b in x' = A x + b for an affine about ``center``: b = c - A c + t (exactly 0 for the identity)."""
    (a00, a01, tx), (a10, a11, ty) = matrix.tolist()
    cx, cy = float(center[0]), float(center[1])
    return np.array([cx - (a00 * cx + a01 * cy) + tx, cy - (a10 * cx + a11 * cy) + ty])


def affine(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply [A | t] to x/y around the sequence centre (mean of valid points); z is untouched."""
    c, _ = masked_mean(x[:2])
    b = affine_offset(matrix, c).astype(np.float32)
    a = matrix[:, :2].astype(np.float32)
    out = x.copy()
    out[0] = a[0, 0] * x[0] + a[0, 1] * x[1] + b[0]
    out[1] = a[1, 0] * x[0] + a[1, 1] * x[1] + b[1]
    return out


def spatial_mask_bounds(square: np.ndarray) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """(x0, x1, y0, y1) float32 of a drawn square (x0, y0, side): computed in float64, then rounded
    once, so the NumPy and torch paths compare the same float32 numbers."""
    x0, y0, side = (float(v) for v in square)
    return np.float32(x0), np.float32(x0 + side), np.float32(y0), np.float32(y0 + side)


def spatial_mask(x: np.ndarray, square: np.ndarray) -> np.ndarray:
    """Points whose x/y lie strictly inside the square lose every coordinate (NaN), in all frames:
    a region of the image where the detector saw nothing (ISLR 1st place ``spatial_mask``)."""
    x0, x1, y0, y1 = spatial_mask_bounds(square)
    inside = (x0 < x[0]) & (x[0] < x1) & (y0 < x[1]) & (x[1] < y1)
    if not inside.any():
        return x
    return np.where(inside, np.float32(np.nan), x)


def jitter(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shift each frame's x/y by its own offset (F, 2): detector wobble and camera shake."""
    out = x.copy()
    out[:2] += offsets.T[:, :, None]
    return out


def hide_frames(x: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Hidden frames lose every point (NaN); they stay real frames in the mask."""
    if not hidden.any():
        return x
    out = x.copy()
    out[:, hidden] = np.nan
    return out


# --- motion and output -------------------------------------------------------------------------

def motion_features(x: np.ndarray, kinds: tuple[str, ...]) -> list[np.ndarray]:
    """velocity x[t+1]-x[t], acceleration v[t+1]-v[t] (seed 001), lag2 x[t+2]-x[t] (ISLR 1st place);
    zero where the later frame does not exist."""
    out = []
    n = x.shape[1]
    for kind in kinds:
        m = np.zeros_like(x)
        if kind == "velocity" and n > 1:
            m[:, :-1] = x[:, 1:] - x[:, :-1]
        elif kind == "acceleration" and n > 2:
            v = x[:, 1:] - x[:, :-1]
            m[:, :-2] = v[:, 1:] - v[:, :-1]
        elif kind == "lag2" and n > 2:
            m[:, :-2] = x[:, 2:] - x[:, :-2]
        out.append(m)
    return out


@dataclass(frozen=True)
class FeatureLayout:
    """Where each column of a (T, D) feature row comes from: the one definition of that order.

    Per frame: ``parts`` in order (positions, then each motion feature); within a part,
    coordinate-major (all points' x, then all y, then z), so D = parts x coords x points. Every
    consumer (view, predict, export, a trainer that wants positions back) splits features with
    ``split`` instead of re-deriving this order: reshaping a row as (points, coords) reads the wrong
    numbers without any error.
    """

    parts: tuple[str, ...]  # "position", then the motion kinds in config order
    coords: int  # 2 (x, y) or 3 (x, y, z)
    points: np.ndarray  # (P,) int64 global layout indices of the selected points, in feature order

    @property
    def dim(self) -> int:
        return len(self.parts) * self.coords * len(self.points)

    def split(self, features):
        """{part: (..., T, P, C)} views of (..., T, D) features (NumPy arrays or torch tensors)."""
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have {features.shape[-1]} columns, this layout has {self.dim}")
        x = features.reshape(*features.shape[:-1], len(self.parts), self.coords, len(self.points))
        return {name: x[..., i, :, :].swapaxes(-1, -2) for i, name in enumerate(self.parts)}

    def join(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """The inverse of ``split``: (..., T, D) float32 from {part: (..., T, P, C)} NumPy arrays."""
        x = np.stack([np.asarray(parts[name], dtype=np.float32).swapaxes(-1, -2) for name in self.parts], axis=-3)
        return x.reshape(*x.shape[:-3], self.dim)


def to_features(x: np.ndarray, kinds: tuple[str, ...], length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(T, D) float32 features with NaN -> 0, zero-padded to ``length``, and the (T,) frame mask.

    Columns in ``FeatureLayout`` order (positions, then each motion feature; coordinate-major within
    each), written straight from the coordinate-major working array.
    """
    c, n, p = x.shape
    stacked = np.stack([x] + motion_features(x, kinds))  # (parts, C, n, P)
    np.copyto(stacked, 0, where=np.isnan(stacked))
    t = n if length is None else max(length, n)
    feats = np.zeros((t, stacked.shape[0] * c * p), np.float32)
    feats[:n].reshape(n, stacked.shape[0], c, p)[...] = stacked.transpose(2, 0, 1, 3)
    mask = np.zeros(t, bool)
    mask[:n] = True
    return feats, mask


# --- random draws ------------------------------------------------------------------------------

@dataclass
class AugmentDraw:
    """Every random number one sample's augmentation uses. ``None`` = that augmentation is off."""
    rescale: float | None = None  # length multiplier
    flip: bool = False
    affine: np.ndarray | None = None  # (2, 3) float64 [A | t]
    jitter: np.ndarray | None = None  # (T, 2) float32 per-frame offsets, T = frames after fit_length
    hidden: np.ndarray | None = None  # (T,) bool frames hidden by frame masking and cutout
    spatial_mask: np.ndarray | None = None  # (3,) float64 square: x0, y0 (image coords), side
    crop: float | None = None  # where a too-long sequence's window starts, in [0, 1) of the possible starts


def draw_scalars(aug: AugmentConfig, rng: np.random.Generator) -> tuple[AugmentDraw, np.ndarray]:
    """The draws that do not depend on the length: which augmentations fire, speed, flip, affine.

    Returns the draw and the uniforms deciding the per-frame augmentations (for ``draw_frames``):
    they are drawn now so the sequence of draws never depends on the data."""
    u = rng.random(6)
    d = AugmentDraw()
    if u[0] < aug.rescale.p:
        d.rescale = float(rng.uniform(*aug.rescale.range))
    d.flip = bool(u[1] < aug.flip.p)
    if u[2] < aug.affine.p:
        a = aug.affine
        r = rng.random(6)
        d.affine = affine_matrix((2 * r[0] - 1) * a.rotate, a.scale[0] + r[1] * (a.scale[1] - a.scale[0]),
                                 (2 * r[2] - 1) * a.shear, (2 * r[3] - 1) * a.shear,
                                 (2 * r[4] - 1) * a.translate, (2 * r[5] - 1) * a.translate)
    v = rng.random(2)
    if v[0] < aug.spatial_mask.p:
        r = rng.random(3)
        lo, hi = aug.spatial_mask.size
        d.spatial_mask = np.array([r[0], r[1], lo + r[2] * (hi - lo)])
    if v[1] < aug.crop.p:
        d.crop = float(rng.random())
    return d, u[3:]


def draw_frames(aug: AugmentConfig, rng: np.random.Generator, d: AugmentDraw, fire: np.ndarray,
                n: int) -> AugmentDraw:
    """The per-frame draws (jitter, frame mask, cutout), once the final number of frames ``n`` is known."""
    if fire[0] < aug.jitter.p:
        d.jitter = rng.normal(0.0, aug.jitter.sigma, (n, 2)).astype(np.float32)
    hidden = None
    if fire[1] < aug.frame_mask.p:
        lo, hi = aug.frame_mask.fraction
        hidden = rng.random(n) < lo + rng.random() * (hi - lo)
    if fire[2] < aug.cutout.p:
        lo, hi = aug.cutout.length
        size = int(math.floor((lo + rng.random() * (hi - lo)) * n))
        start = int(rng.integers(0, n - size + 1))
        hidden = np.zeros(n, bool) if hidden is None else hidden
        hidden[start:start + size] = True
    d.hidden = hidden
    return d
