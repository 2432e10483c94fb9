"""Model blocks the pose trainers share (``islr``, ``ctc`` and the text trainers' conv projector).

They come from the Kaggle ISLR first-place solution (Hoyeol Sohn, "hoyso48", 2023; write-up
https://www.kaggle.com/competitions/asl-signs/discussion/406684), turned into PyTorch modules that
take a frame mask: batch norm whose statistics use real frames only, a causal depthwise Conv1D block
(an EfficientNet MBConv made 1-D) with efficient channel attention, and a pre-norm transformer block
with a key padding mask. Causal padding is what makes end-padding harmless: a frame never sees the
frames after it. The attention scale is the usual 1/sqrt(head_dim) (the solution's Keras code used
1/sqrt(dim)).

They live here, not in a trainer, so that each trainer plugin imports blocks and never another
trainer. Module and parameter names are part of every checkpoint: renaming one breaks old runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedBatchNorm(nn.Module):
    """BatchNorm over (B, T, C) whose training statistics use real frames only."""

    def __init__(self, dim: int, momentum: float = 0.05, eps: float = 1e-3):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        if self.training:
            xf = x.float()
            n = m.sum().clamp_min(1.0)
            mean = (xf * m).sum((0, 1)) / n
            var = (((xf - mean) * m) ** 2).sum((0, 1)) / n
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1.0), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (x * scale + (self.bias - mean * scale)).to(x.dtype)



class SampleDropout(nn.Module):
    """Drop a whole residual branch per sample (Keras Dropout with noise_shape=(None, 1, 1))."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)



def masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, C) using real frames only; ``m`` is (B, T, 1) float."""
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)



class ECA(nn.Module):
    """Efficient channel attention (Wang et al. 2020): a 1-D conv across channels of the masked
    time-average, as a sigmoid gate per channel."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        g = self.conv(masked_mean(x, m).unsqueeze(1)).squeeze(1)
        return x * torch.sigmoid(g).unsqueeze(1)



class Conv1DBlock(nn.Module):
    """Linear expansion with swish, causal depthwise conv, masked batch norm, ECA, projection,
    per-sample dropout, residual: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, expand: int, drop: float, eca_kernel: int,
                 bn_momentum: float = 0.05):
        super().__init__()
        hidden = dim * expand
        self.expand = nn.Linear(dim, hidden)
        self.pad = dilation * (kernel_size - 1)
        self.dwconv = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, groups=hidden, bias=False)
        self.bn = MaskedBatchNorm(hidden, bn_momentum)
        self.eca = ECA(eca_kernel)
        self.project = nn.Linear(hidden, dim)
        self.drop = SampleDropout(drop)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.expand(x))
        h = self.dwconv(F.pad(h.transpose(1, 2), (self.pad, 0))).transpose(1, 2)  # causal: left pad only
        h = self.eca(self.bn(h, m), m)
        return x + self.drop(self.project(h))



class TransformerBlock(nn.Module):
    """Pre-norm (masked batch norm) self-attention with a key padding mask, then a swish MLP, each
    with per-sample dropout and a residual."""

    def __init__(self, dim: int, heads: int, mlp_expand: int, drop: float, attn_drop: float,
                 bn_momentum: float = 0.05):
        super().__init__()
        self.heads, self.attn_drop = heads, attn_drop
        self.bn1 = MaskedBatchNorm(dim, bn_momentum)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.bn2 = MaskedBatchNorm(dim, bn_momentum)
        self.mlp1 = nn.Linear(dim, dim * mlp_expand, bias=False)
        self.mlp2 = nn.Linear(dim * mlp_expand, dim, bias=False)
        self.drop = SampleDropout(drop)

    def forward(self, x: torch.Tensor, m: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.bn1(x, m)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp2(F.silu(self.mlp1(self.bn2(x, m)))))


class LinformerBlock(nn.Module):
    """TransformerBlock with Linformer attention (Wang et al. 2020, "Linformer: Self-Attention with
    Linear Complexity"): keys and values are projected along time from ``max_frames`` to ``k`` rows by
    learned matrices (shared by the heads), so attention costs O(T k) instead of O(T^2). Seed 001's
    sixth architecture (k 128, 4 heads).

    Padding: keys and values of padded frames are zeroed before the projection and the sequence is
    zero-padded to ``max_frames``, so a real frame's output does not depend on how much padding
    follows it (there is no key mask after the projection: zero rows are what make it exact)."""

    def __init__(self, dim: int, heads: int, k: int, max_frames: int, mlp_expand: int, drop: float,
                 attn_drop: float, bn_momentum: float = 0.05):
        super().__init__()
        self.heads, self.attn_drop, self.max_frames = heads, attn_drop, max_frames
        self.bn1 = MaskedBatchNorm(dim, bn_momentum)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        bound = k ** -0.5
        self.proj_k = nn.Parameter(torch.empty(max_frames, k).uniform_(-bound, bound))
        self.proj_v = nn.Parameter(torch.empty(max_frames, k).uniform_(-bound, bound))
        self.proj = nn.Linear(dim, dim, bias=False)
        self.bn2 = MaskedBatchNorm(dim, bn_momentum)
        self.mlp1 = nn.Linear(dim, dim * mlp_expand, bias=False)
        self.mlp2 = nn.Linear(dim * mlp_expand, dim, bias=False)
        self.drop = SampleDropout(drop)

    def forward(self, x: torch.Tensor, m: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, c = x.shape
        if not torch.compiler.is_compiling() and t > self.max_frames:
            raise ValueError(f"{t} frames, but this Linformer projects at most {self.max_frames}")
        q, k, v = (self.qkv(self.bn1(x, m)) * m).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        pad = (0, 0, 0, self.max_frames - t)  # (B, H, T, hd) -> (B, H, max_frames, hd), zero rows
        k = torch.einsum("bhtd,tk->bhkd", F.pad(k, pad), self.proj_k)
        v = torch.einsum("bhtd,tk->bhkd", F.pad(v, pad), self.proj_v)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp2(F.silu(self.mlp1(self.bn2(x, m)))))
