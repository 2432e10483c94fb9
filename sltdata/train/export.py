"""ONNX export for models of the form ``model(features (B, T, D), mask (B, T)) -> outputs``, with a
check against onnxruntime (when installed) that the exported graph gives the same outputs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo

log = logging.getLogger(__name__)


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
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'sltdata[train]'") from None
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
