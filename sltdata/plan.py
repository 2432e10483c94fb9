"""Planning an ingest in DuckDB: the manifest(s) scanned as tables, the checks as set operations.

Planning is everything ingest decides before it opens a landmark file: which rows are rejected
(empty keys, repeated keys, labels or characters outside the publisher's map, paths escaping the
root, missing files) and how the rest group by file. Row by row in Python this costs a ``resolve()``
(several system calls) and a handful of objects per row: minutes for a million-row manifest. Here
the manifest is one DuckDB scan, the checks are a window and two anti-joins, and the paths are
joined against one listing of the dataset root. Landmark reading stays on pyarrow (the sources).

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
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sltdata.errors import SourceError
from sltdata.manifest import ManifestRow, _read_one, file_key
from sltdata.recipes import ROLES, Recipe
from sltdata.store import Reject

# Python's str.strip() removes every character for which isspace() is true; trim() must do the same.
_WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
_CHUNK = 1 << 24  # bytes the pre-pass reads at a time: memory stays flat however long the manifest
# A path the listing join cannot take as written: anything resolve() would change, or a NUL byte.
_NOT_NORMAL = r"(^|/)\.\.?(/|$)|//|^/|/$|\x00"


@dataclass(frozen=True)
class Group:
    file: str  # relative landmark file
    rows: tuple[ManifestRow, ...]


@dataclass
class Plan:
    rows: int  # manifest rows read (rows in)
    groups: list[Group]  # rows to read, by landmark file in order of first appearance
    rejects: list[Reject]  # rows settled by planning


def plan_ingest(root: Path, recipe: Recipe, source, manifest: str | None, labels: dict | None,
                chars: dict | None) -> Plan:
    """The plan of an ingest of ``root``: what ``read_manifest``, ``check_rows``, the label checks and
    ``plan_groups`` decide, with the same rejects."""
    names = (manifest,) if manifest else recipe.manifest
    found = [n for n in names if (root / n).is_file()]
    if not found:
        raise SourceError(root, f"no manifest found (looked for {', '.join(names)})")
    con = duckdb.connect()
    try:
        rejects = _scan(con, root, found, recipe)
        n_rows = len(rejects) + con.execute("SELECT count(*) FROM m").fetchone()[0]
        rejects += _check(con, recipe, labels, chars)
        rows = _valid_rows(con, recipe)
        groups, bad = _group(con, root, source, rows)
        return Plan(n_rows, groups, rejects + bad)
    finally:
        con.close()


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
    ws = _quote(_WHITESPACE)
    exprs = ["NULL" if r not in values else f"coalesce({values[r]}, '')" if r == "text"
             else f"trim(coalesce({values[r]}, ''), {ws})" for r in ROLES]
    return f"SELECT {row} AS row, {', '.join(exprs)} FROM {source}"


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


def _quote(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# --- the row checks as set operations ---------------------------------------------------------------

def _check(con, recipe: Recipe, labels: dict | None, chars: dict | None) -> list[Reject]:
    """Mark every row of ``m`` with the reason it is rejected (column ``reason``, NULL when kept):
    ``check_rows`` (empty fields, repeated keys: the first wins) then the label and character maps."""
    c = recipe.columns
    empties = [f"WHEN key = '' THEN {_quote('empty ' + c['key'])}"]
    if "label" in c:
        empties.append(f"WHEN label = '' THEN {_quote('empty ' + c['label'])}")
    if "text" in c:
        empties.append(f"WHEN trim(text, {_quote(_WHITESPACE)}) = '' THEN {_quote('empty ' + c['text'])}")
    con.execute(f"""
        CREATE TABLE checked AS
        WITH e AS (SELECT *, CASE {' '.join(empties)} END AS empty FROM m),
        d AS (SELECT mi, row, first_value(mi) OVER w AS first_mi, first_value(manifest) OVER w AS first_manifest,
                     first_value(row) OVER w AS first_row
              FROM e WHERE empty IS NULL WINDOW w AS (PARTITION BY key ORDER BY mi, row))
        SELECT e.*, d.first_mi, d.first_manifest, d.first_row FROM e LEFT JOIN d USING (mi, row)""")
    rejects = [Reject(m, row, key, None, empty) for m, row, key, empty in con.execute(
        "SELECT manifest, row, key, empty FROM checked WHERE empty IS NOT NULL ORDER BY mi, row").fetchall()]
    rejects += [Reject(m, row, key, None, f"duplicate {c['key']} {key} (first at {fm} row {fr})")
                for m, row, key, fm, fr in con.execute(
                    "SELECT manifest, row, key, first_manifest, first_row FROM checked WHERE empty IS NULL AND "
                    "NOT (mi = first_mi AND row = first_row) ORDER BY mi, row").fetchall()]
    con.execute("CREATE TABLE kept AS SELECT * EXCLUDE (empty, first_mi, first_manifest, first_row) FROM checked "
                "WHERE empty IS NULL AND mi = first_mi AND row = first_row")
    if labels is not None and "label" in c:
        con.register("label_map", pa.table({"label": list(labels)}))
        bad = con.execute("SELECT mi, manifest, row, key, label FROM kept ANTI JOIN label_map USING (label) "
                          "ORDER BY mi, row").fetchall()
        rejects += [Reject(m, row, key, None, f"{c['label']} {label!r} is not in {recipe.label_map}")
                    for _, m, row, key, label in bad]
        con.execute("DELETE FROM kept WHERE label NOT IN (SELECT label FROM label_map)")
    if chars is not None and "text" in c:
        allowed = "".join(f"\\x{{{ord(ch):x}}}" for ch in chars if len(ch) == 1)
        pattern = _quote(f"[^{allowed}]" if allowed else "(?s).")
        bad = con.execute(f"SELECT manifest, row, key, text FROM kept WHERE regexp_matches(text, {pattern}) "
                          "ORDER BY mi, row").fetchall()
        known = set(chars)
        rejects += [Reject(m, row, key, None, f"{c['text']} has character(s) {''.join(sorted(set(text) - known))!r} "
                                              f"not in {recipe.character_map}") for m, row, key, text in bad]
        con.execute(f"DELETE FROM kept WHERE regexp_matches(text, {pattern})")
    return rejects


def _valid_rows(con, recipe: Recipe) -> list[ManifestRow]:
    """The rows that passed the checks, in manifest order, as the sources take them."""
    table = con.sql(f"SELECT manifest, row, {', '.join(ROLES)} FROM kept ORDER BY mi, row").to_arrow_table()
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [ManifestRow(*v) for v in zip(*cols)]


# --- the paths, joined against the dataset's file listing ---------------------------------------------

def _listing(root: Path) -> tuple[list[str], bool]:
    """Every regular file under ``root`` (relative, '/'-separated), and whether any symlink was met
    (then listing and resolve() may disagree, and every path is resolved instead)."""
    files, symlink, stack = [], False, [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(root / rel if rel else root))
        except OSError:
            continue
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if e.is_symlink():
                symlink = True
            elif e.is_dir(follow_symlinks=False):
                stack.append(name)
            elif e.is_file(follow_symlinks=False):
                files.append(name)
    return files, symlink


def _group(con, root: Path, source, rows: list[ManifestRow]) -> tuple[list[Group], list[Reject]]:
    """``plan_groups``: rows grouped by landmark file in order of first appearance; escapes, symlink
    loops and missing files rejected. Normal paths are joined against the listing; the rest (and all
    paths under a root holding a symlink) are resolved one by one, as the reference does."""
    real = root.resolve()
    files, symlink = _listing(real)
    wanted = [source.landmark_file(r) for r in rows]
    con.register("wanted", pa.table({"i": pa.array(range(len(wanted)), pa.int64()), "file": wanted}))
    con.register("listing", pa.table({"file": pa.array(files, pa.string())}))
    normal = "TRUE" if not symlink else "FALSE"
    status = con.execute(f"""
        SELECT CASE WHEN file = '' THEN 0
                    WHEN NOT {normal} OR regexp_matches(file, {_quote(_NOT_NORMAL)}) THEN 1
                    WHEN file IN (SELECT file FROM listing) THEN 2 ELSE 3 END
        FROM wanted ORDER BY i""").fetchnumpy()
    status = next(iter(status.values()))
    con.unregister("wanted")
    con.unregister("listing")
    groups: dict[str, list[ManifestRow]] = {}
    exists: dict[str, bool] = {}
    rejects: list[Reject] = []
    for r, rel, s in zip(rows, wanted, status):
        if s == 0:
            rejects.append(r.reject("empty landmark path"))
            continue
        if s == 1:
            key = file_key(root, r, rel)
            if isinstance(key, Reject):
                rejects.append(key)
                continue
            if key not in exists:
                exists[key] = (root / key).is_file()
        else:
            key = rel
            exists.setdefault(key, s == 2)
        groups.setdefault(key, []).append(r)
    out = []
    for rel, rs in groups.items():
        if exists[rel]:
            out.append(Group(rel, tuple(rs)))
        else:
            rejects += [r.reject(f"{rel} not found", rel) for r in rs]
    return out, rejects
