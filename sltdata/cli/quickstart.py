"""`sltdata quickstart`: the whole flow on built-in sample data, saying what each step did."""

from __future__ import annotations

from pathlib import Path

import typer

from sltdata.cli import app


@app.command()
def quickstart(
    out: Path = typer.Option(Path("sltdata-quickstart"), "--out", "-o", help="Working directory for every output."),
    sequences: int = typer.Option(400, help="Synthetic ISLR sequences to make."),
    seed: int = typer.Option(0, help="Random seed for the sample data."),
):
    """Synthesize an ISLR-style dataset, ingest it, and run the rest of the flow on it."""
    from sltdata.quickstart import run_quickstart

    for line in run_quickstart(out, sequences=sequences, seed=seed):
        typer.echo(line)
