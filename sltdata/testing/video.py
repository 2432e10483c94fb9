"""Short video clips made from a real photograph, for extract tests and benchmarks (no downloads).

``skimage.data.astronaut()`` (scikit-image ships it) shows a real person, face and upper body, and
no hands: MediaPipe Holistic finds the face and the pose in every frame and no hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def astronaut() -> np.ndarray:
    """The 512x512 RGB uint8 astronaut photograph (Eileen Collins, NASA, public domain)."""
    from skimage import data

    return data.astronaut()


def write_clip(path: Path, rgb: np.ndarray, frames: int = 8, fps: float = 25.0) -> Path:
    """A still clip of ``frames`` copies of ``rgb``: .mp4 (mp4v) or .avi (MJPG) by suffix."""
    import cv2

    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    h, w = rgb.shape[:2]
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for _ in range(frames):
        writer.write(bgr)
    writer.release()
    return path


def write_truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes: a copy cut off mid-download."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)
