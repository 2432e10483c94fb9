"""What is in a dataset, as one plain dict: counts, class balance, lengths, detection rates, folds.

Everything that can be answered from metadata (key, label, text, participant, frames, fold) is
answered by DuckDB over the store's Parquet parts with column projection, so the landmark column is
never read for it: a million-row store answers in seconds. Only the detection rates need landmarks;
they are streamed batch by batch (a few hundred sequences at a time) so memory stays bounded.

A shard directory (``index.json`` + ``{split}-{index:06d}.tar``, see docs/interfaces.md) is read
through ``sltdata.shards.read`` from the per-sample ``KEY.json`` members of its tars; the
``.landmarks.npy`` members are only read for detection rates, and only when the shards hold raw
landmarks (no ``transform`` in the index). A damaged shard raises ``ShardError``. Layouts come from
the store or index being described (``Store.layouts``, ``ShardIndex.layouts``), never from a global.

``spaces`` counts sequences per coordinate space and frame size (units, width, height, depth: the
provenance columns; null in a store written before them).

A component counts as detected in a frame when any of its points has a finite x. MediaPipe emits a
component whole or not at all, so for real data this is "the detector found it in that frame".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sltdata.errors import StoreError
from sltdata.layouts import Layout
from sltdata.shards import INDEX_FILE, ShardError, ShardIndex, iter_samples
from sltdata.shards.index import index_path
from sltdata.store import META_FILE, QUALITY_COLUMNS, Store

log = logging.getLogger(__name__)

MAX_LENGTHS = (64, 128, 256, 384)  # common model max lengths (ISLR 1st place used 384 at most)
PERCENTILES = (5, 25, 50, 75, 90, 95, 99)
HISTOGRAM_BINS = 30
RAREST = 10  # rarest classes listed

_META_FIELDS = ("key", "label", "text", "participant", "frames", "fold")
_SPACE_FIELDS = ("units", "width", "height", "depth")
_SPACE_SCHEMA = pa.schema([("units", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("depth", pa.int64())])
_META_SCHEMA = pa.schema([("key", pa.string()), ("label", pa.string()), ("text", pa.string()),
                          ("participant", pa.string()), ("frames", pa.int64()), ("fold", pa.string())])


def compute_stats(path: str | Path | Store, *, landmarks: bool = True, max_lengths=MAX_LENGTHS,
                  rarest: int = RAREST, batch_size: int = 128) -> dict:
    """Statistics of a sequence store or a shard directory, as a JSON-able dict.

    ``landmarks=False`` skips the detection rates (the only figures that read landmarks).
    """
    if isinstance(path, Store):
        return _store_stats(path, landmarks, max_lengths, rarest, batch_size)
    path = Path(path)
    if path.is_dir() and (path / META_FILE).is_file():
        return _store_stats(Store(path), landmarks, max_lengths, rarest, batch_size)
    if index_path(path).is_file():
        return _shard_stats(ShardIndex.open(path), landmarks, max_lengths, rarest)
    raise StoreError(f"{path}: neither a sequence store (no {META_FILE}) nor a shard directory (no {INDEX_FILE})")


# ---------------------------------------------------------------------------------------------
# sources of metadata


def _store_stats(store: Store, landmarks: bool, max_lengths, rarest: int, batch_size: int) -> dict:
    con = duckdb.connect()
    if store.parts:
        files = [str(p) for p in store.parts]
        # Projection: only these columns are read from Parquet; the landmarks column is never touched.
        con.read_parquet(files).select("key, label, text, participant, CAST(frames AS BIGINT) AS frames, "
                                       "CAST(NULL AS VARCHAR) AS fold").create_view("meta")
    else:
        con.register("meta", _META_SCHEMA.empty_table())
    out = {"source": {"kind": "store", "path": str(store.path)}}
    out.update(_metadata_stats(con, max_lengths, rarest, has_folds=False))
    out["detection"] = _detection(_store_landmark_batches(store, batch_size), store.layout) if landmarks else None
    if store.has_quality:
        con.read_parquet(files).select(", ".join(QUALITY_COLUMNS)).create_view("quality")
        out["quality"] = quality_stats(con)
    else:  # a store ingested before quality scores: "not computed", never zeros
        out["quality"] = None
    con.close()
    out["spaces"] = _spaces(store.metadata(_SPACE_FIELDS))
    return out


def _spaces(table: pa.Table) -> list[dict]:
    """Sequences per coordinate space and frame size (units, width, height, depth), most common first:
    a store mixing pixel and normalized data, or many frame sizes, shows here before it trains badly."""
    con = duckdb.connect()
    con.register("spaces", table)
    rows = con.execute("SELECT units, width, height, depth, count(*) AS n FROM spaces GROUP BY ALL "
                       "ORDER BY n DESC, units NULLS LAST, width NULLS LAST, height NULLS LAST").fetchall()
    con.close()
    return [{"units": u, "width": w, "height": h, "depth": d, "sequences": int(n)} for u, w, h, d, n in rows]


def _store_landmark_batches(store: Store, batch_size: int) -> Iterator[tuple[pa.RecordBatch]]:
    cols = ["participant", "layout", "frames", "points", "landmarks"]
    for p in store.parts:
        yield from pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=cols)


def _shard_stats(index: ShardIndex, landmarks: bool, max_lengths, rarest: int) -> dict:
    rows = {f: [] for f in _META_FIELDS}
    spaces = {f: [] for f in _SPACE_FIELDS}
    for split, sample in iter_samples(index, arrays=False):
        for f in _META_FIELDS:
            v = sample.meta.get(f)
            if f == "fold":
                v = v or split
            rows[f].append(v)
        for f in _SPACE_FIELDS:  # absent from shards written before provenance: null
            spaces[f].append(sample.meta.get(f))
    table = pa.Table.from_pydict(rows, schema=_META_SCHEMA)
    con = duckdb.connect()
    con.register("meta", table)
    out = {"source": {"kind": "shards", "path": str(index.path)}}
    out.update(_metadata_stats(con, max_lengths, rarest, has_folds=True))
    out["quality"] = None  # quality scores live in the store, not in the shards' sample records
    con.close()
    if landmarks and index.transform:
        log.warning("%s: shards hold transformed features; detection rates need the raw store", index.path)
        out["detection"] = None
    elif landmarks:
        out["detection"] = _detection(_shard_landmark_batches(index), index.layout)
    else:
        out["detection"] = None
    if index.data.get("participants"):
        out["folds"]["index_participants"] = _index_participant_check(index.participants, table)
    out["spaces"] = _spaces(pa.Table.from_pydict(spaces, schema=_SPACE_SCHEMA))
    return out


def _shard_landmark_batches(index: ShardIndex, batch_size: int = 64) -> Iterator[pa.RecordBatch]:
    """Shard samples regrouped into the same record batches the store yields."""
    buf: list[tuple[dict, np.ndarray]] = []

    def flush():
        arrays = [np.ascontiguousarray(a, dtype=np.float32).reshape(-1) for _, a in buf]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        values = np.concatenate(arrays) if arrays else np.zeros(0, np.float32)
        return pa.RecordBatch.from_pydict({
            "participant": pa.array([m.get("participant") for m, _ in buf], pa.string()),
            "layout": pa.array([m.get("layout") for m, _ in buf], pa.string()),
            "frames": pa.array([a.shape[0] for _, a in buf], pa.int32()),
            "points": pa.array([a.shape[1] for _, a in buf], pa.int32()),
            "landmarks": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32())),
        })

    for _, sample in iter_samples(index):
        arr = sample.arrays["landmarks"]
        if arr.ndim != 3:
            raise ShardError(f"{index.path}: sample {sample.key!r} is not raw (frames, points, 3) landmarks")
        buf.append((sample.meta, arr))
        if len(buf) == batch_size:
            yield flush()
            buf = []
    if buf:
        yield flush()


def _index_participant_check(participants: dict, table: pa.Table) -> dict:
    """Does index.json's participants map agree with the folds the samples carry?"""
    seen = {}
    for p, f in zip(table.column("participant").to_pylist(), table.column("fold").to_pylist()):
        seen.setdefault(p, set()).add(f)
    disagree = sorted(str(p) for p, folds in seen.items() if p is not None and folds != {participants.get(p)})
    return {"participants": len(participants), "disagree": disagree}


# ---------------------------------------------------------------------------------------------
# metadata figures (DuckDB)


def _summary(con, sql: str) -> dict | None:
    """min/median/max/mean of the single column ``n`` of a query (None when it has no rows)."""
    row = con.execute(f"SELECT count(*), min(n), quantile_cont(n, 0.5), max(n), avg(n) FROM ({sql})").fetchone()
    if not row[0]:
        return None
    return {"min": int(row[1]), "median": float(row[2]), "max": int(row[3]), "mean": float(row[4])}


def _metadata_stats(con, max_lengths, rarest: int, has_folds: bool) -> dict:
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    n, frames, participants, labelled, classes, texted, phrases = q(
        "SELECT count(*), coalesce(sum(frames), 0), count(DISTINCT participant), count(label), "
        "count(DISTINCT label), count(text), count(DISTINCT text) FROM meta")[0]
    out: dict = {"sequences": int(n), "frames": int(frames), "participants": int(participants),
                 "classes": int(classes) if labelled else None, "phrases": int(phrases) if texted else None}

    # sequences per class
    if labelled:
        counts = q("SELECT label, count(*) AS n FROM meta WHERE label IS NOT NULL GROUP BY label ORDER BY n, label")
        out["per_class"] = {**_summary(con, "SELECT count(*) AS n FROM meta WHERE label IS NOT NULL GROUP BY label"),
                            "rarest": [{"label": l, "sequences": int(c)} for l, c in counts[:rarest]],
                            "counts": {l: int(c) for l, c in counts}}
    else:
        out["per_class"] = None

    # sequences per participant
    counts = q("SELECT participant, count(*) AS n FROM meta WHERE participant IS NOT NULL "
               "GROUP BY participant ORDER BY participant")
    s = _summary(con, "SELECT count(*) AS n FROM meta WHERE participant IS NOT NULL GROUP BY participant")
    out["per_participant"] = None if s is None else {**s, "counts": {p: int(c) for p, c in counts}}

    out["length"] = _length_stats(con, int(n), max_lengths)
    out["text"] = _text_stats(con) if texted else None
    out["folds"] = _fold_stats(con) if has_folds else None
    return out


def _length_stats(con, n: int, max_lengths) -> dict | None:
    if not n:
        return None
    qs = ", ".join(f"quantile_cont(frames, {p / 100})" for p in PERCENTILES)
    over = ", ".join(f"count(*) FILTER (WHERE frames > {int(m)})" for m in max_lengths)
    row = con.execute(f"SELECT min(frames), max(frames), avg(frames), {qs}, {over} FROM meta").fetchone()
    lo, hi, mean = int(row[0]), int(row[1]), float(row[2])
    pcts = row[3:3 + len(PERCENTILES)]
    overs = row[3 + len(PERCENTILES):]
    # Histogram with integer bins of equal width starting at 0: bin i holds [i*width, (i+1)*width).
    width = max(1, -(-(hi + 1) // HISTOGRAM_BINS))
    bins = dict(con.execute(f"SELECT frames // {width} AS b, count(*) FROM meta GROUP BY b").fetchall())
    nbins = hi // width + 1
    return {"min": lo, "max": hi, "mean": mean,
            "percentiles": {f"p{p}": float(v) for p, v in zip(PERCENTILES, pcts)},
            "over": {str(int(m)): int(c) for m, c in zip(max_lengths, overs)},
            "histogram": {"edges": [i * width for i in range(nbins + 1)],
                          "counts": [int(bins.get(i, 0)) for i in range(nbins)]}}


def _text_stats(con) -> dict:
    s = _summary(con, "SELECT length(text) AS n FROM meta WHERE text IS NOT NULL")
    texts = [t for (t,) in con.execute("SELECT DISTINCT text FROM meta WHERE text IS NOT NULL").fetchall()]
    chars = sorted(set().union(*texts)) if texts else []
    return {"phrase_chars": s, "characters": "".join(chars), "num_characters": len(chars)}


def _fold_stats(con) -> dict:
    rows = con.execute("SELECT fold, count(*), count(DISTINCT label), count(DISTINCT participant) "
                       "FROM meta GROUP BY fold ORDER BY fold").fetchall()
    folds = {f: {"sequences": int(n), "classes": int(c), "participants": int(p)} for f, n, c, p in rows}
    shared = con.execute("SELECT participant, list(DISTINCT fold ORDER BY fold) FROM meta "
                         "WHERE participant IS NOT NULL GROUP BY participant "
                         "HAVING count(DISTINCT fold) > 1 ORDER BY participant").fetchall()
    return {"splits": folds,
            "participants_in_several": {p: list(fs) for p, fs in shared},
            "participant_disjoint": not shared}


# ---------------------------------------------------------------------------------------------
# quality scores (the store's quality_* columns, DuckDB)

QUALITY_SCORES = ("quality_no_hand_frames", "quality_longest_no_hand", "quality_jitter", "quality_frozen_frames",
                  "quality_outside_frame", "quality_idle_lead_in", "quality_idle_lead_out")


def _distribution(con, expr: str, source: str) -> dict:
    """Count of values, min/mean/max, percentiles and a HISTOGRAM_BINS-bin histogram of ``expr``."""
    qs = ", ".join(f"quantile_cont(v, {p / 100})" for p in PERCENTILES)
    row = con.execute(f"SELECT count(v), min(v), max(v), avg(v), {qs} FROM (SELECT {expr} AS v FROM {source})"
                      ).fetchone()
    n = int(row[0])
    if not n:
        return {"sequences": 0}
    lo, hi = float(row[1]), float(row[2])
    width = (hi - lo) / HISTOGRAM_BINS or 1.0
    bins = dict(con.execute(f"SELECT least(CAST(floor((v - {lo}) / {width}) AS BIGINT), {HISTOGRAM_BINS - 1}) AS b, "
                            f"count(*) FROM (SELECT {expr} AS v FROM {source}) WHERE v IS NOT NULL GROUP BY b"
                            ).fetchall())
    nbins = HISTOGRAM_BINS if hi > lo else 1
    return {"sequences": n, "min": lo, "max": hi, "mean": float(row[3]),
            "percentiles": {f"p{p}": float(v) for p, v in zip(PERCENTILES, row[4:])},
            "histogram": {"edges": [lo + i * width for i in range(nbins + 1)],
                          "counts": [int(bins.get(i, 0)) for i in range(nbins)]}}


def quality_stats(con) -> dict:
    """Distributions of the quality scores over the view ``quality`` (one row per sequence)."""
    out = {"scores": {c: _distribution(con, c, "quality") for c in QUALITY_SCORES}}
    comps = [c for (c,) in con.execute("SELECT DISTINCT unnest(map_keys(quality_detection)) AS c FROM quality "
                                       "ORDER BY c").fetchall()]
    out["detection"] = {c: _distribution(con, f"quality_detection['{c.replace(chr(39), chr(39) * 2)}']", "quality")
                        for c in comps}
    out["fps_anomalies"] = int(con.execute("SELECT count(*) FILTER (WHERE quality_fps_anomaly) FROM quality"
                                           ).fetchone()[0])
    out["idle"] = dict(zip(("with_lead_in", "with_lead_out"), map(int, con.execute(
        "SELECT count(*) FILTER (WHERE quality_idle_lead_in > 0), count(*) FILTER (WHERE quality_idle_lead_out > 0) "
        "FROM quality").fetchone())))
    return out


# ---------------------------------------------------------------------------------------------
# detection rates (landmarks, streamed)


def _participant_name(p) -> str:
    return "(unknown)" if p is None else str(p)


def _detection(batches, layout_of: Callable[[str], Layout]) -> dict | None:
    """Frames in which each component is detected, overall and per participant; ``layout_of(name)``
    is the dataset's own layout of that name."""
    total = 0
    comp_frames: dict[str, int] = {}
    no_hand = 0
    per_p: dict[str, dict] = {}
    for batch in batches:
        layout_names = pc.unique(batch.column("layout")).to_pylist()
        for layout_name in layout_names:
            # one layout per batch is the rule; filtering (a copy of the landmarks) only when mixed
            sub = batch if len(layout_names) == 1 else batch.filter(pc.equal(batch.column("layout"), layout_name))
            if sub.num_rows == 0:
                continue
            layout = layout_of(layout_name)
            frames = sub.column("frames").to_numpy().astype(np.int64)
            points = np.unique(sub.column("points").to_numpy())
            if points.size != 1 or int(points[0]) != layout.num_points:
                raise StoreError(f"sequences of layout {layout_name} have {points.tolist()} points, "
                                 f"expected {layout.num_points}")
            values = sub.column("landmarks").flatten().to_numpy(zero_copy_only=False)
            x = values.reshape(-1, layout.num_points, 3)[:, :, 0]
            if x.shape[0] != frames.sum():
                raise StoreError(f"landmark values do not match frames x points for layout {layout_name}")
            finite = np.isfinite(x)
            detected = {c.name: finite[:, layout.offsets[c.name]:layout.offsets[c.name] + len(c.points)].any(axis=1)
                        for c in layout.components}
            hands = list(layout.hand_components)
            none = ~np.logical_or.reduce([detected[h] for h in hands]) if hands else None
            participants = sub.column("participant").to_pylist()
            codes_of = {p: i for i, p in enumerate(dict.fromkeys(participants))}
            row_codes = np.asarray([codes_of[p] for p in participants], dtype=np.int64)
            frame_codes = np.repeat(row_codes, frames)
            names = list(codes_of)
            total += int(frames.sum())
            frames_per_p = np.bincount(frame_codes, minlength=len(names))
            series = dict(detected)
            if none is not None:
                series["no_hand"] = none
            for name, d in series.items():
                if name == "no_hand":
                    no_hand += int(d.sum())
                else:
                    comp_frames[name] = comp_frames.get(name, 0) + int(d.sum())
                by_p = np.bincount(frame_codes, weights=d, minlength=len(names))
                for i, p in enumerate(names):
                    acc = per_p.setdefault(_participant_name(p), {"frames": 0})
                    acc[name] = acc.get(name, 0) + int(by_p[i])
            for i, p in enumerate(names):
                per_p[_participant_name(p)]["frames"] += int(frames_per_p[i])
    if total == 0:
        return None
    rate = lambda c, t: c / t if t else 0.0  # noqa: E731
    out = {"frames": total,
           "frames_with": {**comp_frames, "no_hand": no_hand},
           "rates": {**{c: rate(v, total) for c, v in comp_frames.items()}, "no_hand": rate(no_hand, total)},
           "per_participant": {}}
    for p in sorted(per_p):
        acc = per_p[p]
        out["per_participant"][p] = {"frames": acc["frames"],
                                     **{k: rate(v, acc["frames"]) for k, v in acc.items() if k != "frames"}}
    return out
