"""Point layouts: what each of a sequence's points is. Defined once here; everything else asks.

A layout is an ordered list of components, each a named run of points. ``holistic-543`` is MediaPipe
Holistic in the order Google's Kaggle competitions (asl-signs, asl-fingerspelling) ship it: face
0-467, left_hand 468-488, pose 489-521, right_hand 522-542. The 10 refined iris points and the world
landmarks MediaPipe can also emit are not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sltdata.errors import ConfigError

# MediaPipe's own point names (mediapipe.solutions.holistic.PoseLandmark / HandLandmark), spelled out
# here so that reading a .pose file does not need mediapipe installed.
POSE_POINTS = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
    "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP",
    "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL", "RIGHT_HEEL",
    "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
)
HAND_POINTS = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP",
    "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP",
    "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP", "RING_FINGER_MCP",
    "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP", "PINKY_MCP", "PINKY_PIP", "PINKY_DIP",
    "PINKY_TIP",
)
FACE_POINTS = tuple(str(i) for i in range(468))

# mediapipe.solutions.hands.HAND_CONNECTIONS and pose.POSE_CONNECTIONS (indices within the component).
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)
POSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
    (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20),
    (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)


@dataclass(frozen=True)
class Component:
    name: str  # e.g. "left_hand"
    points: tuple[str, ...]  # point names in order
    edges: tuple[tuple[int, int], ...] = ()  # skeleton edges, indices within the component


@dataclass(frozen=True)
class Layout:
    name: str
    components: tuple[Component, ...]

    @cached_property
    def offsets(self) -> dict[str, int]:
        """First point index of each component."""
        out, start = {}, 0
        for c in self.components:
            out[c.name] = start
            start += len(c.points)
        return out

    @property
    def num_points(self) -> int:
        return sum(len(c.points) for c in self.components)

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise ConfigError(f"layout {self.name} has no component {name!r} "
                          f"(it has {', '.join(c.name for c in self.components)})")

    def indices(self, component: str, points: list[int | str] | None = None) -> np.ndarray:
        """Global point indices of a component's points (all of them, or by index/name within it)."""
        comp, start = self.component(component), self.offsets[component]
        if points is None:
            return np.arange(start, start + len(comp.points))
        out = []
        for p in points:
            if isinstance(p, str) and not p.lstrip("-").isdigit():
                if p not in comp.points:
                    raise ConfigError(f"layout {self.name} component {component} has no point {p!r}")
                out.append(comp.points.index(p))
            else:
                i = int(p)
                if not 0 <= i < len(comp.points):
                    raise ConfigError(f"layout {self.name} component {component} point {i} is out of "
                                      f"range 0..{len(comp.points) - 1}")
                out.append(i)
        return start + np.asarray(out, dtype=np.int64)

    def edges(self) -> np.ndarray:
        """All skeleton edges as global index pairs, shape (E, 2)."""
        pairs = [(self.offsets[c.name] + a, self.offsets[c.name] + b)
                 for c in self.components for a, b in c.edges]
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict:
        return {"name": self.name,
                "components": [{"name": c.name, "points": list(c.points),
                                "edges": [list(e) for e in c.edges]} for c in self.components]}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(d["name"], tuple(Component(c["name"], tuple(c["points"]),
                                              tuple(tuple(e) for e in c.get("edges", ())))
                                    for c in d["components"]))


HOLISTIC_543 = Layout("holistic-543", (
    Component("face", FACE_POINTS),
    Component("left_hand", HAND_POINTS, HAND_EDGES),
    Component("pose", POSE_POINTS, POSE_EDGES),
    Component("right_hand", HAND_POINTS, HAND_EDGES),
))

# Kaggle's `type` / column-name spelling of each holistic-543 component.
KAGGLE_COMPONENTS = ("face", "left_hand", "pose", "right_hand")

# pose-format's MediaPipe Holistic component names -> holistic-543 component names.
POSE_FORMAT_HOLISTIC = {
    "FACE_LANDMARKS": "face",
    "LEFT_HAND_LANDMARKS": "left_hand",
    "POSE_LANDMARKS": "pose",
    "RIGHT_HAND_LANDMARKS": "right_hand",
}

_LAYOUTS: dict[str, Layout] = {HOLISTIC_543.name: HOLISTIC_543}


def register_layout(layout: Layout) -> Layout:
    """Make a layout known by name (e.g. one read from a .pose header and kept in a store)."""
    known = _LAYOUTS.get(layout.name)
    if known is not None and known != layout:
        raise ConfigError(f"layout {layout.name!r} is already defined differently")
    _LAYOUTS[layout.name] = layout
    return layout


def get_layout(name: str) -> Layout:
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown layout {name!r} (known: {', '.join(sorted(_LAYOUTS))})") from None
