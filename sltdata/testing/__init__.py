"""Fakes for tests, shipped with the package (as pose-format's ``fake_pose``): small synthetic
datasets and stores made on the fly, so no test needs data files in the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sltdata.layouts import HOLISTIC_543
from sltdata.sequence import Sequence


def realdata_dir() -> Path | None:
    """The real files tests may read (``shared/realdata``, see its PROVENANCE.md): ``SLTDATA_REALDATA``,
    else the first ``shared/realdata`` in a folder above the checkout (``../shared`` beside it in CI,
    ``shared/`` inside a device copy); None where they are absent, and the test skips saying so."""
    import os

    if os.environ.get("SLTDATA_REALDATA"):
        return Path(os.environ["SLTDATA_REALDATA"])
    here = Path(__file__).resolve().parents
    return next((p / "shared" / "realdata" for p in here if (p / "shared" / "realdata").is_dir()), None)


def fake_landmarks(frames: int = 10, points: int = HOLISTIC_543.num_points, seed: int = 0,
                   nan_fraction: float = 0.1) -> np.ndarray:
    """Random float32 (frames, points, 3) with whole points set to NaN, as undetected points are."""
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0, 1, (frames, points, 3)).astype(np.float32)
    lm[rng.uniform(size=(frames, points)) < nan_fraction] = np.nan
    return lm


def fake_sequence(key: str = "seq-0", frames: int = 10, seed: int = 0, **fields) -> Sequence:
    return Sequence(key=key, landmarks=fake_landmarks(frames, seed=seed), layout=HOLISTIC_543.name, **fields)


def synth_store(fmt: str, workdir: str | Path, seed: int = 0, **sizes) -> Path:
    """Synthesize a dataset of ``fmt`` under ``workdir/raw`` and ingest it into ``workdir/store``."""
    from sltdata.ingest import ingest
    from sltdata.synth import synth

    workdir = Path(workdir)
    raw = synth(fmt, workdir / "raw", seed=seed, **sizes)
    ingest(fmt, raw, workdir / "store")  # each synth format has a bundled recipe of the same name
    return workdir / "store"
