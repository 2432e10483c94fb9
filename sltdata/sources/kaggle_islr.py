"""Kaggle "asl-signs" (Google Isolated Sign Language Recognition, 2023).

Each sequence is one long-format parquet: one row per (frame, point) with columns
``frame, row_id, type, landmark_index, x, y, z``; 543 rows a frame (face 468, left_hand 21, pose 33,
right_hand 21). Undetected points are rows of NaN, not missing rows. Frames are placed by sorting
the frame numbers, and points by (type, landmark_index), so an unsorted file reads back in order.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sltdata.errors import SourceError
from sltdata.layouts import HOLISTIC_543, KAGGLE_COMPONENTS
from sltdata.manifest import ManifestRow
from sltdata.sequence import Sequence
from sltdata.sources import (KAGGLE_PROVENANCE, NORMALIZED_LIMIT, Source, check_frame_numbers, coordinate_problem,
                             register_source)
from sltdata.store import Reject

_READ = ("frame", "type", "landmark_index", "x", "y", "z")
_OFFSETS = np.array([HOLISTIC_543.offsets[c] for c in KAGGLE_COMPONENTS], dtype=np.int64)
_SIZES = np.array([len(HOLISTIC_543.component(c).points) for c in KAGGLE_COMPONENTS], dtype=np.int64)
_POINTS = HOLISTIC_543.num_points


def _check_schema(path: Path, schema: pa.Schema) -> None:
    missing = [c for c in _READ if c not in schema.names]
    if missing:
        raise SourceError(path, f"missing column(s) {', '.join(missing)} (has: {', '.join(schema.names)})")
    for c in ("frame", "landmark_index"):
        if not pa.types.is_integer(schema.field(c).type):
            raise SourceError(path, f"column {c} is {schema.field(c).type}, expected an integer")
    for c in ("x", "y", "z"):
        if not pa.types.is_floating(schema.field(c).type):
            raise SourceError(path, f"column {c} is {schema.field(c).type}, expected a float")
    if not (pa.types.is_string(schema.field("type").type) or pa.types.is_large_string(schema.field("type").type)
            or pa.types.is_dictionary(schema.field("type").type)):
        raise SourceError(path, f"column type is {schema.field('type').type}, expected a string")


def read_islr_landmarks(path: Path) -> np.ndarray:
    """One asl-signs parquet as float32 (frames, 543, 3), frames sorted by frame number."""
    try:
        pf = pq.ParquetFile(path)
        _check_schema(path, pf.schema_arrow)
        table = pf.read(columns=list(_READ))
    except SourceError:
        raise
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise SourceError(path, "zero frames")
    comp = pc.index_in(table.column("type").cast(pa.string()), value_set=pa.array(KAGGLE_COMPONENTS))
    comp = comp.to_numpy(zero_copy_only=False)
    if comp.dtype == object or np.isnan(comp.astype(np.float64)).any():
        comp_f = np.asarray(comp, dtype=np.float64)
        bad = table.column("type").take(pa.array(np.flatnonzero(np.isnan(comp_f))[:1])).to_pylist()[0]
        raise SourceError(path, f"unknown landmark type {bad!r} (expected one of {', '.join(KAGGLE_COMPONENTS)})")
    comp = comp.astype(np.int64)
    index = table.column("landmark_index").to_numpy(zero_copy_only=False).astype(np.int64)
    if ((index < 0) | (index >= _SIZES[comp])).any():
        i = int(np.flatnonzero((index < 0) | (index >= _SIZES[comp]))[0])
        raise SourceError(path, f"landmark_index {index[i]} out of range for type {KAGGLE_COMPONENTS[comp[i]]}")
    frame = table.column("frame").to_numpy(zero_copy_only=False)
    frames, rank = np.unique(frame, return_inverse=True)
    per_frame = np.bincount(rank, minlength=len(frames))
    if (per_frame != _POINTS).any():
        i = int(np.flatnonzero(per_frame != _POINTS)[0])
        raise SourceError(path, f"frame {frames[i]} has {per_frame[i]} points, expected {_POINTS}")
    slot = rank * _POINTS + _OFFSETS[comp] + index
    if (np.bincount(slot, minlength=len(frames) * _POINTS) != 1).any():
        raise SourceError(path, "a (frame, type, landmark_index) appears twice")
    out = np.empty((len(frames) * _POINTS, 3), dtype=np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, which the source rejects
        for axis, c in enumerate("xyz"):
            out[slot, axis] = table.column(c).to_numpy(zero_copy_only=False)
    return out.reshape(len(frames), _POINTS, 3)


def write_islr_parquet(path: Path, landmarks: np.ndarray, frame_start: int = 0) -> None:
    """Write (frames, 543, 3) as asl-signs lays it out (used by `sltdata synth` and tests).

    ``frame`` and ``landmark_index`` are int16, as in the publisher's files: frame numbers past
    32,767 would wrap, so they are refused instead.
    """
    n_frames = landmarks.shape[0]
    check_frame_numbers("kaggle-islr", frame_start, n_frames)
    types = np.repeat(np.array(KAGGLE_COMPONENTS), _SIZES)
    index = np.concatenate([np.arange(s) for s in _SIZES])
    frame = np.repeat(np.arange(frame_start, frame_start + n_frames, dtype=np.int16), _POINTS)
    t = np.tile(types, n_frames)
    li = np.tile(index, n_frames).astype(np.int16)
    row_id = pc.binary_join_element_wise(pa.array(frame.astype(str)), pa.array(t), pa.array(li.astype(str)), "-")
    flat = landmarks.reshape(-1, 3).astype(np.float64)
    table = pa.table({"frame": frame, "row_id": row_id, "type": t, "landmark_index": li,
                      "x": flat[:, 0], "y": flat[:, 1], "z": flat[:, 2]})
    pq.write_table(table, path)


@register_source
class KaggleISLR(Source):
    name = "kaggle-islr"

    landmark_file_sql = "coalesce(path, '')"

    def landmark_file(self, row: ManifestRow) -> str:
        return row.path or ""

    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        landmarks = read_islr_landmarks(file)
        problem = coordinate_problem(landmarks, self.max_abs_coordinate, NORMALIZED_LIMIT)
        for r in rows:
            if problem:
                yield r.reject(problem, file=r.path)
                continue
            yield replace(r.sequence(landmarks, self.recipe.layout, self.name, self.recipe.fps), **KAGGLE_PROVENANCE)
