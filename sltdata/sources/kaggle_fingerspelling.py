"""Kaggle "asl-fingerspelling" (Google ASL Fingerspelling Recognition, 2023).

Wide parquet files, each holding many sequences: one row per frame, ``sequence_id`` (the pandas
index, or a column), ``frame``, then 1,629 coordinate columns ``x_face_0 … x_right_hand_20``,
``y_…``, ``z_…``. Columns are placed by name, not by position, so a file with its columns in another
order reads the same. Manifest: ``train.csv`` / ``supplemental_metadata.csv`` with
``path,file_id,sequence_id,participant_id,phrase``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sltdata.errors import SourceError
from sltdata.layouts import HOLISTIC_543, KAGGLE_COMPONENTS
from sltdata.manifest import ManifestRow
from sltdata.recipes import Recipe
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
COLUMN_BLOCK = 64  # coordinate columns decoded at a time (of 1,629): a 16,384-frame row group's block is 4 MB
READ_BUFFER = 1 << 22  # bytes of a column chunk read at a time
ROW_GROUP_ROWS = 16384  # frames per row group in files the writer makes (the reader takes any)
INDEX_CACHE_FILES = 4  # files whose frame index a source keeps: the files of the parts its workers hold


@dataclass(frozen=True, eq=False)
class FileIndex:
    """Where each sequence of one file lies, from its two small columns: read once per file, not once
    per part (a ~1,000-sequence file is cut into ~8 parts).

    ``rows[starts[i]:ends[i]]`` are the file row numbers of sequence ``ids[i]``, ordered by frame number;
    ``problems[i]`` is why its frames cannot be placed (None when they can)."""

    ids: dict[str, int]  # sequence_id (as a string) -> its position in starts/ends/problems
    rows: np.ndarray  # int64 file row numbers, grouped by sequence, each group ordered by frame
    starts: np.ndarray
    ends: np.ndarray
    problems: list[str | None]
    row_groups: np.ndarray  # int64 first row of each row group, then the number of rows


def index_fingerspelling_file(path: Path, name: str | None = None) -> FileIndex:
    """Check one wide parquet file's columns and index its sequences by their small columns.

    Frames are ordered by their frame number, compared as numbers: a string ``frame`` column (pandas
    writes one from a CSV round trip) is cast with a check, since sorting the strings puts frame 10
    before frame 2. A row with no ``sequence_id`` is a frame that belongs to no sequence: which
    sequence lost it cannot be known, so the whole file is refused rather than read short.
    """
    name = name or path.name
    pf = _open(path)
    schema = pf.schema_arrow
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
    small = pa.table({"s": table.column(SEQUENCE_COLUMN).cast(pa.string()), "i": pa.array(np.arange(table.num_rows))}
                     | ({"f": _frame_numbers(path, table.column(FRAME_COLUMN))} if has_frame else {}))
    # Arrow's sort is stable: frames keep file order when there is no frame column.
    order = [("s", "ascending")] + ([("f", "ascending")] if has_frame else [])
    small = small.take(pc.sort_indices(small, sort_keys=order))
    ids = small.column("s").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(ids)].astype(np.int64)
    problems = _frame_problems(small.column("f"), starts, ends) if has_frame else [None] * len(starts)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    return FileIndex({str(ids[s]): i for i, s in enumerate(starts)}, small.column("i").to_numpy(), starts, ends,
                     problems, np.cumsum([0, *sizes], dtype=np.int64))


def iter_fingerspelling_file(path: Path, keys: list[str], index: FileIndex | None = None,
                             name: str | None = None) -> Iterator[tuple[str, np.ndarray | str | None]]:
    """``(key, result)`` for each of ``keys`` in their order, as soon as the key's frames are read:
    float32 (frames, 543, 3) landmarks, the reason its frames are wrong (a string), or None when the
    file does not hold it. ``index`` is the file's ``FileIndex`` (made here when not given).

    Memory is the sequences read but not yet given out plus one block of columns: the row groups
    holding a wanted frame are read in file order, ``COLUMN_BLOCK`` columns at a time, each block
    written straight into the sequences' own arrays. Keys in file order (the manifests' order) go out
    a row group at a time; a key whose frames come late in the file holds back the keys after it.
    Decoding all 1,629 columns of a row group at once held ~6x the row group (~600 MB for 16,384
    frames) however small the batches, a block of 64 columns a few MB.
    """
    index = index or index_fingerspelling_file(path, name)
    slots = {k: index.ids.get(k) for k in keys}  # key -> sequence in the index (None: not in the file)
    wanted = sorted({i for i in slots.values() if i is not None and index.problems[i] is None})
    arrays: dict[int, np.ndarray] = {}
    left = {i: int(index.ends[i] - index.starts[i]) for i in wanted}  # frames not read yet
    uses = {i: 0 for i in wanted}  # keys still to give out that name a sequence (a repeated key names it twice)
    for k in keys:
        if slots[k] in uses:
            uses[slots[k]] += 1
    turn = 0  # the next key to give out

    def ready() -> Iterator[tuple[str, np.ndarray | str | None]]:
        nonlocal turn
        while turn < len(keys):
            i = slots[keys[turn]]
            if i is None or index.problems[i] is not None:
                yield keys[turn], None if i is None else index.problems[i]
            elif left[i]:
                return
            else:
                uses[i] -= 1
                lm = arrays[i] if uses[i] else arrays.pop(i)
                yield keys[turn], lm.reshape(len(lm), HOLISTIC_543.num_points, 3)
            turn += 1

    if wanted:
        pf = _open(path)
        where = np.concatenate([index.rows[index.starts[i]:index.ends[i]] for i in wanted])
        slot = np.repeat(wanted, [left[i] for i in wanted])
        frame = np.concatenate([np.arange(left[i]) for i in wanted])
        order = np.argsort(where, kind="stable")
        where, slot, frame = where[order], slot[order], frame[order]
        for g in range(len(index.row_groups) - 1):
            lo, hi = np.searchsorted(where, index.row_groups[g:g + 2])
            if hi > lo:
                _read_row_group(path, pf, g, where[lo:hi] - index.row_groups[g], slot[lo:hi], frame[lo:hi],
                                arrays, left, index)
                yield from ready()
    yield from ready()


def _read_row_group(path: Path, pf: pq.ParquetFile, g: int, local: np.ndarray, slot: np.ndarray,
                    frame: np.ndarray, arrays: dict[int, np.ndarray], left: dict[int, int], index: FileIndex) -> None:
    """Decode row group ``g``'s rows ``local`` (row numbers in the group) into ``arrays[slot]`` at
    ``frame``, one block of columns at a time; counts them off ``left``."""
    by_slot = np.argsort(slot, kind="stable")
    local, slot, frame = local[by_slot], slot[by_slot], frame[by_slot]
    cuts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1], True])
    pieces = []  # (sequence, its frames here, their rows in the group)
    for a, b in zip(cuts[:-1], cuts[1:]):
        i = int(slot[a])
        if i not in arrays:
            arrays[i] = np.empty((index.ends[i] - index.starts[i], len(_COORDS)), dtype=np.float32)
        pieces.append((i, frame[a:b], local[a:b]))
    try:
        for c in range(0, len(_COORDS), COLUMN_BLOCK):
            names = _COORDS[c:c + COLUMN_BLOCK]
            block = pf.read_row_group(g, columns=names, use_threads=False)
            if not all(pa.types.is_float32(t) for t in block.schema.types):  # 1e300 -> inf: rejected later
                block = block.cast(pa.schema([(n, pa.float32()) for n in names]))
            values = np.column_stack([col.to_numpy() for col in block.columns])  # null -> NaN
            del block
            for i, at, rows in pieces:
                arrays[i][at, c:c + len(names)] = values[rows]
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    for i, at, _ in pieces:
        left[i] -= len(at)


def read_fingerspelling_file(path: Path, keys: list[str], name: str | None = None
                             ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The sequences of one wide parquet file that ``keys`` name, each float32 (frames, 543, 3), and
    the reasons to reject the keys whose frames are wrong; keys absent from both are absent from the
    file. All in memory at once: ``iter_fingerspelling_file`` gives them one by one."""
    found, rejected = {}, {}
    for key, result in iter_fingerspelling_file(path, keys, name=name):
        if isinstance(result, str):
            rejected[key] = result
        elif result is not None:
            found[key] = result
    return found, rejected


def _open(path: Path) -> pq.ParquetFile:
    try:
        # Buffered page reads: a row group's column chunks are streamed, not loaded whole.
        return pq.ParquetFile(path, buffer_size=READ_BUFFER)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None


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

    landmark_file_sql = "coalesce(path, '')"

    def landmark_file(self, row: ManifestRow) -> str:
        return row.path or ""

    def __init__(self, root: Path, recipe: Recipe):
        super().__init__(root, recipe)
        self._indexes = _IndexCache(INDEX_CACHE_FILES)

    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        index = self._indexes.get(file, lambda: index_fingerspelling_file(file, rows[0].path))
        for r, (_, result) in zip(rows, iter_fingerspelling_file(file, [r.key for r in rows], index)):
            if isinstance(result, str):
                yield r.reject(result, file=r.path)
            elif result is None:
                yield r.reject(f"sequence_id {r.key} not found in {r.path}", file=r.path)
            elif problem := coordinate_problem(result, self.max_abs_coordinate, NORMALIZED_LIMIT):
                yield r.reject(problem, file=r.path)
            else:
                yield replace(r.sequence(result, self.recipe.layout, self.name, self.recipe.fps), **KAGGLE_PROVENANCE)


class _IndexCache:
    """The ``FileIndex`` of the last few files read, shared by the worker threads of one source (the
    parts of one file are read by several of them, often at once: the first builds, the others wait).
    Keyed by path, size and modification time; not pickled (a Ray worker or process builds its own)."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, list] = OrderedDict()  # key -> [lock, index or None]

    def get(self, path: Path, build: Callable[[], FileIndex]) -> FileIndex:
        try:
            st = os.stat(path)
        except OSError:
            return build()  # raises the reason the file cannot be read
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = [threading.Lock(), None]
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
        with entry[0]:
            if entry[1] is None:
                entry[1] = build()  # a file refused is not kept: each part says why again
            return entry[1]

    def __getstate__(self):
        return {"size": self.size}

    def __setstate__(self, state):
        self.__init__(state["size"])
