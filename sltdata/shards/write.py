"""Writing shards: deterministic tars of ``KEY.landmarks.npy`` + ``KEY.json`` per sequence, by fold.

Layout of a shard directory (the contract in DESIGN.md and docs/interfaces.md; names in ``index.py``)::

    fold0-000000.tar ... fold{K-1}-NNNNNN.tar [test-NNNNNN.tar]
    fold0-000000.members.xxh128 ...  per shard, each member's XXH3-128 (``HEX  MEMBER`` lines), so a
                  reader rejects a damaged sample before yielding it (``read.iter_shard``)
    index.json    every shard's sample count, bytes, sha256 and member checksums file (with its
                  sha256); participant -> fold; label and
                  character maps; the layouts (names and definitions); the transform config when
                  features were stored; the seed

Why the tars are framed by hand (``tar.member_header`` then the data streamed after it) rather than
through ``tarfile.addfile`` or webdataset's ``TarWriter``: every byte must be a function of the store
and the seed, the sha256 is taken while writing (no second read), and the landmarks go from the Arrow
buffer to the file without an intermediate ``np.save`` copy. The result is a plain ustar/pax archive
that ``tarfile``, webdataset and ``datasets.load_dataset("webdataset")`` read as is.

Roll-over follows webdataset's ``ShardWriter``: a new shard starts when the current one holds
``max_samples_per_shard`` samples or the next sample would take it past ``max_shard_bytes``.
Shards are written as ``NAME.tmp`` and renamed when complete; ``index.json`` is written last, so a
directory without it is an unfinished run, and re-running the same command finishes it to the same
bytes. A run first writes ``shards.plan.json`` (a fingerprint of the store, the fold plan and the
options); a re-run with the same fingerprint keeps the finished shards (renamed into place, beside
their checksums file) untouched and resumes after them: a split's shards are filled in store order
and each starts empty, so the first N samples of a split are the ones its finished shards hold, and
they are read past by metadata alone (no landmarks decoded). The plan file goes once the index is
written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow.parquet as pq

from sltdata import fs, outputs
from sltdata.errors import ConfigError
from sltdata.folds import FOLD_DEFAULTS, assign_folds, assign_store_folds
from sltdata.shards import tar
from sltdata.shards.index import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, INDEX_FILE, INDEX_FORMAT, INDEX_VERSION,
                                  JSON_MEMBER, LANDMARKS_MEMBER, MASK_MEMBER, MEMBER_DIGEST, MEMBER_SUMS_SUFFIX,
                                  SHARD_RE, ShardError, ShardIndex, member_digest, member_sums_name,
                                  sample_record, sanitize_key, shard_name)
from sltdata.store import META_FILE, METADATA_COLUMNS, Store, conform, table_landmarks, write_json_atomic

log = logging.getLogger(__name__)
PLAN_FILE = "shards.plan.json"  # written first; a re-run with the same fingerprint resumes


def characters_from_texts(texts: Iterable[str | None]) -> dict[str, int] | None:
    """A character map (sorted characters -> 0..N-1) built from the phrases, None if there are none."""
    chars: set[str] = set()
    any_text = False
    for t in texts:
        if t is not None:
            any_text = True
            chars.update(t)
    return {c: i for i, c in enumerate(sorted(chars))} if any_text else None


def npy_header(arr: np.ndarray) -> bytes:
    """The ``np.save`` header for a C-contiguous array (format 1.0), so data can follow unchanged."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


class _HashingFile:
    """Writes through to a file, keeping a sha256 and a byte count of everything written.

    Hashing and writing run in a background thread (both release the GIL on large buffers), so they
    overlap with reading the store and framing the next sample; at most ``depth`` buffers wait."""

    def __init__(self, path: Path, depth: int = 64):
        self.f = open(path, "wb")
        self.sha = hashlib.sha256()
        self.bytes = 0
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._q.get()
            if data is None:
                return
            if self._error is None:
                try:
                    self.sha.update(data)
                    self.f.write(data)
                except BaseException as e:  # raised in the writing thread at the next write/close
                    self._error = e

    def write(self, data) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(data)
        self.bytes += memoryview(data).nbytes

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        self.f.close()
        if self._error is not None:
            raise self._error


class _SplitWriter:
    """One split's shards, rolled over by count and size; each written under a temp name."""

    def __init__(self, out: Path, split: str, max_samples: int, max_bytes: int, on_close: Callable[[dict], None]):
        self.out, self.split, self.max_samples, self.max_bytes = out, split, max_samples, max_bytes
        self.on_close = on_close
        self.index = 0
        self.f: _HashingFile | None = None
        self.count = 0
        self.name = ""
        self.sums: list[str] = []  # "HEX  MEMBER" lines of the open shard

    def _open(self) -> None:
        self.name = shard_name(self.split, self.index)
        self.index += 1
        self.f = _HashingFile(self.out / (self.name + ".tmp"))
        self.count = 0
        self.sums = []

    def write(self, members: list[tuple[str, list]]) -> None:
        """``members``: (name, [buffers]) in order; the buffers are concatenated as the member's data."""
        headers = [tar.member_header(name, sum(memoryview(b).nbytes for b in bufs)) for name, bufs in members]
        size = sum(tar.member_size(len(h), sum(memoryview(b).nbytes for b in bufs))
                   for h, (_, bufs) in zip(headers, members))
        if self.f is not None and (self.count >= self.max_samples or
                                   self.f.bytes + size + 2 * tar.BLOCK > self.max_bytes):
            self.close()
        if self.f is None:
            self._open()
        for h, (name, bufs) in zip(headers, members):
            self.f.write(h)
            n, digest = 0, member_digest(MEMBER_DIGEST)()
            for b in bufs:
                self.f.write(b)
                digest.update(b)
                n += memoryview(b).nbytes
            self.sums.append(f"{digest.hexdigest()}  {name}\n")
            if tar.padding(n):
                self.f.write(b"\0" * tar.padding(n))
        self.count += 1

    def close(self) -> None:
        if self.f is None:
            return
        self.f.write(b"\0" * tar.end_of_archive(self.f.bytes))
        self.f.close()
        sums_name, sums = member_sums_name(self.name), "".join(self.sums).encode("utf-8")
        (self.out / (sums_name + ".tmp")).write_bytes(sums)
        os.replace(self.out / (sums_name + ".tmp"), self.out / sums_name)
        fs.committed(self.out / sums_name)
        os.replace(self.out / (self.name + ".tmp"), self.out / self.name)
        fs.committed(self.out / self.name)
        self.on_close({"file": self.name, "split": self.split, "samples": self.count, "bytes": self.f.bytes,
                       "sha256": self.f.sha.hexdigest(), "member_sums": sums_name,
                       "member_sums_sha256": hashlib.sha256(sums).hexdigest(), "member_digest": MEMBER_DIGEST})
        self.f = None


def _prefetch(iterable, depth: int = 2):
    """Iterate in a background thread, ``depth`` items ahead: Parquet decompression (which releases
    the GIL) overlaps with framing, hashing and writing. Memory: ``depth`` extra store batches."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def run():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                q.put((item, None))
        except BaseException as e:  # handed to the consumer, raised there
            q.put((None, e))
        q.put((done, None))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _clean(out: Path, keep: frozenset[str] = frozenset()) -> None:
    """Remove what a previous (maybe killed) run left: temp files, shards, member checksums, the index
    and the plan, all but the names in ``keep`` (finished shards a resumed run keeps)."""
    for p in out.iterdir():
        sums = p.name.removesuffix(".tmp").endswith(MEMBER_SUMS_SUFFIX) and \
            SHARD_RE.match(p.name.removesuffix(".tmp").removesuffix(MEMBER_SUMS_SUFFIX) + ".tar")
        if p.name in keep:
            continue
        if p.name.endswith(".tar.tmp") or SHARD_RE.match(p.name) or sums or \
                p.name in (INDEX_FILE, INDEX_FILE + ".tmp", PLAN_FILE, PLAN_FILE + ".tmp"):
            p.unlink()
            fs.removed(p)


def _plan_fingerprint(store: Store, plan, options: dict) -> str:
    """What decides every byte of the shards: the store (its store.json, which names its parts and
    counts), the fold plan, the writer's options and the index version."""
    h = hashlib.sha256(json.dumps({"store": _store_summary(store), "options": options, "version": INDEX_VERSION,
                                   "participants": plan.participants}, sort_keys=True).encode())
    for key, split in plan.split_of_key.items():
        h.update(f"{key}\0{split}\1".encode())
    return h.hexdigest()


def _finished_shards(out: Path, splits: list[str]) -> dict[str, list[dict]]:
    """Per split, the shards a killed run finished: ``SPLIT-000000.tar`` onward while each is in place
    with its checksums file (a shard is renamed into place after its checksums), as index records
    plus the sanitized keys each holds in order (``keys``, dropped before the index is written)."""
    done: dict[str, list[dict]] = {s: [] for s in splits}
    for s in splits:
        while True:
            name = shard_name(s, len(done[s]))
            sums_name = member_sums_name(name)
            if not ((out / name).is_file() and (out / sums_name).is_file()):
                break
            sums = (out / sums_name).read_bytes()
            sha, n = hashlib.sha256(), 0
            with open(out / name, "rb") as f:
                while chunk := f.read(1 << 22):
                    sha.update(chunk)
                    n += len(chunk)
            keys = [line.split("  ", 1)[1].removesuffix("." + JSON_MEMBER)
                    for line in sums.decode("utf-8").splitlines() if line.endswith("." + JSON_MEMBER)]
            done[s].append({"file": name, "split": s, "samples": len(keys), "bytes": n, "sha256": sha.hexdigest(),
                            "member_sums": sums_name, "member_sums_sha256": hashlib.sha256(sums).hexdigest(),
                            "member_digest": MEMBER_DIGEST, "keys": keys})
    return done


def _resume(out: Path, fingerprint: str, splits: list[str]) -> dict[str, list[dict]]:
    """Ready ``out`` for this run: the finished shards of a killed run of the same plan are kept
    (returned per split); anything else a previous run left is removed. The plan is written first."""
    plan_path = out / PLAN_FILE
    done = {s: [] for s in splits}
    if plan_path.is_file():
        try:
            same = json.loads(plan_path.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
        except (json.JSONDecodeError, UnicodeDecodeError):
            same = False
        if same:
            done = _finished_shards(out, splits)
    keep = frozenset(n for shards in done.values() for c in shards for n in (c["file"], c["member_sums"]))
    _clean(out, keep)
    write_json_atomic(plan_path, {"fingerprint": fingerprint})
    if keep:
        log.info("resuming: %d finished shard(s) kept", len(keep) // 2)
    return done


def _store_batches(store: Store, plan, skip: dict[str, int], columns: list[str], kept: set | None = None):
    """The store's batches in order; a part none of whose samples this unit will write (each is held by
    a finished shard, belongs to another unit's split, or is filtered out by ``--where``) comes without
    its landmarks column, so resuming does not decode what it will not write."""
    left = dict(skip)
    for p in store.parts:
        pf = pq.ParquetFile(fs.arrow_source(p))
        if any(left.values()):
            keys = pq.read_table(fs.arrow_source(p), columns=["key"]).column("key").to_pylist()
            writes = False
            for k in keys:
                s = plan.split_of_key.get(k) if kept is None or k in kept else None
                if s not in left:
                    continue  # not this unit's to write
                if left[s]:
                    left[s] -= 1
                else:
                    writes = True
            if not writes:
                have = pf.schema_arrow.names
                for batch in pf.iter_batches(batch_size=1024, columns=[c for c in columns if c in have]):
                    yield conform(batch)
                continue
        for batch in pf.iter_batches(batch_size=256):
            yield conform(batch)


def _store_summary(store: Store) -> dict:
    meta_bytes = (store.path / META_FILE).read_bytes()
    recipe = store.meta.get("recipe") or {}
    return {"recipe": recipe.get("name"), "source": recipe.get("source"), "sequences": len(store),
            "counts": store.meta.get("counts"), "store_json_sha256": hashlib.sha256(meta_bytes).hexdigest()}


def select_keys(store: Store, where: str) -> tuple[set[str], int]:
    """Keys of the sequences for which the SQL predicate ``where`` holds, and how many there are in all.

    DuckDB evaluates it over every column of the store's Parquet parts except ``landmarks``
    (metadata and the ``quality_*`` scores), copied into an in-memory table named ``sequences``;
    file access is then switched off, so a predicate can read nothing but that table."""
    import duckdb
    import pyarrow.parquet as pq

    if not store.parts:
        return set(), 0
    names = [n for n in pq.read_schema(store.parts[0]).names if n != "landmarks"]
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE sequences AS SELECT " + ", ".join(f'"{n}"' for n in names) +
                    " FROM read_parquet(?)", [[str(p) for p in store.parts]])
        con.execute("SET enable_external_access = false")
        total = int(con.execute("SELECT count(*) FROM sequences").fetchone()[0])
        try:
            kept = {k for (k,) in con.execute(f"SELECT key FROM sequences WHERE ({where})").fetchall()}
        except duckdb.Error as e:
            reason = str(e).splitlines()[0]
            if "quality_" in where and not store.has_quality:
                reason += " (this store was ingested before quality scores; re-ingest it to filter on them)"
            raise ConfigError(f"--where {where!r}: {reason}") from None
    finally:
        con.close()
    return kept, total


def _idle_trim(m: dict) -> tuple[int, int]:
    """(lead-in, lead-out) frames to cut, (0, 0) when unknown or when nothing would be left."""
    a, b = m.get("quality_idle_lead_in"), m.get("quality_idle_lead_out")
    if a is None or b is None or a + b >= m["frames"]:
        return 0, 0
    return int(a), int(b)


def write_shards(store: Store | str | Path, out: str | Path, folds: int = FOLD_DEFAULTS.folds,
                 test_fraction: float = FOLD_DEFAULTS.test_fraction, seed: int = FOLD_DEFAULTS.seed,
                 max_samples_per_shard: int = DEFAULT_MAX_SAMPLES,
                 max_shard_bytes: int = DEFAULT_MAX_BYTES, transform=None, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None, where: str | None = None,
                 trim_idle: bool = False, engine=None) -> "ShardIndex":
    """Write a store as WebDataset shards by fold; returns the written index.

    Streams the store batch by batch, so memory holds one batch plus the fold plan. ``transform``
    (a transform config path, dict or TransformConfig) stores ``build_pipeline(cfg)(landmarks)``
    features and their frame mask (``KEY.mask.npy``) instead of raw landmarks, each pipeline built on
    the layout as this store defines it.

    ``out`` is never the store (nor inside it, nor around it), and one run at a time writes it: a
    second run fails at once naming the first (``sltdata.outputs``). ``overwrite`` removes only
    shard files and the index (``_clean``), never anything else in ``out``.

    ``where``: an SQL predicate over the store's metadata and quality columns (``select_keys``);
    only the sequences it keeps are assigned folds and written, and the index records how many it
    filtered out. ``trim_idle`` cuts each sequence's idle lead-in and lead-out (the stored
    ``quality_idle_*`` counts; a sequence that would be left empty is kept whole) and records the
    cut as ``trimmed: [lead_in, lead_out]`` in its ``KEY.json``.

    ``store`` and ``out`` may be fsspec URLs (``sltdata.fs``: the store is streamed, the shards are
    put one by one as each is finished). ``engine`` (``sltdata.engine``; default: one pass here)
    writes each split as its own unit, every unit reading the store once: same bytes.
    """
    store = store if isinstance(store, Store) else Store(store)
    with fs.output_dir(out, [store.path]) as local_out:
        outputs.check_apart(local_out, [store.path] if not fs.is_remote(store.path) else [])
        with outputs.writing(local_out, "sltdata shard"):
            index = _write_shards(store, local_out, folds, test_fraction, seed, max_samples_per_shard,
                                  max_shard_bytes, transform, overwrite, progress, where, trim_idle, engine)
    return ShardIndex.open(out) if fs.is_remote(out) else index


def _write_shards(store: Store, out: Path, folds: int, test_fraction: float, seed: int, max_samples_per_shard: int,
                  max_shard_bytes: int, transform, overwrite: bool,
                  progress: Callable[[int], None] | None, where: str | None, trim_idle: bool,
                  engine=None) -> "ShardIndex":
    if max_samples_per_shard < 1 or max_shard_bytes < 1:
        raise ShardError("--max-samples-per-shard and --max-shard-bytes must be positive")
    if (out / INDEX_FILE).exists() and not overwrite:
        raise ShardError(f"{out} already holds shards ({INDEX_FILE}); pass --overwrite to replace them")
    if trim_idle and not store.has_quality:
        raise ShardError(f"{store.path}: --trim-idle needs the store's idle counts, and it was ingested before "
                         "quality scores; re-ingest it")
    kept, filtering = None, None
    if where is not None:
        kept, total = select_keys(store, where)
        if not kept:
            raise ShardError(f"--where {where!r} keeps none of the {total} sequences")
        filtering = {"predicate": where, "sequences": total, "kept": len(kept), "filtered_out": total - len(kept)}
        meta = store.metadata(("key", "participant", "label"))
        rows = [(k, p, l) for k, p, l in zip(*(meta.column(c).to_pylist() for c in ("key", "participant", "label")))
                if k in kept]
        plan = assign_folds([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], folds=folds,
                            test_fraction=test_fraction, seed=seed)
    else:
        plan = assign_store_folds(store, folds=folds, test_fraction=test_fraction, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _clean(out)

    cfg = None
    if transform is not None:
        from sltdata.transforms import load_transform_config

        cfg = load_transform_config(transform)
    options = {"folds": folds, "test_fraction": test_fraction, "seed": seed, "max_samples_per_shard": max_samples_per_shard,
               "max_shard_bytes": max_shard_bytes, "transform": None if cfg is None else cfg.to_dict(),
               "where": where, "trim_idle": trim_idle}
    done = _resume(out, _plan_fingerprint(store, plan, options), plan.splits)
    done_keys = {s: [k for c in shards for k in c.pop("keys")] for s, shards in done.items()}
    finished = [c for shards in done.values() for c in shards]
    resume = {s: (len(done[s]), done_keys[s]) for s in plan.splits}
    if engine is None:  # one pass writes every split
        units = [_write_splits(store, out, plan, cfg, plan.splits, max_samples_per_shard, max_shard_bytes, progress,
                               kept, trim_idle, resume)]
    else:  # a unit per split; each reports its samples when it is done
        units = []
        for u in engine.map(_write_splits, [(store, out, plan, cfg, (s,), max_samples_per_shard, max_shard_bytes, None,
                                             kept, trim_idle, {s: resume[s]}) for s in plan.splits]):
            units.append(u)
            if progress is not None:
                progress(sum(v["samples"] for v in u[1].values()))
    closed = finished + [c for u in units for c in u[0]]
    stats = {k: v for u in units for k, v in u[1].items()}
    texts_seen = [t for u in units for t in u[2]]
    layouts = set().union(*(u[3] for u in units))
    feature_dim = {k: v for u in units for k, v in u[4].items()}
    return _write_index(store, out, plan, cfg, seed, test_fraction, max_samples_per_shard, max_shard_bytes,
                        closed, stats, texts_seen, layouts, feature_dim, filtering, trim_idle)


def _write_splits(store: Store, out: Path, plan, cfg, only: tuple[str, ...], max_samples_per_shard: int,
                  max_shard_bytes: int, progress: Callable[[int], None] | None, kept: set | None = None,
                  trim_idle: bool = False, resume: dict[str, tuple[int, list[str]]] | None = None):
    """Write the shards of the splits ``only`` in one pass over the store (the engines' unit); ``kept``
    (``--where``) and ``trim_idle`` as ``write_shards`` says. ``resume``: per split, the shards a killed
    run finished and the (sanitized) keys they hold in order: those samples are read past, never rewritten.

    Returns (newly closed shard entries, per-split stats, texts seen, layouts, feature dims by layout)."""
    pipelines = {}
    if cfg is not None:
        from sltdata.transforms import build_pipeline
        from sltdata.transforms.pipeline import frame_size
    resume = resume or {}
    closed: list[dict] = []
    writers = {s: _SplitWriter(out, s, max_samples_per_shard, max_shard_bytes, closed.append) for s in only}
    done_keys = {s: resume.get(s, (0, []))[1] for s in only}
    for s in only:
        writers[s].index = resume.get(s, (0, []))[0]
    skip = {s: len(done_keys[s]) for s in only}
    seen = {s: 0 for s in only}
    stats = {s: {"samples": 0, "frames": 0} for s in only}
    safe_keys: dict[str, str] = {}
    texts_seen, layouts = [], set()
    need_chars = store.characters is None
    try:
        columns = list(METADATA_COLUMNS) + (["quality_idle_lead_in", "quality_idle_lead_out"] if trim_idle else [])
        batches = _store_batches(store, plan, skip, columns, kept) if any(skip.values()) else store.iter_batches()
        for batch in _prefetch(batches):
            meta = batch.select(columns).to_pylist()
            lms = table_landmarks(batch) if "landmarks" in batch.schema.names else [None] * len(meta)
            for m, lm in zip(meta, lms):
                key = m["key"]
                if kept is not None and key not in kept:
                    continue
                safe = sanitize_key(key)
                if safe in safe_keys:
                    raise ShardError(f"keys {safe_keys[safe]!r} and {key!r} map to the same shard key {safe!r}")
                safe_keys[safe] = key
                split = plan.split_of_key[key]
                if split not in writers:  # another unit's split
                    continue
                if need_chars and m["text"] is not None:
                    texts_seen.append(m["text"])
                layouts.add(m["layout"])
                a, b = _idle_trim(m) if trim_idle else (0, 0)
                stats[split]["samples"] += 1
                stats[split]["frames"] += int(m["frames"]) - a - b
                if seen[split] < skip[split]:  # a finished shard holds it: read past, never rewritten
                    if done_keys[split][seen[split]] != safe:
                        raise ShardError(f"{out}: finished shards of {split} do not hold the store's samples in "
                                         "order; pass --overwrite to rewrite them")
                    seen[split] += 1
                    if m["layout"] not in pipelines and cfg is not None:
                        pipelines[m["layout"]] = build_pipeline(cfg, layout=store.layout(m["layout"]))
                    continue
                seen[split] += 1
                record = sample_record(m, split)
                if trim_idle:
                    lm = lm[a:m["frames"] - b]
                    m["frames"] = record["frames"] = int(lm.shape[0])
                    record["trimmed"] = [a, b]
                if cfg is None:
                    arr = np.ascontiguousarray(lm, dtype=np.float32)
                    members = [(f"{safe}.{LANDMARKS_MEMBER}", [npy_header(arr), arr.data])]
                else:
                    if m["layout"] not in pipelines:
                        pipelines[m["layout"]] = build_pipeline(cfg, layout=store.layout(m["layout"]))
                    features, mask = pipelines[m["layout"]](lm, rng=None, train=False, **frame_size(m))
                    features = np.ascontiguousarray(features, dtype=np.float32)
                    mask = np.ascontiguousarray(mask, dtype=bool)
                    members = [(f"{safe}.{LANDMARKS_MEMBER}", [npy_header(features), features.data]),
                               (f"{safe}.{MASK_MEMBER}", [npy_header(mask), mask.data])]
                members.append((f"{safe}.{JSON_MEMBER}", [json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")]))
                writers[split].write(members)
            if progress is not None:
                progress(batch.num_rows)
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            if w.f is not None:
                w.f.close()
        raise
    return closed, stats, texts_seen, layouts, {k: int(p.feature_dim) for k, p in pipelines.items()}


def _write_index(store: Store, out: Path, plan, cfg, seed: int, test_fraction: float, max_samples_per_shard: int,
                 max_shard_bytes: int, closed: list[dict], stats: dict, texts_seen: list, layouts: set,
                 feature_dim: dict, filtering: dict | None = None, trim_idle: bool = False) -> "ShardIndex":
    order = {s: i for i, s in enumerate(plan.splits)}
    closed.sort(key=lambda s: (order[s["split"]], s["file"]))
    participants_per_split = {s: 0 for s in plan.splits}
    for s in plan.participants.values():
        participants_per_split[s] += 1
    splits = {}
    for s in plan.splits:
        shards = [c for c in closed if c["split"] == s]
        splits[s] = {"samples": stats[s]["samples"], "frames": stats[s]["frames"], "shards": len(shards),
                     "bytes": sum(c["bytes"] for c in shards), "participants": participants_per_split[s]}
    characters = store.characters if store.characters is not None else characters_from_texts(texts_seen)
    layout_defs = [layout.to_dict() for name, layout in store.layouts.items() if name in layouts]
    index = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "folds": plan.folds, "seed": seed,
        "test_fraction": test_fraction, "stratified": plan.stratified, "ungrouped_sequences": plan.ungrouped,
        "max_samples_per_shard": max_samples_per_shard, "max_shard_bytes": max_shard_bytes,
        "splits": splits, "shards": closed, "participants": plan.participants,
        "labels": store.labels, "characters": characters, "layouts": sorted(layouts),
        "layout_definitions": layout_defs,
        "transform": None if cfg is None else cfg.to_dict(),  # load_transform_config(index["transform"]) rebuilds it
        "feature_dim": None if cfg is None else dict(sorted(feature_dim.items())),
        "store": _store_summary(store),
        "where": filtering,  # None, or the predicate and how many sequences it kept and filtered out
        "trim_idle": trim_idle,
    }
    write_json_atomic(out / INDEX_FILE, index)
    (out / PLAN_FILE).unlink()  # complete: the index says what the directory holds
    return ShardIndex(out, index)
