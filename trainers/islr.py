"""`islr`: isolated sign recognition on pose landmarks — model, recipe and metrics in one file.

The model follows the Kaggle "Google - Isolated Sign Language Recognition" first-place solution by
Hoyeol Sohn (hoyso48; 0.8929 private LB; write-up https://www.kaggle.com/competitions/asl-signs/discussion/406684,
code published with it), and seed 001 of this project, which compared its variants:

- stem: bias-free linear projection of each frame's features to ``dim`` + batch norm (momentum 0.95
  in Keras terms);
- Conv1D block (an EfficientNet MBConv turned 1-D): linear expansion x2 with swish, **causal** depthwise
  conv (kernel 17, optional dilation), batch norm, efficient channel attention (ECA, kernel 5),
  linear projection, per-sample dropout (Keras ``noise_shape=(None, 1, 1)``), residual. Causal padding
  is what makes end-padding harmless: a frame never sees the frames after it;
- transformer block: pre-norm (batch norm) multi-head self-attention with a key padding mask, then a
  swish MLP (expansion 2), each with per-sample dropout and a residual;
- stages of 3 Conv1D blocks + 1 sequence block (2 stages at dim 192, 4 at dim 384), a linear "top"
  to 2*dim, average pooling over the valid frames only, **late dropout** (p=0.8, switched on from an
  epoch, so the head first learns without it), and the classifier.

Architectures by config (``model.arch``): ``cnn-transformer`` (default, the solution's), ``cnn``
(Conv1D blocks only), ``transformer`` (transformer blocks with sinusoidal positions), ``cnn-bigru`` and
``cnn-bilstm`` (the sequence block is a bidirectional GRU/LSTM, 192 units per direction as in seed 001;
the backward direction reverses each sequence within its own length so padding stays after the real
frames), and ``cnn-linformer`` (seed 001's sixth: Linformer attention, keys and values projected along
time to ``linformer_k`` rows; it needs a fixed ``transforms.max_length``).

Batch norm here is masked (statistics over real frames only), so padded frames affect neither
training statistics nor outputs. The Conv1D, transformer and batch-norm blocks live in
``trainers.common.blocks`` (the ``ctc`` trainer and the text trainers' projector use them too).

Recipe (``train`` section, shared loop): label smoothing 0.1, AdamW or RAdam+Lookahead, one-cycle
cosine schedule, weight decay 0.1, AWP (lambda 0.2) from an epoch on. Metrics: accuracy, top-5 (top-k
below six classes, named by its k), macro-F1 over the classes present in targets or predictions, and
micro F1 (scikit-learn); reports: predictions.csv, per_class.csv, confusion_matrix.csv.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo, Trainer
from trainers.common import CONFIGS_DIR
from trainers.common.blocks import (Conv1DBlock, LinformerBlock, MaskedBatchNorm, SampleDropout, TransformerBlock,
                                    masked_mean)

log = logging.getLogger(__name__)

ARCHS = ("cnn-transformer", "cnn", "transformer", "cnn-bigru", "cnn-bilstm", "cnn-linformer")


@dataclass
class ISLRConfig:
    arch: Literal["cnn-transformer", "cnn", "transformer", "cnn-bigru", "cnn-bilstm", "cnn-linformer"] = "cnn-transformer"
    dim: int = 192
    stages: int = 2                 # each: conv_per_stage Conv1D blocks + one sequence block
    conv_per_stage: int = 3
    kernel_size: int = 17
    dilations: list = field(default_factory=lambda: [1])   # cycled over the Conv1D blocks
    expand: int = 2                 # Conv1D block expansion
    eca_kernel: int = 5
    heads: int = 4
    mlp_expand: int = 2             # transformer MLP expansion
    rnn_units: int = 192            # BiGRU/BiLSTM units per direction (seed 001); 96 = runs made before
    linformer_k: int = 128          # Linformer: keys/values projected along time to this many rows
    drop: float = 0.2               # per-sample dropout in blocks
    attn_drop: float = 0.2
    late_dropout: float = 0.8
    late_dropout_start_epoch: int = 0
    label_smoothing: float = 0.1
    bn_momentum: float = 0.05       # torch convention (Keras momentum 0.95 == 0.05 here)

    def validate(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"config model.dim {self.dim} must be divisible by model.heads {self.heads}")
        for name in ("rnn_units", "linformer_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config model.{name}: must be at least 1")
        if not self.dilations or not all(isinstance(d, int) and d >= 1 for d in self.dilations):
            raise ConfigError("config model.dilations: a list of integers >= 1")
        for name in ("drop", "attn_drop", "late_dropout", "label_smoothing", "bn_momentum"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"config model.{name}: must be in [0, 1)")


# --- blocks of this model only (the shared ones are in trainers.common.blocks) ----------------------

class LateDropout(nn.Module):
    """Dropout that switches on from ``start_epoch`` (the loop calls ``set_train_progress``). The
    switch is a buffer, so it is checkpointed and resumed with the weights."""

    def __init__(self, p: float, start_epoch: int):
        super().__init__()
        self.p, self.start_epoch = p, start_epoch
        self.register_buffer("active", torch.tensor(start_epoch <= 0))

    def set_train_progress(self, epoch: int) -> None:
        self.active.fill_(epoch >= self.start_epoch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return torch.where(self.active, F.dropout(x, self.p, True), x)


class BiRNN(nn.Module):
    """Bidirectional GRU/LSTM whose backward pass reverses each sequence within its length, so the
    padding after the real frames is never read before them. ``units`` per direction (seed 001: 192);
    the concatenated 2 x units are projected back to ``dim`` for the residual (no projection when
    2 x units == dim, which is how runs made with dim // 2 units load)."""

    def __init__(self, dim: int, kind: str, drop: float, units: int):
        super().__init__()
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.fwd = rnn(dim, units, batch_first=True)
        self.bwd = rnn(dim, units, batch_first=True)
        self.proj = nn.Identity() if 2 * units == dim else nn.Linear(2 * units, dim, bias=False)
        self.drop = SampleDropout(drop)

    def forward(self, x: torch.Tensor, m: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        lengths = m[..., 0].sum(1).long().clamp_min(1)
        ar = torch.arange(t, device=x.device).unsqueeze(0)
        rev = torch.where(ar < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - ar, ar)  # (B, T)
        idx = rev.unsqueeze(-1).expand_as(x)
        f, _ = self.fwd(x)
        r, _ = self.bwd(torch.gather(x, 1, idx))
        ridx = rev.unsqueeze(-1).expand(*rev.shape, r.shape[-1])
        h = torch.cat([f, torch.gather(r, 1, ridx)], -1)
        return x + self.drop(self.proj(h))


def sinusoid(t: int, dim: int, device) -> torch.Tensor:
    pos = torch.arange(t, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(t, dim, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class ISLRModel(nn.Module):
    """features (B, T, D) float, mask (B, T) bool -> logits (B, classes)."""

    def __init__(self, cfg: ISLRConfig, feature_dim: int, num_classes: int, max_length: int | None = None):
        """``max_length``: the longest input (the transforms' max_length); the Linformer needs it."""
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        if cfg.arch == "cnn-linformer" and max_length is None:
            raise ConfigError("config model.arch cnn-linformer projects keys along time, so it needs a fixed "
                              "transforms.max_length (got null)")
        self.stem = nn.Linear(feature_dim, d, bias=False)
        self.stem_bn = MaskedBatchNorm(d, cfg.bn_momentum)
        conv_n = 0 if cfg.arch == "transformer" else cfg.conv_per_stage
        seq = {"cnn-transformer": "transformer", "transformer": "transformer", "cnn": None,
               "cnn-bigru": "gru", "cnn-bilstm": "lstm", "cnn-linformer": "linformer"}[cfg.arch]
        blocks: list[nn.Module] = []
        for s in range(cfg.stages):
            for i in range(conv_n):
                dil = cfg.dilations[(s * conv_n + i) % len(cfg.dilations)]
                blocks.append(Conv1DBlock(d, cfg.kernel_size, dil, cfg.expand, cfg.drop, cfg.eca_kernel, cfg.bn_momentum))
            if seq == "transformer":
                blocks.append(TransformerBlock(d, cfg.heads, cfg.mlp_expand, cfg.drop, cfg.attn_drop, cfg.bn_momentum))
            elif seq == "linformer":
                blocks.append(LinformerBlock(d, cfg.heads, cfg.linformer_k, max_length, cfg.mlp_expand, cfg.drop,
                                             cfg.attn_drop, cfg.bn_momentum))
            elif seq in ("gru", "lstm"):
                blocks.append(BiRNN(d, seq, cfg.drop, cfg.rnn_units))
        self.blocks = nn.ModuleList(blocks)
        self.top = nn.Linear(d, 2 * d)
        self.late_dropout = LateDropout(cfg.late_dropout, cfg.late_dropout_start_epoch)
        self.classifier = nn.Linear(2 * d, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        m = mask.unsqueeze(-1).to(features.dtype)
        x = torch.nan_to_num(features) * m            # padded / undetected frames carry no values
        x = self.stem_bn(self.stem(x), m)
        if self.cfg.arch == "transformer":
            x = x + sinusoid(x.shape[1], x.shape[2], x.device).to(x.dtype)
        # key padding mask for attention; frame 0 always visible so an empty sequence gives no NaN
        keys = mask.clone()
        keys[:, 0] = True
        key_mask = keys[:, None, None, :]
        for blk in self.blocks:
            x = blk(x, m) if isinstance(blk, Conv1DBlock) else blk(x, m, key_mask)
        x = masked_mean(self.top(x), m)
        return self.classifier(self.late_dropout(x))


# --- the trainer ----------------------------------------------------------------------------------

class ISLRTrainer(Trainer):
    name = "islr"
    config_class = ISLRConfig
    target = "label"
    monitor = "accuracy"
    monitor_mode = "max"
    export_formats = ("onnx",)
    configs_dir = CONFIGS_DIR

    def build(self, cfg: ISLRConfig, info: DatasetInfo) -> nn.Module:
        return ISLRModel(cfg, info.feature_dim, info.num_classes, info.max_length)

    def loss(self, model: nn.Module, batch: dict, cfg: ISLRConfig) -> torch.Tensor:
        logits = model(batch["features"], batch["mask"])
        return F.cross_entropy(logits.float(), batch["target"], label_smoothing=cfg.label_smoothing)

    def predict(self, model: nn.Module, batch: dict, cfg: ISLRConfig) -> dict[str, Any]:
        logits = model(batch["features"], batch["mask"]).float()
        return {"logits": logits, "target": batch["target"], "key": list(batch["key"])}

    def metrics(self, outputs: dict[str, Any], info: DatasetInfo) -> dict[str, float]:
        return classification_metrics(outputs["logits"].numpy(), outputs["target"].numpy(), info.num_classes)

    def write_report(self, outputs: dict[str, Any], info: DatasetInfo, out_dir: Path) -> list[Path]:
        return write_classification_report(outputs["logits"].numpy(), outputs["target"].numpy(),
                                           outputs["key"], info.class_names, Path(out_dir))

    def export(self, model: nn.Module, info: DatasetInfo, path: Path, format: str, cfg: ISLRConfig) -> Path:
        if format != "onnx":
            return super().export(model, info, path, format, cfg)
        from sltdata.train.export import export_raw_onnx
        return export_raw_onnx(model, info, path, output="logits", trainer=self.name)


def classification_metrics(logits: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, top-k accuracy, macro and micro F1 (scikit-learn) over the labelled samples.

    Macro-F1 averages over the classes that occur in the targets or the predictions, not over every
    class of the dataset: a class with no sample and no prediction has no F1 to speak of, and counting
    it as 0 made 50 perfect predictions over 10 of 250 signs read 0.04. ``macro_f1_classes`` says how
    many classes the average covers.

    Top-k is named by its real k: ``top5_accuracy`` with six classes or more; with fewer, k is the
    number of classes minus one (``top4_accuracy`` for five classes), since top-k over k classes is
    1.0 whatever the model does. With two classes there is no top-k beyond accuracy, so none is given.
    Samples without a label (target -100, ``sltdata.loader.IGNORE_INDEX``) are not scored.
    """
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    scored = target >= 0
    logits, target = logits[scored], target[scored]
    if not len(target):
        return {}
    pred = logits.argmax(1)
    present = np.union1d(target, pred)
    out = {"accuracy": float(accuracy_score(target, pred))}
    k = min(5, num_classes - 1)
    if k >= 2:
        out[f"top{k}_accuracy"] = float(top_k_accuracy_score(target, logits, k=k, labels=np.arange(num_classes)))
    out["macro_f1"] = float(f1_score(target, pred, labels=present, average="macro", zero_division=0))
    out["macro_f1_classes"] = int(len(present))
    out["micro_f1"] = float(f1_score(target, pred, labels=present, average="micro", zero_division=0))
    return out


def write_classification_report(logits: np.ndarray, target: np.ndarray, keys: list[str], names: list[str],
                                out_dir: Path) -> list[Path]:
    """predictions.csv (key, label, prediction, probability, top-5), per_class.csv (accuracy and
    support per sign) and confusion_matrix.csv (rows = true sign, columns = predicted sign)."""
    from sklearn.metrics import confusion_matrix

    out_dir.mkdir(parents=True, exist_ok=True)
    z = logits - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    top = np.argsort(-logits, 1)[:, :5]
    pred = top[:, 0]
    paths = [out_dir / "predictions.csv", out_dir / "per_class.csv", out_dir / "confusion_matrix.csv"]
    with paths[0].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "label", "prediction", "probability", "correct", "top5"])
        for i, key in enumerate(keys):
            w.writerow([key, names[target[i]], names[pred[i]], f"{prob[i, pred[i]]:.5f}", int(pred[i] == target[i]),
                        " ".join(names[j] for j in top[i])])
    cm = confusion_matrix(target, pred, labels=np.arange(len(names)))
    support = cm.sum(1)
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "support", "accuracy"])
        for c, name in enumerate(names):
            w.writerow([name, int(support[c]), f"{cm[c, c] / support[c]:.5f}" if support[c] else ""])
    with paths[2].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label"] + names)
        for c, name in enumerate(names):
            w.writerow([name] + cm[c].tolist())
    return paths
