"""Finding the videos to extract and reading their frames (OpenCV), with what goes in the pose header.

An input is a video file or a folder of images (one image per frame, in file-name order). Each gives
one ``.pose`` named by its stem, so ``poses/<stem>.pose`` is what the ``pose`` and ``pose-video``
recipes look for; two inputs with the same stem are refused before any work starts.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from sltdata.errors import SltdataError, SourceError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".3gp", ".ts"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
IMAGE_FOLDER_FPS = 25.0  # an image folder carries no rate; --fps names it
CSV_COLUMN = "video_path"


@dataclass(frozen=True)
class VideoInput:
    path: Path  # a video file or a folder of frame images
    stem: str  # the output is <stem>.pose


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # of the frames yielded (after subsampling)
    frames: int  # as the container reports it (0 when unknown); image folders: exact


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def is_frame_or_video(name: str) -> bool:
    """Whether a file is read by a unit (a video, or a frame of an image folder) rather than listed."""
    return PurePosixPath(name).suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES


def _walk(root: Path) -> Iterator[Path]:
    """Video files and image folders under ``root``, in sorted order."""
    if _image_files(root):
        yield root
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            yield p
        elif p.is_dir() and _image_files(p):
            yield p


def _from_csv(path: Path) -> list[Path]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or CSV_COLUMN not in reader.fieldnames:
            raise SourceError(path, f"no {CSV_COLUMN!r} column (columns: {', '.join(reader.fieldnames or [])})")
        out = []
        for i, row in enumerate(reader, start=2):
            value = (row[CSV_COLUMN] or "").strip()
            if not value:
                raise SourceError(path, f"empty {CSV_COLUMN}", row=i)
            p = Path(value)
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def find_inputs(source: Path) -> list[VideoInput]:
    """Every video (or image folder) named by ``source``: a folder, a CSV with a video_path column, or one video.

    Missing files listed in a CSV are kept: reading them fails and they are quarantined with the reason.
    """
    source = Path(source)
    if source.is_dir():
        paths = list(_walk(source))
    elif source.is_file() and source.suffix.lower() == ".csv":
        paths = _from_csv(source)
    elif source.is_file():
        paths = [source]
    else:
        raise SourceError(source, "no such file or folder")
    inputs = [VideoInput(p, p.name if p.is_dir() else p.stem) for p in paths]
    seen: dict[str, Path] = {}
    for v in inputs:
        if v.stem in seen and seen[v.stem] != v.path:
            raise SltdataError(f"{v.path} and {seen[v.stem]} would both be written as {v.stem}.pose; "
                               "rename one (outputs are named by file stem)")
        seen[v.stem] = v.path
    unique = list({v.stem: v for v in inputs}.values())
    return unique


def keep_frame(index: int, src_fps: float, fps: float | None) -> bool:
    """Subsampling to ``fps``: keep frame ``index`` when it starts a new output interval."""
    if not fps or fps >= src_fps:
        return True
    return index == 0 or math.floor(index * fps / src_fps) > math.floor((index - 1) * fps / src_fps)


class Frames:
    """RGB uint8 frames of one input, counting the source frames decoded (before subsampling)."""

    def __init__(self, gen_factory):
        self.decoded = 0
        self._factory = gen_factory

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._factory(self)


def open_video(video: VideoInput, fps: float | None = None) -> tuple[VideoInfo, Frames]:
    """Header facts and the frames; ``SourceError`` when it cannot be read at all.

    Decoding stops at the first frame OpenCV cannot read; the caller compares ``Frames.decoded`` with
    ``info.frames`` to tell a truncated file from a whole one.
    """
    import cv2

    if video.path.is_dir():
        return _open_images(video, cv2, fps)
    if not video.path.is_file():
        raise SourceError(video.path, "no such video file")
    cap = cv2.VideoCapture(str(video.path))
    if not cap.isOpened():
        cap.release()
        raise SourceError(video.path, "OpenCV cannot open it (not a video, or truncated/corrupt)")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    if width <= 0 or height <= 0:
        cap.release()
        raise SourceError(video.path, "OpenCV reports no frame size (not a video, or corrupt)")
    if src_fps <= 0 or not math.isfinite(src_fps):
        log.warning("%s: no frame rate in the container; assuming %s", video.path, IMAGE_FOLDER_FPS)
        src_fps = IMAGE_FOLDER_FPS
    out_fps = fps if fps and fps < src_fps else src_fps

    def frames(state: Frames) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    return
                state.decoded += 1
                if keep_frame(state.decoded - 1, src_fps, fps):
                    yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return VideoInfo(width, height, out_fps, count), Frames(frames)


def _open_images(video: VideoInput, cv2, fps: float | None) -> tuple[VideoInfo, Frames]:
    files = _image_files(video.path)
    if not files:
        raise SourceError(video.path, "no images in the folder")
    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise SourceError(files[0], "OpenCV cannot read this image")
    height, width = first.shape[:2]

    def frames(state: Frames) -> Iterator[np.ndarray]:
        for f in files:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is None or bgr.shape[:2] != (height, width):
                return  # counted as missing frames: the caller reports the folder as incomplete
            state.decoded += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return VideoInfo(width, height, fps or IMAGE_FOLDER_FPS, len(files)), Frames(frames)

