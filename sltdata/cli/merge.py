"""`sltdata merge`: several stores into one, through a gloss map, keeping each sequence's origin."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sltdata.cli import app


@app.command()
def merge(
    stores: List[Path] = typer.Argument(..., help="Sequence stores to merge (their directory names name the origin)."),
    out: Path = typer.Option(..., "--out", "-o", help="Store to write."),
    gloss_map: Optional[Path] = typer.Option(None, help="CSV: source_label,label (or store,source_label,label); "
                                                        "unmapped labels stay, an empty label rejects the row."),
    prefix_keys: bool = typer.Option(False, help="Make every key STORE/KEY (instead of refusing key collisions)."),
    overwrite: bool = typer.Option(False, help="Replace --out."),
):
    """Merge stores into one with a unified label vocabulary; each sequence keeps its store's name (merged_from)."""
    from sltdata.merge import merge_stores

    result = merge_stores(stores, out, gloss_map=gloss_map, prefix_keys=prefix_keys, overwrite=overwrite)
    typer.echo(result.summary())
