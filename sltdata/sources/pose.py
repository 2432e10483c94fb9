"""``.pose`` files (pose-format) with a ``uid,text`` CSV, as iSign-style translation data ships.

The recipe's ``layout`` says what is stored. ``holistic-543`` (the default): MediaPipe Holistic poses
(pose-format's holistic components) are mapped into it by component and point name: the 10 refined
iris points (face 468-477) and POSE_WORLD_LANDMARKS are dropped, missing components are NaN, and a
point pose-format masks (confidence 0) is NaN; a file with another header is rejected, unless the
recipe's ``layout_map`` maps its registered layout (``openpose-137``, ``coco-wholebody-133``) into
the recipe's. ``header``: a header whose components and point names match a registered layout
(``sltdata.layouts.BUILTIN_LAYOUTS``: pose-format's holistic with world landmarks as
``pose-format-holistic-576``/``586``, without as ``holistic-543``/``553``, OpenPose 137, COCO-WholeBody
133) is stored in that layout; any other header keeps its own layout, named ``<format>-<points>`` and
recorded in the store. Coordinates stay as pose-format gives them: x/y in pixels of the header's
width/height (``units: pixels``), MediaPipe's z unscaled; 2-D formats get z = 0.

Provenance: width/height/depth from the header (0 = unknown), ``units: pixels``, the extractor the
header's components name, and the pose header's version in ``extractor_settings``. pose-format
headers have no free-text field, so ``sltdata extract`` writes its settings into a sidecar
``<stem>.pose.json`` (``{"extractor", "version", "settings"}``) that this reader picks up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

from sltdata.errors import SourceError
from sltdata.layouts import (BUILTIN_LAYOUTS, COCO_WHOLEBODY_133, HAND_EDGES, HAND_POINTS, HOLISTIC_543, HOLISTIC_553, OPENPOSE_137,
                             POSE_EDGES, POSE_FORMAT_HOLISTIC, POSE_FORMAT_HOLISTIC_576, POSE_FORMAT_HOLISTIC_586,
                             POSE_POINTS, Component, Layout)
from sltdata.manifest import ManifestRow
from sltdata.sequence import Sequence
from sltdata.sources import Source, coordinate_problem, register_source
from sltdata.store import Reject

HEADER = "header"  # recipe layout: each file keeps the layout its header describes
SIDECAR_SUFFIX = ".json"  # ``<stem>.pose.json``: the extractor and settings that wrote a .pose file

# pose-format's component names of each registered layout's components, and the extractor they name.
_HOLISTIC_COMPONENTS = {**POSE_FORMAT_HOLISTIC, "POSE_WORLD_LANDMARKS": "pose_world"}
_OPENPOSE_COMPONENTS = {"pose_keypoints_2d": "pose", "face_keypoints_2d": "face",
                        "hand_left_keypoints_2d": "left_hand", "hand_right_keypoints_2d": "right_hand"}
_COCO_COMPONENTS = {"BODY": "pose", "FACE": "face", "LEFT_HAND": "left_hand", "RIGHT_HAND": "right_hand"}
REGISTERED_HEADERS = (
    (POSE_FORMAT_HOLISTIC_576, _HOLISTIC_COMPONENTS, "mediapipe-holistic"),
    (POSE_FORMAT_HOLISTIC_586, _HOLISTIC_COMPONENTS, "mediapipe-holistic"),
    (HOLISTIC_543, _HOLISTIC_COMPONENTS, "mediapipe-holistic"),
    (HOLISTIC_553, _HOLISTIC_COMPONENTS, "mediapipe-holistic"),
    (OPENPOSE_137, _OPENPOSE_COMPONENTS, "openpose"),
    # MMPose and OpenPifPaf write the same header: the file cannot say which of them made it.
    (COCO_WHOLEBODY_133, _COCO_COMPONENTS, "coco-wholebody"),
)


def _header_index(header: PoseHeader, layout: Layout, components: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(header point index, layout index) pairs of the points a header shares with a layout, by
    component (``components`` names the header's in the layout's words) and point name."""
    have = {c.name for c in layout.components}
    src, dst, start = [], [], 0
    for comp in header.components:
        target = components.get(comp.name)
        if target in have:
            lookup = {n: i for i, n in enumerate(layout.component(target).points)}
            for i, p in enumerate(comp.points):
                j = lookup.get(p)
                if j is not None:
                    src.append(start + i)
                    dst.append(layout.offsets[target] + j)
        start += len(comp.points)
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)


def _holistic_index(header: PoseHeader) -> tuple[np.ndarray, np.ndarray]:
    """(source point index, holistic-543 index) pairs for the points a holistic header shares with it."""
    return _header_index(header, HOLISTIC_543, POSE_FORMAT_HOLISTIC)


def registered_layout(header: PoseHeader) -> tuple[Layout, np.ndarray, np.ndarray, str] | None:
    """The registered layout a header is, point for point (every header point and every layout point
    matched by component and name), with the index pairs and the extractor; None when none is."""
    n = sum(len(c.points) for c in header.components)
    for layout, components, extractor in REGISTERED_HEADERS:
        if layout.num_points != n:
            continue
        src, dst = _header_index(header, layout, components)
        if len(src) == n:
            return layout, src, dst, extractor
    return None


def is_holistic(header: PoseHeader) -> bool:
    return any(c.name in POSE_FORMAT_HOLISTIC for c in header.components)


def header_layout(header: PoseHeader) -> Layout:
    """A layout for a header no registered layout matches, named by format and point count (hash if
    names collide)."""
    comps = tuple(Component(c.name, tuple(c.points), tuple((int(l[0]), int(l[1])) for l in c.limbs))
                  for c in header.components)
    return Layout(f"{_known_format(header, comps)}-{sum(len(c.points) for c in comps)}", comps)


def _known_format(header: PoseHeader, comps=None) -> str:
    try:
        from pose_format.utils.generic import detect_known_pose_format

        return detect_known_pose_format(header)
    except (ValueError, ImportError):
        comps = comps or header.components
        digest = hashlib.sha1("|".join(f"{c.name}:{','.join(c.points)}" for c in comps).encode()).hexdigest()[:8]
        return f"pose-{digest}"


def _points(pose: Pose) -> np.ndarray:
    """First person's points as float32 (frames, points, 3) in header order, NaN where masked."""
    data = pose.body.data
    values = np.ma.getdata(data)[:, 0].astype(np.float32)
    mask = np.ma.getmaskarray(data)[:, 0].any(axis=-1)
    conf = np.asarray(pose.body.confidence)[:, 0]
    missing = mask | (conf <= 0)
    if values.shape[-1] == 2:
        values = np.concatenate([values, np.zeros_like(values[..., :1])], axis=-1)
    values = values[..., :3].copy()
    values[missing] = np.nan
    return values


def _placed(values: np.ndarray, layout: Layout, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    out = np.full((values.shape[0], layout.num_points, 3), np.nan, dtype=np.float32)
    out[:, dst] = values[:, src]
    return out


def pose_to_landmarks(pose: Pose, to_holistic: bool = True) -> tuple[np.ndarray, Layout]:
    """First person's points as float32 (frames, points, 3), NaN where pose-format masks them: a
    holistic header's points mapped into holistic-543 when ``to_holistic``; else in the registered
    layout the header matches, or the header's own."""
    values = _points(pose)
    if to_holistic and is_holistic(pose.header):
        src, dst = _holistic_index(pose.header)
        return _placed(values, HOLISTIC_543, src, dst), HOLISTIC_543
    found = registered_layout(pose.header)
    if found is not None:
        layout, src, dst, _ = found
        return _placed(values, layout, src, dst), layout
    return values, header_layout(pose.header)


def pose_provenance(pose: Pose, path: Path | None = None) -> dict:
    """Sequence provenance fields from a .pose header (and its extract sidecar, when there is one)."""
    h = pose.header
    dims = h.dimensions
    found = registered_layout(h)
    settings = {"pose_header_version": round(float(h.version), 6)}
    out = {"width": int(dims.width) or None, "height": int(dims.height) or None, "depth": int(dims.depth) or None,
           "units": "pixels",
           "extractor": found[3] if found else ("mediapipe-holistic" if is_holistic(h) else _known_format(h)),
           "extractor_version": None}
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX) if path is not None else None
    if sidecar is not None and sidecar.is_file():
        try:
            side = json.loads(sidecar.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SourceError(sidecar, f"unreadable extract sidecar ({e})") from None
        if not isinstance(side, dict):
            raise SourceError(sidecar, "extract sidecar is not a JSON object")
        out["extractor"] = side.get("extractor") or out["extractor"]
        out["extractor_version"] = side.get("version")
        settings.update(side.get("settings") or {})
    out["extractor_settings"] = json.dumps(settings, sort_keys=True)
    return out


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
        mapped = (self.recipe.layout_map or {}).get(layout.name) == self.recipe.layout
        if to_holistic and layout is not HOLISTIC_543 and not mapped:
            hint = (f"; or layout_map: {{{layout.name}: {HOLISTIC_543.name}}} converts it"
                    if BUILTIN_LAYOUTS.get(layout.name) == layout else "")
            raise SourceError(file, f"{layout.name} pose, not MediaPipe Holistic: the recipe's layout is "
                                    f"{HOLISTIC_543.name} (layout: {HEADER} keeps each file's own{hint})")
        provenance = pose_provenance(pose, file)
        fps = float(pose.body.fps)  # float32 in the file; float64 from here on, unrounded
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
            yield replace(r.sequence(landmarks, layout.name, self.name, fps or self.recipe.fps), **provenance)
