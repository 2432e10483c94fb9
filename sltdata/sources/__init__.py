"""Source readers, registered by name. One module per publisher format.

A source knows its publisher's files: which landmark file a manifest row points at, and how to read
a file into sequences. Everything generic (manifest checks, parts, rejects, resumption) is in
``sltdata.ingest``. Third-party packages add a source through the ``sltdata.sources`` entry-point
group, pointing at a ``Source`` subclass.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Iterator

import numpy as np

from sltdata.errors import ConfigError
from sltdata.layouts import Layout, get_layout
from sltdata.manifest import ManifestRow
from sltdata.recipes import Recipe
from sltdata.sequence import Sequence
from sltdata.store import Reject

_BUILTIN = ("sltdata.sources.kaggle_islr", "sltdata.sources.kaggle_fingerspelling", "sltdata.sources.pose")
_SOURCES: dict[str, type["Source"]] = {}
_LOADED = False


class Source(ABC):
    name: ClassVar[str]
    layouts: ClassVar[tuple[str, ...]] = ("holistic-543",)  # what this reader can write; a recipe picks one
    # Default plausibility bound in frame sizes when the recipe sets no max_abs_coordinate.
    default_max_abs_coordinate: ClassVar[float] = 1e4

    def __init__(self, root: Path, recipe: Recipe):
        if recipe.layout not in self.layouts:
            raise ConfigError(f"recipe {recipe.name}: layout: source {self.name} writes "
                              f"{' or '.join(self.layouts)}, not {recipe.layout!r}")
        self.root = root
        self.recipe = recipe
        limit = recipe.max_abs_coordinate
        if limit is None:
            limit = self.default_max_abs_coordinate
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise ConfigError(f"recipe {recipe.name}: max_abs_coordinate must be a positive number, got {limit!r}")
        self.max_abs_coordinate = float(limit)

    # ``landmark_file`` as a DuckDB expression over the manifest's role columns (``path``, ``key``, ...),
    # when it has one: the planner then names a million rows' files without a Python call per row.
    landmark_file_sql: str | None = None

    @abstractmethod
    def landmark_file(self, row: ManifestRow) -> str:
        """The landmark file a manifest row points at, relative to the dataset root."""

    def layout(self, name: str) -> Layout:
        """The Layout a sequence this source read names (ingest records it in store.json). Built-ins
        here; a source that reads layouts from its files (``.pose`` headers) answers for those."""
        return get_layout(name)

    @abstractmethod
    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        """Read one landmark file; yield a Sequence or a Reject for every row given, in order.

        A file that cannot be read at all raises ``SourceError``; ingest then rejects every row that
        points at it with that reason.
        """


# Provenance of Google's Kaggle landmark files (asl-signs, asl-fingerspelling): MediaPipe Holistic
# output as it gives it, x/y in [0, 1] of the frame; the competitions publish no frame size, fps or
# MediaPipe version, so those stay unknown (None).
KAGGLE_PROVENANCE = MappingProxyType({"units": "normalized", "extractor": "mediapipe-holistic"})

# How a normalized source's plausibility bound is named in a reject reason.
NORMALIZED_LIMIT = ", the recipe's max_abs_coordinate for normalized coordinates"


def coordinate_problem(landmarks: np.ndarray, limit: float = np.inf, why: str = "") -> str | None:
    """The reason to reject a sequence whose coordinates cannot be real, or None.

    NaN is allowed (it means "not detected"). Infinity is not: it is a flipped bit or a float64 value
    beyond float32's range (1e300 becomes inf when cast), and it makes a model's loss NaN many steps
    later, far from the file that caused it. ``limit`` is the plausibility bound (bit-rot gives values
    around 1e22 that are finite but not a position in any frame); ``why`` says where it comes from.
    Frames and points in the reason are 0-based positions in the sequence as read.
    """
    magnitude = np.abs(landmarks)
    for bad, what in ((np.isinf(magnitude), "infinite or beyond float32 range"),
                      (magnitude > limit, f"beyond ±{limit:g}{why}")):
        if bad.any():
            frame, point, _ = np.argwhere(bad)[0]
            value = landmarks[frame, point][bad[frame, point]][0]
            return (f"{int(bad.sum())} coordinate(s) {what} (first: {value:g} at frame {frame}, "
                    f"point {point})")
    return None


def check_frame_numbers(fmt: str, start: int, frames: int, dtype=np.int16) -> None:
    """Refuse to write frame numbers ``start .. start+frames-1`` that the publisher's type cannot hold
    (they would wrap to negative numbers and sort first)."""
    top = int(np.iinfo(dtype).max)
    if start < 0 or start + frames - 1 > top:
        raise ConfigError(f"{fmt} stores frame numbers as {np.dtype(dtype).name}, as the publisher's files do: "
                          f"frames {start}..{start + frames - 1} do not fit (0..{top})")


def register_source(cls: type[Source]) -> type[Source]:
    _SOURCES[cls.name] = cls
    return cls


def _load() -> None:
    """Register the built-in and entry-point sources once. A flag, not ``if _SOURCES``: importing one
    source module directly (``predict`` reads ISLR parquets with its reader) registers that source
    alone, and the others must still load."""
    global _LOADED
    if _LOADED:
        return
    for mod in _BUILTIN:
        importlib.import_module(mod)
    for ep in entry_points(group="sltdata.sources"):
        register_source(ep.load())
    _LOADED = True


def get_source(name: str) -> type[Source]:
    _load()
    try:
        return _SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown source {name!r} (known: {', '.join(sorted(_SOURCES))})") from None


def list_sources() -> list[str]:
    _load()
    return sorted(_SOURCES)
