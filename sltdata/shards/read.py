"""The one torch-free reader of shards: tar members -> samples (key, ``KEY.json`` dict, arrays).

The loader (torch stages), stats, verify and the HF card all read through here, so the format is
parsed once. Arrays are ``np.save`` buffers loaded without pickle (``load_npy``: object dtypes are
refused, the array is a read-only view over the member's bytes). Any damage (a bad tar header, a
truncated member, a bad npy or JSON, a member outside the naming contract, fewer samples than the
index says) raises one ``ShardError`` naming the shard file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from sltdata.shards.index import (INDEX_FILE, JSON_MEMBER, LANDMARKS_MEMBER, MEMBER_RE, SHARD_RE, ShardError,
                                  ShardIndex)
from sltdata.shards.tar import TAR_ERRORS, iter_members

__all__ = ["Sample", "load_npy", "iter_shard", "iter_samples", "count_samples", "VerifyReport", "verify_shards"]


@dataclass(frozen=True)
class Sample:
    """One sample of a shard."""

    key: str  # the sequence's own key (from KEY.json; the member names hold a sanitized one)
    meta: dict  # KEY.json: key, label, text, participant, fold, layout, source, frames, fps
    arrays: dict[str, np.ndarray]  # member suffix without ".npy" -> array: "landmarks", "mask" (transformed)


@lru_cache(maxsize=4096)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parsed ``np.save`` header (shape, fortran order, dtype, data offset); headers repeat (they differ
    only by frame count), so parsing, which numpy does with ``ast.literal_eval``, is cached."""
    f = io.BytesIO(header)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return shape, fortran, dtype, f.tell()


def load_npy(data: bytes) -> np.ndarray:
    """An ``np.save`` buffer as a read-only array over the bytes (no copy). Never unpickles: object
    dtypes are refused, as ``np.load(..., allow_pickle=False)`` refuses them."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not an npy buffer")
    if data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    else:
        end = 12 + int.from_bytes(data[8:12], "little")
    shape, fortran, dtype, offset = _npy_header(bytes(data[:end]))
    if dtype.hasobject:
        raise ValueError("npy holds Python objects (would need pickle); refusing to load it")
    count = int(np.prod(shape)) if shape else 1
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def _sample(name: str, members: dict[str, bytes], arrays: bool) -> Sample:
    if JSON_MEMBER not in members:
        raise ValueError(f"sample {name} has no .{JSON_MEMBER} member")
    meta = json.loads(members[JSON_MEMBER])
    out = {}
    if arrays:
        if LANDMARKS_MEMBER not in members:
            raise ValueError(f"sample {name} has no .{LANDMARKS_MEMBER} member")
        out = {suffix[:-len(".npy")]: load_npy(data) for suffix, data in members.items() if suffix.endswith(".npy")}
    return Sample(meta["key"], meta, out)


def _samples(fileobj: BinaryIO, arrays: bool, seekable: bool) -> Iterator[Sample]:
    """Members grouped by key (consecutive, as the writer puts them) into samples."""
    wanted = None if arrays else (lambda n: n.endswith("." + JSON_MEMBER))
    current, members = None, {}
    for name, regular, data in iter_members(fileobj, wanted, seekable=seekable):
        if not regular or not MEMBER_RE.match(name):
            raise ValueError(f"unexpected member {name!r}")
        key, suffix = name.split(".", 1)
        if key != current:
            if current is not None:
                yield _sample(current, members, arrays)
            current, members = key, {}
        if data is not None:
            members[suffix] = data
    if current is not None:
        yield _sample(current, members, arrays)


def iter_shard(path: str | Path, *, arrays: bool = True, expected: int | None = None,
               hint: str = "") -> Iterator[Sample]:
    """The samples of one shard file, in order. ``arrays=False`` reads only the ``KEY.json`` members
    (the file is seeked past the arrays). ``expected``: the sample count the index lists; fewer or
    more is an error. ``hint`` is appended to error messages (e.g. "; run `sltdata verify DIR`")."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard listed in {INDEX_FILE} is missing{hint}")
    n = 0
    try:
        with open(path, "rb") as f:
            for sample in _samples(f, arrays, seekable=not arrays):
                n += 1
                yield sample
    except ShardError:
        raise
    except Exception as e:  # anything a damaged tar/npy/json raises; named, then re-raised once
        reason = str(e.args[0]).split(" @ ")[0].splitlines()[0] if e.args else type(e).__name__
        raise ShardError(f"{path}: corrupted or truncated shard ({type(e).__name__}: {reason}){hint}") from None
    if expected is not None and n != expected:
        raise ShardError(f"{path}: {n} samples read, index says {expected} (truncated shard?){hint}")


def iter_samples(index: ShardIndex, splits=None, *, arrays: bool = True) -> Iterator[tuple[str, Sample]]:
    """(split, sample) for every sample of ``splits`` (None = every split, test included), shard by
    shard in index order, each shard's count checked against the index."""
    wanted = None if splits is None else set(index._check(splits))
    for s in index.shards:
        if wanted is None or s["split"] in wanted:
            for sample in iter_shard(index.path / s["file"], arrays=arrays, expected=s.get("samples")):
                yield s["split"], sample


def count_samples(fileobj: BinaryIO) -> tuple[int, list[str]]:
    """Samples (distinct keys) in a tar stream and the member names that break the naming contract.
    Reads the stream through (no data kept), so a hashing reader sees every byte."""
    keys, bad, last = 0, [], None
    for name, regular, _ in iter_members(fileobj, wanted=lambda n: False):
        if not regular or not MEMBER_RE.match(name):
            bad.append(name)
            continue
        key = name.split(".", 1)[0]
        if key != last:
            keys, last = keys + 1, key
    return keys, bad


class _HashingReader:
    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.f.read(n)
        self.sha.update(data)
        self.bytes += len(data)
        return data


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
            except TAR_ERRORS as e:
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
