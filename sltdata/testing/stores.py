"""A sequence store written straight from Sequence records, for tests that need keys, labels or
participants no publisher format would produce (keys with dots and slashes, odd label maps)."""

from __future__ import annotations

from pathlib import Path

from sltdata.layouts import Layout, get_layout
from sltdata.sequence import Sequence
from sltdata.store import META_FILE, STORE_FORMAT, STORE_VERSION, part_name, write_json_atomic, write_part


def store_from_sequences(sequences: list[Sequence], path: str | Path, labels: dict[str, int] | None = None,
                         characters: dict[str, int] | None = None, part_size: int = 1000,
                         layouts: list[Layout] = ()) -> Path:
    """Write ``sequences`` as a finished store at ``path`` (parts of ``part_size``); returns the path.
    ``layouts``: definitions of the non-built-in layouts the sequences name (recorded in store.json)."""
    path = Path(path)
    own = {layout.name: layout for layout in layouts}
    path.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, max(len(sequences), 1), part_size):
        chunk = sequences[i:i + part_size]
        write_part(path / part_name(len(parts)), chunk)
        parts.append({"file": part_name(len(parts)), "sequences": len(chunk), "frames": sum(s.frames for s in chunk)})
    if labels is None and any(s.label for s in sequences):
        labels = {l: i for i, l in enumerate(sorted({s.label for s in sequences if s.label}))}
    write_json_atomic(path / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True,
        "recipe": {"name": "test", "source": "test", "columns": {}, "description": "made by store_from_sequences"},
        "layouts": [own[n].to_dict() if n in own else get_layout(n).to_dict()
                    for n in sorted({s.layout for s in sequences})],
        "labels": labels, "characters": characters,
        "counts": {"rows": len(sequences), "stored": len(sequences), "rejected": 0,
                   "frames": sum(s.frames for s in sequences)},
        "parts": parts,
    })
    return path
