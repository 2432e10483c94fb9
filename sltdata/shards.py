"""WebDataset shards: deterministic tars of ``KEY.landmarks.npy`` + ``KEY.json`` per sequence, by fold.

Layout of a shard directory (the contract in DESIGN.md and docs/interfaces.md)::

    fold0-000000.tar ... fold{K-1}-NNNNNN.tar [test-NNNNNN.tar]
    index.json    every shard's sample count, bytes and sha256; participant -> fold; label and
                  character maps; the transform config when features were stored; the seed

Why the tars are written by hand (headers from ``tarfile.TarInfo.tobuf``, data streamed after them)
rather than through ``tarfile.addfile`` or webdataset's ``TarWriter``: every byte must be a function
of the store and the seed (member order, mtime 0, uid/gid 0, empty user/group names, mode 0444), the
sha256 is taken while writing (no second read), and the landmarks go from the Arrow buffer to the file
without an intermediate ``np.save`` copy. The result is a plain ustar/pax archive that ``tarfile``,
webdataset and ``datasets.load_dataset("webdataset")`` read as is.

Keys: webdataset splits a member name at the first dot of its basename, and a ``/`` would make a
directory, so a key is kept as is only when it is made of ``[A-Za-z0-9_-]``; otherwise its other
characters become ``_`` and ``-`` plus the first 10 hex digits of its sha1 are appended. The
original key is always in ``KEY.json``.

Roll-over follows webdataset's ``ShardWriter``: a new shard starts when the current one holds
``max_samples_per_shard`` samples or the next sample would take it past ``max_shard_bytes``.
Shards are written as ``NAME.tmp`` and renamed when complete; ``index.json`` is written last, so a
directory without it is an unfinished run, and re-running the same command rewrites it to the same
bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import re
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from sltdata.errors import SltdataError
from sltdata.folds import FoldPlan, assign_store_folds
from sltdata.store import METADATA_COLUMNS, Store, table_landmarks, write_json_atomic

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
INDEX_FORMAT = "sltdata-shards"
INDEX_VERSION = 1
DEFAULT_MAX_SAMPLES = 1000
DEFAULT_MAX_BYTES = 256 * 2**20
SHARD_RE = re.compile(r"^(fold\d+|test)-\d{6}\.tar$")
MEMBER_RE = re.compile(r"^[A-Za-z0-9_-]+\.(landmarks\.npy|mask\.npy|json)$")
_SAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


class ShardError(SltdataError):
    """A shard directory that is missing, unfinished, or holds a damaged shard."""


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def sanitize_key(key: str) -> str:
    """A member-name-safe, dot-free key; unchanged when already safe (see the module docstring)."""
    safe = _SAFE_KEY.sub("_", key)
    if safe == key and key:
        return key
    return f"{safe}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


SAMPLE_FIELDS = ("key", "label", "text", "participant", "layout", "source", "frames", "fps")


def sample_record(meta: dict, split: str) -> dict:
    """A sample's ``KEY.json`` (DESIGN.md's shard contract, plus fps) from a store metadata row; the
    HF export's rows carry the same fields."""
    return {**{f: meta[f] for f in SAMPLE_FIELDS}, "fold": split}


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


def _member_header(name: str, size: int) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o444, 0, 0, "", ""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _tar_size(header: int, size: int) -> int:
    return header + size + (-size) % _BLOCK


class _SplitWriter:
    """One split's shards, rolled over by count and size; each written under a temp name."""

    def __init__(self, out: Path, split: str, max_samples: int, max_bytes: int, on_close: Callable[[dict], None]):
        self.out, self.split, self.max_samples, self.max_bytes = out, split, max_samples, max_bytes
        self.on_close = on_close
        self.index = 0
        self.f: _HashingFile | None = None
        self.count = 0
        self.name = ""

    def _open(self) -> None:
        self.name = shard_name(self.split, self.index)
        self.index += 1
        self.f = _HashingFile(self.out / (self.name + ".tmp"))
        self.count = 0

    def write(self, members: list[tuple[str, list]]) -> None:
        """``members``: (name, [buffers]) in order; the buffers are concatenated as the member's data."""
        headers = [_member_header(name, sum(memoryview(b).nbytes for b in bufs)) for name, bufs in members]
        size = sum(_tar_size(len(h), sum(memoryview(b).nbytes for b in bufs))
                   for h, (_, bufs) in zip(headers, members))
        if self.f is not None and (self.count >= self.max_samples or
                                   self.f.bytes + size + 2 * _BLOCK > self.max_bytes):
            self.close()
        if self.f is None:
            self._open()
        for h, (_, bufs) in zip(headers, members):
            self.f.write(h)
            n = 0
            for b in bufs:
                self.f.write(b)
                n += memoryview(b).nbytes
            if n % _BLOCK:
                self.f.write(b"\0" * (_BLOCK - n % _BLOCK))
        self.count += 1

    def close(self) -> None:
        if self.f is None:
            return
        # end of archive: two zero blocks, padded to a whole record, as tarfile.close() does
        end = 2 * _BLOCK
        end += (-(self.f.bytes + end)) % _RECORD
        self.f.write(b"\0" * end)
        self.f.close()
        os.replace(self.out / (self.name + ".tmp"), self.out / self.name)
        self.on_close({"file": self.name, "split": self.split, "samples": self.count, "bytes": self.f.bytes,
                       "sha256": self.f.sha.hexdigest()})
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


def _clean(out: Path) -> None:
    """Remove what a previous (maybe killed) run left: temp files, shards, the index."""
    for p in out.iterdir():
        if p.name.endswith(".tar.tmp") or SHARD_RE.match(p.name) or p.name in (INDEX_FILE, INDEX_FILE + ".tmp"):
            p.unlink()


def _store_summary(store: Store) -> dict:
    meta_bytes = (store.path / "store.json").read_bytes()
    recipe = store.meta.get("recipe") or {}
    return {"recipe": recipe.get("name"), "source": recipe.get("source"), "sequences": len(store),
            "counts": store.meta.get("counts"), "store_json_sha256": hashlib.sha256(meta_bytes).hexdigest()}


def write_shards(store: Store | str | Path, out: str | Path, folds: int = 5, test_fraction: float = 0.0,
                 seed: int = 0, max_samples_per_shard: int = DEFAULT_MAX_SAMPLES,
                 max_shard_bytes: int = DEFAULT_MAX_BYTES, transform=None, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None) -> "ShardIndex":
    """Write a store as WebDataset shards by fold; returns the written index.

    Streams the store batch by batch, so memory holds one batch plus the fold plan. ``transform``
    (a transform config path, dict or TransformConfig) stores ``build_pipeline(cfg)(landmarks)``
    features and their frame mask (``KEY.mask.npy``) instead of raw landmarks.
    """
    store = store if isinstance(store, Store) else Store(store)
    out = Path(out)
    if max_samples_per_shard < 1 or max_shard_bytes < 1:
        raise ShardError("--max-samples-per-shard and --max-shard-bytes must be positive")
    if (out / INDEX_FILE).exists() and not overwrite:
        raise ShardError(f"{out} already holds shards ({INDEX_FILE}); pass --overwrite to replace them")
    plan = assign_store_folds(store, folds=folds, test_fraction=test_fraction, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)

    pipelines, cfg = {}, None
    if transform is not None:
        from sltdata.transforms import build_pipeline, load_transform_config

        cfg = load_transform_config(transform)

    closed: list[dict] = []
    writers = {s: _SplitWriter(out, s, max_samples_per_shard, max_shard_bytes, closed.append) for s in plan.splits}
    stats = {s: {"samples": 0, "frames": 0} for s in plan.splits}
    safe_keys: dict[str, str] = {}
    texts_seen, layouts = [], set()
    need_chars = store.characters is None
    try:
        for batch in _prefetch(store.iter_batches()):
            meta = batch.select(list(METADATA_COLUMNS)).to_pylist()
            for m, lm in zip(meta, table_landmarks(batch)):
                key = m["key"]
                safe = sanitize_key(key)
                if safe in safe_keys:
                    raise ShardError(f"keys {safe_keys[safe]!r} and {key!r} map to the same shard key {safe!r}")
                safe_keys[safe] = key
                split = plan.split_of_key[key]
                if need_chars and m["text"] is not None:
                    texts_seen.append(m["text"])
                layouts.add(m["layout"])
                record = sample_record(m, split)
                if cfg is None:
                    arr = np.ascontiguousarray(lm, dtype=np.float32)
                    members = [(f"{safe}.landmarks.npy", [npy_header(arr), arr.data])]
                else:
                    if m["layout"] not in pipelines:
                        pipelines[m["layout"]] = build_pipeline(cfg, layout=m["layout"])
                    features, mask = pipelines[m["layout"]](lm, rng=None, train=False)
                    features = np.ascontiguousarray(features, dtype=np.float32)
                    mask = np.ascontiguousarray(mask, dtype=bool)
                    members = [(f"{safe}.landmarks.npy", [npy_header(features), features.data]),
                               (f"{safe}.mask.npy", [npy_header(mask), mask.data])]
                members.append((f"{safe}.json", [json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")]))
                writers[split].write(members)
                stats[split]["samples"] += 1
                stats[split]["frames"] += int(m["frames"])
            if progress is not None:
                progress(batch.num_rows)
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            if w.f is not None:
                w.f.close()
        raise

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
    layout_defs = [d for d in store.meta.get("layouts", []) if d.get("name") in layouts]
    index = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "folds": plan.folds, "seed": seed,
        "test_fraction": test_fraction, "stratified": plan.stratified, "ungrouped_sequences": plan.ungrouped,
        "max_samples_per_shard": max_samples_per_shard, "max_shard_bytes": max_shard_bytes,
        "splits": splits, "shards": closed, "participants": plan.participants,
        "labels": store.labels, "characters": characters, "layouts": sorted(layouts),
        "layout_definitions": layout_defs,
        "transform": None if cfg is None else cfg.to_dict(),  # load_transform_config(index["transform"]) rebuilds it
        "feature_dim": None if cfg is None else {k: int(p.feature_dim) for k, p in sorted(pipelines.items())},
        "store": _store_summary(store),
    }
    write_json_atomic(out / INDEX_FILE, index)
    return ShardIndex(out, index)


@dataclass
class ShardIndex:
    """A shard directory's ``index.json``, opened for reading."""

    path: Path  # the shard directory
    data: dict

    @classmethod
    def open(cls, path: str | Path) -> "ShardIndex":
        path = Path(path)
        index_path = path if path.name == INDEX_FILE or path.suffix == ".json" else path / INDEX_FILE
        if not index_path.is_file():
            hint = " (an unfinished `sltdata shard` run? re-run it)" if path.is_dir() and any(path.glob("*.tar*")) else ""
            raise ShardError(f"{index_path}: no shard index{hint}")
        try:
            data = json.loads(index_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ShardError(f"{index_path}: unreadable ({e})") from None
        if data.get("format") != INDEX_FORMAT:
            raise ShardError(f"{index_path}: not a shard index (format {data.get('format')!r})")
        from sltdata.layouts import Layout, register_layout

        for d in data.get("layout_definitions", []):
            register_layout(Layout.from_dict(d))
        return cls(index_path.parent, data)

    @property
    def labels(self) -> dict[str, int] | None:
        return self.data.get("labels")

    @property
    def characters(self) -> dict[str, int] | None:
        return self.data.get("characters")

    @property
    def splits(self) -> dict[str, dict]:
        return self.data["splits"]

    @property
    def shards(self) -> list[dict]:
        return self.data["shards"]

    @property
    def folds(self) -> int:
        return int(self.data["folds"])

    @property
    def participants(self) -> dict[str, str]:
        return self.data["participants"]

    @property
    def transform(self) -> dict | None:
        return self.data.get("transform")

    @property
    def layouts(self) -> list[str]:
        return list(self.data.get("layouts", []))

    def _check(self, splits) -> list[str]:
        if splits is None:
            return [s for s in self.splits if s != "test"]
        if isinstance(splits, str):
            splits = [splits]
        unknown = [s for s in splits if s not in self.splits]
        if unknown:
            raise ShardError(f"{self.path}: no split(s) {', '.join(unknown)} (it has {', '.join(self.splits)})")
        return list(splits)

    def shards_for(self, splits=None) -> list[str]:
        """Shard paths of ``splits`` (names or one name; None = every fold, not test), in index order."""
        wanted = set(self._check(splits))
        return [str(self.path / s["file"]) for s in self.shards if s["split"] in wanted]

    def samples(self, splits=None) -> int:
        return sum(self.splits[s]["samples"] for s in self._check(splits))

    def expected_samples(self) -> dict[str, int]:
        """Shard path -> sample count, for checks while reading."""
        return {str(self.path / s["file"]): int(s["samples"]) for s in self.shards}


class _HashingReader:
    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.sha.update(data)
        self.bytes += len(data)
        return data


def count_samples(fileobj) -> tuple[int, list[str]]:
    """Samples (distinct keys) in a tar stream and the member names that break the naming contract."""
    keys, bad, last = 0, [], None
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            if not member.isreg() or not MEMBER_RE.match(member.name):
                bad.append(member.name)
                continue
            key = member.name.split(".", 1)[0]
            if key != last:
                keys, last = keys + 1, key
    return keys, bad


@dataclass(frozen=True)
class VerifyReport:
    shards: int
    samples: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_shards(path: str | Path, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every shard's existence, size, sha256, member names and sample count against the index."""
    idx = ShardIndex.open(path)
    problems, samples = [], 0
    for s in idx.shards:
        p = idx.path / s["file"]
        if not p.is_file():
            problems.append(f"{s['file']}: missing")
            continue
        with open(p, "rb") as f:
            reader = _HashingReader(f)
            try:
                n, bad = count_samples(reader)
            except (tarfile.TarError, EOFError, OSError) as e:
                n, bad = None, []
                problems.append(f"{s['file']}: not a readable tar ({e})")
            while reader.read(1 << 20):
                pass
        if reader.bytes != s["bytes"]:
            problems.append(f"{s['file']}: {reader.bytes} bytes, index says {s['bytes']} (truncated or replaced)")
        if reader.sha.hexdigest() != s["sha256"]:
            problems.append(f"{s['file']}: sha256 mismatch (corrupted)")
        if n is not None and n != s["samples"]:
            problems.append(f"{s['file']}: {n} samples, index says {s['samples']}")
        if bad:
            problems.append(f"{s['file']}: unexpected member(s) {', '.join(bad[:3])}")
        samples += n or 0
        if progress is not None:
            progress(1)
    for split, info in idx.splits.items():
        listed = sum(s["samples"] for s in idx.shards if s["split"] == split)
        if listed != info["samples"]:
            problems.append(f"split {split}: shards list {listed} samples, split says {info['samples']}")
    listed = {s["file"] for s in idx.shards}
    for p in sorted(idx.path.iterdir()):
        if SHARD_RE.match(p.name) and p.name not in listed:
            problems.append(f"{p.name}: shard not in {INDEX_FILE}")
    return VerifyReport(shards=len(idx.shards), samples=samples, problems=problems)


def plan_summary(plan: FoldPlan) -> str:
    return ", ".join(f"{s} {n}" for s, n in plan.counts().items())
