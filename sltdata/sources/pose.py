"""``.pose`` files (pose-format) with a ``uid,text`` CSV, as iSign-style translation data ships.

The recipe's ``layout`` says what is stored. ``holistic-543`` (the default): MediaPipe Holistic poses
(pose-format's holistic components) are mapped into it by component and point name: the 10 refined
iris points (face 468-477) and POSE_WORLD_LANDMARKS are dropped, missing components are NaN, and a
point pose-format masks (confidence 0) is NaN; a file with another header is rejected. ``header``:
every file keeps its own header's layout, named ``<format>-<points>`` and recorded in the store.
Coordinates stay as pose-format gives them (pixels for MediaPipe poses); 2-D formats get z = 0.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

from sltdata.errors import SourceError
from sltdata.layouts import (HAND_EDGES, HAND_POINTS, HOLISTIC_543, POSE_EDGES, POSE_FORMAT_HOLISTIC,
                             POSE_POINTS, Component, Layout)
from sltdata.manifest import ManifestRow
from sltdata.sequence import Sequence
from sltdata.sources import Source, coordinate_problem, register_source
from sltdata.store import Reject

HEADER = "header"  # recipe layout: each file keeps the layout its header describes


def _holistic_index(header: PoseHeader) -> tuple[np.ndarray, np.ndarray]:
    """(source point index, holistic-543 index) pairs for the points a holistic header shares with it."""
    src, dst, start = [], [], 0
    for comp in header.components:
        target = POSE_FORMAT_HOLISTIC.get(comp.name)
        if target is not None:
            names = HOLISTIC_543.component(target).points
            lookup = {n: i for i, n in enumerate(names)}
            for i, p in enumerate(comp.points):
                j = lookup.get(p)
                if j is not None:
                    src.append(start + i)
                    dst.append(HOLISTIC_543.offsets[target] + j)
        start += len(comp.points)
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)


def is_holistic(header: PoseHeader) -> bool:
    return any(c.name in POSE_FORMAT_HOLISTIC for c in header.components)


def header_layout(header: PoseHeader) -> Layout:
    """A layout for a non-holistic header, named by format and point count (hash if names collide)."""
    comps = tuple(Component(c.name, tuple(c.points), tuple((int(l[0]), int(l[1])) for l in c.limbs))
                  for c in header.components)
    try:
        from pose_format.utils.generic import detect_known_pose_format

        fmt = detect_known_pose_format(header)
    except (ValueError, ImportError):
        digest = hashlib.sha1("|".join(f"{c.name}:{','.join(c.points)}" for c in comps).encode()).hexdigest()[:8]
        fmt = f"pose-{digest}"
    return Layout(f"{fmt}-{sum(len(c.points) for c in comps)}", comps)


def pose_to_landmarks(pose: Pose, to_holistic: bool = True) -> tuple[np.ndarray, Layout]:
    """First person's points as float32 (frames, points, 3), NaN where pose-format masks them; a
    holistic header's points are mapped into holistic-543 when ``to_holistic``."""
    data = pose.body.data
    values = np.ma.getdata(data)[:, 0].astype(np.float32)
    mask = np.ma.getmaskarray(data)[:, 0].any(axis=-1)
    conf = np.asarray(pose.body.confidence)[:, 0]
    missing = mask | (conf <= 0)
    if values.shape[-1] == 2:
        values = np.concatenate([values, np.zeros_like(values[..., :1])], axis=-1)
    values = values[..., :3].copy()
    values[missing] = np.nan
    if to_holistic and is_holistic(pose.header):
        src, dst = _holistic_index(pose.header)
        out = np.full((values.shape[0], HOLISTIC_543.num_points, 3), np.nan, dtype=np.float32)
        out[:, dst] = values[:, src]
        return out, HOLISTIC_543
    return values, header_layout(pose.header)


def load_pose(path: Path) -> Pose:
    try:
        pose = Pose.read(path.read_bytes())
    except Exception as e:  # pose-format raises bare struct/Value/Index errors on a bad file
        raise SourceError(path, f"unreadable .pose file ({type(e).__name__}: {e})") from None
    if pose.body.data.shape[1] == 0:
        raise SourceError(path, "no person in the .pose file")
    return pose


def read_pose_file(path: Path, to_holistic: bool = True) -> tuple[np.ndarray, Layout, float]:
    pose = load_pose(path)
    landmarks, layout = pose_to_landmarks(pose, to_holistic)
    return landmarks, layout, float(pose.body.fps)


def frame_size(header: PoseHeader) -> float:
    """The larger side of the frame the header gives (pixels), at least 1: the unit of the plausibility
    bound for pixel coordinates (MediaPipe's z is scaled like x, so one bound serves all axes)."""
    return float(max(header.dimensions.width, header.dimensions.height, 1))


def holistic_header(width: int = 640, height: int = 480, face_points: int = 468) -> PoseHeader:
    """The header pose-format's MediaPipe Holistic loader writes (same components, names, order),
    built without importing mediapipe."""
    def comp(name, points, limbs):
        return PoseHeaderComponent(name=name, points=list(points), limbs=list(limbs), colors=[(255, 0, 0)],
                                   point_format="XYZC")

    return PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=1000),
                      components=[
                          comp("POSE_LANDMARKS", POSE_POINTS, POSE_EDGES),
                          comp("FACE_LANDMARKS", [str(i) for i in range(face_points)], []),
                          comp("LEFT_HAND_LANDMARKS", HAND_POINTS, HAND_EDGES),
                          comp("RIGHT_HAND_LANDMARKS", HAND_POINTS, HAND_EDGES),
                          comp("POSE_WORLD_LANDMARKS", POSE_POINTS, POSE_EDGES),
                      ])


def write_holistic_pose(path: Path, landmarks: np.ndarray, fps: float = 25.0, width: int = 640, height: int = 480) -> None:
    """Write holistic-543 landmarks as a MediaPipe Holistic .pose file (pixels, confidence 0 where NaN)."""
    header = holistic_header(width, height)
    n = landmarks.shape[0]
    order = []  # holistic-543 index of each header point (-1: world landmarks, left empty)
    for c in header.components:
        target = POSE_FORMAT_HOLISTIC.get(c.name)
        base = HOLISTIC_543.offsets[target] if target else -1
        order += [base + i if target else -1 for i in range(len(c.points))]
    order = np.asarray(order)
    data = np.zeros((n, 1, len(order), 3), dtype=np.float32)
    conf = np.zeros((n, 1, len(order)), dtype=np.float32)
    have = order >= 0
    vals = landmarks[:, order[have]]
    ok = ~np.isnan(vals).any(axis=-1)
    data[:, 0, have] = np.where(ok[..., None], vals, 0)
    conf[:, 0, have] = ok.astype(np.float32)
    body = NumPyPoseBody(fps=fps, data=np.ma.masked_array(data, mask=np.repeat((conf == 0)[..., None], 3, -1)),
                         confidence=conf)
    with open(path, "wb") as f:
        Pose(header, body).write(f)


@register_source
class PoseFiles(Source):
    name = "pose"
    layouts = (HOLISTIC_543.name, HEADER)
    default_max_abs_coordinate = 100.0  # frames: pixel coordinates a hundred frames away are bit-rot

    def landmark_file(self, row: ManifestRow) -> str:
        stem = PurePosixPath(row.path).stem if row.path else row.key
        return str(PurePosixPath(self.recipe.pose_dir) / f"{stem}.pose")

    def __init__(self, root: Path, recipe):
        super().__init__(root, recipe)
        self._layouts: dict[str, Layout] = {HOLISTIC_543.name: HOLISTIC_543}  # the layouts read so far

    def layout(self, name: str) -> Layout:
        return self._layouts[name] if name in self._layouts else super().layout(name)

    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        to_holistic = self.recipe.layout == HOLISTIC_543.name
        pose = load_pose(file)
        landmarks, layout = pose_to_landmarks(pose, to_holistic)
        if to_holistic and layout is not HOLISTIC_543:
            raise SourceError(file, f"{layout.name} pose, not MediaPipe Holistic: the recipe's layout is "
                                    f"{HOLISTIC_543.name} (layout: {HEADER} keeps each file's own)")
        fps = float(pose.body.fps)
        dims = pose.header.dimensions
        problem = coordinate_problem(
            landmarks, self.max_abs_coordinate * frame_size(pose.header),
            f", the recipe's max_abs_coordinate ({self.max_abs_coordinate:g}) × the {dims.width}×{dims.height} frame")
        known = self._layouts.setdefault(layout.name, layout)
        if known != layout:
            raise SourceError(file, f"its header defines layout {layout.name} differently from an earlier file")
        for r in rows:
            if problem:
                yield r.reject(problem, file=self.landmark_file(r))
                continue
            yield r.sequence(landmarks, layout.name, self.name, fps or self.recipe.fps)
