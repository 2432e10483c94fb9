"""The one torch-free reader of shards: tar members -> samples (key, ``KEY.json`` dict, arrays).

The loader (torch stages), stats, verify and the HF card all read through here, so the format is
parsed once. Arrays are ``np.save`` buffers loaded without pickle (``load_npy``: object dtypes are
refused, the array is a read-only view over the member's bytes). Any damage (a bad tar header, a
truncated member, a bad npy or JSON, a member outside the naming contract, fewer samples than the
index says) raises one ``ShardError`` naming the shard file.

Damaged content never leaves the reader: given the shard's index entry, each member's digest is
checked against the shard's member checksums (``NAME.members.xxh128``, itself checked against the
sha256 the index lists) as it is read, before the sample that holds it is yielded. Shards written before member
checksums existed fall back to the whole shard's sha256, which can only be known at the end of the
shard: the error then comes after that shard's samples were yielded (re-shard to get the checksums).
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

from sltdata import fs
from sltdata.shards.index import (INDEX_FILE, JSON_MEMBER, LANDMARKS_MEMBER, MEMBER_RE, MEMBER_SUMS_SUFFIX,
                                  SHARD_RE, ShardError, ShardIndex, entry_path_problems,
                                  member_digest)
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


class _Damaged(ValueError):
    """Damage found by a check (not by a parser): its message is the whole reason."""


def _member_sums(shard: Path, entry: dict) -> list[tuple[str, str]] | None:
    """(member name, digest hex) in archive order from the shard's checksums file, which must match
    the sha256 the index lists for it; None for an entry without one (shards of an older sltdata)."""
    name = entry.get("member_sums")
    if not name:
        return None
    path = shard.parent / name
    if not path.is_file():
        raise ShardError(f"{path}: member checksums listed in {INDEX_FILE} are missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.get("member_sums_sha256"):
        raise ShardError(f"{path}: sha256 mismatch (corrupted member checksums)")
    try:
        return [(member, hex_) for hex_, member in (ln.split("  ", 1) for ln in data.decode("utf-8").splitlines())]
    except ValueError:
        raise ShardError(f"{path}: not a member checksums file") from None


class _MemberCheck:
    """Each member, in order, against the shard's checksums: its name, and its digest when read."""

    def __init__(self, sums: list[tuple[str, str]], digest: str):
        self.sums, self.i = sums, 0
        try:
            self.new = member_digest(digest)  # an unknown digest fails before the first sample
        except ShardError as e:
            raise _Damaged(str(e)) from None

    def __call__(self, name: str, data: bytes | None) -> None:
        if self.i >= len(self.sums):
            raise _Damaged(f"member {name!r} is not in the member checksums (damaged or replaced shard)")
        want_name, want = self.sums[self.i]
        self.i += 1
        if name != want_name:
            raise _Damaged(f"member {self.i - 1} is {name!r}, the member checksums list {want_name!r} "
                           "(damaged or replaced shard)")
        if data is not None and self.new(data).hexdigest() != want:
            raise _Damaged(f"member {name}: checksum mismatch (damaged content, not loaded)")

    def finish(self) -> None:
        if self.i != len(self.sums):
            raise _Damaged(f"{len(self.sums) - self.i} member(s) the checksums list are missing (truncated shard?)")


def _samples(fileobj: BinaryIO, arrays: bool, seekable: bool,
             check: _MemberCheck | None = None) -> Iterator[Sample]:
    """Members grouped by key (consecutive, as the writer puts them) into samples. Every member is
    checked (``check``) before the sample it belongs to is yielded."""
    wanted = None if arrays else (lambda n: n.endswith("." + JSON_MEMBER))
    current, members = None, {}
    for name, regular, data in iter_members(fileobj, wanted, seekable=seekable):
        if not regular or not MEMBER_RE.match(name):
            raise _Damaged(f"unexpected member {name!r} (a sample member is a regular file KEY.landmarks.npy, "
                           "KEY.mask.npy or KEY.json, in no directory)")
        key, suffix = name.split(".", 1)
        if key != current:
            if current is not None:
                yield _sample(current, members, arrays)
            current, members = key, {}
        if check is not None:
            check(name, data)
        if data is not None:
            members[suffix] = data
    if check is not None:
        check.finish()
    if current is not None:
        yield _sample(current, members, arrays)


def iter_shard(path: str | Path, *, arrays: bool = True, expected: int | None = None,
               entry: dict | None = None, hint: str = "") -> Iterator[Sample]:
    """The samples of one shard file, in order. ``arrays=False`` reads only the ``KEY.json`` members
    (the file is seeked past the arrays). ``expected``: the sample count the index lists; fewer or
    more is an error. ``entry``: the shard's index entry (``ShardIndex.shard_entries()``): its sample
    count, and its member checksums, checked member by member before a sample is yielded (entries
    without them: the whole shard's sha256 at the end, arrays=True only). ``hint`` is appended to
    error messages (e.g. "; run `sltdata verify DIR`")."""
    path = fs.as_path(path)  # a shard on object storage is streamed, never copied first
    if not path.is_file():
        raise ShardError(f"{path}: shard listed in {INDEX_FILE} is missing{hint}")
    if entry is not None and expected is None:
        expected = entry.get("samples")
    sums = _member_sums(path, entry) if entry is not None else None
    whole = entry is not None and sums is None and arrays and entry.get("sha256")
    n = 0
    try:
        with path.open("rb") as f:
            reader = _HashingReader(f) if whole else f
            for sample in _samples(reader, arrays, seekable=not arrays,
                                   check=None if sums is None else _MemberCheck(sums, entry.get("member_digest"))):
                n += 1
                yield sample
            if whole:
                while reader.read(1 << 20):
                    pass
                if reader.sha.hexdigest() != entry["sha256"]:
                    raise _Damaged("sha256 mismatch (corrupted; this shard has no member checksums, so its "
                                   "samples were read before the check: re-shard)")
    except ShardError:
        raise
    except _Damaged as e:
        raise ShardError(f"{path}: {e}{hint}") from None
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
            for sample in iter_shard(index.path / s["file"], arrays=arrays, entry=s):
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
    """Check every shard's existence, size, sha256, member names and sample count against the index,
    its member checksums file's sha256, the label/character maps and layouts; an entry naming a file
    outside the directory is reported and never opened."""
    idx = ShardIndex.open(path, check=False)
    problems, samples = idx.path_problems(), 0
    problems += idx.map_problems()
    for s in idx.shards:
        if entry_path_problems(s):
            continue
        if s.get("member_sums") is not None:
            sp = idx.path / s["member_sums"]
            if not sp.is_file():
                problems.append(f"{s['member_sums']}: member checksums missing")
            elif hashlib.sha256(sp.read_bytes()).hexdigest() != s.get("member_sums_sha256"):
                problems.append(f"{s['member_sums']}: sha256 mismatch (corrupted member checksums)")
        p = idx.path / s["file"]
        if not p.is_file():
            problems.append(f"{s['file']}: missing")
            continue
        with p.open("rb") as f:
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
    listed = {s.get("file") for s in idx.shards} | {s.get("member_sums") for s in idx.shards}
    for p in sorted(idx.path.iterdir()):
        shard_like = SHARD_RE.match(p.name.removesuffix(MEMBER_SUMS_SUFFIX) + ".tar") \
            if p.name.endswith(MEMBER_SUMS_SUFFIX) else SHARD_RE.match(p.name)
        if shard_like and p.name not in listed:
            problems.append(f"{p.name}: {'shard' if p.name.endswith('.tar') else 'member checksums'} not in {INDEX_FILE}")
    return VerifyReport(shards=len(idx.shards), samples=samples, problems=problems)
