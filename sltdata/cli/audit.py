"""`sltdata audit`: signers in two splits and near-duplicate sequences across splits."""

from __future__ import annotations

from pathlib import Path

import typer

from sltdata.cli import app, console


@app.command()
def audit(
    shards: Path = typer.Argument(..., help="Shard directory (with index.json) of raw landmarks."),
    as_json: bool = typer.Option(False, "--json", help='Print {"participant_overlap": [...], "near_duplicates": '
                                                       '[...]} only (for scripts).'),
    threshold: float = typer.Option(None, help="Near-duplicate distance (RMS, in shoulder widths); "
                                               "default sltdata.audit.THRESHOLD."),
):
    """Leakage audit: participants in more than one split, and near-duplicate sequences across splits
    (re-encoded, mirrored, time-stretched copies, one clip cut in two).

    Exit code 0 when nothing is found, 1 when anything is, 2 on a usage or data error.
    """
    from sltdata.audit import THRESHOLD, audit_shards

    report = audit_shards(shards, threshold=THRESHOLD if threshold is None else threshold)
    if as_json:
        typer.echo(report.to_json())
    else:
        for p in report.participant_overlap:
            console.print(f"[bold red]participant[/] {p['participant']} is in {', '.join(p['splits'])}",
                          highlight=False)
        for d in report.near_duplicates:
            console.print(f"[bold red]near-duplicate[/] {d['a']} ({d['splits'][0]}) ~ {d['b']} ({d['splits'][1]}): "
                          f"distance {d['distance']:.4f}", highlight=False)
        typer.echo(f"{len(report.participant_overlap)} participant(s) in several splits, "
                   f"{len(report.near_duplicates)} near-duplicate pair(s) across splits")
    if not report.clean:
        raise typer.Exit(1)
