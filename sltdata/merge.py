"""`sltdata merge`: several sequence stores into one, with one label vocabulary and each sequence's origin.

Why: corpora of one sign language name one sign differently (``HOUSE``, ``house``, ``HOUSE1``), and
a model trained on a merge without a shared vocabulary learns three classes for one sign. The
user's gloss map says which label each store's label becomes:

    source_label,label            applies to every store
    store,source_label,label      applies to the store of that name (its directory name); wins

A label the map does not name is kept as it is; one mapped to an empty label is rejected with its
reason. Keys must stay unique: a key found in two stores is refused with one line, unless
``prefix_keys`` makes every key ``STORE/KEY``. Each sequence keeps its store's name in the
``merged_from`` column, its landmarks, metadata and quality columns untouched (a store written
before quality scores gets nulls). Nothing is lost: rows in == stored + rejected, and the merge is
written part by part under temporary names, ``store.json`` last.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sltdata.errors import ConfigError, StoreError
from sltdata.store import (META_FILE, MERGED_FROM, REJECTS_FILE, SCHEMA, STORE_FORMAT, STORE_VERSION, Reject, Store,
                           part_name, write_json_atomic, write_table)


@dataclass
class MergeResult:
    rows: int
    stored: int
    rejected: int
    store: Path

    def summary(self) -> str:
        return f"{self.rows} sequences read, {self.stored} stored, {self.rejected} rejected -> {self.store}"


def read_gloss_map(path: str | Path) -> dict[tuple[str | None, str], str]:
    """(store name or None, source label) -> label, from a CSV with a header."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable gloss map ({e})") from None
    if not {"source_label", "label"} <= set(header):
        raise ConfigError(f"{path}: a gloss map needs the columns source_label,label (and optionally store); "
                          f"it has {','.join(header) or 'none'}")
    out: dict[tuple[str | None, str], str] = {}
    for i, r in enumerate(rows, start=1):
        k = (r.get("store") or None, r["source_label"])
        if k in out and out[k] != r["label"]:
            raise ConfigError(f"{path} row {i}: {r['source_label']!r} is mapped twice, to {out[k]!r} and {r['label']!r}")
        out[k] = r["label"]
    return out


def _store_names(stores: list[Store]) -> list[str]:
    names = [s.path.resolve().name for s in stores]
    if len(set(names)) != len(names):
        raise ConfigError("stores to merge must have distinct directory names (they name each sequence's origin): "
                          + ", ".join(names))
    return names


def _check_keys(stores: list[Store], names: list[str], prefix: bool) -> None:
    seen: dict[str, str] = {}
    for store, name in zip(stores, names):
        for key in store.metadata(("key",)).column("key").to_pylist():
            k = f"{name}/{key}" if prefix else key
            if k in seen:
                raise StoreError(f"key {key!r} is in both {seen[k]} and {name}; pass --prefix-keys to make keys "
                                 "STORE/KEY")
            seen[k] = name


def _layouts(stores: list[Store]) -> list[dict]:
    defs: dict[str, dict] = {}
    for s in stores:
        for name, layout in s.layouts.items():
            d = layout.to_dict()
            if name in defs and defs[name] != d:
                raise StoreError(f"{s.path}: defines layout {name!r} differently from another store; merge refused")
            defs[name] = d
    return [defs[n] for n in sorted(defs)]


def _conform(table: pa.Table) -> pa.Table:
    """The table with every SCHEMA column (missing ones null), in SCHEMA order and types."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
            for f in SCHEMA]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def merge_stores(stores: list[str | Path], out: str | Path, gloss_map: str | Path | None = None,
                 prefix_keys: bool = False, overwrite: bool = False) -> MergeResult:
    """Merge ``stores`` into a new store at ``out``; see the module docstring for the rules."""
    opened = [Store(p) for p in stores]
    if not opened:
        raise ConfigError("merge needs at least one store")
    out = Path(out)
    if any(out.resolve() == s.path.resolve() for s in opened):
        raise ConfigError(f"--out {out} is one of the stores being merged")
    names = _store_names(opened)
    mapping = read_gloss_map(gloss_map) if gloss_map is not None else {}
    _check_keys(opened, names, prefix_keys)
    layouts = _layouts(opened)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{out}: exists and is not empty; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)

    parts, rejects, rows_in, labels, chars = [], [], 0, set(), set()
    for store, name in zip(opened, names):
        chars.update((store.characters or {}).keys())
        for src in store.parts:
            table = pq.read_table(src)
            rows_in += len(table)
            keys = table.column("key").to_pylist()
            old = table.column("label").to_pylist()
            new = [None if l is None else mapping.get((name, l), mapping.get((None, l), l)) for l in old]
            keep = [n != "" for n in new]
            for i, k in enumerate(keep):
                if not k:
                    rejects.append(Reject(manifest=name, row=None, key=keys[i], file=None,
                                          reason=f"label {old[i]!r} is mapped to no label by the gloss map"))
            table = table.set_column(table.column_names.index("label"), "label", pa.array(new, pa.string()))
            if prefix_keys:
                table = table.set_column(table.column_names.index("key"), "key", pa.array([f"{name}/{k}" for k in keys], pa.string()))
            table = _conform(table.filter(pa.array(keep)))
            table = table.set_column(SCHEMA.get_field_index(MERGED_FROM), MERGED_FROM,
                                     pa.array([name] * len(table), pa.string()))
            labels.update(l for l in table.column("label").to_pylist() if l is not None)
            path = out / part_name(len(parts))
            write_table(path, table)
            parts.append({"file": path.name, "sequences": len(table),
                          "frames": int(pc.sum(table.column("frames")).as_py() or 0)})
    stored = sum(p["sequences"] for p in parts)
    if stored + len(rejects) != rows_in:
        raise RuntimeError(f"merge lost rows: {rows_in} in, {stored} stored, {len(rejects)} rejected")
    tmp = out / (REJECTS_FILE + ".tmp")
    tmp.write_text("".join(r.to_json() + "\n" for r in rejects), encoding="utf-8")
    os.replace(tmp, out / REJECTS_FILE)
    write_json_atomic(out / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True,
        "recipe": {"name": "merge", "source": "merge", "columns": {},
                   "description": "merged by sltdata merge from " + ", ".join(names)},
        "merged": [{"store": n, "path": str(s.path), "sequences": len(s),
                    "recipe": (s.meta.get("recipe") or {}).get("name")} for n, s in zip(names, opened)],
        "gloss_map": None if gloss_map is None else str(gloss_map),
        "layouts": layouts,
        "labels": {l: i for i, l in enumerate(sorted(labels))} if labels else None,
        "characters": {c: i for i, c in enumerate(sorted(chars))} if chars else None,
        "counts": {"rows": rows_in, "stored": stored, "rejected": len(rejects),
                   "frames": sum(p["frames"] for p in parts)},
        "parts": parts,
    })
    return MergeResult(rows_in, stored, len(rejects), out)
