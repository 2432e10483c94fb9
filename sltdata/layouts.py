"""Point layouts: what each of a sequence's points is. Defined once here; everything else asks.

A layout is an ordered list of components, each a named run of points. ``holistic-543`` is MediaPipe
Holistic in the order Google's Kaggle competitions (asl-signs, asl-fingerspelling) ship it: face
0-467, left_hand 468-488, pose 489-521, right_hand 522-542. The 10 refined iris points and the world
landmarks MediaPipe can also emit are not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Mapping

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


def is_hand(component: str) -> bool:
    """Whether a component name names a hand: ``hand`` as a word of it (``left_hand``, ``hand``)."""
    return "hand" in component.split("_")


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

    @property
    def hand_components(self) -> tuple[str, ...]:
        """Names of the components that are hands (``left_hand``, ``right_hand``): by the word
        ``hand`` in the name, the one convention every layout here follows."""
        return tuple(c.name for c in self.components if is_hand(c.name))

    def hand_indices(self) -> np.ndarray:
        """Global indices of every hand point (empty when the layout has no hands)."""
        names = self.hand_components
        return np.concatenate([self.indices(n) for n in names]) if names else np.zeros(0, np.int64)

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

# ---------------------------------------------------------------------------------------------------
# The keypoint schema registry: the layouts other pose estimators write, with named points.
# ---------------------------------------------------------------------------------------------------

# MediaPipe's face mesh with ``refine_face_landmarks``: the 468 points plus 10 iris points (468-472 the
# right iris, centre first; 473-477 the left), as pose-format's holistic loader writes them.
REFINED_FACE_POINTS = tuple(str(i) for i in range(478))

# holistic-543's order with the refined 478-point face: face 0-477, left_hand 478-498, pose 499-531,
# right_hand 532-552.
HOLISTIC_553 = Layout("holistic-553", (
    Component("face", REFINED_FACE_POINTS),
    Component("left_hand", HAND_POINTS, HAND_EDGES),
    Component("pose", POSE_POINTS, POSE_EDGES),
    Component("right_hand", HAND_POINTS, HAND_EDGES),
))


def _pose_format_holistic(face_points: tuple[str, ...]) -> Layout:
    """MediaPipe Holistic in the order pose-format's ``load_holistic`` writes it, world landmarks
    (metres, hip-centred) included: pose 33, face 468|478, left hand 21, right hand 21, pose_world 33."""
    comps = (Component("pose", POSE_POINTS, POSE_EDGES), Component("face", face_points),
             Component("left_hand", HAND_POINTS, HAND_EDGES), Component("right_hand", HAND_POINTS, HAND_EDGES),
             Component("pose_world", POSE_POINTS, POSE_EDGES))
    return Layout(f"pose-format-holistic-{sum(len(c.points) for c in comps)}", comps)


POSE_FORMAT_HOLISTIC_576 = _pose_format_holistic(FACE_POINTS)
POSE_FORMAT_HOLISTIC_586 = _pose_format_holistic(REFINED_FACE_POINTS)

# COCO-WholeBody (Jin et al., ECCV 2020), as MMPose and OpenPifPaf write it through pose-format: body
# 17 + feet 6 (one 23-point component), face 68 (the iBUG 300-W points), left hand 21, right hand 21.
# Point names are the ones pose-format writes (checked on its mmposewholebody and openpifpaf files).
COCO_BODY_POINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)
COCO_BODY_EDGES = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (15, 17), (15, 18), (15, 19),
    (16, 20), (16, 21), (16, 22),
)
# Hands of every non-MediaPipe layout here share MediaPipe's 21-point order (wrist, then thumb, index,
# middle, ring, pinky from base to tip), so hands map point to point.
HAND_EDGES_21 = HAND_EDGES
COCO_WHOLEBODY_133 = Layout("coco-wholebody-133", (
    Component("pose", COCO_BODY_POINTS, COCO_BODY_EDGES),
    Component("face", tuple(f"face-{i}" for i in range(68))),
    Component("left_hand", tuple(f"left_hand_{i}" for i in range(21)), HAND_EDGES_21),
    Component("right_hand", tuple(f"right_hand_{i}" for i in range(21)), HAND_EDGES_21),
))

# OpenPose (Cao et al.): BODY_25, face 70 (iBUG 68 + the right and left pupils), hands 21 + 21; names
# as pose-format's OpenPose reader writes them.
OPENPOSE_BODY_POINTS = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip",
    "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe",
    "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
OPENPOSE_BODY_EDGES = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (0, 16), (0, 15), (0, 18), (0, 17), (1, 0),
    (8, 9), (9, 10), (10, 11), (8, 12), (12, 13), (13, 14), (11, 24), (11, 22), (22, 23), (14, 21),
    (14, 19), (19, 20),
)
OPENPOSE_FACE_POINTS = (
    *(f"FB_{i}" for i in range(17)), *(f"FEB_{i}" for i in range(17, 27)), *(f"FN_{i}" for i in range(27, 36)),
    *(f"FE_{i}" for i in range(36, 48)), *(f"FLO_{i}" for i in range(48, 60)),
    *(f"FLI_{i}" for i in range(60, 68)), "FP_68", "FP_69",
)
OPENPOSE_HAND_POINTS = (
    "BASE", "T_STT", "T_BCMC", "T_MCP", "T_IP", "I_CMC", "I_MCP", "I_PIP", "I_DIP", "M_CMC", "M_MCP",
    "M_PIP", "M_DIP", "R_CMC", "R_MCP", "R_PIP", "R_DIP", "P_CMC", "P_MCP", "P_PIP", "P_DIP",
)
OPENPOSE_137 = Layout("openpose-137", (
    Component("pose", OPENPOSE_BODY_POINTS, OPENPOSE_BODY_EDGES),
    Component("face", OPENPOSE_FACE_POINTS),
    Component("left_hand", OPENPOSE_HAND_POINTS, HAND_EDGES_21),
    Component("right_hand", OPENPOSE_HAND_POINTS, HAND_EDGES_21),
))

# The built-in layouts, immutable. A layout that is not built in (e.g. one read from a .pose header)
# travels with the object that holds its data: ``Store.layouts`` (store.json) and
# ``ShardIndex.layouts`` (index.json); nothing global changes when a file is opened.
BUILTIN_LAYOUTS: Mapping[str, Layout] = MappingProxyType({l.name: l for l in (
    HOLISTIC_543, HOLISTIC_553, POSE_FORMAT_HOLISTIC_576, POSE_FORMAT_HOLISTIC_586, COCO_WHOLEBODY_133,
    OPENPOSE_137)})


def get_layout(name: str) -> Layout:
    """A built-in layout by name (for a store's or shard directory's own layouts, ask that object)."""
    try:
        return BUILTIN_LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown layout {name!r} (built in: {', '.join(sorted(BUILTIN_LAYOUTS))}; "
                          "a store's or shard directory's own layouts come with it)") from None


# ---------------------------------------------------------------------------------------------------
# Point-selection presets, reference points and left/right mirror pairs (used by sltdata.transforms).
# ---------------------------------------------------------------------------------------------------

# Face-mesh point groups (indices within the 468-point face component). These are the groups of the
# ISLR 1st-place solution (hoyso48, Kaggle "Google - Isolated Sign Language Recognition", 2023:
# write-up https://www.kaggle.com/competitions/asl-signs/discussion/406684, code
# https://github.com/hoyso48/Google---Isolated-Sign-Language-Recognition-1st-place-solution):
# 40 lip points (outer and inner contour), 4 nose points, 16 points around each eye. In that code
# LEYE[i] is the mirror of REYE[i], so the selection is closed under a left/right flip.
FACE_LIPS = (
    0, 61, 185, 40, 39, 37, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375,
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
)
FACE_NOSE = (1, 2, 98, 327)
FACE_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
FACE_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
FACE_NOSE_TIP = 1  # the canonical face model's nose tip

# MediaPipe FACEMESH_CONTOURS (lips, eyes, eyebrows, face oval): index pairs within the 468-point face
# mesh, copied as data from mediapipe/python/solutions/face_mesh_connections.py (Apache-2.0, Copyright
# 2020 The MediaPipe Authors). Drawn by ``sltdata view``; kept apart from the components' skeleton
# edges so that a layout stored before they were known still compares equal.
FACEMESH_LIPS = (
    (61, 146), (146, 91), (91, 181), (181, 84), (84, 17), (17, 314), (314, 405), (405, 321), (321, 375),
    (375, 291), (61, 185), (185, 40), (40, 39), (39, 37), (37, 0), (0, 267), (267, 269), (269, 270),
    (270, 409), (409, 291), (78, 95), (95, 88), (88, 178), (178, 87), (87, 14), (14, 317), (317, 402),
    (402, 318), (318, 324), (324, 308), (78, 191), (191, 80), (80, 81), (81, 82), (82, 13), (13, 312),
    (312, 311), (311, 310), (310, 415), (415, 308),
)
FACEMESH_LEFT_EYE = (
    (263, 249), (249, 390), (390, 373), (373, 374), (374, 380), (380, 381), (381, 382), (382, 362),
    (263, 466), (466, 388), (388, 387), (387, 386), (386, 385), (385, 384), (384, 398), (398, 362),
)
FACEMESH_LEFT_EYEBROW = ((276, 283), (283, 282), (282, 295), (295, 285), (300, 293), (293, 334),
                         (334, 296), (296, 336))
FACEMESH_RIGHT_EYE = (
    (33, 7), (7, 163), (163, 144), (144, 145), (145, 153), (153, 154), (154, 155), (155, 133),
    (33, 246), (246, 161), (161, 160), (160, 159), (159, 158), (158, 157), (157, 173), (173, 133),
)
FACEMESH_RIGHT_EYEBROW = ((46, 53), (53, 52), (52, 65), (65, 55), (70, 63), (63, 105), (105, 66), (66, 107))
FACEMESH_FACE_OVAL = (
    (10, 338), (338, 297), (297, 332), (332, 284), (284, 251), (251, 389), (389, 356), (356, 454),
    (454, 323), (323, 361), (361, 288), (288, 397), (397, 365), (365, 379), (379, 378), (378, 400),
    (400, 377), (377, 152), (152, 148), (148, 176), (176, 149), (149, 150), (150, 136), (136, 172),
    (172, 58), (58, 132), (132, 93), (93, 234), (234, 127), (127, 162), (162, 21), (21, 54),
    (54, 103), (103, 67), (67, 109), (109, 10),
)
FACEMESH_CONTOURS = (FACEMESH_LIPS + FACEMESH_LEFT_EYE + FACEMESH_LEFT_EYEBROW + FACEMESH_RIGHT_EYE
                     + FACEMESH_RIGHT_EYEBROW + FACEMESH_FACE_OVAL)

# Left/right mirror permutation of the 468 face-mesh points: FACE_MIRROR[i] is the point whose
# canonical position is the horizontal reflection of point i (an involution). Copied from
# pose-format (MIT licence), pose_format/utils/holistic.py FLIPPED_FACE_POINTS (its first 468
# entries), which derived it from MediaPipe's symmetric canonical_face_model.obj. Copied rather than
# imported because that module imports mediapipe.
FACE_MIRROR = (
    0, 1, 2, 248, 4, 5, 6, 249, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
    250, 251, 252, 253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269,
    270, 271, 272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309,
    310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 94, 324, 325, 326, 327, 328,
    329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343, 344, 345, 346, 347, 348,
    349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365, 366, 367, 368,
    369, 370, 371, 372, 373, 374, 375, 376, 377, 378, 379, 151, 152, 380, 381, 382, 383, 384, 385, 386,
    387, 388, 389, 390, 164, 391, 392, 393, 168, 394, 395, 396, 397, 398, 399, 175, 400, 401, 402, 403,
    404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 195, 419, 197, 420, 199,
    200, 421, 422, 423, 424, 425, 426, 427, 428, 429, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439,
    440, 441, 442, 443, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454, 455, 456, 457, 458, 459,
    460, 461, 462, 463, 464, 465, 466, 467, 3, 7, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69,
    70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    90, 91, 92, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110,
    111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130,
    131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150,
    153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 165, 166, 167, 169, 170, 171, 172, 173, 174,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 196,
    198, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219,
    220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247,
)

# Presets: name -> ((component, points or None for all), ...), per layout. A preset is expanded in
# the order given, so the islr-1st order is the solution's POINT_LANDMARKS order
# (LIP + LHAND + RHAND + NOSE + REYE + LEYE = 40 + 21 + 21 + 4 + 16 + 16 = 118 points), which keeps
# feature columns comparable with its published models.
_MEDIAPIPE_PRESETS: dict[str, tuple[tuple[str, tuple | None], ...]] = {
        "hands": (("left_hand", None), ("right_hand", None)),
        "left-hand": (("left_hand", None),),
        "right-hand": (("right_hand", None),),
        "lips": (("face", FACE_LIPS),),
        "eyes": (("face", FACE_RIGHT_EYE + FACE_LEFT_EYE),),
        "nose": (("face", FACE_NOSE),),
        # MediaPipe pose 0-24: face points, shoulders, elbows, wrists, hand points, hips (no legs).
        "pose-upper": (("pose", tuple(range(25))),),
        "pose": (("pose", None),),
        "face": (("face", None),),
        # Every point; with ``normalize.drop_z: false`` all 543 points with z (Fingerspelling 2nd place).
        "all": (("face", None), ("left_hand", None), ("pose", None), ("right_hand", None)),
        "islr-1st": (("face", FACE_LIPS), ("left_hand", None), ("right_hand", None),
                     ("face", FACE_NOSE), ("face", FACE_RIGHT_EYE), ("face", FACE_LEFT_EYE)),
}

# The iBUG 300-W 68-point face (COCO-WholeBody's face, OpenPose's first 68): jaw 0-16, brows 17-26,
# nose 27-35 (tip 30), right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67.
IBUG_LIPS = tuple(range(48, 68))
IBUG_NOSE = tuple(range(27, 36))
IBUG_RIGHT_EYE = tuple(range(36, 42))
IBUG_LEFT_EYE = tuple(range(42, 48))
IBUG_NOSE_TIP = 30
# Left/right mirror of the 68 points (an involution): the jaw and brows reverse, eyes swap corner for
# corner, lips reflect about the midline points 51, 57, 62 and 66.
IBUG_MIRROR = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)


def _ibug_presets(upper_body: tuple[str, ...]) -> dict[str, tuple[tuple[str, tuple | None], ...]]:
    """The presets of a layout with an iBUG-68 face: the same names as MediaPipe's, with the iBUG
    points that play the same part (islr-1st: lips, hands, nose, right eye, left eye)."""
    return {
        "hands": (("left_hand", None), ("right_hand", None)),
        "left-hand": (("left_hand", None),),
        "right-hand": (("right_hand", None),),
        "lips": (("face", IBUG_LIPS),),
        "eyes": (("face", IBUG_RIGHT_EYE + IBUG_LEFT_EYE),),
        "nose": (("face", IBUG_NOSE),),
        "pose-upper": (("pose", upper_body),),
        "pose": (("pose", None),),
        "face": (("face", None),),
        "all": (("pose", None), ("face", None), ("left_hand", None), ("right_hand", None)),
        "islr-1st": (("face", IBUG_LIPS), ("left_hand", None), ("right_hand", None),
                     ("face", IBUG_NOSE), ("face", IBUG_RIGHT_EYE), ("face", IBUG_LEFT_EYE)),
    }


# Presets of every registered layout: the same names resolve on each (tests check every pair).
PRESETS: dict[str, dict[str, tuple[tuple[str, tuple | None], ...]]] = {
    HOLISTIC_543.name: _MEDIAPIPE_PRESETS,
    HOLISTIC_553.name: _MEDIAPIPE_PRESETS,
    **{l.name: {**_MEDIAPIPE_PRESETS, "all": tuple((c.name, None) for c in l.components)}
       for l in (POSE_FORMAT_HOLISTIC_576, POSE_FORMAT_HOLISTIC_586)},
    # Upper body: everything above the knees (COCO 0-12; OpenPose without knees, ankles and feet).
    COCO_WHOLEBODY_133.name: _ibug_presets(COCO_BODY_POINTS[:13]),
    OPENPOSE_137.name: _ibug_presets(tuple(p for p in OPENPOSE_BODY_POINTS
                                           if not p[1:].startswith(("Knee", "Ankle", "BigToe", "SmallToe", "Heel")))),
}

# Reference points for centering: name -> candidates tried in order, each a (component, points)
# whose mean over the sequence is the centre; the first candidate with any detection wins.
_MEDIAPIPE_REFERENCES = {
    "nose": (("face", (FACE_NOSE_TIP,)), ("pose", ("NOSE",))),
    "shoulders": (("pose", ("LEFT_SHOULDER", "RIGHT_SHOULDER")),),
}
REFERENCES: dict[str, dict[str, tuple[tuple[str, tuple], ...]]] = {
    **{l.name: _MEDIAPIPE_REFERENCES for l in (HOLISTIC_543, HOLISTIC_553, POSE_FORMAT_HOLISTIC_576,
                                               POSE_FORMAT_HOLISTIC_586)},
    COCO_WHOLEBODY_133.name: {"nose": (("face", (IBUG_NOSE_TIP,)), ("pose", ("nose",))),
                              "shoulders": (("pose", ("left_shoulder", "right_shoulder")),)},
    OPENPOSE_137.name: {"nose": (("face", (IBUG_NOSE_TIP,)), ("pose", ("Nose",))),
                        "shoulders": (("pose", ("LShoulder", "RShoulder")),)},
}


def preset_indices(layout: Layout | str, name: str) -> np.ndarray:
    """Global point indices of a preset, or of presets joined with '+' (``hands+lips+pose-upper``).

    Points are kept in preset order; a point named twice is kept at its first place.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    presets = PRESETS.get(layout.name, {})
    parts = [p.strip() for p in str(name).split("+")]
    out: list[np.ndarray] = []
    for part in parts:
        if part not in presets:
            known = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"unknown point preset {part!r} for layout {layout.name} (known: {known})")
        for component, points in presets[part]:
            out.append(layout.indices(component, None if points is None else list(points)))
    idx = np.concatenate(out) if out else np.zeros(0, np.int64)
    _, first = np.unique(idx, return_index=True)
    return idx[np.sort(first)]


def reference_indices(layout: Layout | str, name: str) -> list[np.ndarray]:
    """Candidate point sets for a centering reference (``nose``, ``shoulders``), first choice first.

    ``component:point`` (e.g. ``face:17``, the point the ISLR 1st-place solution centred on) names
    one point directly.
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    if ":" in name:
        component, point = name.split(":", 1)
        return [layout.indices(component, [point])]
    refs = REFERENCES.get(layout.name, {})
    if name not in refs:
        raise ConfigError(f"unknown reference {name!r} for layout {layout.name} "
                          f"(known: {', '.join(sorted(refs)) or 'none'}, or component:point)")
    return [layout.indices(c, list(p)) for c, p in refs[name]]


def _swap_left_right(name: str) -> str:
    """The mirror partner's name: LEFT/RIGHT (MediaPipe), left/right (COCO), a leading L/R before a
    capital (OpenPose's ``LShoulder``)."""
    if len(name) > 1 and name[0] in "LR" and name[1].isupper() and not name.isupper():
        return ("R" if name[0] == "L" else "L") + name[1:]
    for a, b in (("LEFT", "RIGHT"), ("left", "right")):
        name = name.replace(a, "\0").replace(b, a).replace("\0", b)
    return name


def mirror_indices(layout: Layout | str) -> np.ndarray:
    """Permutation (P,) taking each point to its left/right mirror partner, for a true mirror flip.

    Components ``left_X`` and ``right_X`` swap point for point; within a component, points named
    ``LEFT_*``/``RIGHT_*`` (MediaPipe pose) swap by name; a 468-point ``face`` uses ``FACE_MIRROR``.
    Every other point is its own mirror (it lies on the body's midline or has no known partner).
    """
    layout = get_layout(layout) if isinstance(layout, str) else layout
    perm = np.arange(layout.num_points)
    names = {c.name for c in layout.components}
    for c in layout.components:
        start = layout.offsets[c.name]
        n = len(c.points)
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if c.name.startswith(a) and b + c.name[len(a):] in names:
                other = layout.component(b + c.name[len(a):])
                if len(other.points) == n:
                    perm[start:start + n] = layout.offsets[other.name] + np.arange(n)
                break
        else:
            if c.name == "face" and n in (len(FACE_MIRROR), len(REFINED_FACE_POINTS)):
                perm[start:start + len(FACE_MIRROR)] = start + np.asarray(FACE_MIRROR)
                if n == len(REFINED_FACE_POINTS):  # the two irises swap, centre for centre
                    perm[start + 468:start + 478] = start + np.r_[473:478, 468:473]
            elif c.name == "face" and n in (68, 70):  # iBUG 68 (+ OpenPose's right and left pupils)
                perm[start:start + 68] = start + np.asarray(IBUG_MIRROR)
                if n == 70:
                    perm[start + 68:start + 70] = start + np.array([69, 68])
            else:
                index = {p: i for i, p in enumerate(c.points)}
                for i, p in enumerate(c.points):
                    q = _swap_left_right(p)
                    if q != p and q in index:
                        perm[start + i] = start + index[q]
    return perm


def face_contour_edges(layout: Layout | str) -> np.ndarray:
    """The MediaPipe face contour as global index pairs (E, 2), when the layout has a 468-point
    ``face`` (the mesh the contour indexes); no edges otherwise."""
    layout = get_layout(layout) if isinstance(layout, str) else layout
    if not any(c.name == "face" and len(c.points) == len(FACE_POINTS) for c in layout.components):
        return np.zeros((0, 2), np.int64)
    return np.asarray(FACEMESH_CONTOURS, dtype=np.int64) + layout.offsets["face"]


# ---------------------------------------------------------------------------------------------------
# Declared mappings between registered layouts.
# ---------------------------------------------------------------------------------------------------

# Body points that mean the same joint in MediaPipe pose, COCO-WholeBody and OpenPose BODY_25, by a
# shared id. Points without a counterpart (MediaPipe's mouth corners and eye corners, OpenPose's Neck
# and MidHip, the toes, which MediaPipe's FOOT_INDEX only approximates) keep their own name as id, so
# they map within their family (MediaPipe to MediaPipe) and to NaN elsewhere.
_BODY_IDS = {
    "nose": ("NOSE", "nose", "Nose"), "left_eye": ("LEFT_EYE", "left_eye", "LEye"),
    "right_eye": ("RIGHT_EYE", "right_eye", "REye"), "left_ear": ("LEFT_EAR", "left_ear", "LEar"),
    "right_ear": ("RIGHT_EAR", "right_ear", "REar"),
    **{f"{side}_{joint}": (f"{side.upper()}_{joint.upper()}", f"{side}_{joint}", f"{side[0].upper()}{joint.title()}")
       for side in ("left", "right") for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "heel")},
}
_BODY_ID_OF = {name: pid for pid, names in _BODY_IDS.items() for name in names}


def _point_ids(layout: Layout) -> tuple[str | None, ...]:
    """Each point's id in the shared vocabulary of the mappings (None: no counterpart anywhere).

    Hands: ``left_hand.i`` (one 21-point order everywhere). Body: ``pose.<joint>``; MediaPipe's world
    landmarks only map to world landmarks. Faces: ``face.mesh.i`` (MediaPipe's mesh, shared by 468 and
    478 points) and ``face.ibug.i`` (COCO-WholeBody and OpenPose); no published correspondence joins
    the two, so a mesh point maps to NaN in an iBUG face and back.
    """
    ids: list[str | None] = []
    for c in layout.components:
        n = len(c.points)
        if is_hand(c.name):
            ids += [f"{c.name}.{i}" for i in range(n)]
        elif c.name in ("pose", "pose_world"):
            ids += [f"{c.name}.{_BODY_ID_OF.get(p, p)}" for p in c.points]  # else its own name: one family
        elif c.name == "face" and n in (468, 478):
            ids += [f"face.mesh.{i}" for i in range(n)]
        elif c.name == "face" and n in (68, 70):
            ids += [f"face.ibug.{i}" for i in range(68)] + ["face.right_pupil", "face.left_pupil"][:n - 68]
        else:
            ids += [None] * n
    return tuple(ids)


def layout_mapping(src: Layout | str, dst: Layout | str) -> tuple[np.ndarray, np.ndarray]:
    """(source index, destination index) pairs of the points two registered layouts share."""
    src = get_layout(src) if isinstance(src, str) else src
    dst = get_layout(dst) if isinstance(dst, str) else dst
    for l in (src, dst):
        if BUILTIN_LAYOUTS.get(l.name) != l:
            raise ConfigError(f"layout {l.name} is not a registered layout; mappings join only "
                              f"{', '.join(sorted(BUILTIN_LAYOUTS))}")
    where = {pid: i for i, pid in enumerate(_point_ids(src)) if pid is not None}
    pairs = [(where[pid], j) for j, pid in enumerate(_point_ids(dst)) if pid in where]
    a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


def map_layout(landmarks: np.ndarray, src: Layout | str, dst: Layout | str) -> np.ndarray:
    """Landmarks (..., src points, C) in layout ``dst``: each point the two layouts share is copied,
    every other destination point is NaN. The one implementation of a layout mapping (ingest's
    ``--layout-map`` and transforms use it), so a model trained on one layout can be fed another."""
    src_i, dst_i = layout_mapping(src, dst)
    dst = get_layout(dst) if isinstance(dst, str) else dst
    out = np.full((*landmarks.shape[:-2], dst.num_points, landmarks.shape[-1]), np.nan, dtype=np.float32)
    out[..., dst_i, :] = landmarks[..., src_i, :]
    return out
