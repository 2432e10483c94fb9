"""Reading a publisher's manifest CSV into rows with roles, and the checks that need no landmarks."""

from __future__ import annotations

import csv
import errno
from dataclasses import dataclass
from pathlib import Path

from sltdata.errors import SourceError
from sltdata.recipes import Recipe
from sltdata.sequence import Sequence
from sltdata.store import Reject


@dataclass(frozen=True)
class ManifestRow:
    manifest: str  # manifest file name, relative to the root
    row: int  # 1-based record number, header not counted
    key: str
    path: str | None  # the manifest's path column as written, when the recipe has one
    label: str | None
    text: str | None
    participant: str | None

    def reject(self, reason: str, file: str | None = None) -> Reject:
        return Reject(manifest=self.manifest, row=self.row, key=self.key, file=file, reason=reason)

    def sequence(self, landmarks, layout: str, source: str, fps: float | None) -> Sequence:
        """This row's sequence: its key, label, text and participant with the landmarks read for it."""
        return Sequence(key=self.key, landmarks=landmarks, layout=layout, label=self.label, text=self.text,
                        participant=self.participant, source=source, fps=fps)


def _has_undecodable(value: str) -> bool:
    # open(..., errors="surrogateescape") turns each invalid UTF-8 byte into a lone surrogate.
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_manifest(root: Path, recipe: Recipe, manifest: str | None = None) -> tuple[list[ManifestRow], list[Reject]]:
    """Every row of the recipe's manifest(s), with the row-level problems as rejects.

    The whole manifest is a user mistake (one SourceError) when no manifest exists or a role's column
    is missing; a single bad row is a reject with its reason, and the rest go on.
    """
    names = (manifest,) if manifest else recipe.manifest
    found = [n for n in names if (root / n).is_file()]
    if not found:
        raise SourceError(root, f"no manifest found (looked for {', '.join(names)})")
    rows: list[ManifestRow] = []
    rejects: list[Reject] = []
    for name in found:
        r, rj = _read_one(root / name, name, recipe)
        rows += r
        rejects += rj
    return rows, rejects


def _read_one(path: Path, name: str, recipe: Recipe) -> tuple[list[ManifestRow], list[Reject]]:
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        lines = list(f)  # physical lines, split as csv sees them, to tell a swallowed row from a field
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceError(path, "empty manifest (no header row)") from None
    except csv.Error as e:
        raise SourceError(path, f"not a CSV file ({e})") from None
    col = {c.strip(): i for i, c in enumerate(header)}
    missing = [c for c in recipe.columns.values() if c not in col]
    if missing:
        raise SourceError(path, f"missing column(s) {', '.join(missing)} (has: {', '.join(header)})")
    idx = {role: col[c] for role, c in recipe.columns.items()}
    records = _records(path, lines, reader.line_num)
    runaway = _unterminated_quotes(records, lines, len(header))

    rows, rejects = [], []
    n = 0
    for pos, (record, first, span) in enumerate(records):
        n += 1
        if pos in runaway:
            opened = record if record is not None else next(csv.reader([lines[first]]), [])
            key = _printable(opened[idx["key"]].strip()) if len(opened) > idx["key"] else None
            reason = (f"unterminated quote: the row runs on over the next {span - 1} line(s), rejected with it"
                      if span > 1 else "a field longer than csv allows (an unterminated quote?)")
            rejects.append(Reject(name, n, key, None, reason))
            broken = n
            for line in lines[first + 1:first + span]:
                n += 1
                if not line.strip():
                    continue  # a blank line is no row, as elsewhere in the manifest
                swallowed = next(csv.reader([line]), [])
                key = _printable(swallowed[idx["key"]].strip()) if len(swallowed) == len(header) else None
                rejects.append(Reject(name, n, key, None, f"swallowed by the unterminated quote in row {broken}"))
            continue
        if not record:
            continue
        if len(record) != len(header):
            rejects.append(Reject(name, n, None, None, f"has {len(record)} fields, the header has {len(header)}"))
            continue
        v = {role: record[i].strip() if role != "text" else record[i] for role, i in idx.items()}
        bad = [recipe.columns[r] for r, x in v.items() if _has_undecodable(x)]
        key = v["key"]
        if bad:
            rejects.append(Reject(name, n, _printable(key), None, f"{', '.join(bad)} is not valid UTF-8"))
            continue
        rows.append(ManifestRow(name, n, key, v.get("path"), v.get("label"), v.get("text"), v.get("participant")))
    return rows, rejects


def _printable(value: str) -> str:
    return value.encode("utf-8", "replace").decode("utf-8")


def _records(path: Path, lines: list[str], start: int) -> list[tuple[list[str] | None, int, int]]:
    """Every record after the header as (fields, first physical line, lines it spans).

    A quote that runs on past csv's field size limit is a ``None`` record that ends at the next line
    holding a quote (where csv would have closed it); reading goes on after it.
    """
    records: list[tuple[list[str] | None, int, int]] = []
    pos = start
    while pos < len(lines):
        reader = csv.reader(lines[pos:])
        done = pos  # first line of the record being read
        try:
            for record in reader:
                records.append((record, done, pos + reader.line_num - done))
                done = pos + reader.line_num
            break
        except csv.Error as e:
            if "field larger than field limit" not in str(e):
                raise SourceError(path, f"malformed CSV ({e})", row=len(records) + 1) from None
            end = next((j for j in range(done + 1, len(lines)) if '"' in lines[j]), len(lines) - 1)
            records.append((None, done, end - done + 1))
            pos = end + 1
    return records


def _unterminated_quotes(records: list[tuple[list[str] | None, int, int]], lines: list[str], fields: int) -> set[int]:
    """Records (by position) that an unterminated quote ran on into the following rows.

    csv reads an opening quote with no closing one as a field that goes on, newlines and all, until
    the next quote or the end of the file: the rows in between vanish into one field. A field may
    legitimately hold a newline, so a record spanning several lines is a runaway quote only when no
    other record spans lines (the manifest does not use multi-line fields) or when a line it swallowed
    parses as a whole row of the manifest.
    """
    multi = [i for i, (_, _, span) in enumerate(records) if span > 1]
    too_long = {i for i, (record, _, _) in enumerate(records) if record is None}
    if len(multi) == 1:
        return set(multi) | too_long
    return too_long | {i for i in multi
                       if any(len(next(csv.reader([line]), [])) == fields
                              for line in lines[records[i][1] + 1:records[i][1] + records[i][2]])}


def check_rows(rows: list[ManifestRow], recipe: Recipe) -> tuple[list[ManifestRow], list[Reject]]:
    """Reject empty keys, empty labels/texts the recipe asks for, and repeated keys (the first wins)."""
    seen: dict[str, ManifestRow] = {}
    ok, rejects = [], []
    for r in rows:
        if not r.key:
            rejects.append(r.reject(f"empty {recipe.columns['key']}"))
        elif "label" in recipe.columns and not r.label:
            rejects.append(r.reject(f"empty {recipe.columns['label']}"))
        elif "text" in recipe.columns and not (r.text or "").strip():
            rejects.append(r.reject(f"empty {recipe.columns['text']}"))
        elif r.key in seen:
            first = seen[r.key]
            rejects.append(r.reject(f"duplicate {recipe.columns['key']} {r.key} (first at {first.manifest} row {first.row})"))
        else:
            seen[r.key] = r
            ok.append(r)
    return ok, rejects


def resolve_inside(root: Path, relative: str) -> Path | None:
    """The file a manifest names, or None when it escapes the dataset root (``../``, absolute paths).

    A symlink loop on the way is bad input, not a crash: ``SourceError`` naming the path.
    """
    try:
        root = root.resolve()
        p = (root / relative).resolve()
    except RuntimeError:  # Python < 3.13 says "Symlink loop from ..." this way
        raise SourceError(relative, f"{relative} runs into a symlink loop") from None
    except OSError as e:  # Python >= 3.13: ELOOP
        why = "runs into a symlink loop" if e.errno == errno.ELOOP else f"cannot be resolved ({e.strerror})"
        raise SourceError(relative, f"{relative} {why}") from None
    return p if p.is_relative_to(root) else None


def landmark_key(root: Path, relative: str) -> tuple[str | None, str | None]:
    """``(key, None)``: the landmark file ``relative`` names, as a path relative to the resolved root
    (the key rows are grouped by); or ``(None, reason)``: a symlink loop, or a path escaping the root."""
    try:
        p = resolve_inside(root, relative)
    except SourceError as e:
        return None, e.reason
    if p is None:
        return None, f"{relative} escapes the dataset root"
    return str(p.relative_to(root.resolve())), None


def file_key(root: Path, row: ManifestRow, relative: str):
    """``landmark_key`` for a row: the key, or the row's reject."""
    key, reason = landmark_key(root, relative)
    return row.reject(reason, relative) if key is None else key
