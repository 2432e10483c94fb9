"""Pose frames -> vectors a text model can read: frame subsampling and the projector shared by the
`ctc`, `seq2seq` and `causal-lm` trainers.

Sign-language video runs at 25-30 fps while a sentence has a few dozen tokens, so translation models
usually see fewer, pooled frames (``subsample``: the mean of every N real frames). The projector is
either a linear map of each frame's features (``linear``) or the `islr` trainer's Conv1D stack
(``conv``: stem + masked batch norm + causal depthwise Conv1D blocks with ECA, from
``trainers.common.blocks``), followed by a layer norm and a learnable scale started at the size of the text
model's own token embeddings, so the pose vectors enter the pretrained model at the magnitude its
first layer was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainers.common.blocks import Conv1DBlock, MaskedBatchNorm


def subsample_frames(x: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of every ``k`` frames over real frames only; a window is real if any frame in it is."""
    if k == 1:
        return x, mask
    b, t, d = x.shape
    pad = (-t) % k
    x, mask = F.pad(x, (0, 0, 0, pad)), F.pad(mask, (0, pad))
    m = mask.view(b, -1, k, 1).to(x.dtype)
    x = (x.view(b, -1, k, d) * m).sum(2) / m.sum(2).clamp_min(1.0)
    return x, mask.view(b, -1, k).any(2)


class PoseProjector(nn.Module):
    """features (B, T, D), mask (B, T) -> embeddings (B, T', out_dim), mask (B, T') with T' = ceil(T / subsample)."""

    def __init__(self, feature_dim: int, out_dim: int, kind: str = "linear", subsample: int = 1,
                 conv_dim: int = 192, conv_layers: int = 3, kernel_size: int = 17, drop: float = 0.1,
                 init_scale: float = 1.0):
        super().__init__()
        self.kind, self.subsample = kind, subsample
        if kind == "conv":
            self.stem = nn.Linear(feature_dim, conv_dim, bias=False)
            self.stem_bn = MaskedBatchNorm(conv_dim)
            self.blocks = nn.ModuleList(Conv1DBlock(conv_dim, kernel_size, 1, 2, drop, 5) for _ in range(conv_layers))
            self.out = nn.Linear(conv_dim, out_dim)
        else:
            self.out = nn.Linear(feature_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.drop = nn.Dropout(drop)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = mask.bool()
        x = torch.nan_to_num(features) * mask.unsqueeze(-1).to(features.dtype)
        x, mask = subsample_frames(x, mask, self.subsample)
        if self.kind == "conv":
            m = mask.unsqueeze(-1).to(x.dtype)
            x = self.stem_bn(self.stem(x), m)
            for blk in self.blocks:
                x = blk(x, m)
        x = self.norm(self.out(self.drop(x))) * self.scale
        return x * mask.unsqueeze(-1).to(x.dtype), mask
