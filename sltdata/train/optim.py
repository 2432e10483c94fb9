"""Optimizers, schedules and adversarial weight perturbation for the shared loop.

The recipe follows the Kaggle ISLR first-place solution (Hoyeol Sohn, "hoyso48", 2023; write-up at
https://www.kaggle.com/competitions/asl-signs/discussion/406684): RAdam wrapped in Lookahead (or
AdamW), a one-cycle learning rate with cosine decay, decoupled weight decay (which torch scales by the
learning rate, so it follows the same schedule as the solution's weight-decay schedule did), and AWP
switched on from a given epoch.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from sltdata.train.config import LoopConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalization scales (1-d tensors), as is usual for AdamW."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    betas = tuple(float(b) for b in cfg.betas)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "radam-lookahead":
        # decoupled_weight_decay: RAdamW, the weight decay the solution used with RectifiedAdam.
        return torch.optim.RAdam(groups, lr=cfg.lr, betas=betas, decoupled_weight_decay=True)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


class Lookahead:
    """Lookahead (Zhang et al. 2019): every ``k`` steps pull slow weights ``alpha`` of the way to the
    fast ones and reset the fast ones there. Kept beside the inner optimizer (not wrapping it) so the
    learning-rate scheduler drives the inner optimizer directly; its state checkpoints with the run."""

    def __init__(self, params: Iterable[torch.Tensor], k: int = 5, alpha: float = 0.5):
        self.params = [p for p in params if p.requires_grad]
        self.k, self.alpha = k, alpha
        self.slow = [p.detach().clone() for p in self.params]
        self.counter = 0

    @torch.no_grad()
    def after_step(self) -> None:
        self.counter += 1
        if self.counter % self.k:
            return
        for p, s in zip(self.params, self.slow):
            s.add_(p.detach() - s, alpha=self.alpha)
            p.copy_(s)

    def state_dict(self) -> dict:
        return {"counter": self.counter, "slow": [s.clone() for s in self.slow]}

    def load_state_dict(self, state: dict) -> None:
        self.counter = int(state["counter"])
        for s, v in zip(self.slow, state["slow"]):
            s.copy_(v)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: LoopConfig, total_steps: int):
    """Per-optimizer-step schedule. ``onecycle`` is torch's OneCycleLR (cosine annealing, warm-up
    from lr/25); ``cosine`` warms up linearly from 0 then decays by cosine; both end at
    ``lr * min_lr_ratio``."""
    total_steps = max(1, int(total_steps))
    warm = cfg.warmup
    if cfg.schedule == "onecycle":
        div = 25.0
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps + 1, pct_start=max(min(warm, 0.99), 1e-6),
            anneal_strategy="cos", div_factor=div, final_div_factor=1.0 / max(cfg.min_lr_ratio * div, 1e-8),
            cycle_momentum=False)
    warm_steps = int(round(warm * total_steps))

    def factor(step: int) -> float:
        if step < warm_steps:
            return (step + 1) / (warm_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm_steps) / max(1, total_steps - warm_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def bias_or_norm(name: str, p: torch.Tensor) -> bool:
    """Biases and normalization scales/shifts (every parameter under two dimensions): what the
    Fingerspelling 2nd-place recipe leaves out of AWP, as Kaggle AWP code commonly perturbs only
    ``weight`` matrices (``adv_param="weight"``)."""
    return name.endswith("bias") or p.ndim < 2


AWP_EXCLUDE = {"none": None, "bias-norm": bias_or_norm}


def awp_perturb(model: nn.Module, loss_fn: Callable[[], torch.Tensor], lam: float,
                eps: float = 1e-4, exclude: Callable[[str, torch.Tensor], bool] | None = None,
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Adversarial weight perturbation as the ISLR first-place solution applied it: one gradient of
    the loss, then each weight tensor moves ``lam * g / (||g|| + eps)`` uphill. The caller runs its
    normal forward/backward on the perturbed weights and then :func:`awp_restore`, so the optimizer
    steps with the gradient taken at the worst nearby weights (a flat-minimum regularizer).

    ``model`` should be the bare module (not the DDP wrapper): the perturbation is per rank.
    ``exclude(name, param)`` True leaves a parameter where it is (``bias_or_norm``).
    """
    params = [p for n, p in model.named_parameters() if p.requires_grad and not (exclude and exclude(n, p))]
    grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    moved = []
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is None:
                continue
            delta = lam * g / (g.norm() + eps)
            p.add_(delta)
            moved.append((p, delta))
    return moved


@torch.no_grad()
def awp_restore(moved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for p, delta in moved:
        p.sub_(delta)
