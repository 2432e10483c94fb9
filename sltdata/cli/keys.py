"""`sltdata keys`: the sequence keys of a store or a shard directory, one per line (for `view`, scripts)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterator, Optional

import typer

from sltdata.cli import app


def iter_keys(path: Path) -> Iterator[str]:
    """Keys in store order (store: its parquet key column only) or shard order (shards: JSON members)."""
    from sltdata.store import META_FILE, Store

    if path.is_dir() and (path / META_FILE).is_file():
        for key in Store(path).metadata(("key",)).column("key").to_pylist():
            yield key
        return
    # Shards: the one torch-free reader, which opens only the small JSON members.
    from sltdata.errors import StoreError
    from sltdata.shards import INDEX_FILE, ShardIndex, iter_samples
    from sltdata.shards.index import index_path

    if not index_path(path).is_file():
        raise StoreError(f"{path}: neither a sequence store (no {META_FILE}) nor a shard directory "
                         f"(no {INDEX_FILE})")
    for _, sample in iter_samples(ShardIndex.open(path), arrays=False):
        yield sample.key


@app.command()
def keys(
    path: Path = typer.Argument(..., help="A sequence store, or a shard directory (with index.json)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Print at most this many keys."),
):
    """List the sequence keys of a store or shard directory, one per line."""
    for key in islice(iter_keys(path), limit):
        typer.echo(key)
