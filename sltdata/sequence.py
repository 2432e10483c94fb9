"""The sequence record at the centre of sltdata (the contract in DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequence:
    """One signed sequence, whatever its source.

    ``landmarks`` are raw: float32, shape (frames, points, 3), x/y/z as the source gave them and NaN
    where the source had no detection. Normalization and point selection happen at load time
    (``sltdata.transforms``) so features can change without re-ingesting.
    """

    key: str  # unique within a dataset
    landmarks: np.ndarray  # float32 (frames, points, 3)
    layout: str  # name in sltdata.layouts, e.g. "holistic-543"
    label: str | None = None  # isolated sign
    text: str | None = None  # phrase or sentence
    participant: str | None = None  # signer id
    source: str | None = None  # source reader name, e.g. "kaggle-islr"
    fps: float | None = None  # frames per second exactly as the source gave it (float64)
    # Provenance (DESIGN.md: every sequence says where it came from); None where the source does not say.
    source_file: str | None = None  # landmark file, relative to the dataset root
    width: int | None = None  # frame width in pixels
    height: int | None = None  # frame height in pixels
    depth: int | None = None  # the header's depth (pose-format), when non-zero
    units: str | None = None  # coordinate space of x/y: "normalized" ([0, 1] of the frame) or "pixels"
    extractor: str | None = None  # pose estimator, e.g. "mediapipe-holistic", "openpose"
    extractor_version: str | None = None  # its version, when known
    extractor_settings: str | None = None  # its settings as a JSON object (sorted keys), when known

    @property
    def frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def points(self) -> int:
        return int(self.landmarks.shape[1])
