"""`sltdata shard`, `sltdata export-hf`, `sltdata push`, `sltdata verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from sltdata.cli import app, console
from sltdata.folds import FOLD_DEFAULTS
from sltdata.shards import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES


# Fold options shared by `shard` and `export-hf`: the same store and options give the same folds.
FOLDS = typer.Option(FOLD_DEFAULTS.folds, help="Cross-validation folds, grouped by participant.")
TEST_FRACTION = typer.Option(FOLD_DEFAULTS.test_fraction,
                             help="Fraction of sequences held out as `test`, by whole participants.")
SEED = typer.Option(FOLD_DEFAULTS.seed, help="Seed for fold assignment; the same store and seed give the same folds "
                                             "(and, for `shard`, identical bytes).")


def _print_plan(index) -> None:
    for split, info in index.splits.items():
        typer.echo(f"  {split}: {info['samples']} sequences, {info['participants']} participants, "
                   f"{info['shards']} shard(s), {info['bytes'] / 2**20:.1f} MiB")


@app.command()
def shard(
    store: str = typer.Argument(..., help="Sequence store directory (from `sltdata ingest`); a path or URL (s3://...)."),
    out: str = typer.Option(..., "--out", "-o", help="Shard directory to write (tars + index.json); a path or URL."),
    folds: int = FOLDS,
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
    max_samples_per_shard: int = typer.Option(DEFAULT_MAX_SAMPLES, help="Start a new shard after this many sequences."),
    max_shard_bytes: int = typer.Option(DEFAULT_MAX_BYTES, help="Start a new shard before it would pass this size."),
    transform: Optional[Path] = typer.Option(None, help="Transform config (YAML): store features instead of raw landmarks."),
    overwrite: bool = typer.Option(False, help="Replace shards already in --out."),
    where: Optional[str] = typer.Option(None, help="SQL predicate (DuckDB) over the store's metadata and quality "
                                                   "columns; only matching sequences are sharded, e.g. "
                                                   "\"quality_jitter < 0.02 AND frames >= 10\"."),
    trim_idle: bool = typer.Option(False, help="Cut each sequence's idle lead-in and lead-out (the stored "
                                               "quality_idle_* counts)."),
    engine: str = typer.Option("local", help="What writes the splits: local (one pass) or ray (one task per split; same bytes)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (--engine ray); default: a local one."),
):
    """Assign participant-grouped folds and write WebDataset shards with an index.json.

    Folds are stratified by label when the store has labels. Sequences without a participant are
    each their own group. A killed run re-run gives the same bytes.
    """
    from sltdata.cli.data import progress_bar
    from sltdata.shards import write_shards
    from sltdata.store import Store

    from sltdata.engine import get_engine

    runner = None if engine == "local" and not ray_address else get_engine(engine, ray_address=ray_address)
    s = Store(store)
    with progress_bar() as bar:
        task = bar.add_task("shard", total=len(s))
        index = write_shards(s, out, folds=folds, test_fraction=test_fraction, seed=seed,
                             max_samples_per_shard=max_samples_per_shard, max_shard_bytes=max_shard_bytes,
                             transform=transform, overwrite=overwrite, progress=lambda n: bar.advance(task, n),
                             where=where, trim_idle=trim_idle, engine=runner)
    total = sum(v["samples"] for v in index.splits.values())
    typer.echo(f"wrote {total} sequences in {len(index.shards)} shard(s) to {out} "
               f"({'stratified' if index.data['stratified'] else 'grouped'} folds, seed {seed})")
    if index.data.get("where"):
        w = index.data["where"]
        typer.echo(f"  --where kept {w['kept']} of {w['sequences']} sequences; filtered out {w['filtered_out']}")
    _print_plan(index)
    if index.data.get("ungrouped_sequences"):
        typer.echo(f"  note: {index.data['ungrouped_sequences']} sequence(s) have no participant; each is its own group")


@app.command("export-hf")
def export_hf(
    store: Path = typer.Argument(..., help="Sequence store directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the DatasetDict (save_to_disk)."),
    folds: int = FOLDS,
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
    overwrite: bool = typer.Option(False, help="Replace --out."),
):
    """Write a HuggingFace DatasetDict with one split per fold (and `test`)."""
    from sltdata.hf import export_hf as run_export

    dd = run_export(store, out, folds=folds, test_fraction=test_fraction, seed=seed, overwrite=overwrite,
                    progress=lambda split: console.print(f"building split {split}", highlight=False))
    typer.echo(f"wrote a DatasetDict to {out}: " + ", ".join(f"{k} {len(v)}" for k, v in dd.items()))


@app.command()
def push(
    path: Path = typer.Argument(..., help="A shard directory or an `export-hf` output."),
    repo_id: str = typer.Argument(..., help="Dataset repo on the Hub, e.g. user/asl-signs-landmarks."),
    private: bool = typer.Option(False, help="Create the repo private."),
    license: str = typer.Option("other", help="License id for the dataset card."),
):
    """Push to the Hugging Face Hub with a generated dataset card (token from HF_TOKEN or `hf auth login`)."""
    from sltdata.hf import push as run_push

    url = run_push(path, repo_id, private=private, license=license)
    typer.echo(f"pushed {path} to {repo_id}: {url}")


@app.command()
def verify(
    path: str = typer.Argument(..., help="Shard directory (or its index.json); a path or URL."),
):
    """Check every shard's sha256, size, member names and sample count against index.json."""
    from sltdata.cli.data import progress_bar
    from sltdata.shards import ShardIndex, verify_shards

    n = len(ShardIndex.open(path, check=False).shards)  # verify reports entries outside the directory
    with progress_bar() as bar:
        task = bar.add_task("verify", total=n)
        report = verify_shards(path, progress=lambda k: bar.advance(task, k))
    for p in report.problems:
        console.print(f"[bold red]bad[/] {p}", highlight=False, soft_wrap=True)
    if report.problems:
        typer.echo(f"{len(report.problems)} problem(s) in {report.shards} shard(s)")
        raise typer.Exit(1)
    typer.echo(f"ok: {report.shards} shard(s), {report.samples} sequences, every sha256 matches")
