"""`sltdata ingest`, `sltdata synth`, `sltdata sources`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sltdata.cli import app, console
from sltdata.engine import ENGINES
from sltdata.ingest import PART_SIZE, WORKERS
from sltdata.ingest import ingest as run_ingest


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


@app.command()
def ingest(
    source: str = typer.Argument(..., help="Dataset recipe: a bundled name (see `sltdata sources`) or a recipe .yaml."),
    root: str = typer.Argument(..., help="Dataset root as the publisher ships it (holds the manifest CSV); a path or URL (s3://...)."),
    out: str = typer.Option(..., "--out", "-o", help="Sequence store directory to write; a path or URL (s3://...)."),
    manifest: Optional[str] = typer.Option(None, help="Manifest CSV relative to ROOT, instead of the recipe's."),
    workers: int = typer.Option(WORKERS, help="Threads reading landmark files in parallel."),
    part_size: int = typer.Option(PART_SIZE, help="Sequences per store part (a unit of resumption)."),
    strict: bool = typer.Option(False, help="Exit non-zero when any row is rejected; refuse to derive a label or character map the recipe names but the dataset lacks."),
    overwrite: bool = typer.Option(False, help="Replace an existing store at --out."),
    layout_map: Optional[list[str]] = typer.Option(
        None, "--layout-map", help="SRC:DST: convert sequences of registered layout SRC into DST at ingest "
                                   "(e.g. coco-wholebody-133:holistic-543); points DST lacks are NaN. Repeatable."),
    engine: str = typer.Option("local", help=f"What runs the parts: {' or '.join(ENGINES)} (same bytes either way)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (--engine ray); default: a local one of --workers CPUs."),
):
    """Read a dataset as its publisher ships it into a sequence store (Parquet), with a rejects report.

    Every manifest row ends stored or in OUT/rejects.jsonl with its reason. Re-running the same
    command after an interruption finishes the job without duplicates.
    """
    from sltdata.recipes import parse_layout_map

    from sltdata.engine import get_engine

    runner = get_engine(engine, workers=workers, ray_address=ray_address)
    with progress_bar() as bar:
        task = bar.add_task("ingest", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_ingest(source, root, out, manifest=manifest, workers=workers, part_size=part_size,
                            overwrite=overwrite, progress=advance, strict=strict, engine=runner,
                            layout_map=parse_layout_map(layout_map) if layout_map else None)
    for r in result.rejects[:10]:
        console.print(f"[yellow]rejected[/] {r}", highlight=False, soft_wrap=True)
    if len(result.rejects) > 10:
        console.print(f"... and {len(result.rejects) - 10} more in {out.rstrip('/')}/rejects.jsonl", highlight=False)
    typer.echo(result.summary())
    if strict and result.rejected:
        console.print(f"[bold red]error:[/] --strict: {result.rejected} row(s) rejected", highlight=False)
        raise typer.Exit(1)


@app.command()
def synth(
    format: str = typer.Argument(..., help="kaggle-islr, kaggle-fingerspelling or pose."),
    out: Path = typer.Argument(..., help="Directory to write the dataset into."),
    sequences: Optional[int] = typer.Option(None, help="Sequences (kaggle-islr, pose)."),
    classes: Optional[int] = typer.Option(None, help="Signs (kaggle-islr)."),
    participants: Optional[int] = typer.Option(None, help="Signers."),
    files: Optional[int] = typer.Option(None, help="Parquet files (kaggle-fingerspelling)."),
    sequences_per_file: Optional[int] = typer.Option(None, help="Sequences per file (kaggle-fingerspelling)."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same files."),
    realism: str = typer.Option("real", help="real: calibrated against real captures (lengths, dropouts, left-handed "
                                "signers, confusable signs); easy: far-apart classes for fast unit tests."),
):
    """Write a small synthetic dataset laid out exactly as the publisher ships it."""
    from sltdata.synth import synth as run_synth

    sizes = {"sequences": sequences, "classes": classes, "participants": participants, "files": files,
             "sequences_per_file": sequences_per_file}
    allowed = {"kaggle-islr": {"sequences", "classes", "participants"},
               "kaggle-fingerspelling": {"files", "sequences_per_file", "participants"},
               "pose": {"sequences", "participants"}}
    given = {k for k, v in sizes.items() if v is not None}
    if format in allowed and given - allowed[format]:
        from sltdata.errors import ConfigError

        raise ConfigError(f"synth {format}: option(s) {', '.join('--' + g.replace('_', '-') for g in sorted(given - allowed[format]))} do not apply")
    path = run_synth(format, out, seed=seed, realism=realism, **{k: sizes[k] for k in given})
    typer.echo(f"wrote a synthetic {format} dataset ({realism}) to {path}")


@app.command()
def sources():
    """List the source readers and the bundled dataset recipes."""
    from sltdata.recipes import list_recipes, load_recipe
    from sltdata.sources import list_sources

    table = Table("recipe", "source", "manifest", "description")
    for name in list_recipes():
        r = load_recipe(name)
        table.add_row(name, r.source, ", ".join(r.manifest), r.description)
    from rich.console import Console

    Console().print(table)
    typer.echo(f"sources: {', '.join(list_sources())}")
