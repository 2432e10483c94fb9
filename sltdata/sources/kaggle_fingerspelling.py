"""Kaggle "asl-fingerspelling" (Google ASL Fingerspelling Recognition, 2023).

Wide parquet files, each holding many sequences: one row per frame, ``sequence_id`` (the pandas
index, or a column), ``frame``, then 1,629 coordinate columns ``x_face_0 … x_right_hand_20``,
``y_…``, ``z_…``. Columns are placed by name, not by position, so a file with its columns in another
order reads the same. Manifest: ``train.csv`` / ``supplemental_metadata.csv`` with
``path,file_id,sequence_id,participant_id,phrase``.
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

SEQUENCE_COLUMN = "sequence_id"
FRAME_COLUMN = "frame"


def coordinate_columns() -> list[str]:
    """The 1,629 coordinate column names in holistic-543 point order, x/y/z interleaved per point."""
    return [f"{axis}_{comp}_{i}"
            for comp in KAGGLE_COMPONENTS
            for i in range(len(HOLISTIC_543.component(comp).points))
            for axis in "xyz"]


_COORDS = coordinate_columns()
BATCH_ROWS = 4096  # frames decoded at a time: 4096 x 1,629 float32 is ~27 MB
READ_BUFFER = 1 << 22  # bytes of a column chunk read at a time
ROW_GROUP_ROWS = 16384  # frames per row group in files the writer makes (the reader takes any)


def read_fingerspelling_file(path: Path, keys: list[str], name: str | None = None
                             ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The sequences of one wide parquet file that ``keys`` name, each float32 (frames, 543, 3), and
    the reasons to reject the keys whose frames are wrong. ``name`` is the file as reasons call it.

    Keys absent from both results are absent from the file; the caller rejects them. Frames are
    ordered by their frame number, compared as numbers: a string ``frame`` column (pandas writes
    one from a CSV round trip) is cast with a check, since sorting the strings puts frame 10
    before frame 2. A row with no ``sequence_id`` is a frame that belongs to no sequence: which
    sequence lost it cannot be known, so the whole file is refused rather than read short.
    """
    name = name or path.name
    try:
        # Buffered page reads: a row group's column chunks are streamed, not loaded whole.
        pf = pq.ParquetFile(path, buffer_size=READ_BUFFER)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    names = set(schema.names)
    missing = [c for c in (SEQUENCE_COLUMN, *_COORDS) if c not in names]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise SourceError(path, f"missing column(s) {', '.join(missing[:3])}{more}")
    not_float = [c for c in _COORDS if not pa.types.is_floating(schema.field(c).type)]
    if not_float:
        raise SourceError(path, f"column {not_float[0]} is {schema.field(not_float[0]).type}, expected a float")
    has_frame = FRAME_COLUMN in names
    try:
        table = pf.read(columns=[SEQUENCE_COLUMN, *([FRAME_COLUMN] if has_frame else [])])
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    if (nulls := table.column(SEQUENCE_COLUMN).null_count):
        raise SourceError(path, f"{name} has {nulls} row(s) with a null {SEQUENCE_COLUMN} "
                                "(frames of an unknown sequence)")
    # Order and filter with the two small columns only, then gather the wide rows batch by batch.
    seq = table.column(SEQUENCE_COLUMN).cast(pa.string())
    small = pa.table({"s": seq, "i": pa.array(np.arange(table.num_rows))}
                     | ({"f": _frame_numbers(path, table.column(FRAME_COLUMN))} if has_frame else {}))
    small = small.filter(pc.is_in(seq, value_set=pa.array(keys, type=pa.string())))
    if small.num_rows == 0:
        return {}, {}
    # Arrow's sort is stable: frames keep file order when there is no frame column.
    order = [("s", "ascending")] + ([("f", "ascending")] if has_frame else [])
    small = small.take(pc.sort_indices(small, sort_keys=order))
    rows = small.column("i").to_numpy()
    matrix = _gather_rows(path, pf, rows)
    values = matrix.reshape(len(rows), HOLISTIC_543.num_points, 3)
    ids = small.column("s").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    problems = _frame_problems(small.column("f"), starts, ends) if has_frame else [None] * len(starts)
    found, rejected = {}, {}
    for s, e, problem in zip(starts, ends, problems):
        if problem:
            rejected[str(ids[s])] = problem
        else:
            found[str(ids[s])] = values[s:e]
    return found, rejected


def _gather_rows(path: Path, pf: pq.ParquetFile, rows: np.ndarray) -> np.ndarray:
    """The coordinate rows ``rows`` (file row numbers, in the order wanted) as float32 (len(rows), 1629).

    Memory is the rows wanted plus one batch: only the row groups holding a wanted row are read, in
    batches of ``BATCH_ROWS``, and each batch gives up its wanted rows before the next is decoded.
    A whole ~1,000-sequence file in memory was ~3 GB per worker (the table, then its matrix).
    """
    out = np.empty((len(rows), len(_COORDS)), dtype=np.float32)
    by_position = np.argsort(rows, kind="stable")
    ordered = rows[by_position]
    float32 = pa.schema([(c, pa.float32()) for c in _COORDS])
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    wanted = [g for g in range(pf.num_row_groups)
              if np.searchsorted(ordered, starts[g]) < np.searchsorted(ordered, starts[g + 1])]
    try:
        for g in wanted:
            offset = int(starts[g])
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g], columns=_COORDS):
                lo, hi = np.searchsorted(ordered, [offset, offset + batch.num_rows])
                if hi > lo:
                    if batch.schema != float32:  # 1e300 -> inf: rejected later
                        batch = pa.Table.from_batches([batch]).cast(float32).combine_chunks().to_batches()[0]
                    block = np.asarray(batch.to_tensor(null_to_nan=True, row_major=True))
                    out[by_position[lo:hi]] = block[ordered[lo:hi] - offset]
                offset += batch.num_rows
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    return out


def _frame_numbers(path: Path, frame: pa.ChunkedArray) -> pa.ChunkedArray:
    """The frame column as integers; a value that is not a whole number refuses the file."""
    if pa.types.is_integer(frame.type):
        return frame
    try:
        return pc.cast(frame, pa.int64())  # a checked cast: "12" -> 12, but "x" and 1.5 raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SourceError(path, f"column {FRAME_COLUMN} is {frame.type} and holds a value that is not a "
                                f"frame number ({str(e).splitlines()[0]})") from None


def _frame_problems(frame: pa.ChunkedArray, starts: np.ndarray, ends: np.ndarray) -> list[str | None]:
    """Per sequence (rows ``starts[i]:ends[i]``, sorted by frame), why its frames cannot be placed:
    a frame without a number, or a frame number that appears more than once (as kaggle-islr rejects
    a (frame, type, landmark_index) that appears twice)."""
    missing = frame.is_null().to_numpy(zero_copy_only=False)
    number = frame.fill_null(0).to_numpy()
    repeat = np.r_[False, (number[1:] == number[:-1]) & ~missing[1:] & ~missing[:-1]]
    out: list[str | None] = []
    for s, e in zip(starts, ends):
        if missing[s:e].any():
            out.append(f"{int(missing[s:e].sum())} frame(s) without a {FRAME_COLUMN} number (null)")
        elif repeat[s + 1:e].any():
            f = number[s + 1:e][repeat[s + 1:e]][0]
            out.append(f"{FRAME_COLUMN} {f} appears {int((number[s:e] == f).sum())} times")
        else:
            out.append(None)
    return out


def write_fingerspelling_parquet(path: Path, sequences: dict[str, np.ndarray]) -> None:
    """Write sequences as asl-fingerspelling lays them out: sequence_id as the pandas-style index,
    frame, then x_* for every point, y_*, z_* (used by `sltdata synth` and tests).

    ``frame`` is int16, the type the competition's files are described with (no real file of this
    format is at hand to check); a sequence longer than int16 holds is refused instead of wrapping."""
    ids, frames, blocks = [], [], []
    for key, lm in sequences.items():
        check_frame_numbers("kaggle-fingerspelling", 0, len(lm))
        ids.append(np.full(len(lm), int(key), dtype=np.int64))
        frames.append(np.arange(len(lm), dtype=np.int16))
        blocks.append(lm.reshape(len(lm), -1))
    values = np.concatenate(blocks).astype(np.float32)
    cols: dict[str, np.ndarray] = {"sequence_id": np.concatenate(ids), "frame": np.concatenate(frames)}
    # Publisher order: all x columns, then y, then z.
    for axis_i, axis in enumerate("xyz"):
        for p_i, name in enumerate(_COORDS[axis_i::3]):
            cols[name] = values[:, p_i * 3 + axis_i]
    pq.write_table(pa.table(cols), path, row_group_size=ROW_GROUP_ROWS)


@register_source
class KaggleFingerspelling(Source):
    name = "kaggle-fingerspelling"

    def landmark_file(self, row: ManifestRow) -> str:
        return row.path or ""

    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        found, rejected = read_fingerspelling_file(file, [r.key for r in rows], name=rows[0].path)
        for r in rows:
            lm = found.get(r.key)
            if r.key in rejected:
                yield r.reject(rejected[r.key], file=r.path)
            elif lm is None:
                yield r.reject(f"sequence_id {r.key} not found in {r.path}", file=r.path)
            elif problem := coordinate_problem(lm, self.max_abs_coordinate, NORMALIZED_LIMIT):
                yield r.reject(problem, file=r.path)
            else:
                yield replace(r.sequence(lm, self.recipe.layout, self.name, self.recipe.fps), **KAGGLE_PROVENANCE)
