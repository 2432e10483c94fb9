"""`sltdata ingest`: a publisher's dataset into the sequence store, nothing lost, resumable.

Every manifest row ends stored or rejected with its reason (rows in == stored + rejected). Rows are
grouped by the landmark file they point at and packed into parts in manifest order; each part is
read and written independently (by ``workers`` threads: pyarrow and numpy release the GIL), under a
temporary name and renamed when complete. A part whose Parquet exists is finished: a re-run after a
kill skips it, and the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from sltdata import fs, outputs
from sltdata.engine import Engine, get_engine
from sltdata.errors import SourceError, StoreError
from sltdata.layouts import Layout, get_layout, map_layout
from sltdata.manifest import ManifestRow, check_rows, file_key, read_manifest, resolve_inside
from sltdata.plan import PART_SIZE, Group, MemoryPlan, Plan, plan_ingest
from sltdata.quality import sequence_quality
from sltdata.recipes import Recipe, load_recipe
from sltdata.sequence import Sequence
from sltdata.sources import Source, coordinate_problem, get_source
from sltdata.store import (META_FILE, REJECTS_FILE, STORE_FORMAT, STORE_VERSION, Reject, part_name, write_json_atomic,
                           write_part)

log = logging.getLogger(__name__)
PLAN_FILE = "plan.json"
# How an ingest runs (not what it stores), for the library and `sltdata ingest` alike.
WORKERS = 2  # threads reading landmark files: pyarrow and numpy release the GIL
# What --overwrite may replace: a finished store (store.json) or an unfinished ingest (plan.json)
STORE_WHAT = "an sltdata store"
STORE_MARKERS = (META_FILE, PLAN_FILE)


@dataclass
class IngestResult:
    rows: int
    stored: int
    rejected: int
    store: Path | str  # the URL when written to an object store
    rejects: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.rows} rows read, {self.stored} stored, {self.rejected} rejected -> {self.store}"


_Group = Group  # the planner's unit: one landmark file and the rows that point at it
# Which planner decides the rejects and groups: "duckdb" (the default), "rows" (the reference row loop
# of sltdata.manifest) or "compare" (both, and a RuntimeError when they differ; the tests use it).
PLANNER_ENV = "SLTDATA_PLANNER"


def _load_map(root: Path, recipe: Recipe, role: str, strict: bool) -> tuple[dict[str, int] | None, dict | None]:
    """The label (or character) map the recipe names, validated, and where the store's map comes from.

    A map the recipe names but the root lacks is not an error by default (a dataset shared without
    its map still ingests, with labels derived from the data), but it is never silent: a warning, a
    ``store.json`` entry, and with ``strict`` a refusal, since derived indices differ from the
    publisher's and a model trained on them disagrees with every other model of that dataset.
    """
    name = recipe.label_map if role == "label" else recipe.character_map
    what = "label map" if role == "label" else "character map"
    if not name:
        return None, ({"source": "derived", "reason": f"the recipe names no {what}"}
                      if role in recipe.columns else None)
    p = resolve_inside(root, name)
    if p is None:
        raise SourceError(name, f"the recipe's {what} escapes the dataset root")
    if not p.is_file():
        reason = f"{name} not found in the dataset root"
        if strict:
            raise SourceError(p, f"{what} named by recipe {recipe.name} not found (--strict refuses a {what} "
                                 "derived from the data)")
        log.warning("%s: %s; the store's %s is derived from the data (pass --strict to refuse)",
                    root / name, f"{what} named by recipe {recipe.name} not found", what)
        return None, {"source": "derived", "reason": reason}
    return read_index_map(p), {"source": "file", "file": name}


def read_index_map(path: Path) -> dict[str, int]:
    """A publisher's JSON object of name -> class index, checked: a negative or repeated index, or
    one that is not an integer, is one error here instead of an IndexError (or a silently merged
    class) deep in training."""
    def no_repeats(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise SourceError(path, f"{k!r} appears twice")
            seen.add(k)
        return dict(pairs)

    try:
        m = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_repeats)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(path, f"not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise SourceError(path, "expected a JSON object of name -> integer index")
    first: dict[int, str] = {}
    for k, v in m.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SourceError(path, f"index of {k!r} is {json.dumps(v)}, expected a non-negative integer")
        if v in first:
            raise SourceError(path, f"index {v} is given to both {first[v]!r} and {k!r}")
        first[v] = k
    return {str(k): int(v) for k, v in m.items()}


def _check_sequence(seq: Sequence, row: ManifestRow, file: str, layout: Layout) -> Reject | None:
    lm = seq.landmarks
    if lm.ndim != 3 or lm.shape[2] != 3:
        return row.reject(f"landmarks have shape {lm.shape}, expected (frames, points, 3)", file)
    if lm.shape[0] == 0:
        return row.reject("zero frames", file)
    expected = layout.num_points
    if lm.shape[1] != expected:
        return row.reject(f"{lm.shape[1]} points a frame, layout {seq.layout} has {expected}", file)
    if np.isnan(lm).all():
        return row.reject("every landmark value is NaN (nothing detected)", file)
    if (problem := coordinate_problem(lm)) is not None:  # any source, registered ones included
        return row.reject(problem, file)
    return None


def _label_rejects(rows: list[ManifestRow], recipe: Recipe, labels: dict | None,
                   chars: dict | None) -> tuple[list[ManifestRow], list[Reject]]:
    ok, rejects = [], []
    for r in rows:
        if labels is not None and r.label is not None and r.label not in labels:
            rejects.append(r.reject(f"{recipe.columns['label']} {r.label!r} is not in {recipe.label_map}"))
        elif chars is not None and r.text is not None and (bad := sorted(set(r.text) - set(chars))):
            rejects.append(r.reject(f"{recipe.columns['text']} has character(s) {''.join(bad)!r} "
                                    f"not in {recipe.character_map}"))
        else:
            ok.append(r)
    return ok, rejects


def _layout_definition(name: str, infos: list[dict]) -> Layout:
    """A layout as the parts' sidecars recorded it (the source that read them), else the built-in."""
    defs = {json.dumps(d, sort_keys=True) for i in infos for d in i.get("layout_definitions", ()) if d["name"] == name}
    if len(defs) > 1:
        raise StoreError(f"parts of this ingest define layout {name!r} differently")
    return Layout.from_dict(json.loads(defs.pop())) if defs else get_layout(name)


def plan_groups(root: Path, source: Source, rows: list[ManifestRow]) -> tuple[list[_Group], list[Reject]]:
    """Group rows by landmark file (in order of first appearance); reject escapes and missing files."""
    groups: dict[str, list[ManifestRow]] = {}
    rejects = []
    for r in rows:
        rel = source.landmark_file(r)
        if not rel:
            rejects.append(r.reject("empty landmark path"))
            continue
        key = file_key(root, r, rel)
        if isinstance(key, Reject):
            rejects.append(key)
            continue
        groups.setdefault(key, []).append(r)
    out = []
    for rel, rs in groups.items():
        if (root / rel).is_file():
            out.append(_Group(rel, tuple(rs)))
        else:
            rejects += [r.reject(f"{rel} not found", rel) for r in rs]
    return out, rejects


def plan_rows(root: Path, recipe: Recipe, source: Source, manifest: str | None, labels: dict | None,
              chars: dict | None, part_size: int = PART_SIZE) -> Plan:
    """The reference planner: the manifest read and checked row by row, held in memory."""
    rows, rejects = read_manifest(root, recipe, manifest)
    n_rows = len(rows) + len(rejects)
    rows, bad = check_rows(rows, recipe)
    rejects += bad
    rows, bad = _label_rejects(rows, recipe, labels, chars)
    rejects += bad
    groups, bad = plan_groups(root, source, rows)
    return MemoryPlan(n_rows, groups, rejects + bad, part_size)


def _plan(root: Path, recipe: Recipe, source: Source, manifest: str | None, labels: dict | None,
          chars: dict | None, part_size: int) -> Plan:
    planner = os.environ.get(PLANNER_ENV, "duckdb")
    if planner == "rows":
        return plan_rows(root, recipe, source, manifest, labels, chars, part_size)
    plan = plan_ingest(root, recipe, source, manifest, labels, chars, part_size)
    if planner == "compare":
        reference = plan_rows(root, recipe, source, manifest, labels, chars, part_size)
        if _plan_bytes(reference) != _plan_bytes(plan):
            plan.close()
            raise RuntimeError(f"the DuckDB planner and the row loop disagree on {root}")
    return plan


def _plan_bytes(plan: Plan) -> bytes:
    """A plan as bytes: rows in, the parts in order, and the rejects as rejects.jsonl orders them."""
    lines = [str(plan.rows)] + [json.dumps([[g.file, [[r.manifest, r.row, r.key, r.path, r.label, r.text,
                                                       r.participant] for r in g.rows]] for g in part])
                                for part in plan.parts()]
    lines += [r.to_json() for r in sorted(plan.rejects, key=lambda r: (r.manifest or "", r.row or 0))]
    return "\n".join(lines).encode()


def _fingerprint(recipe: Recipe, source: Source, parts: Iterable[list[_Group]], quality: bool = True) -> str:
    what = [recipe.name, recipe.source, recipe.columns, source.max_abs_coordinate]  # all that decides the bytes
    if recipe.layout_map:
        what.append(recipe.layout_map)
    if not quality:  # (appended only when off, so stores ingested before quality scores keep their fingerprint)
        what.append("no-quality")
    h = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    for part in parts:
        for g in part:
            h.update(g.file.encode())
            for r in g.rows:
                h.update(f"\0{r.manifest}\0{r.row}\0{r.key}".encode())
        h.update(b"\1")
    return h.hexdigest()


def _quality(seq: Sequence, layout: Layout) -> dict:
    """The sequence's quality scores; units and frame size when the sequence carries them."""
    return sequence_quality(seq.landmarks, layout, seq.fps, units=getattr(seq, "units", None),
                            width=getattr(seq, "width", None), height=getattr(seq, "height", None))


class _ReadFailedPartway(Exception):
    """A landmark file that failed after some of its rows went to the part's writer."""

    def __init__(self, file: str, reason: str):
        super().__init__(file, reason)
        self.file, self.reason = file, reason


def _read_group(source: Source, root: Path, g: _Group, refused: dict[str, str]) -> Iterator[Sequence | Reject]:
    """One file's results, a row at a time as the source yields them (a part is never whole in memory).

    A file the source cannot read at all gives every row that points at it the reason; one that fails
    after it gave results raises ``_ReadFailedPartway``, and the part is written again with that file
    in ``refused`` (file -> reason), so the stored bytes are those of a reader that failed up front."""
    if g.file in refused:
        yield from (r.reject(refused[g.file], file=source.landmark_file(r)) for r in g.rows)
        return
    n = 0
    try:
        for res in source.read(root / g.file, list(g.rows)):  # (a remote root's: fetched by _run_part)
            n += 1
            if n > len(g.rows):
                raise RuntimeError(f"source {source.name} returned more than {len(g.rows)} results "
                                   f"for {len(g.rows)} rows")
            yield res
    except SourceError as e:
        if n:
            raise _ReadFailedPartway(g.file, e.reason) from None
        yield from (r.reject(e.reason, file=source.landmark_file(r)) for r in g.rows)
        return
    if n != len(g.rows):
        raise RuntimeError(f"source {source.name} returned {n} results for {len(g.rows)} rows")


def _run_part(source: Source, root: Path, out: Path, index: int, part: list[_Group], quality: bool = True) -> dict:
    """Read one part's files and write it; returns its sidecar (counts and rejects)."""
    sidecar = out / f"part-{index:06d}.json"
    parquet = out / part_name(index)
    if parquet.is_file() and sidecar.is_file():
        return json.loads(sidecar.read_text(encoding="utf-8"))
    fs.local_inputs(root / g.file for g in part)  # a remote root's files, fetched in one batch
    layout_map = source.recipe.layout_map or {}
    refused: dict[str, str] = {}  # files that failed part-way: the part is redone with their rows rejected
    info: dict = {}

    def stored():
        """The part's sequences as they are read and checked, for ``write_part`` to stream into row
        groups; once exhausted it writes the sidecar (before ``write_part`` renames the parquet)."""
        n, frames, layouts, rejects = 0, 0, set(), []
        for g in part:
            for res, r in zip(_read_group(source, root, g, refused), g.rows):  # reader first: its end checks
                if isinstance(res, Sequence) and res.layout in layout_map:
                    res = replace(res, landmarks=map_layout(res.landmarks, source.layout(res.layout),
                                                            layout_map[res.layout]), layout=layout_map[res.layout])
                if isinstance(res, Reject):
                    rejects.append(res)
                elif (bad := _check_sequence(res, r, g.file, source.layout(res.layout))) is not None:
                    rejects.append(bad)
                else:  # provenance: the file it was read from, as the plan names it (relative to the root)
                    n, frames = n + 1, frames + res.frames
                    layouts.add(res.layout)
                    yield res if res.source_file else replace(res, source_file=g.file)
        info.update({"file": parquet.name, "sequences": n, "frames": int(frames), "layouts": sorted(layouts),
                     "layout_definitions": [source.layout(name).to_dict() for name in sorted(layouts)],
                     "rejects": [json.loads(r.to_json()) for r in rejects]})
        write_json_atomic(sidecar, info)  # sidecar first: a part is finished once its parquet exists

    scores = (lambda seq: _quality(seq, source.layout(seq.layout))) if quality else None
    while True:
        try:
            write_part(parquet, stored(), scores)
            return info
        except _ReadFailedPartway as e:
            log.warning("%s: %s; writing part %d again with its rows rejected", e.file, e.reason, index)
            refused[e.file] = e.reason


def _start(out: Path, fingerprint: str, n_parts: int, overwrite: bool) -> None:
    """Make ``out`` ready for this ingest (locked by the caller): emptied with ``overwrite`` when it is
    a store; else empty, or holding an unfinished run of the same ingest (which then resumes)."""
    if overwrite:
        outputs.replace(out, STORE_WHAT, STORE_MARKERS)
    plan_path = out / PLAN_FILE
    if plan_path.is_file():
        if json.loads(plan_path.read_text(encoding="utf-8")).get("fingerprint") != fingerprint:
            raise StoreError(f"{out}: holds a different ingest; choose another --out or pass --overwrite")
    elif outputs.entries(out):
        outputs.refuse_not_empty(out, STORE_WHAT, STORE_MARKERS)
    write_json_atomic(plan_path, {"fingerprint": fingerprint, "parts": n_parts})


def ingest(source_or_recipe: str, root: str | Path, out: str | Path, *, manifest: str | None = None,
           workers: int = WORKERS, part_size: int = PART_SIZE, overwrite: bool = False,
           progress: Callable[[int, int], None] | None = None, strict: bool = False,
           layout_map: dict[str, str] | None = None, quality: bool = True,
           engine: Engine | None = None) -> IngestResult:
    """Ingest ``root`` with a recipe (or a source's default recipe) into the store at ``out``.

    ``quality=False`` leaves the ``quality_*`` columns null (for measuring what the scores cost).
    ``progress(rows_done, rows_total)`` is called as manifest rows are settled (stored or rejected).
    ``strict`` refuses to derive a label or character map the recipe names but the root lacks.
    ``root`` and ``out`` may be fsspec URLs (``sltdata.fs``: the root is downloaded, the store written
    through a staging directory part by part). ``engine`` runs the parts (``sltdata.engine``; default:
    ``workers`` threads); the bytes are the same whichever runs them.
    """
    if fs.is_remote(root) or fs.is_remote(out):
        recipe = load_recipe(source_or_recipe)
        driver_reads = {*((manifest,) if manifest else recipe.manifest), recipe.label_map, recipe.character_map}
        with fs.input_dir(root, lazy=lambda rel: rel not in driver_reads) as local_root, \
                fs.output_dir(out, [root]) as local_out:
            result = ingest(source_or_recipe, local_root, local_out, manifest=manifest, workers=workers,
                            part_size=part_size, overwrite=overwrite, progress=progress, strict=strict,
                            layout_map=layout_map, quality=quality, engine=engine)
        return replace(result, store=fs.display(out))
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise SourceError(root, "dataset root is not a directory")
    outputs.check_apart(out, [root])
    recipe = load_recipe(source_or_recipe)
    if layout_map:  # --layout-map: added to (and over) the recipe's own
        recipe = replace(recipe, layout_map={**(recipe.layout_map or {}), **layout_map})
        recipe.validate()
    source = get_source(recipe.source)(root, recipe)
    labels, label_origin = _load_map(root, recipe, "label", strict)
    chars, char_origin = _load_map(root, recipe, "text", strict)

    # the rows to read stream out of the plan (never all in memory): for the fingerprint, then to the workers
    with _plan(root, recipe, source, manifest, labels, chars, part_size) as plan:
        n_rows, rejects = plan.rows, plan.rejects
        done = len(rejects)
        if progress:
            progress(done, n_rows)
        fingerprint = _fingerprint(recipe, source, plan.parts(), quality)
        with outputs.writing(out, "sltdata ingest"):  # locked; a full or read-only disk is one line
            _start(out, fingerprint, len(plan.sizes), overwrite)
            meta_path = out / META_FILE
            if meta_path.exists():
                meta_path.unlink()  # a re-run is not complete until it says so again
                fs.removed(meta_path)

            infos: list[dict] = []
            engine = engine or get_engine("local", workers=workers)
            units = engine.map(_run_part, ((source, root, out, i, part, quality)
                                           for i, part in enumerate(plan.parts())))
            for size, info in zip(plan.sizes, units):
                infos.append(info)
                done += size
                if progress:
                    progress(done, n_rows)

            part_rejects = [Reject(**d) for info in infos for d in info["rejects"]]
            all_rejects = sorted(rejects + part_rejects, key=lambda r: (r.manifest or "", r.row or 0))
            stored = sum(i["sequences"] for i in infos)
            if stored + len(all_rejects) != n_rows:
                raise RuntimeError(f"ingest lost rows: {n_rows} in, {stored} stored, {len(all_rejects)} rejected")

            layout_names = sorted({name for i in infos for name in i["layouts"]})
            tmp = out / (REJECTS_FILE + ".tmp")
            tmp.write_text("".join(r.to_json() + "\n" for r in all_rejects), encoding="utf-8")
            os.replace(tmp, out / REJECTS_FILE)
            fs.committed(out / REJECTS_FILE)
            stored_labels = labels
            if stored_labels is None and "label" in recipe.columns:
                stored_labels = {l: i for i, l in enumerate(sorted(plan.labels()))}
            meta = {
                "format": STORE_FORMAT,
                "version": STORE_VERSION,
                "complete": True,
                "recipe": {"name": recipe.name, "source": recipe.source, "columns": recipe.columns,
                           "description": recipe.description,
                           **({"layout_map": recipe.layout_map} if recipe.layout_map else {})},
                "layouts": [_layout_definition(n, infos).to_dict() for n in layout_names],
                "labels": stored_labels,
                "characters": chars,
                **({"label_map": label_origin} if label_origin else {}),
                **({"character_map": char_origin} if char_origin else {}),
                "counts": {"rows": n_rows, "stored": stored, "rejected": len(all_rejects),
                           "frames": int(sum(i["frames"] for i in infos))},
                "parts": [{"file": i["file"], "sequences": i["sequences"], "frames": i["frames"]} for i in infos],
            }
            write_json_atomic(meta_path, meta)
            return IngestResult(n_rows, stored, len(all_rejects), out, all_rejects)
