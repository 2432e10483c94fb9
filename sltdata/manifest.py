"""Reading a publisher's manifest CSV into rows with roles, and the checks that need no landmarks."""

from __future__ import annotations

import csv
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
    rows, rejects = [], []
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f)
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
        n = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise SourceError(path, f"malformed CSV ({e})", row=n + 1) from None
            n += 1
            if not record:
                continue
            if len(record) != len(header):
                rejects.append(Reject(name, n, None, None,
                                      f"has {len(record)} fields, the header has {len(header)}"))
                continue
            v = {role: record[i].strip() if role != "text" else record[i] for role, i in idx.items()}
            bad = [recipe.columns[r] for r, x in v.items() if _has_undecodable(x)]
            key = v["key"]
            if bad:
                rejects.append(Reject(name, n, key.encode("utf-8", "replace").decode("utf-8"), None,
                                      f"{', '.join(bad)} is not valid UTF-8"))
                continue
            rows.append(ManifestRow(name, n, key, v.get("path"), v.get("label"), v.get("text"),
                                    v.get("participant")))
    return rows, rejects


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
    """The file a manifest names, or None when it escapes the dataset root (``../``, absolute paths)."""
    root = root.resolve()
    p = (root / relative).resolve()
    return p if p.is_relative_to(root) else None
