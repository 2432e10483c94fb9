"""MediaPipe Holistic behind one small interface: RGB frame in, one frame of holistic points out.

Two backends, because MediaPipe moved its models out of the wheel: ``legacy`` is
``mediapipe.solutions.holistic`` (mediapipe <= 0.10.21 ships the models inside the wheel, so it runs
offline), ``tasks`` is the Tasks API ``HolisticLandmarker``, which needs a ``.task`` model bundle the
user downloads once and names with ``--task-model``. Nothing here downloads anything.

Both give the points in pose-format's holistic order (pose 33, face 468 or 478, left hand 21, right
hand 21, pose world 33), computed as pose-format's own ``load_holistic`` does: x, y scaled to pixels,
z as MediaPipe gives it, confidence = visibility for the pose, 1 for a detected face or hand, 0 (all
points) for a component MediaPipe did not find. mediapipe is imported only when a backend is made.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sltdata.errors import SltdataError

log = logging.getLogger(__name__)

# Log levels for native code that reads them when it loads (glog builds, TensorFlow): errors only.
# mediapipe 0.10.21's absl logging and TF Lite ignore them; ``quiet.native_log_filter`` covers those.
QUIET_NATIVE_LOGS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

BACKENDS = ("auto", "legacy", "tasks")
POSE_POINTS, HAND_POINTS, FACE_POINTS, REFINED_FACE_POINTS = 33, 21, 468, 478
INSTALL_HINT = ("pip install 'sltdata[extract]' (mediapipe==0.10.21, models inside the wheel, numpy<2), "
                "or a current mediapipe with --task-model PATH to a holistic_landmarker.task file")


@dataclass(frozen=True)
class HolisticConfig:
    """What a worker needs to build its own Holistic instance (plain data: it crosses process bounds)."""

    backend: str = "auto"  # auto | legacy | tasks
    model_complexity: int = 1  # legacy only: 0 lite, 1 full, 2 heavy
    refine_face: bool = False  # 478 face points (10 iris points) instead of 468
    task_model: str | None = None  # tasks only: path to a HolisticLandmarker .task bundle
    verbose: bool = False  # let MediaPipe's native log lines through (see quiet_native_logs)

    @property
    def face_points(self) -> int:
        return REFINED_FACE_POINTS if self.refine_face else FACE_POINTS


class Holistic(Protocol):
    name: str

    def process(self, rgb: np.ndarray, timestamp_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """(points (P, 3) float32, confidence (P,) float32) for one RGB uint8 frame."""

    def next_video(self) -> None:
        """Forget the tracking state of the previous video."""

    def close(self) -> None: ...



def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _mediapipe_has(module: str, name: str) -> bool:
    """Whether mediapipe is installed and ``from module import name`` works (releases differ)."""
    if not _has_module("mediapipe"):
        return False
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return True


def legacy_available() -> bool:
    """mediapipe with the ``solutions.holistic`` graph and its models (mediapipe <= 0.10.21)."""
    return _mediapipe_has("mediapipe.python.solutions", "holistic")


def tasks_available() -> bool:
    return _mediapipe_has("mediapipe.tasks.python.vision", "HolisticLandmarker")


def quiet_native_logs(verbose: bool = False) -> None:
    """Silence MediaPipe's native log lines unless ``verbose``; call before mediapipe is imported.

    Sets ``QUIET_NATIVE_LOGS`` in the environment (worker processes inherit it; a value the user set
    is kept) and absl's Python logger to errors. Without it every worker prints a screenful of INFO
    and WARNING lines that say nothing about the user's videos.
    """
    if verbose:
        return
    for name, value in QUIET_NATIVE_LOGS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("absl").setLevel(logging.ERROR)


def resolve_backend(config: HolisticConfig) -> str:
    """The backend ``config`` will run on, or one ``SltdataError`` line saying what to install or pass.

    The first step of every run, so it also quiets MediaPipe's logs before anything imports it."""
    quiet_native_logs(config.verbose)
    if config.backend not in BACKENDS:
        raise SltdataError(f"unknown backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")
    if config.model_complexity not in (0, 1, 2):
        raise SltdataError(f"--model-complexity must be 0, 1 or 2, not {config.model_complexity}")
    if not _has_module("mediapipe") or not _has_module("cv2"):
        missing = " and ".join(m for m in ("mediapipe", "cv2") if not _has_module(m))
        raise SltdataError(f"extract needs {missing}: {INSTALL_HINT}")
    want = config.backend
    if want == "auto":
        want = "tasks" if config.task_model else "legacy" if legacy_available() else "tasks"
    if want == "legacy" and not legacy_available():
        raise SltdataError("this mediapipe has no legacy solutions.holistic (removed after 0.10.21): "
                           f"{INSTALL_HINT}")
    if want == "legacy":
        _check_pose_model(config.model_complexity)
    if want == "tasks":
        if not tasks_available():
            raise SltdataError(f"this mediapipe has no Tasks HolisticLandmarker: {INSTALL_HINT}")
        _check_task_model(config.task_model)
    return want


# The mediapipe 0.10.21 wheel ships only the full pose model (complexity 1); for 0 and 2 its Holistic
# would fetch pose_landmark_lite/heavy.tflite from Google Cloud Storage on first use. sltdata never
# downloads: it asks for the file up front instead of failing inside a worker without network.
POSE_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}
POSE_MODEL_URL = "https://storage.googleapis.com/mediapipe-assets/"


def pose_model_path(model_complexity: int) -> Path:
    """Where mediapipe's legacy Holistic looks for the pose landmark model of this complexity."""
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / POSE_MODELS[model_complexity]


def _check_pose_model(model_complexity: int) -> None:
    path = pose_model_path(model_complexity)
    if not path.is_file():
        name = POSE_MODELS[model_complexity]
        raise SltdataError(f"--model-complexity {model_complexity} needs {path}, which the mediapipe wheel does "
                           f"not ship (only complexity 1 works offline); put {POSE_MODEL_URL}{name} there, or use "
                           "--model-complexity 1")


def _check_task_model(path: str | None) -> Path:
    if not path:
        raise SltdataError("the tasks backend needs --task-model PATH to a holistic_landmarker.task file "
                           "(sltdata downloads nothing); or " + INSTALL_HINT.split(", or ")[0])
    p = Path(path)
    if not p.is_file():
        raise SltdataError(f"--task-model {path}: no such file (a HolisticLandmarker .task bundle)")
    return p


def _points(landmarks, n: int, width: int, height: int, visibility: bool) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe landmarks (a sequence of objects with x, y, z[, visibility]) as pixel points + confidence."""
    if not landmarks:
        return np.zeros((n, 3), np.float32), np.zeros(n, np.float32)
    xyz = np.array([[p.x, p.y, p.z] for p in landmarks[:n]], dtype=np.float32)
    xyz *= np.array([width, height, 1], dtype=np.float32)
    conf = (np.array([p.visibility or 0.0 for p in landmarks[:n]], dtype=np.float32) if visibility
            else np.ones(len(xyz), np.float32))
    if len(xyz) < n:  # a 468-point face mesh when 478 were asked for: the iris points stay undetected
        xyz = np.concatenate([xyz, np.zeros((n - len(xyz), 3), np.float32)])
        conf = np.concatenate([conf, np.zeros(n - len(conf), np.float32)])
    return xyz, conf


def frame_points(pose, face, left, right, world, width: int, height: int,
                 face_points: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame in pose-format's holistic point order (world landmarks scaled as pose-format does)."""
    parts = [_points(pose, POSE_POINTS, width, height, True), _points(face, face_points, width, height, False),
             _points(left, HAND_POINTS, width, height, False), _points(right, HAND_POINTS, width, height, False),
             _points(world, POSE_POINTS, width, height, True)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class LegacyHolistic:
    """``mediapipe.solutions.holistic.Holistic`` in video mode (tracking across frames of one video)."""

    name = "legacy"

    def __init__(self, config: HolisticConfig):
        from mediapipe.python.solutions import holistic

        self.face_points = config.face_points
        self._graph = holistic.Holistic(static_image_mode=False, model_complexity=config.model_complexity,
                                        refine_face_landmarks=config.refine_face)

    def process(self, rgb: np.ndarray, timestamp_ms: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        r = self._graph.process(rgb)

        def lm(x):
            return x.landmark if x is not None else None

        return frame_points(lm(r.pose_landmarks), lm(r.face_landmarks), lm(r.left_hand_landmarks),
                            lm(r.right_hand_landmarks), lm(r.pose_world_landmarks), w, h, self.face_points)

    def next_video(self) -> None:
        # reset(), not pose-format's blank-frame trick: a blank frame leaves the world landmarks'
        # smoothing state behind, so a video's output would depend on which video ran before it.
        self._graph.reset()

    def close(self) -> None:
        self._graph.close()


class TasksHolistic:
    """Tasks API ``HolisticLandmarker`` in VIDEO mode; the model comes from the user's ``.task`` file."""

    name = "tasks"

    def __init__(self, config: HolisticConfig):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import HolisticLandmarker, HolisticLandmarkerOptions, RunningMode

        path = _check_task_model(config.task_model)
        if config.model_complexity != 1:
            log.info("--model-complexity does not apply to the tasks backend (the .task bundle fixes the model)")
        self._mp, self._path = mp, path
        self.face_points = config.face_points
        self._options = HolisticLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                                  running_mode=RunningMode.VIDEO)
        self._create = HolisticLandmarker.create_from_options
        self._graph = None
        self.next_video()

    def next_video(self) -> None:
        """A fresh landmarker per video: VIDEO mode has no reset, and its timestamps must rise."""
        if self._graph is not None:
            self._graph.close()
        try:
            self._graph = self._create(self._options)
        except (RuntimeError, ValueError) as e:
            raise SltdataError(f"--task-model {self._path}: not a usable HolisticLandmarker bundle ({e})") from None
        self._last = -1

    def process(self, rgb: np.ndarray, timestamp_ms: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        self._last = max(timestamp_ms, self._last + 1)  # strictly rising, even when rounding ties
        r = self._graph.detect_for_video(image, self._last)
        return frame_points(r.pose_landmarks, r.face_landmarks, r.left_hand_landmarks, r.right_hand_landmarks,
                            r.pose_world_landmarks, w, h, self.face_points)

    def close(self) -> None:
        self._graph.close()


def make_holistic(config: HolisticConfig) -> Holistic:
    """A Holistic instance for one worker (``next_video`` clears its tracking between videos)."""
    backend = resolve_backend(config)
    return LegacyHolistic(config) if backend == "legacy" else TasksHolistic(config)
