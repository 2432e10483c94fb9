"""`sltdata stats` and `sltdata view`: what is in a dataset, in tables, plots and animations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from sltdata.cli import app, console


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def print_stats(stats: dict, out: Console) -> None:
    """The stats dict as rich tables (the same figures `--json` prints)."""
    t = Table("what", "count", title=f"{stats['source']['kind']} {stats['source']['path']}")
    for k in ("sequences", "frames", "participants", "classes", "phrases"):
        if stats[k] is not None:
            t.add_row(k, str(stats[k]))
    out.print(t)

    length = stats["length"]
    if length:
        t = Table("frames", "value", title="Sequence length")
        for k in ("min", "mean", "max"):
            t.add_row(k, f"{length[k]:.1f}" if k == "mean" else str(length[k]))
        for k, v in length["percentiles"].items():
            t.add_row(k, _num(v))
        for m, n in length["over"].items():
            t.add_row(f"longer than {m}", f"{n} ({_pct(n / stats['sequences'])})")
        out.print(t)

    for key, title, name in (("per_class", "Sequences per class", "label"),
                             ("per_participant", "Sequences per participant", "participant")):
        s = stats[key]
        if not s:
            continue
        t = Table("", "sequences", title=title)
        for k in ("min", "median", "max"):
            t.add_row(k, _num(s[k]))
        if key == "per_class":
            for r in s["rarest"]:
                t.add_row(f"rare: {r[name]}", str(r["sequences"]))
        elif len(s["counts"]) <= 30:
            for p, n in s["counts"].items():
                t.add_row(f"{p}", str(n))
        out.print(t)

    det = stats["detection"]
    if det:
        t = Table("component", "frames detected", "share", title=f"Detection ({det['frames']} frames)")
        for c, n in det["frames_with"].items():
            t.add_row(c.replace("_", " ") if c != "no_hand" else "no hand at all", str(n), _pct(det["rates"][c]))
        out.print(t)

    spaces = stats.get("spaces")
    if spaces:
        t = Table("units", "width", "height", "depth", "sequences", title="Coordinate spaces and frame sizes")
        for r in spaces:
            t.add_row(*(str(r[k]) if r[k] is not None else "?" for k in ("units", "width", "height", "depth")),
                      str(r["sequences"]))
        out.print(t)

    _print_quality(stats, out)

    text = stats["text"]
    if text:
        t = Table("phrases", title="Text")
        t.add_column("value", overflow="fold")
        pc = text["phrase_chars"]
        t.add_row("characters per phrase (min/median/max)", f"{pc['min']} / {pc['median']:g} / {pc['max']}")
        t.add_row(f"character set ({text['num_characters']})", repr(text["characters"]))
        out.print(t)

    folds = stats["folds"]
    if folds:
        t = Table("split", "sequences", "classes", "participants", title="Folds")
        for f, s in folds["splits"].items():
            t.add_row(f, str(s["sequences"]), str(s["classes"]), str(s["participants"]))
        out.print(t)
        if folds["participant_disjoint"]:
            out.print("[green]no participant is in two splits[/]")
        else:
            for p, fs in folds["participants_in_several"].items():
                out.print(f"[bold red]participant {p} is in several splits: {', '.join(fs)}[/]")


def _print_quality(stats: dict, out: Console) -> None:
    if stats["source"]["kind"] != "store":
        return
    q = stats.get("quality")
    if not q:
        out.print("quality scores: not computed (the store was ingested before them; re-ingest to compute them)")
        return
    cols = ["p5", "p50", "p95", "p99"]
    t = Table("score", "sequences", "min", *cols, "max", title="Quality (per sequence)")
    rows = [(k.removeprefix("quality_").replace("_", " "), v) for k, v in q["scores"].items()]
    rows += [(f"{c.replace('_', ' ')} detected", v) for c, v in q["detection"].items()]
    for name, d in rows:
        if not d["sequences"]:
            t.add_row(name, "0", *["not computed"] + [""] * (len(cols) + 1))
            continue
        t.add_row(name, str(d["sequences"]), f"{d['min']:.3g}", *(f"{d['percentiles'][c]:.3g}" for c in cols),
                  f"{d['max']:.3g}")
    out.print(t)
    out.print(f"{q['idle']['with_lead_in']} sequence(s) with an idle lead-in, {q['idle']['with_lead_out']} with an "
              f"idle lead-out; {q['fps_anomalies']} with a missing or implausible fps")


@app.command()
def stats(
    path: Path = typer.Argument(..., help="A sequence store, or a shard directory (with index.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON (for scripts)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write PNG figures into this directory."),
    landmarks: bool = typer.Option(True, "--landmarks/--metadata-only",
                                   help="Read landmarks for detection rates (streamed), or metadata only."),
):
    """Counts, class balance, lengths, detection rates, text and folds of a dataset."""
    from sltdata.stats import compute_stats

    result = compute_stats(path, landmarks=landmarks)
    if plots is not None:
        from sltdata.plots import write_plots

        for p in write_plots(result, plots):
            console.print(f"wrote {p}", highlight=False)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_stats(result, Console())


@app.command()
def view(
    store: Path = typer.Argument(..., help="Sequence store directory."),
    key: str = typer.Argument(..., help="Key of the sequence to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="Animation to write: FILE.gif, or FILE.mp4 (needs ffmpeg)."),
    raw: bool = typer.Option(False, "--raw", help="Draw the raw sequence only (the default)."),
    transformed: Optional[Path] = typer.Option(None, "--transformed",
                                               help="Transform config (YAML): draw raw and transformed side by side."),
    fps: Optional[float] = typer.Option(None, help="Frames per second (default: the sequence's, else 30)."),
    seed: int = typer.Option(0, help="Seed of the augmentation draw, when the transform config augments."),
):
    """Draw one sequence as an animation: skeleton, face contour, label or phrase as the title."""
    from sltdata.errors import ConfigError
    from sltdata.view import view_sequence

    if raw and transformed is not None:
        raise ConfigError("--raw and --transformed exclude each other")
    path = view_sequence(store, key, out, transform=transformed, fps=fps, seed=seed)
    typer.echo(f"wrote {path}")
