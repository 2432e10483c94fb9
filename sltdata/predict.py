"""`sltdata predict`: a trained run on new inputs, through the run's own preprocessing.

A run directory is enough (``dataset.json`` + ``config.yaml`` + a checkpoint): the transform config,
the layout and the label / character map come from it, and every sequence goes through
``sltdata.transforms.build_pipeline`` and ``sltdata.loader.collate``, the code the loader runs for
``evaluate``, then the trainer's own ``predict``. Nothing here re-derives a feature: a copy of the
preprocessing would drift from training silently.

Inputs are read by the readers ``ingest`` uses, so a file predicted here and the same file ingested,
sharded and evaluated give the same numbers:

- a video (extracted on the fly with ``sltdata.extract``'s code: the same Holistic settings, the same
  ``.pose`` the extract command writes, read back as ``ingest pose`` reads it),
- a ``.pose`` file, a Kaggle ISLR long parquet (one sequence), a Fingerspelling wide parquet (every
  sequence in it), a sequence store, a shard directory (``split`` / ``keys`` pick sequences).

A bad input is a ``Failure`` (input, reason) and the others go on. Classifier records hold the top-k
softmax probabilities, descending; ctc / seq2seq / causal-lm records hold the decoded ``text``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from sltdata import fs
from sltdata.errors import ConfigError, SltdataError, SourceError
from sltdata.layouts import Layout

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class Item:
    """One sequence to predict: raw landmarks on ``layout``, or (from shards that hold features)
    ready ``features`` and their frame ``mask``."""

    input: str  # the input as the user named it
    key: str
    landmarks: np.ndarray | None = None  # float32 (frames, points, 3), NaN = not detected
    layout: Layout | None = None
    features: np.ndarray | None = None  # float32 (frames, D), already transformed
    mask: np.ndarray | None = None  # bool (frames,)
    window: tuple[int, int] | None = None  # [start, end) frames of ``key`` this item covers (--window)


@dataclass(frozen=True)
class Failure:
    input: str
    reason: str

    def __str__(self) -> str:
        return f"{self.input}: {self.reason}"


@dataclass
class Predictions:
    """What ``predict`` returns: one record per sequence, in input order, and the inputs that failed."""

    records: list[dict] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)


# --- reading inputs -----------------------------------------------------------------------------

class VideoReader:
    """Videos to landmarks with the extract command's code: one Holistic, built on first use and
    reset per video, and the ``.pose`` it writes read back as ``ingest pose`` reads it."""

    def __init__(self):
        self._holistic = None
        self._tmp = None

    def read(self, path: Path) -> tuple[np.ndarray, Layout]:
        from sltdata.extract import HolisticConfig, extract_video
        from sltdata.extract.backends import make_holistic
        from sltdata.extract.video import VideoInput
        from sltdata.sources.pose import read_pose_file

        if self._holistic is None:
            self._holistic = make_holistic(HolisticConfig())
            self._tmp = tempfile.TemporaryDirectory(prefix="sltdata-predict-")
        out = Path(self._tmp.name)
        for old in out.glob("*.pose"):
            old.unlink()
        outcome = extract_video(VideoInput(path, "video"), out, self._holistic)
        if outcome.status != "written":
            raise SourceError(path, outcome.reason or "no landmarks extracted")
        landmarks, layout, _ = read_pose_file(out / "video.pose")
        return landmarks, layout

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._tmp.cleanup()
            self._holistic = self._tmp = None


def parquet_kind(path: Path) -> str:
    """``islr`` (long: one row per frame and point) or ``fingerspelling`` (wide: one row per frame),
    from the columns each Kaggle format defines."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sltdata.sources.kaggle_fingerspelling import SEQUENCE_COLUMN

    try:
        names = set(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        raise SourceError(path, f"unreadable parquet ({str(e).splitlines()[0]})") from None
    if {"type", "landmark_index"} <= names:
        return "islr"
    if SEQUENCE_COLUMN in names:
        return "fingerspelling"
    raise SourceError(path, "neither a Kaggle ISLR (type, landmark_index) nor a Fingerspelling "
                            f"({SEQUENCE_COLUMN}, x_face_0, ...) parquet")


def _fingerspelling_items(path: Path, name: str) -> Iterator[Item | Failure]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sltdata.layouts import HOLISTIC_543
    from sltdata.sources.kaggle_fingerspelling import SEQUENCE_COLUMN, read_fingerspelling_file

    ids = pc.unique(pq.read_table(path, columns=[SEQUENCE_COLUMN]).column(SEQUENCE_COLUMN).cast("string"))
    keys = [k for k in ids.to_pylist() if k is not None]
    found, rejected = read_fingerspelling_file(path, keys)
    for k in keys:  # file order
        if k in found:
            yield Item(name, k, landmarks=found[k], layout=HOLISTIC_543)
        elif k in rejected:
            yield Failure(f"{name}#{k}", rejected[k])


def _store_items(path: Path, name: str, keys: list[str] | None) -> Iterator[Item | Failure]:
    from sltdata.store import Store

    store = Store(path)
    if keys:
        for k in keys:
            try:
                s = store.get(k)
            except SltdataError as e:
                yield Failure(f"{name}#{k}", str(e))
                continue
            yield Item(name, s.key, landmarks=s.landmarks, layout=store.layout(s.layout))
        return
    for s in store:
        yield Item(name, s.key, landmarks=s.landmarks, layout=store.layout(s.layout))


def _shard_items(path: Path, name: str, split: str | None, keys: list[str] | None,
                 transform: dict | None) -> Iterator[Item | Failure]:
    from sltdata.shards import ShardIndex
    from sltdata.shards.read import iter_samples
    from sltdata.transforms import load_transform_config

    index = ShardIndex.open(path)
    ready = index.transform is not None
    if ready and load_transform_config(index.transform).to_dict() != transform:
        raise ConfigError(f"{name}: the shards hold features made with another transform config than the run's; "
                          "predict on raw shards, the store, or shards written with the run's transforms")
    wanted = set(keys) if keys else None
    seen = set()
    for _, s in iter_samples(index, None if split is None else [split]):
        if wanted is not None and s.key not in wanted:
            continue
        seen.add(s.key)
        if ready:
            yield Item(name, s.key, features=np.asarray(s.arrays["landmarks"], np.float32),
                       mask=np.asarray(s.arrays["mask"], bool))
        else:
            yield Item(name, s.key, landmarks=s.arrays["landmarks"], layout=index.layout(s.meta["layout"]))
    for k in (keys or []):
        if k not in seen:
            yield Failure(f"{name}#{k}", f"no sample with key {k!r}" + (f" in split {split}" if split else ""))


def read_input(path: str | Path, videos: VideoReader, *, split: str | None = None, keys: list[str] | None = None,
               transform: dict | None = None) -> Iterator[Item | Failure]:
    """The sequences one input holds, each as an ``Item`` (or a ``Failure`` for one bad sequence in
    it); an input that cannot be read at all raises a ``SltdataError`` naming it."""
    from sltdata.layouts import HOLISTIC_543
    from sltdata.shards.index import INDEX_FILE
    from sltdata.store import META_FILE

    name = str(path)
    path = Path(path)
    if path.is_dir() and (path / META_FILE).is_file():
        yield from _store_items(path, name, keys)
    elif (path.is_dir() and (path / INDEX_FILE).is_file()) or path.name == INDEX_FILE:
        yield from _shard_items(path, name, split, keys, transform)
    elif not path.exists():
        raise SourceError(path, "no such file or directory")
    elif path.is_dir():
        raise SourceError(path, f"a directory that is neither a store ({META_FILE}) nor shards ({INDEX_FILE})")
    elif path.suffix.lower() == ".pose":
        from sltdata.sources.pose import read_pose_file

        landmarks, layout, _ = read_pose_file(path)
        yield Item(name, path.stem, landmarks=landmarks, layout=layout)
    elif path.suffix.lower() == ".parquet":
        if parquet_kind(path) == "islr":
            from sltdata.sources.kaggle_islr import read_islr_landmarks

            yield Item(name, path.stem, landmarks=read_islr_landmarks(path), layout=HOLISTIC_543)
        else:
            yield from _fingerspelling_items(path, name)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        landmarks, layout = videos.read(path)
        yield Item(name, path.stem, landmarks=landmarks, layout=layout)
    else:
        raise SourceError(path, "not a video, .pose, .parquet, sequence store or shard directory")


def read_inputs(inputs: Iterable[str | Path], *, split: str | None = None, keys: list[str] | None = None,
                transform: dict | None = None) -> Iterator[Item | Failure]:
    """Every input's sequences in order; an unreadable input becomes one ``Failure`` and the rest go on."""
    videos = VideoReader()
    try:
        for inp in inputs:
            try:
                yield from read_input(inp, videos, split=split, keys=keys, transform=transform)
            except SourceError as e:
                yield Failure(str(inp), e.reason)
            except SltdataError as e:
                msg = str(e)
                yield Failure(str(inp), msg[len(str(inp)) + 2:] if msg.startswith(f"{inp}: ") else msg)
    finally:
        videos.close()


def windows(stream: Iterable[Item | Failure], size: int) -> Iterator[Item | Failure]:
    """Each sequence cut into consecutive, non-overlapping windows of ``size`` frames (the last may be
    shorter), for predicting the signs of one long sequence in order. Raw frames are cut, before
    the pipeline, so each window is preprocessed as a clip of its own would be."""
    if size < 1:
        raise ConfigError("--window must be at least 1 frame")
    for x in stream:
        if isinstance(x, Failure):
            yield x
            continue
        frames = len(x.landmarks if x.landmarks is not None else x.features)
        for start in range(0, max(frames, 1), size):
            end = min(start + size, frames)
            cut = slice(start, end)
            yield Item(x.input, x.key, landmarks=None if x.landmarks is None else x.landmarks[cut], layout=x.layout,
                       features=None if x.features is None else x.features[cut],
                       mask=None if x.mask is None else x.mask[cut], window=(start, end))


# --- predicting ---------------------------------------------------------------------------------

class Predictor:
    """A run loaded once (trainer, config, dataset info, model on a device), predicting batches of
    ``Item``s. The app keeps one; ``predict`` makes one per call."""

    def __init__(self, run_dir: str | Path, checkpoint: str = "best", device: str = "auto"):
        from sltdata.train.loop import resolve_device
        from sltdata.train.runs import load_run

        self.run_dir = fs.as_path(run_dir)  # a Path, or a RemotePath for a run on object storage
        self.trainer, self.cfg, self.info, model = load_run(run_dir, checkpoint)
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.classifier = self.trainer.target == "label"
        self._pipelines: dict[str, object] = {}

    @property
    def transform(self) -> dict | None:
        return self.info.transform

    def pipeline(self, layout: Layout):
        """The run's transform pipeline on ``layout``, as the loader builds it for the run's shards."""
        from sltdata.transforms import build_pipeline

        if layout.name not in self._pipelines:
            self._pipelines[layout.name] = build_pipeline(self.info.transform, layout=layout)
        return self._pipelines[layout.name]

    def features(self, item: Item) -> tuple[np.ndarray, np.ndarray]:
        """(features, mask) of one item: the loader's transform stage, ``train=False``. A sequence in
        another registered layout than the run's (an OpenPose or COCO-WholeBody .pose for a holistic
        run) is first mapped to the run's layout (``sltdata.layouts.map_layout``: shared points
        copied, the rest NaN); a layout with no declared mapping fails alone, naming both."""
        if item.features is not None:
            return item.features, item.mask
        landmarks, layout = item.landmarks, item.layout
        if self.info.layout and layout.name != self.info.layout:
            from sltdata.layouts import BUILTIN_LAYOUTS, map_layout

            target = BUILTIN_LAYOUTS.get(self.info.layout)
            if target is None or BUILTIN_LAYOUTS.get(layout.name) != layout:
                raise ConfigError(f"layout {layout.name}: the run was trained on {self.info.layout} and no "
                                  "mapping between the two is declared")
            landmarks, layout = map_layout(landmarks, layout, target), target
        features, mask = self.pipeline(layout)(landmarks, rng=None, train=False)
        return features, np.asarray(mask, dtype=bool)

    def outputs(self, items: list[Item]) -> dict:
        """The trainer's ``predict`` outputs for one batch, on the loader's padded batch."""
        import torch

        from sltdata.loader import IGNORE_INDEX, collate
        from sltdata.train.loop import autocast

        samples = []
        for it in items:
            features, mask = self.features(it)
            samples.append({"key": it.key, "meta": {}, "landmarks": features, "mask": mask})
        batch = collate(samples, target=None, labels=None, characters=None)
        batch["features"] = batch.pop("landmarks")
        if self.classifier:  # the trainer's predict passes targets through; there are none here
            batch["target"] = torch.full((len(items),), IGNORE_INDEX, dtype=torch.int64)
        batch = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        with torch.no_grad(), autocast(self.device, self.cfg.train.precision):
            return self.trainer.predict(self.model.eval(), batch, self.cfg.model)

    def predict_batch(self, items: list[Item], top_k: int = DEFAULT_TOP_K) -> list[dict]:
        """One record per item: ``predictions`` (top-k labels with softmax scores, descending) for a
        classifier, ``text`` for the text trainers."""
        import torch

        out = self.outputs(items)
        records = []
        where = [{} if it.window is None else {"frames": list(it.window)} for it in items]
        if "logits" in out:
            probs = torch.softmax(out["logits"].float(), dim=-1).cpu()
            k = min(top_k, probs.shape[-1])
            scores, ids = probs.topk(k, dim=-1)
            names = self.info.class_names
            for it, w, s, i in zip(items, where, scores.tolist(), ids.tolist()):
                records.append({"input": it.input, "key": it.key, **w,
                                "predictions": [{"label": names[c], "score": float(p)} for c, p in zip(i, s)]})
        elif "prediction" in out:
            for it, w, text in zip(items, where, out["prediction"]):
                records.append({"input": it.input, "key": it.key, **w, "text": text})
        else:
            raise ConfigError(f"trainer {self.trainer.name!r}: its predict gives neither logits nor a text prediction")
        return records

    def run(self, stream: Iterable[Item | Failure], *, top_k: int = DEFAULT_TOP_K,
            batch_size: int = DEFAULT_BATCH_SIZE, progress: Callable[[int], None] | None = None,
            on_failure: Callable[[Failure], None] | None = None) -> Predictions:
        if top_k < 1 or batch_size < 1:
            raise ConfigError("--top-k and --batch-size must be at least 1")
        result = Predictions()
        pending: list[Item] = []

        def flush():
            result.records.extend(self.predict_batch(pending, top_k))
            if progress is not None:
                progress(len(pending))
            pending.clear()

        for x in stream:
            if isinstance(x, Failure):
                result.failures.append(x)
                if on_failure is not None:
                    on_failure(x)
                continue
            try:  # preprocessed here, once: a sequence the pipeline refuses fails alone, not its batch
                features, mask = self.features(x)
                x = replace(x, features=features, mask=mask)
            except SltdataError as e:
                f = Failure(f"{x.input}#{x.key}" if x.key != Path(x.input).stem else x.input, str(e))
                result.failures.append(f)
                if on_failure is not None:
                    on_failure(f)
                continue
            pending.append(x)
            if len(pending) >= batch_size:
                flush()
        if pending:
            flush()
        return result

    def predict(self, inputs: Iterable[str | Path], *, top_k: int = DEFAULT_TOP_K, split: str | None = None,
                keys: list[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE, window: int | None = None,
                progress: Callable[[int], None] | None = None,
                on_failure: Callable[[Failure], None] | None = None) -> Predictions:
        stream = read_inputs(inputs, split=split, keys=keys, transform=self.transform)
        if window is not None:
            stream = windows(stream, window)
        return self.run(stream, top_k=top_k, batch_size=batch_size, progress=progress, on_failure=on_failure)


def predict(run_dir: str | Path, inputs: Iterable[str | Path], *, top_k: int = DEFAULT_TOP_K,
            checkpoint: str = "best", split: str | None = None, keys: list[str] | None = None,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto", window: int | None = None,
            progress: Callable[[int], None] | None = None,
            on_failure: Callable[[Failure], None] | None = None) -> Predictions:
    """What ``sltdata predict`` does: records for every sequence of ``inputs``, failures beside them."""
    return Predictor(run_dir, checkpoint, device).predict(
        inputs, top_k=top_k, split=split, keys=keys, batch_size=batch_size, window=window, progress=progress,
        on_failure=on_failure)
