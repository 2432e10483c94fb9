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

from sltdata.errors import SltdataError
from sltdata.folds import FOLD_PREFIX, TEST_SPLIT, fold_name
from sltdata.layouts import Layout, get_layout

__all__ = ["INDEX_FILE", "INDEX_FORMAT", "INDEX_VERSION", "DEFAULT_MAX_SAMPLES", "DEFAULT_MAX_BYTES",
           "TEST_SPLIT", "fold_name", "SHARD_RE", "MEMBER_RE", "LANDMARKS_MEMBER", "MASK_MEMBER", "JSON_MEMBER",
           "SAMPLE_FIELDS", "PROVENANCE_FIELDS", "ShardError", "ShardIndex", "sample_record", "sanitize_key", "shard_name"]

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


def sample_record(meta: dict, split: str) -> dict:
    """A sample's ``KEY.json`` (DESIGN.md's shard contract, plus fps and provenance) from a store metadata row; the
    HF export's rows carry the same fields."""
    return {**{f: meta[f] for f in SAMPLE_FIELDS}, **{f: meta.get(f) for f in PROVENANCE_FIELDS}, "fold": split}


def index_path(path: str | Path) -> Path:
    """``index.json`` of a shard directory (or the path itself when it names the JSON)."""
    path = Path(path)
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
    def open(cls, path: str | Path) -> "ShardIndex":
        path = Path(path)
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
        return cls(ipath.parent, data)

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
