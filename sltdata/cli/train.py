"""`sltdata train`, `sltdata evaluate`, `sltdata export`, `sltdata trainers`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
import typer.core
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sltdata.cli import app, console
from sltdata.fs import display, is_remote, join


class _RecipesHelp(typer.core.TyperCommand):
    """``train --help`` ends with every bundled recipe, asked of the trainer registry when the help is
    shown (it imports every trainer; no other command pays for that)."""

    def format_help(self, ctx, formatter):
        from sltdata.train.registry import trainer_class, trainer_entry_points

        lines = [f"{name}: {', '.join(trainer_class(name).bundled_configs()) or 'none'}"
                 for name in trainer_entry_points()]
        self.epilog = "Bundled recipes (--config NAME), by trainer:\n\n" + "\n\n".join(lines)
        return super().format_help(ctx, formatter)


class _FormatsHelp(typer.core.TyperCommand):
    """``export --help`` ends with the export formats of every installed trainer."""

    def format_help(self, ctx, formatter):
        from sltdata.train.registry import trainer_class, trainer_entry_points

        lines = [f"{name}: {', '.join(trainer_class(name).export_formats) or 'none'}"
                 for name in trainer_entry_points()]
        self.epilog = "Export formats (--format), by trainer:\n\n" + "\n\n".join(lines)
        return super().format_help(ctx, formatter)


class _TrainProgress:
    """Renders the loop's progress events: one bar per epoch with loss, lr and samples/s."""

    def __init__(self, bar: Progress):
        self.bar, self.task = bar, None

    def __call__(self, e: dict) -> None:
        kind = e["kind"]
        if kind == "start":
            self.epochs, self.total = e["epochs"], e["steps_per_epoch"]
            self.task = self.bar.add_task("", total=self.total, stats="")
        elif kind == "epoch_start":
            self.bar.reset(self.task, total=self.total, description=f"epoch {e['epoch'] + 1}/{self.epochs}")
        elif kind == "step":
            self.bar.update(self.task, completed=min(self.total, e["micro"] // max(1, e["micro_total"] // self.total)),
                            stats=f"loss {e['loss']:.4f}  lr {e['lr']:.2e}  {e['samples_per_s']:,.0f} samples/s")
        elif kind == "epoch":
            vals = "  ".join(f"{k[4:]} {v:.4f}" for k, v in e.items() if k.startswith("val_") and isinstance(v, float))
            console.print(f"epoch {e['epoch'] + 1}: step {e['step']}" + (f"  val: {vals}" if vals else ""),
                          highlight=False)


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    return table


@app.command(cls=_RecipesHelp)
def train(
    trainer: str = typer.Option("islr", "--trainer", "-t", help="Trainer name (see `sltdata trainers`)."),
    data: str = typer.Option(..., "--data", "-d", help="Shard directory (or its index.json) from `sltdata shard`; a path or URL (s3://...)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Run config YAML (train/data/transforms/model), or a bundled recipe name (listed below)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: section.key=value (repeatable)."),
    out: str = typer.Option(..., "--out", "-o", help="Run directory: checkpoints, metrics.jsonl, config, reports; a path or URL (s3://...)."),
    val_fold: Optional[str] = typer.Option(None, "--val-fold", help="Validate on fold K, train on the other folds; 'none': train on every fold, no validation (the last checkpoint is the final model)."),
    test: bool = typer.Option(False, "--test", help="After training, evaluate the best checkpoint on the test split."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override train.epochs."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (overrides train.device)."),
):
    """Train a model on shards with a registered trainer; multi-GPU under `torchrun`."""
    import os

    from sltdata.train.runs import train as run_train

    from sltdata.errors import ConfigError

    if val_fold is not None and val_fold.lower() in ("none", "null"):
        set_, val_fold = [*(set_ or []), "data.val_fold=null"], None  # after --set: the flag wins
    elif val_fold is not None:
        if not val_fold.isdigit():
            raise ConfigError(f"--val-fold {val_fold}: a fold number or 'none'")
        val_fold = int(val_fold)
    main = int(os.environ.get("RANK", "0")) == 0
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[stats]}"), console=console, transient=True, disable=not main)
    with bar:
        summary = run_train(trainer, data, out, config, set_, val_fold=val_fold, epochs=epochs, test=test,
                            resume=resume, device=device, progress=_TrainProgress(bar))
    if not main:
        return
    best = summary.get("best")
    typer.echo(f"trained {summary['global_step']} steps into {display(out)}"
               + (f"; best val {summary['monitor']} {best:.4f}" if best is not None else ""))
    if summary.get("test"):
        console.print(_metrics_table(f"test ({display(join(out, 'eval-test'))})", summary["test"]))


@app.command()
def evaluate(
    run: str = typer.Argument(..., help="Run directory written by `sltdata train`; a path or URL (s3://...)."),
    data: str = typer.Option(..., "--data", "-d", help="Shard directory to evaluate on; a path or URL."),
    split: str = typer.Option("test", help="test, val (the run's validation fold), train, or a fold name."),
    checkpoint: str = typer.Option("best", help="best or last."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Report directory (default RUN/eval-SPLIT); a path or URL."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
):
    """Print a run's metrics on a split as a table; write predictions and the trainer's reports."""
    from sltdata.train.runs import evaluate_run

    metrics, where = evaluate_run(run, data, split=split, checkpoint=checkpoint, out=out, device=device)
    console.print(_metrics_table(f"{split} ({where})", metrics))
    typer.echo(f"predictions and reports in {where}")


@app.command(cls=_FormatsHelp)
def export(
    run: str = typer.Argument(..., help="Run directory written by `sltdata train`; a path or URL (s3://...)."),
    format: str = typer.Option("onnx", "--format", "-f", help="Export format (the trainer's; listed below)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output file (default RUN/model.FORMAT); a path or URL."),
    checkpoint: str = typer.Option("best", help="best or last."),
):
    """Export a run's model. ONNX: islr and ctc models take raw landmarks (frames, 543, 3) with NaN,
    preprocessing inside the graph, maps in the metadata; checked against PyTorch with onnxruntime
    (when installed) on raw sequences of 1, a few, max_length and more frames."""
    from sltdata.train.runs import export_run

    path, diff = export_run(run, format=format, out=out, checkpoint=checkpoint)
    check = ""
    if diff is not None:
        from sltdata.train.export import read_metadata
        raw = not is_remote(path) and read_metadata(path).get("input") == "landmarks"  # a remote one: not read back
        on = " on raw landmarks" if raw else ""
        check = f" (onnxruntime vs PyTorch{on}: max |diff| {diff:.2e})"
    typer.echo(f"wrote {path}{check}")


@app.command()
def ensemble(
    runs: List[str] = typer.Argument(..., help="Run directories to average (e.g. one per seed, trained with --val-fold none); paths or URLs."),
    out: str = typer.Option(..., "--out", "-o", help="Ensemble run directory to write (evaluate / export take it); a path or URL."),
    checkpoint: str = typer.Option("best", help="Which checkpoint of each run: best or last."),
):
    """Average the logits of several runs of one trainer: writes a run directory that `evaluate`
    and `export` accept (ONNX: one graph averaging the members)."""
    from sltdata.train.ensemble import make_ensemble

    path = make_ensemble(runs, out, checkpoint=checkpoint)
    typer.echo(f"wrote an ensemble of {len(runs)} runs into {path}")


@app.command()
def trainers():
    """List installed trainers (the `sltdata.trainers` entry-point group) and the recipes each ships."""
    from sltdata.train.registry import trainer_class, trainer_entry_points

    table = Table(title="trainers")
    table.add_column("name")
    table.add_column("class")
    table.add_column("recipes (--config NAME)")
    for name, value in trainer_entry_points().items():
        table.add_row(name, value, ", ".join(trainer_class(name).bundled_configs()))
    console.print(table)
