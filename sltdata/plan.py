"""Planning an ingest in DuckDB: the manifest(s) scanned as tables, the checks as set operations.

Planning is everything ingest decides before it opens a landmark file: which rows are rejected
(empty keys, repeated keys, labels or characters outside the publisher's map, paths escaping the
root, missing files) and how the rest group by file and pack into parts. Row by row in Python this
costs a ``resolve()`` (several system calls) and a handful of objects per row: a minute and ~0.9 GB
for a million-row manifest. Here the manifest is one DuckDB scan, the checks are an aggregate and
joins, the paths are joined against one listing of the dataset root, and the rows to read stay in
a DuckDB database in a temporary directory (``memory_limit``: past it, tables spill to disk). Parts
are packed as their rows stream out of it a batch at a time, so what Python holds is one batch and
the rejects, however long the manifest. Landmark reading stays on pyarrow (the sources).

The rejects are the same as the row loop's (``sltdata.manifest``; kept as the reference, chosen
with ``SLTDATA_PLANNER=rows``): same reasons, same row numbers. Where DuckDB's CSV reader would not
see what the csv module sees, the file is read by the reference loop instead, so its rejects are
the reference's by construction: a file that is not strict UTF-8, holds a blank line, a lone
``\\r`` or a NUL byte, a record DuckDB refuses (wrong field count, a stray quote), a field with a
line break (legitimate multi-line fields and runaway quotes alike: the reference tells them
apart), or a field longer than csv's limit. A symlink anywhere under the root, or a path that is
not already normal (``..``, ``.``, ``//``, absolute), is resolved by ``resolve_inside`` as before.
"""

from __future__ import annotations

import codecs
import csv
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sltdata.errors import SourceError
from sltdata.manifest import ManifestRow, _read_one, landmark_key
from sltdata.recipes import ROLES, Recipe
from sltdata.store import Reject

# Python's str.strip() removes every character for which isspace() is true; trim() must do the same.
_WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
_WS_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]"  # the same, as an RE2 class
_CHUNK = 1 << 22  # bytes the pre-pass reads at a time: memory stays flat however long the manifest
# A path the listing join cannot take as written: anything resolve() would change, or a NUL byte.
_NOT_NORMAL = r"(^|/)\.\.?(/|$)|//|^/|/$|\x00"


PART_SIZE = 256  # rows a part holds at least: the unit of resumption
_BATCH = 65_536  # rows moved between DuckDB and Python at a time
_ROW_BITS = 40  # a row's place in manifest order: (manifest index << _ROW_BITS) + row
# DuckDB's working memory while planning: its tables spill to a temporary directory past it, so a
# million-row manifest plans in the memory of a small one.
_MEMORY_LIMIT = "128MB"


@dataclass(frozen=True)
class Group:
    file: str  # relative landmark file
    rows: tuple[ManifestRow, ...]


class Plan:
    """What an ingest reads: rows in, the rejects planning settled, and the parts (groups of rows by
    landmark file, in order) with the rows of each. ``parts()`` streams them: a plan of a million rows
    is never a million Python objects at once."""

    rows: int  # manifest rows read (rows in)
    rejects: list[Reject]  # rows settled by planning
    sizes: list[int]  # rows of each part

    def parts(self) -> Iterator[list[Group]]:
        raise NotImplementedError

    def labels(self) -> set[str]:
        """The labels of the rows to read (the stored label map when the publisher has none)."""
        return {r.label for part in self.parts() for g in part for r in g.rows if r.label}

    def groups(self) -> Iterator[Group]:
        """The groups in order, pieces of a cut group joined again (a file is one group)."""
        last = None
        for part in self.parts():
            for g in part:
                if last is not None and last.file == g.file:
                    last = Group(g.file, last.rows + g.rows)
                    continue
                if last is not None:
                    yield last
                last = g
        if last is not None:
            yield last

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemoryPlan(Plan):
    """A plan whose groups are held in memory (the reference row loop's)."""

    def __init__(self, rows: int, groups: list[Group], rejects: list[Reject], part_size: int = PART_SIZE):
        self.rows, self.rejects, self._parts = rows, rejects, pack_parts(groups, part_size)
        self.sizes = [sum(len(g.rows) for g in part) for part in self._parts]

    def parts(self):
        return iter(self._parts)


class DuckPlan(Plan):
    """A plan kept in DuckDB (table ``planned``: rows by group, in order), its parts packed as the rows
    stream out a batch at a time."""

    def __init__(self, con, tmp: str, rows: int, rejects: list[Reject], group_sizes: list[int], part_size: int):
        self._con, self._tmp = con, tmp
        self.rows, self.rejects = rows, rejects
        self._first, self._step, self.sizes = pack(group_sizes, part_size)

    def parts(self):
        first, step = self._first.tolist(), self._step.tolist()
        g, i, index, part, file, rows = -1, 0, 0, [], None, []
        for batch in _batches(self._con, f"SELECT file, manifest, row, {', '.join(ROLES)} FROM planned"):
            for f, *fields in zip(*(c.to_pylist() for c in batch.columns)):
                if f != file:  # the next group
                    g, i = g + 1, 0
                p = first[g] + (i // step[g] if step[g] else 0)
                if f != file or p != index:  # the group, or this piece of it, is complete
                    if rows:
                        part.append(Group(file, tuple(rows)))
                    file, rows = f, []
                if p != index:
                    yield part
                    index, part = p, []
                rows.append(ManifestRow(*fields))
                i += 1
        if rows:
            part.append(Group(file, tuple(rows)))
            yield part

    def labels(self):
        return {label for (label,) in self._con.execute(
            "SELECT DISTINCT label FROM planned WHERE label IS NOT NULL AND label <> ''").fetchall()}

    def close(self):
        if self._con is not None:
            self._con.close()
            self._con = None
            shutil.rmtree(self._tmp, ignore_errors=True)


def plan_ingest(root: Path, recipe: Recipe, source, manifest: str | None, labels: dict | None,
                chars: dict | None, part_size: int = PART_SIZE) -> Plan:
    """The plan of an ingest of ``root``: what ``read_manifest``, ``check_rows``, the label checks,
    ``plan_groups`` and ``pack_parts`` decide, with the same rejects. Close it when done (it holds a
    DuckDB database in a temporary directory)."""
    names = (manifest,) if manifest else recipe.manifest
    found = [n for n in names if (root / n).is_file()]
    if not found:
        raise SourceError(root, f"no manifest found (looked for {', '.join(names)})")
    tmp = tempfile.mkdtemp(prefix="sltdata-plan-")
    con = duckdb.connect(str(Path(tmp) / "plan.duckdb"), config={"memory_limit": _MEMORY_LIMIT,
                                                                "temp_directory": str(Path(tmp) / "spill")})
    try:
        rejects = _scan(con, root, found, recipe)
        n_rows = len(rejects) + con.execute("SELECT count(*) FROM m").fetchone()[0]
        rejects += _check(con, recipe, found, labels, chars)
        bad, sizes = _files(con, root, source)
        return DuckPlan(con, tmp, n_rows, rejects + bad, sizes, part_size)
    except BaseException:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- the manifest as a table --------------------------------------------------------------------

def _scan(con, root: Path, found: list[str], recipe: Recipe) -> list[Reject]:
    """Table ``m`` (mi, manifest, row, key, path, label, text, participant) of every readable row;
    returns the rows rejected while reading (by the reference loop, for the files it reads)."""
    cols = ", ".join(f"{role} VARCHAR" for role in ROLES)
    con.execute(f"CREATE TABLE m (mi INTEGER, manifest VARCHAR, row BIGINT, {cols})")
    rejects: list[Reject] = []
    for mi, name in enumerate(found):
        path = root / name
        select = _duckdb_select(path, recipe)
        if select is not None:
            try:
                con.execute(f"INSERT INTO m SELECT {mi}, $name, * FROM ({select})", {"name": name})
                if not _needs_reference(con, mi):
                    continue
            except duckdb.Error:
                pass  # DuckDB refused a record: the reference reads the file and says which one
            con.execute("DELETE FROM m WHERE mi = $mi", {"mi": mi})
        rows, bad = _read_one(path, name, recipe)
        rejects += bad
        if rows:
            con.register("ref", pa.table({"mi": [mi] * len(rows), "manifest": [name] * len(rows),
                                          "row": [r.row for r in rows],
                                          **{role: [getattr(r, role) for r in rows] for role in ROLES}}))
            con.execute("INSERT INTO m SELECT * FROM ref")
            con.unregister("ref")
    return rejects


def _duckdb_select(path: Path, recipe: Recipe) -> str | None:
    """The query that reads one manifest as the reference loop would, or None when the reference
    must read it (a CSV the pre-pass finds unsafe; the missing-column error is the reference's)."""
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        missing = [c for c in recipe.columns.values() if c not in names]
        if missing:
            raise SourceError(path, f"missing column(s) {', '.join(missing)} (has: {', '.join(names)})")
        values = {role: f'CAST("{c}" AS VARCHAR)' for role, c in recipe.columns.items()}
        source = f"read_parquet({_quote(path)}, file_row_number = true)"
        row = "file_row_number + 1"
    else:
        header = _safe_csv_header(path)
        if header is None:
            return None
        col = {c.strip(): i for i, c in enumerate(header)}
        if any(c not in col for c in recipe.columns.values()):
            return None  # the reference raises the one-line error
        names = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header)))
        values = {role: f"c{col[c]}" for role, c in recipe.columns.items()}
        source = (f"read_csv({_quote(path)}, header = true, auto_detect = false, delim = ',', quote = '\"', "
                  f"escape = '\"', strict_mode = true, columns = {{{names}}})")
        row = "row_number() OVER ()"
    exprs = ["NULL" if r not in values else f"coalesce({values[r]}, '')" if r == "text"
             else _strip(f"coalesce({values[r]}, '')") for r in ROLES]
    return f"SELECT {row} AS row, {', '.join(exprs)} FROM {source}"


def _strip(value: str) -> str:
    """``value.strip()`` in SQL. trim() with Python's whitespace set costs ~0.3 s per million values;
    testing the ends with a regular expression first (few values need trimming) costs a tenth."""
    ends = _quote(f"^{_WS_CLASS}|{_WS_CLASS}$")
    return f"CASE WHEN regexp_matches({value}, {ends}) THEN trim({value}, {_quote(_WHITESPACE)}) ELSE {value} END"


def _safe_csv_header(path: Path) -> list[str] | None:
    """The header of a CSV whose bytes DuckDB reads as the csv module does, else None.

    One streaming pass: strict UTF-8 (a BOM is allowed), no NUL byte, no ``\\r`` outside ``\\r\\n``,
    no blank line (csv counts it as a record number, DuckDB skips it), a header on one line (its
    quotes balanced).
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    tail = b"\n"  # a blank first line counts as a blank line
    first_line = b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if not first_line:
                first_line = chunk.split(b"\n", 1)[0]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return None
            joined = tail + chunk
            if (b"\0" in chunk or b"\n\n" in joined or b"\n\r\n" in joined
                    or joined.count(b"\r") != joined.count(b"\r\n") + joined.endswith(b"\r")):
                return None
            tail = joined[-2:]
    if tail.endswith(b"\r"):
        return None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    text = first_line.decode("utf-8-sig").rstrip("\r")
    if not text or text.count('"') % 2:
        return None  # no header, or one running on past its line: the reference reads it (and says why)
    return next(csv.reader([text]))


def _needs_reference(con, mi: int) -> bool:
    """Whether DuckDB read a field the csv module reads differently or refuses: a line break in a
    field (the reference tells a multi-line field from a runaway quote) or a field past csv's limit."""
    limit = csv.field_size_limit()
    conds = " OR ".join(f"(strpos({r}, chr(10)) > 0 OR strpos({r}, chr(13)) > 0 OR length({r}) > {limit})"
                        for r in ROLES)
    return con.execute(f"SELECT count(*) FROM m WHERE mi = $mi AND ({conds})", {"mi": mi}).fetchone()[0] > 0


def _batches(con, query: str):
    """The rows of ``query`` as Arrow record batches of ``_BATCH`` rows, on a cursor of their own (the
    connection stays free for other statements while they stream)."""
    rel = con.cursor().sql(query)
    reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader  # the name DuckDB 2 gives it
    return reader(_BATCH)


def _quote(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# --- the row checks as set operations ---------------------------------------------------------------

def _check(con, recipe: Recipe, found: list[str], labels: dict | None, chars: dict | None) -> list[Reject]:
    """Table ``kept``: the rows of ``m`` that pass ``check_rows`` (no empty field; of repeated keys the
    first wins) and the label and character maps, with ``ord``, their place in manifest order; returns
    the rows rejected. Aggregates and joins only (no window over the whole manifest): DuckDB spills
    them to disk, so memory stays within its limit however long the manifest."""
    c = recipe.columns
    empties = [f"WHEN key = '' THEN {_quote('empty ' + c['key'])}"]
    if "label" in c:
        empties.append(f"WHEN label = '' THEN {_quote('empty ' + c['label'])}")
    if "text" in c:
        empties.append(f"WHEN regexp_matches(text, {_quote(f'^{_WS_CLASS}*$')}) THEN {_quote('empty ' + c['text'])}")
    con.execute(f"CREATE TABLE e AS SELECT (mi::BIGINT << {_ROW_BITS}) + row AS ord, *, "
                f"CASE {' '.join(empties)} END AS empty FROM m")
    con.execute("DROP TABLE m")
    con.execute("CREATE TABLE firsts AS SELECT key, min(ord) AS first FROM e WHERE empty IS NULL GROUP BY key")
    rejects = [Reject(m, row, key, None, empty) for m, row, key, empty in con.execute(
        "SELECT manifest, row, key, empty FROM e WHERE empty IS NOT NULL ORDER BY ord").fetchall()]
    mask = (1 << _ROW_BITS) - 1
    rejects += [Reject(m, row, key, None, f"duplicate {c['key']} {key} (first at {found[first >> _ROW_BITS]} "
                                          f"row {first & mask})")
                for m, row, key, first in con.execute(
                    "SELECT manifest, row, key, first FROM e JOIN firsts USING (key) WHERE empty IS NULL "
                    "AND ord <> first ORDER BY ord").fetchall()]
    con.execute("CREATE TABLE kept AS SELECT e.* EXCLUDE (empty) FROM e JOIN firsts "
                "ON e.key = firsts.key AND e.ord = firsts.first")
    con.execute("DROP TABLE e")
    con.execute("DROP TABLE firsts")
    if labels is not None and "label" in c:
        con.register("label_map", pa.table({"label": list(labels)}))
        bad = con.execute("SELECT manifest, row, key, label FROM kept ANTI JOIN label_map USING (label) "
                          "ORDER BY ord").fetchall()
        rejects += [Reject(m, row, key, None, f"{c['label']} {label!r} is not in {recipe.label_map}")
                    for m, row, key, label in bad]
        con.execute("DELETE FROM kept WHERE label NOT IN (SELECT label FROM label_map)")
    if chars is not None and "text" in c:
        allowed = "".join(f"\\x{{{ord(ch):x}}}" for ch in chars if len(ch) == 1)
        pattern = _quote(f"[^{allowed}]" if allowed else "(?s).")
        bad = con.execute(f"SELECT manifest, row, key, text FROM kept WHERE regexp_matches(text, {pattern}) "
                          "ORDER BY ord").fetchall()
        known = set(chars)
        rejects += [Reject(m, row, key, None, f"{c['text']} has character(s) {''.join(sorted(set(text) - known))!r} "
                                              f"not in {recipe.character_map}") for m, row, key, text in bad]
        con.execute(f"DELETE FROM kept WHERE regexp_matches(text, {pattern})")
    return rejects


# --- the paths, joined against the dataset's file listing ---------------------------------------------

def _list_files(con, real: Path) -> bool:
    """Table ``listing`` (file) of every regular file under ``real`` (relative, '/'-separated), filled
    a batch at a time; returns whether any symlink was met (then listing and resolve() may disagree,
    and every path is resolved instead)."""
    con.execute("CREATE TABLE listing (file VARCHAR)")
    symlink, stack, batch = False, [""], []

    def flush():
        con.register("batch", pa.table({"file": pa.array(batch, pa.string())}))
        con.execute("INSERT INTO listing SELECT file FROM batch")
        con.unregister("batch")
        batch.clear()
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(real / rel if rel else real))
        except OSError:
            continue
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if e.is_symlink():
                symlink = True
            elif e.is_dir(follow_symlinks=False):
                stack.append(name)
            elif e.is_file(follow_symlinks=False):
                batch.append(name)
                if len(batch) >= _BATCH:
                    flush()
    flush()
    return symlink


def _wanted(con, source) -> None:
    """Table ``w``: the kept rows with the landmark file each names (``want``), by the source's SQL
    expression when it has one, else by its ``landmark_file`` a batch of rows at a time."""
    if source.landmark_file_sql:
        con.execute(f"CREATE VIEW w AS SELECT *, {source.landmark_file_sql} AS want FROM kept")
        return
    con.execute("CREATE TABLE wants (ord BIGINT, want VARCHAR)")
    reader = _batches(con, f"SELECT ord, manifest, row, {', '.join(ROLES)} FROM kept")
    for batch in reader:
        cols = [c.to_pylist() for c in batch.columns]
        con.register("batch", pa.table({"ord": cols[0], "want": pa.array(
            [source.landmark_file(ManifestRow(*v)) for v in zip(*cols[1:])], pa.string())}))
        con.execute("INSERT INTO wants SELECT * FROM batch")
        con.unregister("batch")
    con.execute("CREATE VIEW w AS SELECT kept.*, want FROM kept JOIN wants USING (ord)")


def _files(con, root: Path, source) -> tuple[list[Reject], list[int]]:
    """``plan_groups`` as tables: table ``planned`` (file, manifest, row, the roles) holds the rows to
    read, by group in order of first appearance; returns the rejects (empty paths, escapes, symlink
    loops, missing files) and the rows of each group.

    Normal paths are joined against the listing; the rest (and all paths under a root holding a
    symlink) are resolved one distinct path at a time, as the reference does row by row."""
    real = root.resolve()
    symlink = _list_files(con, real)
    _wanted(con, source)
    normal = "TRUE" if not symlink else "FALSE"
    con.execute(f"""
        CREATE VIEW s AS SELECT *, CASE WHEN want = '' THEN 0
                    WHEN NOT {normal} OR regexp_matches(want, {_quote(_NOT_NORMAL)}) THEN 1
                    WHEN want IN (SELECT file FROM listing) THEN 2 ELSE 3 END AS status FROM w""")
    resolved: dict[str, list] = {"want": [], "key": [], "reason": [], "found": []}
    for (want,) in con.execute("SELECT DISTINCT want FROM s WHERE status = 1").fetchall():
        key, reason = landmark_key(root, want)
        for col, v in zip(resolved, (want, key, reason, key is not None and (root / key).is_file())):
            resolved[col].append(v)
    con.register("resolved", pa.table({"want": pa.array(resolved["want"], pa.string()),
                                       "key": pa.array(resolved["key"], pa.string()),
                                       "reason": pa.array(resolved["reason"], pa.string()),
                                       "found": pa.array(resolved["found"], pa.bool_())}))
    con.execute("""
        CREATE TABLE f AS SELECT s.* EXCLUDE (status, want),
            CASE WHEN status = 1 THEN r.key ELSE want END AS file,
            CASE WHEN status = 0 THEN NULL ELSE want END AS named,
            CASE WHEN status = 0 THEN 'empty landmark path' WHEN status = 1 THEN r.reason END AS bad,
            CASE WHEN status = 1 THEN r.found ELSE status = 2 END AS found
        FROM s LEFT JOIN resolved r USING (want)""")
    con.unregister("resolved")
    con.execute("DROP VIEW s")
    con.execute("DROP VIEW w")
    for table in ("kept", "wants", "listing"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    rejects = [Reject(m, row, key, named, bad) for m, row, key, named, bad in con.execute(
        "SELECT manifest, row, key, named, bad FROM f WHERE bad IS NOT NULL ORDER BY ord").fetchall()]
    rejects += [Reject(m, row, key, file, f"{file} not found") for m, row, key, file in con.execute(
        "SELECT manifest, row, key, file FROM f WHERE bad IS NULL AND NOT found ORDER BY ord").fetchall()]
    # groups in order of first appearance; their rows in that order, to be packed as they stream
    con.execute("CREATE TABLE g AS SELECT file, min(ord) AS first, count(*) AS n FROM f "
                "WHERE bad IS NULL AND found GROUP BY file")
    sizes = con.execute("SELECT n FROM g ORDER BY first").fetchnumpy()["n"]
    con.execute(f"""
        CREATE TABLE planned AS SELECT f.file, f.manifest, f.row, {', '.join(f'f.{r}' for r in ROLES)}
        FROM f JOIN g USING (file) WHERE f.bad IS NULL AND f.found ORDER BY g.first, f.ord""")
    for table in ("f", "g"):
        con.execute(f"DROP TABLE {table}")
    return rejects, sizes.tolist()


# --- parts -------------------------------------------------------------------------------------------

def pack(sizes: list[int], part_size: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Consecutive groups (of ``sizes`` rows each, in order) packed until a part holds at least
    ``part_size`` rows. A group larger than a part (a Fingerspelling file holds ~1,000 sequences) is
    cut into pieces of half a part, each a part of its own and read on its own: a worker's memory is
    bounded by the part, not by the file.

    Returns each group's first part and the size of its pieces (0: not cut), and each part's rows:
    row ``i`` of group ``g`` goes to part ``first[g] + (i // step[g] if step[g] else 0)``."""
    first, step, parts, n = [], [], [], 0
    half = max(1, part_size // 2)
    for size in sizes:
        if size > part_size:
            if n:
                parts.append(n)
                n = 0
            first.append(len(parts))
            step.append(half)
            parts += [min(half, size - i) for i in range(0, size, half)]
            continue
        first.append(len(parts))
        step.append(0)
        n += size
        if n >= part_size:
            parts.append(n)
            n = 0
    if n:
        parts.append(n)
    return np.array(first, np.int64), np.array(step, np.int64), parts


def pack_parts(groups: list[Group], part_size: int) -> list[list[Group]]:
    """``pack`` applied to groups held in memory."""
    first, step, sizes = pack([len(g.rows) for g in groups], part_size)
    parts: list[list[Group]] = [[] for _ in sizes]
    for g, f, s in zip(groups, first.tolist(), step.tolist()):
        if s:
            for i in range(0, len(g.rows), s):
                parts[f + i // s].append(Group(g.file, g.rows[i:i + s]))
        else:
            parts[f].append(g)
    return parts
