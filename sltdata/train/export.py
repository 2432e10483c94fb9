"""ONNX export of a run's model, in two shapes:

- ``export_raw_onnx``: the self-contained model a user carries away. Its graph takes one raw sequence
  as Kaggle's evaluation API gave it, ``landmarks`` float32 ``(frames, 543, 3)`` with NaN for
  undetected points (``frames`` dynamic), and runs the run's own eval-mode preprocessing inside the
  graph (``sltdata.transforms.torch_ops.RawPreprocess``: the torch twin of the NumPy pipeline, not a
  copy), then the model, then a trainer-given head (islr: the logits ``(num_classes,)``; ctc: the
  per-frame log-probabilities of the real frames ``(frames', chars + 1)``). The label / character
  map, layout and transform config travel in the model's ``metadata_props`` (JSON strings), so the
  file alone is enough to predict.
- ``export_onnx``: the model alone on computed features ``(batch, time, D)`` + mask.

``check_raw_onnx`` compares onnxruntime on raw sequences with the path ``predict`` takes in PyTorch:
the NumPy pipeline of the run's config, then the model and head.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo

log = logging.getLogger(__name__)

Head = Callable[[object], torch.Tensor]   # model output (batch of one) -> the exported output


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx and onnxscript packages: pip install 'sltdata[train]'") from None


def example_batch(info: DatasetInfo, batch: int = 3, frames: int | None = None, seed: int = 0):
    """Random features with different real lengths per sample (the last frames padded)."""
    t = frames or info.max_length or 64
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, t, info.feature_dim, generator=g)
    lengths = torch.linspace(t, max(1, t // 3), batch).round().long()
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return features, mask


def export_onnx(model: nn.Module, info: DatasetInfo, path: str | Path, opset: int = 18) -> Path:
    """Write ``path`` with dynamic batch and time axes (inputs ``features``, ``mask``; output ``logits``)."""
    _need_onnx()
    path = Path(path)
    model = model.eval().cpu()
    features, mask = example_batch(info)
    batch, time = torch.export.Dim("batch", min=1), torch.export.Dim("time", min=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (shared dynamic axes, deprecations)
        torch.onnx.export(model, (features, mask), str(path), input_names=["features", "mask"],
                          output_names=["logits"], opset_version=opset, dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={"features": {0: batch, 1: time}, "mask": {0: batch, 1: time}})
    return path


def check_onnx(model: nn.Module, info: DatasetInfo, path: str | Path, atol: float = 1e-4) -> float | None:
    """Max |logit difference| between PyTorch and onnxruntime on an example batch; None when
    onnxruntime is not installed. Raises ConfigError when it exceeds ``atol``."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime not installed: exported model not checked")
        return None
    features, mask = example_batch(info, batch=4, seed=1)
    with torch.no_grad():
        want = model.eval().cpu()(features, mask).float().numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"features": features.numpy(), "mask": mask.numpy()})[0]
    diff = float(np.abs(got - want).max())
    if diff > atol:
        raise ConfigError(f"{path}: ONNX logits differ from PyTorch by {diff:.2e} (> {atol:.0e})")
    return diff


# --- raw-input export -------------------------------------------------------------------------------

def logits_head(out: torch.Tensor) -> torch.Tensor:
    """A classifier's logits (1, classes) -> (classes,)."""
    return out[0].float()


def frame_log_probs_head(out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A CTC model's (logits (1, T', C), mask (1, T')) -> log-probabilities of the real frames (frames', C).
    The real frames are a prefix, so a slice to their count keeps them and drops the padding."""
    logits, mask = out
    return logits[0].float().log_softmax(-1)[:mask[0].sum()]


# The exported output, by name (recorded as ``sltdata.output`` in the metadata): what a trainer's
# export asks for, and what ``check_exported`` compares.
HEADS: dict[str, Head] = {"logits": logits_head, "log_probs": frame_log_probs_head}


class RawInputModel(nn.Module):
    """``landmarks (frames, P, 3)`` -> ``head(model(*RawPreprocess(landmarks)))``: a run's model with
    its eval-mode preprocessing in front, the unit that is exported."""

    def __init__(self, model: nn.Module, info: DatasetInfo, head: Head):
        super().__init__()
        from sltdata.transforms.torch_ops import RawPreprocess

        if info.transform is None:
            raise ConfigError("the run's dataset.json has no transform config: it cannot be exported with preprocessing")
        self.preprocess = RawPreprocess(info.transform, info.layout)
        self.model = model
        self.head = head

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        features, mask = self.preprocess(landmarks)
        # Real frames never outnumber the input's, so the model runs on at most that many: the rest
        # is masked padding, which the trainers' models ignore (their tests check it), and a short
        # sequence costs a short forward instead of one over max_length frames.
        frames = landmarks.shape[0]
        return self.head(self.model(features[:, :frames], mask[:, :frames]))


def raw_metadata(info: DatasetInfo, trainer: str, output: str) -> dict[str, str]:
    """The ``metadata_props`` of a raw-input export: what a consumer needs besides the graph."""
    meta = {"sltdata.trainer": trainer, "sltdata.input": "landmarks", "sltdata.output": output,
            "sltdata.layout": info.layout or "holistic-543",
            "sltdata.transform": json.dumps(info.transform, sort_keys=True)}
    if info.labels is not None:
        meta["sltdata.labels"] = json.dumps(info.labels, ensure_ascii=False)
    if info.characters is not None:
        meta["sltdata.characters"] = json.dumps(info.characters, ensure_ascii=False)
    return meta


def read_metadata(path: str | Path) -> dict[str, object]:
    """An exported model's ``sltdata.*`` metadata, JSON values decoded (``labels``, ``transform``...)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    out: dict[str, object] = {}
    for key, value in props.items():
        if key.startswith("sltdata."):
            name = key[len("sltdata."):]
            out[name] = json.loads(value) if name in ("labels", "characters", "transform") else value
    return out


def example_landmarks(info: DatasetInfo, frames: int, seed: int = 0) -> np.ndarray:
    """A raw (frames, points, 3) sequence for tracing and checks: uniform coordinates with whole points
    and whole frames undetected (NaN), as MediaPipe leaves them."""
    from sltdata.layouts import get_layout

    rng = np.random.default_rng(seed)
    points = get_layout(info.layout or "holistic-543").num_points
    lm = rng.uniform(0, 1, (frames, points, 3)).astype(np.float32)
    lm[rng.uniform(size=(frames, points)) < 0.2] = np.nan
    lm[1::5] = np.nan                                   # every fifth frame empty: frame dropping runs
    return lm


def export_raw_onnx(model: nn.Module, info: DatasetInfo, path: str | Path, *, output: str, trainer: str,
                    opset: int = 18) -> Path:
    """Write the raw-input model (input ``landmarks``, output ``output``, a name in ``HEADS``) with
    its metadata.

    The dynamo exporter handles the dynamic frame axis and the NaN ops; the preprocessing has no
    branch on the frame count, so one trace serves every length (the tests check 1, short, exactly
    max_length and longer)."""
    _need_onnx()
    import onnx

    if output not in HEADS:
        raise ConfigError(f"unknown raw-input ONNX output {output!r} (known: {', '.join(HEADS)})")
    path = Path(path)
    raw = RawInputModel(model.eval().cpu(), info, HEADS[output]).eval()
    example = torch.from_numpy(example_landmarks(info, frames=7))
    frames = torch.export.Dim("frames", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations)
        torch.onnx.export(raw, (example,), str(path), input_names=["landmarks"], output_names=[output],
                          opset_version=opset, dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={"landmarks": {0: frames}})
    proto = onnx.load(str(path))
    for key, value in raw_metadata(info, trainer, output).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def run_raw(model: nn.Module, info: DatasetInfo, head: Head, landmarks: np.ndarray) -> np.ndarray:
    """The PyTorch reference for one raw sequence: the run's NumPy pipeline (eval mode), the model,
    the head. The path ``predict`` takes; the export must agree with it."""
    from sltdata.transforms import build_pipeline

    features, mask = build_pipeline(info.transform, info.layout)(landmarks)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(features)[None], torch.from_numpy(mask)[None])
        return head(out).numpy()


def check_lengths(info: DatasetInfo) -> list[int]:
    """Sequence lengths a raw-input check covers: 1, short, exactly max_length, longer than it."""
    m = info.max_length or 64
    return sorted({1, max(2, m // 3), m, 2 * m + 5})


def check_raw_onnx(model: nn.Module, info: DatasetInfo, head: Head, path: str | Path,
                   sequences: Iterable[np.ndarray] | None = None, atol: float = 1e-4) -> float | None:
    """Max |difference| between onnxruntime on raw sequences and ``run_raw`` (default sequences:
    ``example_landmarks`` at ``check_lengths``); None when onnxruntime is not installed. Raises
    ConfigError when it exceeds ``atol`` or an output's shape differs."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime not installed: exported model not checked")
        return None
    if sequences is None:
        sequences = [example_landmarks(info, n, seed=n) for n in check_lengths(info)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for lm in sequences:
        want = run_raw(model, info, head, lm)
        got = sess.run(None, {name: np.ascontiguousarray(lm, dtype=np.float32)})[0]
        if got.shape != want.shape:
            raise ConfigError(f"{path}: ONNX output of shape {got.shape} for {len(lm)} frames, "
                              f"PyTorch gives {want.shape}")
        diff = float(np.abs(got - want).max()) if got.size else 0.0
        if not diff <= atol:
            raise ConfigError(f"{path}: ONNX output differs from PyTorch by {diff:.2e} (> {atol:.0e}) "
                              f"on a sequence of {len(lm)} frames")
        worst = max(worst, diff)
    return worst


def check_exported(model: nn.Module, info: DatasetInfo, path: str | Path) -> float | None:
    """``check_raw_onnx`` for a raw-input export (its metadata names the output), else ``check_onnx``."""
    output = read_metadata(path).get("output")
    if output is None:
        return check_onnx(model, info, path)
    if output not in HEADS:
        raise ConfigError(f"{path}: unknown raw-input output {output!r} in its metadata")
    return check_raw_onnx(model, info, HEADS[output], path)
