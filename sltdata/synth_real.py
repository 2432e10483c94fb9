"""`sltdata synth --realism real`: synthetic sequences with the statistics of real MediaPipe captures.

Calibrated against the real files in ``shared/realdata`` (Kaggle asl-signs parquet, holistic .pose
files); ``benchmarks/synth_realism.py`` prints both side by side. What the real files show, and
where it is made here:

* A phone close-up (``_real_template``): the face spans a third of the width, shoulders sit at
  y~0.67, hips, knees and ankles fall far below the image (y up to ~2.7) and the pose x leaves
  [0, 1]; pose z as MediaPipe estimates it (wrists ~-2, legs +1..+1.7).
* Lengths (``_islr_length``): log-normal around the Kaggle median of 18 frames, 2..272.
* Idle lead-in and lead-out: the hands rise from below the image and drop back, undetected while
  out of frame (``render_real``). Face and pose are always present.
* Per-signer style (``Style``): size and position in frame, speed, amplitude, a habitual
  location, handshape and wrist-turn bias, detection quality, and handedness: a left-handed
  signer is a true mirror (x flipped, left/right points swapped), so the dominant hand is ``left_hand``.
* Detection: the non-dominant hand is missing unless a two-handed sign brings it up; the dominant
  hand misses frames, stretches, and (rarely) the whole sequence.
* Confusable classes (``make_real_signs``): each sign is a (handshape, location, movement) triple
  from a small grid, so many pairs differ in one element only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sltdata.layouts import HOLISTIC_543, mirror_indices

_OFF = HOLISTIC_543.offsets
_RH, _LH, _POSE = _OFF["right_hand"], _OFF["left_hand"], _OFF["pose"]
_MIRROR = mirror_indices(HOLISTIC_543)

_FINGER_ANGLES = np.deg2rad([-60.0, -25.0, 0.0, 20.0, 40.0])
_SEGMENTS = np.array([0.035, 0.03, 0.022, 0.018])


def _template() -> np.ndarray:
    """A fixed neutral holistic-543 frame in template coordinates (x right, y down, 0..1)."""
    rng = np.random.default_rng(0)
    frame = np.zeros((HOLISTIC_543.num_points, 3), dtype=np.float64)
    angle = rng.uniform(0, 2 * np.pi, 468)
    radius = np.sqrt(rng.uniform(0, 1, 468))
    frame[:468, 0] = 0.5 + 0.08 * radius * np.cos(angle)
    frame[:468, 1] = 0.28 + 0.11 * radius * np.sin(angle)
    frame[:468, 2] = rng.normal(0, 0.02, 468)
    pose = np.zeros((33, 3))
    pose[:11, :2] = [0.5, 0.27] + rng.normal(0, 0.03, (11, 2))  # face points of the pose model
    # MediaPipe's LEFT is the signer's left, which is image right for a camera facing them.
    pose[11:17, :2] = [[0.62, 0.46], [0.38, 0.46], [0.68, 0.62], [0.32, 0.62], [0.66, 0.76], [0.34, 0.76]]
    pose[17:23, :2] = np.repeat(pose[15:17, :2], 3, axis=0) + rng.normal(0, 0.01, (6, 2))
    pose[23:33, :2] = [[0.57, 0.8], [0.43, 0.8], [0.58, 1.05], [0.42, 1.05], [0.58, 1.3], [0.42, 1.3],
                       [0.58, 1.33], [0.42, 1.33], [0.6, 1.35], [0.4, 1.35]]
    pose[:, 2] = rng.normal(0, 0.1, 33)
    frame[_OFF["pose"]:_OFF["pose"] + 33] = pose
    return frame


TEMPLATE = _template()  # shared by both realism levels


def hand_points(wrist: np.ndarray, curl: np.ndarray, rotation: np.ndarray, mirror: bool) -> np.ndarray:
    """21 hand points per frame: wrist (F, 2), finger curls (F, 5) in 0..1, rotation (F,) radians."""
    n = len(wrist)
    bend = curl[:, :, None] * np.array([0.2, 0.6, 0.7, 0.6])[None, None, :]  # (F, 5, 4)
    angles = (-np.pi / 2 + _FINGER_ANGLES[None, :, None] + rotation[:, None, None]
              + np.cumsum(bend, axis=2))
    step = _SEGMENTS[None, None, :, None] * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    joints = wrist[:, None, None, :] + np.cumsum(step, axis=2)  # (F, 5, 4, 2)
    if mirror:
        joints[..., 0] = 2 * wrist[:, None, None, 0] - joints[..., 0]
    out = np.zeros((n, 21, 3))
    out[:, 0, :2] = wrist
    out[:, 1:, :2] = joints.reshape(n, 20, 2)
    out[:, 1:, 2] = -0.02 * np.tile(np.arange(1, 5), 5)[None, :] * (1 + curl.repeat(4, axis=1))
    return out

# Template coordinates (as the easy model draws them) -> image coordinates of a phone close-up.
_ZOOM, _ANCHOR, _FACE_AT = 1.9, np.array([0.5, 0.28]), np.array([0.5, 0.37])
_REST = np.array([0.24, 0.98])  # right wrist at rest, template coordinates: below the image, wide
# MediaPipe pose z (~ metres scaled by hip width, camera-negative): wrists reach toward the camera.
_POSE_Z = np.array([-1.0] * 11 + [-0.5, -0.5, -0.6, -0.6] + [-2.3] * 8 + [0.0, 0.0, 0.7, 0.7] + [1.3] * 6)
_LEGS = np.arange(_POSE + 23, _POSE + 33)


@dataclass(frozen=True)
class Style:
    """How one signer signs and how well their camera sees them."""

    shift: np.ndarray  # (2,) image position of the body
    scale: float  # body size in frame
    speed: float  # >1 signs faster (fewer frames)
    left_handed: bool
    place: np.ndarray  # (2,) habitual offset of every location, template units
    amplitude: float  # movement size
    curl: np.ndarray  # (5,) handshape bias
    turn: float  # wrist rotation bias, radians
    miss: float  # per-frame dominant-hand miss rate
    dropout: float  # chance of a dominant-hand dropout stretch in a sequence
    lead: float  # typical idle share before/after the sign


def make_styles(n: int, rng: np.random.Generator, left_handed: float = 0.3) -> list[Style]:
    lefties = rng.permutation(n) < round(left_handed * n)  # an exact share, so small sets keep it
    return [Style(shift=rng.uniform([-0.1, -0.08], [0.1, 0.08]), scale=float(rng.uniform(0.85, 1.2)),
                  speed=float(rng.uniform(0.75, 1.33)), left_handed=bool(lefties[i]),
                  place=rng.normal(0, 0.02, 2), amplitude=float(rng.uniform(0.7, 1.3)),
                  curl=rng.normal(0, 0.12, 5), turn=float(rng.normal(0, 0.15)),
                  miss=float(rng.uniform(0.0, 0.08)), dropout=float(rng.uniform(0.1, 0.5)),
                  lead=float(rng.uniform(0.05, 0.2))) for i in range(n)]


@dataclass(frozen=True)
class Sign:
    """One sign (or character) as a (handshape, location, movement) choice plus its rendering."""

    elements: tuple[int, int, int]
    center: np.ndarray  # (2,) location, template units relative to the body
    radius: np.ndarray  # (2,)
    cycles: float
    phase: float
    curl: np.ndarray  # (5,)
    curl_end: np.ndarray  # (5,)
    rotation: float
    two_handed: bool
    frames: float  # relative duration (1 = typical)


def make_real_signs(n: int, rng: np.random.Generator, spread: float = 1.0, two_handed: float = 0.25) -> list[Sign]:
    """``n`` distinct (handshape, location, movement) triples from a grid just big enough, so signs share
    elements: a class often differs from another in its handshape alone, or its movement alone.
    ``spread`` shrinks the location range (fingerspelling happens in one place)."""
    k = int(np.ceil(n ** (1 / 3))) + 1
    shapes = rng.uniform(0, 1, (k, 5))
    shape_change = rng.normal(0, 0.25, (k, 5))
    turns = rng.uniform(-0.6, 0.6, k)
    places = rng.uniform([-0.12 * spread, -0.35], [0.12 * spread, -0.35 + 0.27 * spread], (k, 2))
    moves = [(rng.uniform(0.015, 0.07, 2), float(rng.uniform(0.3, 2.0)), float(rng.uniform(0, 2 * np.pi)))
             for _ in range(k)]
    cells = rng.permutation(k ** 3)[:n]
    signs = []
    for cell in cells:
        h, loc, m = int(cell // (k * k)), int(cell // k % k), int(cell % k)
        signs.append(Sign(elements=(h, loc, m), center=places[loc], radius=moves[m][0], cycles=moves[m][1],
                          phase=moves[m][2], curl=shapes[h], curl_end=np.clip(shapes[h] + shape_change[h], 0, 1),
                          rotation=float(turns[h]), two_handed=bool(rng.uniform() < two_handed),
                          frames=float(rng.uniform(0.8, 1.25))))
    return signs


def islr_length(sign: Sign, style: Style, rng: np.random.Generator) -> int:
    """Kaggle asl-signs lengths: median 18 frames, 2..272 (the 747 real files of the same source)."""
    return int(np.clip(round(18 * np.exp(rng.normal(0, 0.75)) * sign.frames / style.speed), 2, 272))


def _real_template(style: Style, rng: np.random.Generator) -> np.ndarray:
    frame = TEMPLATE.copy()
    head = np.r_[0:468, _POSE:_POSE + 11]
    frame[head, 1] = _ANCHOR[1] + 0.03 + (frame[head, 1] - _ANCHOR[1]) * 0.75  # a rounder face, a shorter neck
    frame[:468, 2] *= 2.5
    frame[_POSE:_POSE + 33, 2] = _POSE_Z + rng.normal(0, 0.3, 33)
    return frame


def _core_path(signs: list[Sign], counts: list[int], style: Style, rng: np.random.Generator):
    """Dominant wrist (template, relative to the body), curls, rotation and two-handedness per frame."""
    wrist, curl, rot, both = [], [], [], []
    for s, n in zip(signs, counts):
        t = np.linspace(0, 1, n) ** rng.uniform(0.75, 1.35)  # this performance's tempo
        ang = 2 * np.pi * s.cycles * t + s.phase
        place = s.center + style.place + rng.normal(0, 0.012, 2)
        radius = s.radius * style.amplitude * rng.uniform(0.8, 1.2)
        wrist.append(place + radius * np.stack([np.cos(ang), np.sin(ang)], axis=1))
        shape = s.curl + style.curl + rng.normal(0, 0.07, 5)
        curl.append(np.clip(shape[None] + (s.curl_end - s.curl)[None] * t[:, None], 0, 1.2))
        rot.append(np.full(n, s.rotation + style.turn + rng.normal(0, 0.05)))
        both.append(np.full(n, s.two_handed))
    return np.concatenate(wrist), np.concatenate(curl), np.concatenate(rot), np.concatenate(both)


def _ease(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames from ``a`` to ``b`` (exclusive of ``b``), slow at both ends."""
    t = (1 - np.cos(np.linspace(0, np.pi, n, endpoint=False))) / 2
    return a[None] + (b - a)[None] * t[:, None]


def render_real(signs: list[Sign], style: Style, rng: np.random.Generator, frames: int | None = None,
                frames_per_sign: float = 18.0) -> np.ndarray:
    """Perform ``signs`` with idle lead-in/out: float32 (frames, 543, 3), NaN where undetected.

    ``frames`` fixes the total length (ISLR draws it from the Kaggle distribution); otherwise each
    sign lasts about ``frames_per_sign`` frames at this signer's speed."""
    if frames is None:
        core_n = [max(2, int(round(frames_per_sign * s.frames / style.speed * rng.uniform(0.8, 1.25)))) for s in signs]
        total = sum(core_n)
        lead_in = int(round(total * rng.uniform(0, 2 * style.lead)))
        lead_out = int(round(total * rng.uniform(0, 1.5 * style.lead)))
    else:
        lead_in = int(frames * rng.uniform(0, 2 * style.lead))
        lead_out = int(frames * rng.uniform(0, 1.5 * style.lead))
        core = max(1, frames - lead_in - lead_out)
        lead_out = frames - lead_in - core
        cuts = np.sort(rng.uniform(0, 1, len(signs) - 1))
        core_n = [int(v) for v in np.diff(np.round(np.concatenate([[0], cuts, [1]]) * core).astype(int))]
    wrist, curl, rot, both = _core_path(signs, core_n, style, rng)
    body = np.array([0.5, 0.62])
    dom = body + [-0.1, 0] + wrist  # absolute template position of the dominant (right) wrist
    rest = _REST + rng.normal(0, 0.02, 2)
    relaxed = np.full(5, 0.3)
    dom = np.concatenate([_ease(rest, dom[0], lead_in), dom, _ease(dom[-1], rest, lead_out + 1)[1:]])
    curl = np.concatenate([np.repeat(relaxed[None], lead_in, 0), curl, np.repeat(relaxed[None], lead_out, 0)])
    rot = np.concatenate([np.zeros(lead_in), rot, np.zeros(lead_out)])
    both = np.concatenate([np.zeros(lead_in, bool), both, np.zeros(lead_out, bool)])
    n = len(dom)
    # The other hand mirrors a two-handed sign's path and rests below the image otherwise.
    other_rest = np.array([1 - rest[0], rest[1]])
    raised = (np.convolve(both.astype(float), np.ones(5) / 5, mode="same") if n >= 5 else both.astype(float))
    other = other_rest + (np.stack([1 - dom[:, 0], dom[:, 1]], axis=1) - other_rest) * raised[:, None]
    if not both.any() and rng.uniform() < 0.12:  # one-handed, the other hand held up in view for a while
        other = other + [0.0, -0.4]
    frame = np.repeat(_real_template(style, rng)[None], n, axis=0)
    right = hand_points_real(dom, curl, rot, mirror=False)
    left = hand_points_real(other, curl, -rot, mirror=True)
    frame[:, _RH:_RH + 21] = right
    frame[:, _LH:_LH + 21] = left
    for wrist_point, hand in ((_POSE + 16, right), (_POSE + 15, left)):  # pose wrist, pinky, index, thumb
        frame[:, wrist_point, :2] = hand[:, 0, :2]
        for k, finger in enumerate((17, 5, 1)):
            frame[:, wrist_point + 2 * (k + 1), :2] = hand[:, finger, :2]
        shoulder = frame[:, wrist_point - 4, :2]
        frame[:, wrist_point - 2, :2] = (shoulder + hand[:, 0, :2]) / 2 + [0, 0.08]  # elbow
    if style.left_handed:  # a true mirror: the dominant hand becomes left_hand
        frame[..., 0] = 1 - frame[..., 0]
        frame = frame[:, _MIRROR]
    xy = _FACE_AT + (frame[..., :2] - _ANCHOR) * _ZOOM
    xy = _FACE_AT + (xy - _FACE_AT) * style.scale + style.shift
    sway = np.cumsum(rng.normal(0, 0.0012, (n, 1, 2)), axis=0)
    xy = xy + sway + rng.normal(0, 0.0015, xy.shape)
    hands = np.r_[_LH:_LH + 21, _RH:_RH + 21]
    xy[:, hands] += rng.normal(0, 0.0025, (n, 42, 2))
    xy[:, _POSE:_POSE + 23] += rng.normal(0, 0.003, (n, 23, 2))
    xy[:, _LEGS] += rng.normal(0, 0.014, (n, len(_LEGS), 2))  # out-of-frame guesses are shaky
    frame[..., :2] = xy
    frame[..., 2] += rng.normal(0, 0.01, frame.shape[:2])
    frame[:, _LEGS, 2] += rng.normal(0, 0.15, (n, len(_LEGS)))
    out = frame.astype(np.float32)
    dominant, nondominant = (_LH, _RH) if style.left_handed else (_RH, _LH)
    _drop_undetected(out, dominant, nondominant, style, rng)
    return out


def hand_points_real(wrist: np.ndarray, curl: np.ndarray, rotation: np.ndarray, mirror: bool) -> np.ndarray:
    """21 hand points (template units) with MediaPipe-like hand z (relative to the wrist, ~-0.3..0)."""
    pts = hand_points(wrist, curl, rotation, mirror)
    pts[..., 2] *= 3.0
    return pts


def _drop_undetected(out: np.ndarray, dominant: int, nondominant: int, style: Style, rng: np.random.Generator) -> None:
    """NaN where MediaPipe would have found nothing: hands out of frame or lost, in place."""
    n = len(out)
    for start in (dominant, nondominant):
        wrist = out[:, start]
        off = (wrist[:, 1] > 0.97 + rng.normal(0, 0.03, n)) | (wrist[:, 0] < -0.05) | (wrist[:, 0] > 1.05)
        out[off, start:start + 21] = np.nan
    out[:, nondominant:nondominant + 21][rng.uniform(size=n) < 0.15] = np.nan
    lost = rng.uniform(size=n) < style.miss
    if rng.uniform() < style.dropout and n > 6:
        a = int(rng.integers(0, n - 2))
        lost[a:a + int(rng.integers(2, max(3, n // 3)))] = True
    if rng.uniform() < 0.02:  # the whole sequence without its hand (the camera never found it)
        lost[:] = True
    out[lost, dominant:dominant + 21] = np.nan
