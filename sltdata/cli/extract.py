"""`sltdata extract`: videos to MediaPipe Holistic .pose files (mediapipe is imported only when it runs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sltdata.cli import app, console


@app.command()
def extract(
    videos: str = typer.Argument(..., help="A folder of videos (and image-sequence folders), a CSV with a "
                                           "video_path column, or one video; a folder may be a URL (s3://...)."),
    out: str = typer.Option(..., "--out", "-o", help="Folder for the .pose files (one per video, named by stem); "
                                                     "a path or URL."),
    workers: int = typer.Option(1, help="Processes, each with its own Holistic instance."),
    model_complexity: int = typer.Option(1, "--model-complexity", min=0, max=2,
                                         help="Holistic pose model: 0 lite, 1 full, 2 heavy (legacy backend)."),
    refine_face: bool = typer.Option(False, "--refine-face", help="478 face points (adds 10 iris points)."),
    fps: Optional[float] = typer.Option(None, help="Subsample videos to this rate (image folders: their rate; "
                                                   "default 25)."),
    backend: str = typer.Option("auto", help="auto, legacy (mediapipe<=0.10.21) or tasks (needs --task-model)."),
    task_model: Optional[Path] = typer.Option(None, "--task-model",
                                              help="HolisticLandmarker .task bundle for the tasks backend."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Show MediaPipe's own (C++) INFO and WARNING log lines."),
    engine: str = typer.Option("local", help="What runs the videos: local (--workers processes) or ray "
                                             "(one task per video; same bytes)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (--engine ray); default: a local one "
                                                         "of --workers CPUs."),
):
    """Run MediaPipe Holistic on every video and write one .pose file each (pose-format's holistic header).

    Resumable: a video whose .pose exists is skipped. An unreadable video goes to OUT/quarantine.jsonl.

    Next: `sltdata ingest pose` (uid,text CSV) or `sltdata ingest pose-video` (video_path,text CSV).
    """
    from sltdata.extract import QUARANTINE_FILE, HolisticConfig
    from sltdata.extract.quiet import native_log_filter

    config = HolisticConfig(backend=backend, model_complexity=model_complexity, refine_face=refine_face,
                            task_model=str(task_model) if task_model else None, verbose=verbose)
    with native_log_filter(enabled=not verbose):
        result = _run(videos, out, config, workers, fps, engine, ray_address)
    for o in result.quarantined[:10]:
        console.print(f"[yellow]quarantined[/] {escape(o.video)}: {escape(o.reason)}", highlight=False,
                      soft_wrap=True)
    if len(result.quarantined) > 10:
        console.print(f"... and {len(result.quarantined) - 10} more in {out.rstrip('/')}/{QUARANTINE_FILE}",
                      highlight=False)
    typer.echo(result.summary())


def _run(videos: str, out: str, config, workers: int, fps: Optional[float], engine: str = "local",
         ray_address: Optional[str] = None):
    from sltdata.engine import get_engine
    from sltdata.extract import extract as run_extract
    from sltdata.extract import resolve_backend

    resolve_backend(config)  # what to install or pass, in one line, before the progress bar
    runner = None if engine == "local" and not ray_address else get_engine(engine, workers=workers,
                                                                              ray_address=ray_address)
    bar = Progress(TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
                   TextColumn("{task.fields[rate]:.1f} frames/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    with bar:
        task = bar.add_task("extract", total=None, rate=0.0)
        start, frames = time.perf_counter(), 0

        def advance(new_frames: int, new_videos: int) -> None:
            nonlocal frames
            frames += new_frames
            bar.update(task, advance=new_videos, rate=frames / max(time.perf_counter() - start, 1e-9))

        return run_extract(videos, out, config, workers=workers, fps=fps, progress=advance,
                           on_inputs=lambda n: bar.update(task, total=n), engine=runner)
