"""`sltdata extract`: videos (or image folders) to MediaPipe Holistic ``.pose`` files, resumable.

Each input becomes ``OUT/<stem>.pose`` with the header pose-format's ``load_holistic`` writes (its own
``holistic_components``), so ``sltdata ingest pose`` maps it into ``holistic-543`` with no special case,
and ``OUT/<stem>.pose.json``: the extractor, its version and settings (``extractor_info``), which
ingest stores as the sequence's provenance (a pose-format header has no field for them).
A file is written under a temporary name and renamed when complete: an existing ``<stem>.pose`` is a
finished one and a re-run skips it. An input that cannot be read (not a video, truncated, no frames)
goes to ``OUT/quarantine.jsonl`` with its reason and the others go on.

With ``workers > 1`` each worker process builds its own Holistic instance once (MediaPipe graphs are
not shareable across processes) and takes whole videos; frames of one video stay in order on one
instance because Holistic tracks from frame to frame.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from sltdata import fs, outputs
from sltdata.errors import SltdataError, SourceError
from sltdata.extract.backends import HolisticConfig, make_holistic, resolve_backend
from sltdata.extract.video import VideoInput, find_inputs, is_frame_or_video, open_video

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.jsonl"
TMP_MARK = ".pose.tmp-"

__all__ = ["ExtractResult", "HolisticConfig", "Outcome", "extract", "extract_video", "find_inputs",
           "holistic_pose", "resolve_backend", "QUARANTINE_FILE"]


@dataclass(frozen=True)
class Outcome:
    stem: str
    video: str
    status: str  # written | skipped | quarantined
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""


@dataclass
class ExtractResult:
    out: Path
    backend: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def frames(self) -> int:
        return sum(o.frames for o in self.outcomes if o.status == "written")

    @property
    def quarantined(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "quarantined"]

    def summary(self) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"{len(self.outcomes)} inputs, {self.count('written')} written, {self.count('skipped')} skipped "
                f"(already done), {self.count('quarantined')} quarantined -> {self.out} "
                f"({self.frames} frames, {rate:.1f} frames/s, {self.backend} backend)")


def holistic_pose(points: np.ndarray, confidence: np.ndarray, fps: float, width: int, height: int,
                  face_points: int):
    """A pose-format ``Pose`` with exactly the header ``pose_format.utils.holistic.load_holistic`` writes.

    ``points`` (frames, P, 3) and ``confidence`` (frames, P) are in pose-format's holistic order.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components  # imports mediapipe, as extract needs it anyway

    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=holistic_components("XYZC", face_points - 468))
    body = NumPyPoseBody(fps=fps, data=points[:, None].astype(np.float32),
                         confidence=confidence[:, None].astype(np.float32))
    return Pose(header, body)


SIDECAR_SUFFIX = ".json"  # ``<stem>.pose.json``: what made the .pose file (the pose source reads it)


def extractor_info(config: HolisticConfig, backend: str, fps: float | None) -> dict:
    """The sidecar of every .pose file a run writes: pose-format headers have no free-text field,
    so the extractor, its version and the settings that decide the points travel beside the file and
    ``sltdata ingest pose`` stores them as the sequence's provenance."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mp_version = version("mediapipe")
    except PackageNotFoundError:
        mp_version = None
    return {"extractor": "mediapipe-holistic", "version": mp_version,
            "settings": {"backend": backend, "model_complexity": config.model_complexity,
                         "refine_face": config.refine_face, "fps": fps,
                         "task_model": Path(config.task_model).name if config.task_model else None}}


def _truncated(decoded: int, reported: int) -> bool:
    """Fewer frames decoded than the container promises, beyond its usual estimate slack."""
    return reported > 0 and decoded + max(2, reported // 50) < reported


def extract_video(video: VideoInput, out_dir: Path, holistic, fps: float | None = None,
                  on_frame: Callable[[], None] | None = None, provenance: dict | None = None) -> Outcome:
    """Run ``holistic`` over one input and write ``out_dir/<stem>.pose``; unreadable input -> quarantined."""
    start = time.perf_counter()
    target = out_dir / f"{video.stem}.pose"
    if target.exists():
        return Outcome(video.stem, str(video.path), "skipped")
    fs.local_input(video.path)  # a remote input's video (or frames) is fetched by the unit that reads it
    try:
        info, frames = open_video(video, fps)
        holistic.next_video()
        points, conf = [], []
        for i, rgb in enumerate(frames):
            p, c = holistic.process(rgb, int(round(i * 1000.0 / info.fps)))
            points.append(p)
            conf.append(c)
            if on_frame is not None:
                on_frame()
        if not points:
            raise SourceError(video.path, "no frames decoded (empty, truncated or not a video)")
        if _truncated(frames.decoded, info.frames):
            raise SourceError(video.path, f"truncated: decoded {frames.decoded} of {info.frames} frames")
    except SourceError as e:
        return Outcome(video.stem, str(video.path), "quarantined", seconds=time.perf_counter() - start,
                       reason=e.reason)
    pose = holistic_pose(np.stack(points), np.stack(conf), info.fps, info.width, info.height, holistic.face_points)
    tmp = out_dir / f".{video.stem}{TMP_MARK}{os.getpid()}"
    if provenance is not None:  # the sidecar first: a finished .pose always has its own beside it
        sidecar = out_dir / f"{video.stem}.pose{SIDECAR_SUFFIX}"
        side_tmp = tmp.with_name(tmp.name + SIDECAR_SUFFIX)
        side_tmp.write_text(json.dumps(provenance, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(side_tmp, sidecar)
        fs.committed(sidecar)
    with open(tmp, "wb") as f:
        pose.write(f)
    os.replace(tmp, target)
    fs.committed(target)
    return Outcome(video.stem, str(video.path), "written", frames=len(points), seconds=time.perf_counter() - start)


# One Holistic per worker process, made by the pool's initializer.
_WORKER_HOLISTIC = None


def _worker_init(config: HolisticConfig, state: dict | None = None) -> None:
    global _WORKER_HOLISTIC
    if state:
        fs.install(state)  # the driver's remote input and output, for local_input and committed
    _WORKER_HOLISTIC = make_holistic(config)  # make_holistic -> resolve_backend quiets the logs first


def _worker_run(video: VideoInput, out_dir: str, fps: float | None, provenance: dict | None = None) -> Outcome:
    return extract_video(video, Path(out_dir), _WORKER_HOLISTIC, fps, provenance=provenance)


def _engine_run(video: VideoInput, out_dir: str, fps: float | None, config: HolisticConfig,
                provenance: dict | None = None) -> Outcome:
    """One video as an engine's unit (a Ray task): the worker process keeps one Holistic per config."""
    global _WORKER_HOLISTIC, _WORKER_CONFIG
    if _WORKER_HOLISTIC is None or _WORKER_CONFIG != config:
        _WORKER_HOLISTIC, _WORKER_CONFIG = make_holistic(config), config
    return extract_video(video, Path(out_dir), _WORKER_HOLISTIC, fps, provenance=provenance)


_WORKER_CONFIG = None


def _write_quarantine(out_dir: Path, outcomes: list[Outcome]) -> None:
    """This run's quarantined inputs, sorted (a clean re-run leaves no stale entries behind)."""
    path = out_dir / QUARANTINE_FILE
    bad = sorted((o for o in outcomes if o.status == "quarantined"), key=lambda o: o.stem)
    if not bad:
        path.unlink(missing_ok=True)
        fs.removed(path)
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for o in bad:
            f.write(json.dumps({"video": o.video, "pose": f"{o.stem}.pose", "reason": o.reason}) + "\n")
    os.replace(tmp, path)
    fs.committed(path)


def extract(source: Path | str, out: Path | str, config: HolisticConfig = HolisticConfig(), workers: int = 1,
            fps: float | None = None, progress: Callable[[int, int], None] | None = None,
            on_inputs: Callable[[int], None] | None = None, engine=None) -> ExtractResult:
    """Extract every input under ``source`` (folder, CSV with video_path, or one video) into ``out``.

    ``on_inputs(n)`` is told how many inputs were found; ``progress(frames, videos)`` is called with
    increments as work completes (per frame with one worker, per video with several).
    ``source`` (a folder) and ``out`` may be fsspec URLs (``sltdata.fs``). ``engine`` (``sltdata.engine``,
    e.g. Ray) runs one unit per video instead of ``workers`` local processes; same bytes.
    """
    if fs.is_remote(source) or fs.is_remote(out):
        with fs.input_dir(source, lazy=is_frame_or_video) as local_source, \
                fs.output_dir(out, [source]) as local_out:
            return extract(local_source, local_out, config, workers=workers, fps=fps, progress=progress,
                           on_inputs=on_inputs, engine=engine)
    if fps is not None and fps <= 0:
        from sltdata.errors import ConfigError

        raise ConfigError(f"--fps must be positive, not {fps}")
    outputs.check_apart(out, [source])  # .pose files never go into (or around) the videos
    backend = resolve_backend(config)  # fails here, in one line, before any work
    videos = find_inputs(Path(source))
    if on_inputs:
        on_inputs(len(videos))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".*{TMP_MARK}*"):  # left by a killed run
        stale.unlink()
    result = ExtractResult(out_dir, backend)
    provenance = extractor_info(config, backend, fps)
    start = time.perf_counter()
    todo = []
    for v in videos:
        if (out_dir / f"{v.stem}.pose").exists():
            result.outcomes.append(Outcome(v.stem, str(v.path), "skipped"))
        else:
            todo.append(v)
    if progress and result.outcomes:
        progress(0, len(result.outcomes))
    if todo and engine is not None:
        for o in engine.map(_engine_run, [(v, str(out_dir), fps, config, provenance) for v in todo]):
            result.outcomes.append(o)
            if progress:
                progress(o.frames, 1)
    elif todo and workers <= 1:
        holistic = make_holistic(config)
        try:
            for v in todo:
                o = extract_video(v, out_dir, holistic, fps, on_frame=(lambda: progress(1, 0)) if progress else None,
                                  provenance=provenance)
                result.outcomes.append(o)
                if progress:
                    progress(0, 1)
        finally:
            holistic.close()
    elif todo:
        ctx = multiprocessing.get_context("spawn")  # MediaPipe's threads do not survive a fork
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_worker_init,
                                 initargs=(config, fs.mirrors())) as pool:
            futures = [pool.submit(_worker_run, v, str(out_dir), fps, provenance) for v in todo]
            try:
                for fut in as_completed(futures):
                    o = fut.result()
                    result.outcomes.append(o)
                    if progress:
                        progress(o.frames, 1)
            except BrokenProcessPool:  # a crash inside MediaPipe/FFmpeg; finished .pose files are kept
                done = len(result.outcomes)
                raise SltdataError(f"a worker process died after {done} of {len(videos)} inputs; re-run to "
                                   "resume, with --workers 1 to see which input crashes it") from None
    result.outcomes.sort(key=lambda o: o.stem)
    result.seconds = time.perf_counter() - start
    _write_quarantine(out_dir, result.outcomes)
    for o in result.quarantined:
        log.info("quarantined %s: %s", o.video, o.reason)
    return result
