"""`sltdata predict`, `sltdata compose`, `sltdata app`: a trained run on new inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sltdata.cli import app, console


def _split_keys(keys: Optional[str]) -> list[str] | None:
    return [k for k in keys.split(",") if k] if keys else None


def _table(records: list[dict]) -> Table:
    table = Table(title="predictions")
    table.add_column("input")
    table.add_column("key")
    if records and "predictions" in records[0]:
        table.add_column("top-1")
        table.add_column("score", justify="right")
        table.add_column("next")
        for r in records:
            top, rest = r["predictions"][0], r["predictions"][1:]
            table.add_row(escape(r["input"]), escape(r["key"]), escape(top["label"]), f"{top['score']:.4f}",
                          escape(", ".join(f"{p['label']} {p['score']:.3f}" for p in rest)))
    else:
        table.add_column("text")
        for r in records:
            table.add_row(escape(r["input"]), escape(r["key"]), escape(r["text"]))
    return table


def write_csv(records: list[dict], path: Path) -> None:
    """Long form: one row per (sequence, rank) for classifiers; one row per sequence for text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if records and "predictions" in records[0]:
            w.writerow(["input", "key", "rank", "label", "score"])
            for r in records:
                for rank, p in enumerate(r["predictions"], 1):
                    w.writerow([r["input"], r["key"], rank, p["label"], f"{p['score']:.6f}"])
        else:
            w.writerow(["input", "key", "text"])
            for r in records:
                w.writerow([r["input"], r["key"], r.get("text", "")])


@app.command()
def predict(
    run: str = typer.Argument(..., help="Run directory written by `sltdata train`; a path or URL (s3://...)."),
    inputs: List[Path] = typer.Argument(..., help="Videos, .pose files, Kaggle ISLR / Fingerspelling parquets, "
                                                  "sequence stores or shard directories."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Signs per sequence (classifiers)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line on stdout instead of a table."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the predictions as CSV."),
    checkpoint: str = typer.Option("best", help="best or last."),
    split: Optional[str] = typer.Option(None, help="Shard directories: only this split (a fold name or test)."),
    keys: Optional[str] = typer.Option(None, help="Stores and shard directories: only these keys (comma-separated)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Sequences per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    compose: Optional[str] = typer.Option(None, "--compose", help="Turn the predicted signs into a sentence with "
                                          "this local seq2seq / causal LM (path or cached hub name)."),
    window: Optional[int] = typer.Option(None, "--window", min=1, help="Predict a sign per window of N frames of "
                                         "each sequence (with --compose: one sentence per sequence)."),
):
    """Predict signs (or text) for new inputs with a run's own preprocessing and label map.

    A bad input is one line on stderr and the others go on; the exit code is 1 when any input or
    sequence failed, 0 when all were predicted (2 for a bad run or option, as every command)."""
    from sltdata.predict import predict as run_predict

    composer = None
    if compose is not None:
        from sltdata.compose import load_composer

        composer = load_composer(compose)  # before the work: a missing model is one line, at once
    bar = Progress(TextColumn("predict"), BarColumn(), TextColumn("{task.completed} sequences"),
                   TimeElapsedColumn(), console=console, transient=True)
    with bar:
        task = bar.add_task("", total=None)
        result = run_predict(
            run, inputs, top_k=top_k, checkpoint=checkpoint, split=split, keys=_split_keys(keys),
            batch_size=batch_size, device=device, window=window, progress=lambda n: bar.advance(task, n),
            on_failure=lambda f: console.print(f"[bold red]failed:[/] {escape(str(f))}", highlight=False,
                                               soft_wrap=True))
    if as_json:
        for r in result.records:
            typer.echo(json.dumps(r, ensure_ascii=False))
    elif result.records:
        Console().print(_table(result.records))
    if out is not None:
        write_csv(result.records, out)
    if composer is not None and result.records:
        from sltdata.compose import compose_records

        for c in compose_records(result.records, composer, by_key=window is not None):
            if as_json:
                typer.echo(json.dumps(c, ensure_ascii=False))
            else:
                typer.echo(f"{' '.join(c['glosses'])} -> {c['sentence']}")
    if result.failures:
        console.print(f"{len(result.records)} predicted, {len(result.failures)} failed", highlight=False)
        raise typer.Exit(1)


@app.command(name="compose")
def compose_cmd(
    glosses: str = typer.Argument(..., help='Signs in order, space-separated: "ME GO STORE".'),
    model: str = typer.Option(..., "--model", "-m", help="Local seq2seq / causal LM directory or cached hub name "
                                                        "(e.g. google/flan-t5-base); nothing is downloaded."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", min=1, help="Longest sentence, in tokens."),
    show_prompt: bool = typer.Option(False, "--show-prompt", help="Print the prompt the model is given first."),
):
    """Turn a sequence of sign glosses into a sentence with an instruction-tuned language model."""
    from sltdata.compose import load_composer, make_prompt

    signs = glosses.split()
    if show_prompt:
        typer.echo(make_prompt(signs))
    typer.echo(load_composer(model, max_new_tokens=max_new_tokens).compose(signs))


@app.command(name="app")
def app_cmd(
    run: str = typer.Argument(..., help="Run directory written by `sltdata train`; a path or URL (s3://...)."),
    port: int = typer.Option(7860, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    compose: Optional[str] = typer.Option(None, "--compose", help="Local LM that turns the signs into a sentence."),
    store: Optional[Path] = typer.Option(None, "--store", help="A sequence store whose keys the page offers."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
):
    """Start a local web demo: upload a video or .pose, see the skeleton, the top-5 signs and a sentence."""
    from sltdata.app import serve

    console.print(f"sltdata app on http://{host}:{port}  (Ctrl+C stops it)", highlight=False)
    serve(run, host=host, port=port, checkpoint=checkpoint, device=device, compose=compose, store=store)
