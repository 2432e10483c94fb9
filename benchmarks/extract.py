"""`sltdata extract` speed on CPU: frames/s per worker by model complexity, and the 2-worker speed-up.

Clips are made from a real photograph (``skimage.data.astronaut()``, 512x512), so Holistic does its
full work every frame (face + pose found, hand search run). Per-worker frames/s excludes the graph's
construction; the workers comparison is end to end (process start-up included), the same clips and
the same output in both runs. Complexities whose pose model the mediapipe wheel does not ship
(0 and 2 in 0.10.21: mediapipe would download them) are reported as unavailable.

    python benchmarks/extract.py [--frames 30] [--clips 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def per_worker_fps(clip: Path, complexity: int, out: Path) -> float:
    from sltdata.extract import HolisticConfig, extract_video
    from sltdata.extract.backends import make_holistic
    from sltdata.extract.video import VideoInput

    holistic = make_holistic(HolisticConfig(model_complexity=complexity))
    try:
        extract_video(VideoInput(clip, "warmup"), out, holistic)  # first-frame detection, caches
        start = time.perf_counter()
        outcome = extract_video(VideoInput(clip, f"c{complexity}"), out, holistic)
        return outcome.frames / (time.perf_counter() - start)
    finally:
        holistic.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames per clip")
    ap.add_argument("--clips", type=int, default=4, help="clips for the workers comparison")
    args = ap.parse_args()

    from sltdata.errors import SltdataError
    from sltdata.extract import HolisticConfig, extract, resolve_backend
    from sltdata.testing.video import astronaut, write_clip

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = tmp / "clips"
        clips.mkdir()
        photo = astronaut()
        for i in range(args.clips):
            write_clip(clips / f"clip{i}.mp4", photo, frames=args.frames, fps=25.0)
        print(f"extract benchmark: {args.clips} clips x {args.frames} frames, 512x512, "
              f"{os.cpu_count()} CPU cores")
        base = None
        for complexity in (0, 1, 2):
            try:
                resolve_backend(HolisticConfig(model_complexity=complexity))
            except SltdataError as e:
                print(f"  model complexity {complexity}: unavailable ({str(e).split(',')[0]})")
                continue
            out = tmp / f"one-c{complexity}"
            out.mkdir()
            fps = per_worker_fps(clips / "clip0.mp4", complexity, out)
            base = base or fps
            print(f"  model complexity {complexity}: {fps:6.1f} frames/s per worker (x{fps / base:.2f} vs first)")

        runs = {}
        for workers in (1, 2):
            start = time.perf_counter()
            result = extract(clips, tmp / f"w{workers}", HolisticConfig(model_complexity=1), workers=workers)
            seconds = time.perf_counter() - start
            runs[workers] = result.frames / seconds
            print(f"  --workers {workers} (complexity 1): {result.frames} frames in {seconds:5.1f} s = "
                  f"{runs[workers]:6.1f} frames/s end to end")
        same = all((tmp / "w1" / f"clip{i}.pose").read_bytes() == (tmp / "w2" / f"clip{i}.pose").read_bytes()
                   for i in range(args.clips))
        print(f"  speed-up with 2 workers: x{runs[2] / runs[1]:.2f} (outputs byte-identical: {same})")


if __name__ == "__main__":
    main()
