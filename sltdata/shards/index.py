"""What a shard directory is: the ``index.json`` contract, split and member names, the sample record.

Every fact of the format is written here once; the writer (``write.py``), the reader (``read.py``),
the loader, stats and the HF export ask this module instead of spelling a name or a field again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from sltdata import fs
from sltdata.errors import SltdataError
from sltdata.folds import FOLD_PREFIX, TEST_SPLIT, fold_name
from sltdata.layouts import Layout, get_layout

__all__ = ["INDEX_FILE", "INDEX_FORMAT", "INDEX_VERSION", "DEFAULT_MAX_SAMPLES", "DEFAULT_MAX_BYTES",
           "TEST_SPLIT", "fold_name", "SHARD_RE", "MEMBER_RE", "LANDMARKS_MEMBER", "MASK_MEMBER", "JSON_MEMBER",
           "SAMPLE_FIELDS", "PROVENANCE_FIELDS", "MEMBER_DIGEST", "MEMBER_SUMS_SUFFIX", "ShardError", "ShardIndex", "member_digest",
           "member_sums_name", "sample_record",
           "sanitize_key", "shard_name"]

INDEX_FILE = "index.json"
INDEX_FORMAT = "sltdata-shards"
INDEX_VERSION = 1

# Roll-over limits of ``write_shards`` and ``sltdata shard`` (recorded in the index it writes).
DEFAULT_MAX_SAMPLES = 1000
DEFAULT_MAX_BYTES = 256 * 2**20

# A sample's members: ``KEY.landmarks.npy`` (raw landmarks or features), ``KEY.mask.npy`` (the frame
# mask, transformed shards only), ``KEY.json`` (``sample_record``).
LANDMARKS_MEMBER = "landmarks.npy"
MASK_MEMBER = "mask.npy"
JSON_MEMBER = "json"

SHARD_RE = re.compile(rf"^({re.escape(FOLD_PREFIX)}\d+|{re.escape(TEST_SPLIT)})-\d{{6}}\.tar$")
MEMBER_RE = re.compile(r"^[A-Za-z0-9_-]+\.(" + "|".join(re.escape(m) for m in (LANDMARKS_MEMBER, MASK_MEMBER,
                                                                             JSON_MEMBER)) + r")$")
_SAFE_KEY = re.compile(r"[^A-Za-z0-9_-]")

# Beside each shard, ``NAME.members.xxh128``: one ``HEX  MEMBER`` line (``xxh128sum`` format) per tar
# member, in archive order. The index lists it with its own sha256 and the digest's name (shard fields
# ``member_sums``, ``member_sums_sha256``, ``member_digest``), so a reader checks each member as it is
# read, before its sample is yielded. XXH3-128, not sha256: the checks guard against damage (bit-rot,
# a truncated copy, a hand edit), and at ~50 GB/s it costs the loader ~1% where sha256 (~1.5 GB/s)
# cost it up to 57% (benchmarks/verify_stream.py); the sums file itself is covered by the index's sha256.
MEMBER_SUMS_SUFFIX = ".members.xxh128"
MEMBER_DIGEST = "xxh3_128"

SAMPLE_FIELDS = ("key", "label", "text", "participant", "layout", "source", "frames", "fps")
# Where the sample came from (the store's provenance columns; null when the store does not know).
PROVENANCE_FIELDS = ("source_file", "width", "height", "depth", "units", "extractor", "extractor_version",
                     "extractor_settings")


class ShardError(SltdataError):
    """A shard directory that is missing, unfinished, or holds a damaged shard."""


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def sanitize_key(key: str) -> str:
    """A member-name-safe, dot-free key, unchanged when already safe.

    webdataset splits a member name at the first dot of its basename and a ``/`` would make a
    directory, so a key is kept only when made of ``[A-Za-z0-9_-]``; otherwise its other characters
    become ``_`` and ``-`` plus the first 10 hex digits of its sha1 are appended. The original key
    is always in ``KEY.json``."""
    safe = _SAFE_KEY.sub("_", key)
    if safe == key and key:
        return key
    return f"{safe}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


def member_sums_name(shard_file: str) -> str:
    """``fold0-000000.tar`` -> ``fold0-000000.members.xxh128``."""
    return shard_file.removesuffix(".tar") + MEMBER_SUMS_SUFFIX


def member_digest(name: str):
    """The hash constructor of the member digest ``name``: ``new(data=b"")`` -> an object with
    ``update`` and ``hexdigest`` (hashlib's interface)."""
    if name == "xxh3_128":
        import xxhash  # a dependency of datasets, and so always installed with sltdata

        return xxhash.xxh3_128
    if name == "sha256":
        return hashlib.sha256
    raise ShardError(f"unknown member digest {name!r} (this sltdata knows xxh3_128 and sha256; upgrade it)")


def _own_file_problem(name, what: str) -> str | None:
    """Why ``name`` is not a plain file name inside the shard directory, or None when it is.

    A shard directory may reference only its own files: ``../../x.tar``, ``/etc/passwd`` or
    ``sub/x.tar`` in an ``index.json`` would make every reader open a file elsewhere."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or "\0" in name or ":" in name:
        return f"{what} {name!r} is not a file name inside the shard directory (an index may only reference its own files)"
    return None


def entry_path_problems(entry: dict) -> list[str]:
    """Why a shard entry of ``index.json`` names a file outside its directory (empty: it does not)."""
    out = [_own_file_problem(entry.get("file"), "shard file")]
    if entry.get("member_sums") is not None:
        out.append(_own_file_problem(entry["member_sums"], "member checksums"))
    return [p for p in out if p]


def sample_record(meta: dict, split: str) -> dict:
    """A sample's ``KEY.json`` (DESIGN.md's shard contract, plus fps and provenance) from a store metadata row; the
    HF export's rows carry the same fields."""
    return {**{f: meta[f] for f in SAMPLE_FIELDS}, **{f: meta.get(f) for f in PROVENANCE_FIELDS}, "fold": split}


def index_path(path: str | Path) -> Path:
    """``index.json`` of a shard directory (or the path itself when it names the JSON)."""
    path = fs.as_path(path)
    return path if path.name == INDEX_FILE or path.suffix == ".json" else path / INDEX_FILE


@dataclass
class ShardIndex:
    """A shard directory's ``index.json``, opened for reading.

    It carries the layouts its shards use (``layouts``, ``layout(name)``): the definitions written
    beside the names, else the built-in of that name. Nothing global changes when an index is
    opened, so two shard directories that define one layout name differently open side by side.
    """

    path: Path  # the shard directory
    data: dict
    _layouts: dict[str, Layout] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | Path, check: bool = True) -> "ShardIndex":
        """Open a shard directory (or its ``index.json``). Refuses (one ``ShardError``) an index whose
        shards lie outside the directory; ``check=False`` opens it anyway, for ``verify_shards``,
        which reports every such entry (``path_problems``) and opens none of them."""
        path = fs.as_path(path)  # a local Path, or an fsspec RemotePath (s3://...) read in place
        ipath = index_path(path)
        if not ipath.is_file():
            hint = " (an unfinished `sltdata shard` run? re-run it)" if path.is_dir() and any(path.glob("*.tar*")) else ""
            raise ShardError(f"{ipath}: no shard index{hint}")
        try:
            data = json.loads(ipath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ShardError(f"{ipath}: unreadable ({e})") from None
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
            got = data.get("format") if isinstance(data, dict) else None
            raise ShardError(f"{ipath}: not a shard index (format {got!r})")
        if not isinstance(data.get("shards"), list) or not all(isinstance(s, dict) for s in data["shards"]):
            raise ShardError(f"{ipath}: not a shard index (no list of shards)")
        index = cls(ipath.parent, data)
        problems = index.path_problems()
        if check and problems:
            raise ShardError(f"{ipath}: {problems[0]}")
        return index

    def path_problems(self) -> list[str]:
        """Every shard entry whose ``file`` or ``member_sums`` is not a file of this directory."""
        return [p for s in self.shards for p in entry_path_problems(s)]

    def map_problems(self) -> list[str]:
        """Why the label / character map cannot index a model's outputs: class ids must be the
        integers 0..N-1, each once (a negative or out-of-range id fails inside the loss, a repeated
        one trains two signs as one)."""
        out = []
        for name in ("labels", "characters"):
            m = self.data.get(name)
            if m is None:
                continue
            ids = list(m.values()) if isinstance(m, dict) else None
            if ids is None or not all(type(i) is int for i in ids) or sorted(ids) != list(range(len(ids))):
                out.append(f"{INDEX_FILE} {name}: ids are not 0..{len(ids or []) - 1}, each once")
        for name in self.data.get("layouts") or []:
            try:
                self.layout(name)
            except SltdataError as e:
                out.append(f"layout {name!r}: {e}")
        return out

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
    def fold_names(self) -> list[str]:
        return [fold_name(i) for i in range(self.folds)]

    @property
    def participants(self) -> dict[str, str]:
        return self.data["participants"]

    @property
    def transform(self) -> dict | None:
        return self.data.get("transform")

    @property
    def layouts(self) -> Mapping[str, Layout]:
        """Name -> Layout of every layout the shards use, in index order."""
        if self._layouts is None:
            defined = {d["name"]: Layout.from_dict(d) for d in self.data.get("layout_definitions") or []}
            names = [n for n in self.data.get("layouts") or [] if isinstance(n, str)]
            self._layouts = {n: defined[n] if n in defined else get_layout(n) for n in names}
        return MappingProxyType(self._layouts)

    def layout(self, name: str) -> Layout:
        """The layout ``name`` as these shards define it."""
        if name in self.layouts:
            return self.layouts[name]
        raise ShardError(f"{self.path}: no layout {name!r} in {INDEX_FILE} (it has {', '.join(self.layouts) or 'none'})")

    def _check(self, splits) -> list[str]:
        if splits is None:
            return [s for s in self.splits if s != TEST_SPLIT]
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

    def shard_entries(self) -> dict[str, dict]:
        """Shard path -> its index entry (samples, bytes, sha256, member checksums), for
        ``read.iter_shard(path, entry=...)``, which checks the shard against it while reading."""
        return {str(self.path / s["file"]): s for s in self.shards}
