"""The sequence store: Parquet parts, one row per sequence, raw landmarks flattened in a list column.

Layout of a store directory::

    store.json            what the store holds: source, recipe, layouts, label map, counts, parts
    part-000000.parquet   sequences, in manifest order
    rejects.jsonl         every manifest row that was not stored, with its reason

``landmarks`` is a ``list<float32>`` of frames*points*3 values beside ``frames`` and ``points``;
reading reshapes the Arrow buffer without copying. Metadata-only reads (stats, folds) never touch it.
Parts are written under a temporary name and renamed when complete, so a killed ingest re-run skips
finished parts and never duplicates a sequence.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sltdata import fs
from sltdata.errors import ConfigError, StoreError
from sltdata.layouts import Layout, get_layout
from sltdata.sequence import Sequence

STORE_FORMAT = "sltdata-store"
STORE_VERSION = 1
META_FILE = "store.json"
REJECTS_FILE = "rejects.jsonl"

# Where each sequence came from (DESIGN.md's provenance contract): nullable columns added after the
# first stores were written. A store without them still opens: ``conform`` adds them as nulls.
PROVENANCE_COLUMNS = ("source_file", "width", "height", "depth", "units", "extractor", "extractor_version",
                      "extractor_settings")
UNITS = ("normalized", "pixels")  # x/y in [0, 1] of the frame (Kaggle), or in pixels (pose-format holistic)
METADATA_COLUMNS = ("key", "label", "text", "participant", "layout", "source", "fps", "frames", "points",
                    *PROVENANCE_COLUMNS)
# Sequence fields stored as columns (frames and points are derived from the landmarks' shape).
_SEQUENCE_FIELDS = ("key", "label", "text", "participant", "layout", "source", "fps", *PROVENANCE_COLUMNS)

SCHEMA = pa.schema([
    ("key", pa.string()),
    ("label", pa.string()),
    ("text", pa.string()),
    ("participant", pa.string()),
    ("layout", pa.string()),
    ("source", pa.string()),
    ("fps", pa.float64()),  # as given: 29.97 and 30.0081 must survive (float32 stores before provenance)
    ("frames", pa.int32()),
    ("points", pa.int32()),
    ("source_file", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("depth", pa.int32()),
    ("units", pa.string()),
    ("extractor", pa.string()),
    ("extractor_version", pa.string()),
    ("extractor_settings", pa.string()),
    ("landmarks", pa.list_(pa.float32())),
])

# --- Quality columns (sltdata.quality computes them at ingest; see its docstring for each meaning) ---
# Nullable and additive: a store written before them lacks them and stays readable (stats says "not
# computed"); a sequence written without quality (``quality=None``) has nulls.
QUALITY_SCHEMA = pa.schema([
    ("quality_detection", pa.map_(pa.string(), pa.float32())),  # component -> share of frames detected
    ("quality_no_hand_frames", pa.int32()),
    ("quality_longest_no_hand", pa.int32()),
    ("quality_jitter", pa.float32()),  # body sizes per frame
    ("quality_frozen_frames", pa.int32()),
    ("quality_outside_frame", pa.float32()),  # share of detected points
    ("quality_idle_lead_in", pa.int32()),
    ("quality_idle_lead_out", pa.int32()),
    ("quality_fps_anomaly", pa.bool_()),
])
QUALITY_COLUMNS = tuple(QUALITY_SCHEMA.names)
# --- Merge provenance (sltdata.merge): the name of the store a merged sequence came from; null otherwise ---
MERGED_FROM = "merged_from"
SCHEMA = pa.schema([*SCHEMA, *QUALITY_SCHEMA, (MERGED_FROM, pa.string())])


def conform(table: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
    """A table or batch of a store part in today's schema: columns that an older store lacks are added
    as nulls and fps is float64, so every reader sees one schema whichever code wrote the store."""
    names, arrays = [], []
    for f in SCHEMA:
        if f.name in table.schema.names:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
            names.append(f.name)
        elif f.name in PROVENANCE_COLUMNS:
            arrays.append(pa.nulls(table.num_rows, f.type))
            names.append(f.name)
    if isinstance(table, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(arrays, names=names)
    return pa.Table.from_arrays(arrays, names=names)


@dataclass(frozen=True)
class Reject:
    """A manifest row that was not stored, and why (the same words the CLI prints)."""

    manifest: str | None  # manifest file the row came from, relative to the dataset root
    row: int | None  # 1-based record number in that manifest, header not counted
    key: str | None
    file: str | None  # landmark file the row points at, when it has one
    reason: str

    def __str__(self) -> str:
        where = self.manifest or self.file or "?"
        if self.row is not None:
            where += f" row {self.row}"
        return f"{where}: {self.reason}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def sequences_to_table(sequences: list[Sequence], quality: list[dict] | None = None) -> pa.Table:
    """Pack sequences into one Arrow table; landmarks concatenated into a single float32 buffer.
    ``quality``: each sequence's ``quality_*`` values (``sltdata.quality``), else nulls."""
    flat = [np.ascontiguousarray(s.landmarks, dtype=np.float32).reshape(-1) for s in sequences]
    sizes = np.fromiter((f.size for f in flat), dtype=np.int64, count=len(flat))
    offsets = np.zeros(len(flat) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    values = np.concatenate(flat) if flat else np.zeros(0, np.float32)
    landmarks = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float32()))
    cols = {
        "key": [s.key for s in sequences],
        "label": [s.label for s in sequences],
        "text": [s.text for s in sequences],
        "participant": [s.participant for s in sequences],
        "layout": [s.layout for s in sequences],
        "source": [s.source for s in sequences],
        "fps": [s.fps for s in sequences],
        "frames": [s.frames for s in sequences],
        "points": [s.points for s in sequences],
        **{c: [getattr(s, c) for s in sequences] for c in PROVENANCE_COLUMNS},
    }
    for name in QUALITY_COLUMNS:
        cols[name] = [None] * len(sequences) if quality is None else [q.get(name) for q in quality]
    cols[MERGED_FROM] = [None] * len(sequences)
    return pa.Table.from_arrays([landmarks if f.name == "landmarks" else pa.array(cols[f.name], type=f.type)
                                 for f in SCHEMA], schema=SCHEMA)


# A part is written a row group at a time: sequences are buffered until they hold this many bytes of
# landmarks (or ``ROW_GROUP_ROWS`` sequences), then written and let go, so an ingest worker holds one
# row group of a part, not the part (a 128-sequence Fingerspelling part is ~125 MB of float32, held
# three times over when written as one table: the sequences, the table, the writer's column chunk).
ROW_GROUP_BYTES = 16 << 20
ROW_GROUP_ROWS = 1024
_PART_OPTIONS = dict(compression="zstd", write_statistics=["key", "label", "participant", "frames"])


def write_part(path: Path, sequences: Iterable[Sequence],
               quality: Callable[[Sequence], dict] | None = None) -> None:
    """Write one part atomically (temporary name, then rename). Deterministic bytes for equal input.

    ``sequences`` is consumed lazily and written in row groups of at most ``ROW_GROUP_BYTES`` of
    landmarks; everything the iterable does before it is exhausted (ingest writes the part's sidecar
    there) happens before the rename. A part of one row group has the bytes ``pq.write_table`` gave.
    ``quality(sequence)`` gives each sequence's ``quality_*`` scores (None: the columns stay null)."""
    tmp = path.with_name(path.name + ".tmp")
    writer, pending, size = None, [], 0

    def flush(writer):
        writer = writer or pq.ParquetWriter(tmp, SCHEMA, **_PART_OPTIONS)
        scores = None if quality is None else [quality(s) for s in pending]
        writer.write_table(sequences_to_table(pending, scores), row_group_size=ROW_GROUP_ROWS)
        return writer

    try:
        for seq in sequences:
            pending.append(seq)
            size += 4 * seq.landmarks.size
            if size >= ROW_GROUP_BYTES or len(pending) >= ROW_GROUP_ROWS:
                writer = flush(writer)
                pending, size = [], 0
        if pending or writer is None:  # an empty part is one empty row group, as write_table made it
            writer = flush(writer)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    fs.committed(path)


def write_table(path: Path, table: pa.Table) -> None:
    """Write a table of ``SCHEMA`` as one part, atomically, with the store's Parquet settings."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **_PART_OPTIONS)
    os.replace(tmp, path)
    fs.committed(path)


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    fs.committed(path)


def table_landmarks(table: pa.Table | pa.RecordBatch) -> list[np.ndarray]:
    """Each row's landmarks as a (frames, points, 3) float32 view into the Arrow buffer."""
    col = table.column("landmarks")
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    frames = table.column("frames").to_numpy()
    points = table.column("points").to_numpy()
    out, i = [], 0
    for chunk in chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        for j in range(len(chunk)):
            flat = values[offsets[j]:offsets[j + 1]]
            out.append(flat.reshape(int(frames[i]), int(points[i]), 3))
            i += 1
    return out


def table_sequences(table: pa.Table | pa.RecordBatch) -> list[Sequence]:
    """The rows of a store table as Sequences (landmarks are views into the Arrow buffer)."""
    meta = conform(table).select(list(_SEQUENCE_FIELDS)).to_pylist()
    return [Sequence(landmarks=lm, **m) for m, lm in zip(meta, table_landmarks(table))]


class Store:
    """A finished sequence store, opened for reading."""

    def __init__(self, path: str | Path):
        self.path = fs.as_path(path)  # a local Path, or an fsspec RemotePath streamed part by part
        meta_path = self.path / META_FILE
        if not meta_path.is_file() and (self.path / "plan.json").is_file():
            raise StoreError(f"{self.path}: ingest did not finish; re-run the same `sltdata ingest` to complete it")
        if not meta_path.is_file():
            raise StoreError(f"{self.path}: not a sequence store (no {META_FILE}; run `sltdata ingest` first)")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{meta_path}: unreadable ({e})") from None
        if self.meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{meta_path}: not a sequence store (format {self.meta.get('format')!r})")
        if not self.meta.get("complete"):
            raise StoreError(f"{self.path}: ingest did not finish; re-run the same `sltdata ingest` to complete it")
        # The store carries its own layouts (store.json), so two stores may define one name differently.
        self._layouts = {d["name"]: Layout.from_dict(d) for d in self.meta.get("layouts") or []}
        self.parts = [self.path / p["file"] for p in self.meta["parts"]]
        for p in self.parts:
            if not p.is_file():
                raise StoreError(f"{p}: missing part of the store")

    def __len__(self) -> int:
        return int(self.meta["counts"]["stored"])

    @property
    def layouts(self) -> Mapping[str, Layout]:
        """Name -> Layout of every layout the store's sequences use, as store.json defines them."""
        return MappingProxyType(self._layouts)

    def layout(self, name: str) -> Layout:
        """The layout ``name`` as this store defines it (a built-in when store.json does not)."""
        if name in self._layouts:
            return self._layouts[name]
        try:
            return get_layout(name)
        except ConfigError:
            raise StoreError(f"{self.path}: layout {name!r} is neither in {META_FILE} nor built in") from None

    @property
    def labels(self) -> dict[str, int] | None:
        """Label name -> class index (from the publisher's map, else sorted labels)."""
        return self.meta.get("labels")

    @property
    def characters(self) -> dict[str, int] | None:
        """Character -> index for text datasets (publisher's map when it ships one)."""
        return self.meta.get("characters")

    @property
    def has_quality(self) -> bool:
        """Whether the parts carry the ``quality_*`` columns (stores ingested before them do not)."""
        return bool(self.parts) and set(QUALITY_COLUMNS) <= set(pq.read_schema(self.parts[0]).names)

    def metadata(self, columns: tuple[str, ...] = METADATA_COLUMNS) -> pa.Table:
        """Every sequence's metadata, no landmarks read."""
        if not self.parts:
            return SCHEMA.empty_table().select(list(columns))
        tables = []
        for p in self.parts:
            have = pq.ParquetFile(fs.arrow_source(p)).schema_arrow.names
            tables.append(conform(pq.read_table(fs.arrow_source(p), columns=[c for c in columns if c in have]))
                          .select(list(columns)))
        return pa.concat_tables(tables)

    def iter_batches(self, batch_size: int = 256) -> Iterator[pa.RecordBatch]:
        """Record batches in today's schema (``conform``), part by part."""
        for p in self.parts:
            for batch in pq.ParquetFile(fs.arrow_source(p)).iter_batches(batch_size=batch_size):
                yield conform(batch)

    def __iter__(self) -> Iterator[Sequence]:
        """Stream sequences part by part in store order; memory stays bounded by one batch."""
        for batch in self.iter_batches():
            yield from table_sequences(batch)

    def get(self, key: str) -> Sequence:
        """One sequence by key (reads only the row groups whose statistics may hold it)."""
        import pyarrow.dataset as ds

        tables = []
        for p in self.parts:  # part by part: parts written before a column existed lack it (conform adds it)
            paths, filesystem = fs.arrow_dataset_args([p])
            tables.append(conform(ds.dataset(paths, format="parquet", filesystem=filesystem)
                                  .to_table(filter=ds.field("key") == key)))
        table = pa.concat_tables(tables)
        if table.num_rows == 0:
            raise StoreError(f'{self.path}: no sequence with key {key!r} (run "sltdata keys {self.path}" to list them)')
        return next(iter(table_sequences(table.slice(0, 1))))

    def rejects(self) -> list[dict]:
        p = self.path / REJECTS_FILE
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
