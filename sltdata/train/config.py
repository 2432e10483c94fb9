"""Run configs: dataclasses filled from YAML plus ``--set key=value`` overrides, type-checked on load.

A run config has four sections, each a dataclass (one place per default):

- ``train``: the shared loop (:class:`LoopConfig`): epochs, optimizer, schedule, precision, AWP, ...
- ``data``: which folds, batch size, shuffle buffer, workers (:class:`DataConfig`).
- ``transforms``: the transform config (:class:`~sltdata.transforms.config.TransformConfig`), or absent.
- ``model``: the trainer's own dataclass (``Trainer.config_class``): architecture and recipe.

Overrides are dotted paths (``train.lr=1e-3``, ``model.arch=cnn``, ``transforms.max_length=64``); each
value is parsed as YAML (so ``true``, ``1e-3``, ``[1, 2]`` work) and then checked against the field's
annotation by the one loader (``sltdata.config``): mistakes raise :class:`~sltdata.errors.ConfigError`
as ``FILE: KEY: REASON`` (``run config: KEY: REASON`` for a dict), naming the valid choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from sltdata.config import build, expand_shorthands, merge, parse_overrides, read_source
from sltdata.loader import DEFAULT_BATCH_SIZE
from sltdata.transforms.config import TransformConfig

__all__ = ["DataConfig", "LoopConfig", "RunConfig", "load_config", "parse_overrides", "save_config"]


@dataclass
class LoopConfig:
    """The shared training loop. Defaults follow the ISLR first-place recipe where it has one."""

    epochs: int = 30
    max_steps: Optional[int] = None        # stop after this many optimizer steps (tests, smoke runs)
    lr: float = 1e-3
    weight_decay: float = 0.1              # see weight_decay_mode
    # decoupled: torch's AdamW decay, each step w -= lr_t * weight_decay * w, not on 1-d params;
    # lr-squared: the ISLR first place's (tfa RectifiedAdam, decay scheduled as weight_decay * lr_t),
    # w -= weight_decay * lr_t**2 * w on every param (sltdata.train.optim)
    weight_decay_mode: Literal["decoupled", "lr-squared"] = "decoupled"
    optimizer: Literal["adamw", "radam-lookahead", "sgd"] = "adamw"
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    lookahead_k: int = 5
    lookahead_alpha: float = 0.5
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: float = 0.1                    # fraction of all steps spent warming up
    min_lr_ratio: float = 0.01             # final lr / peak lr for onecycle and cosine
    grad_accum: int = 1
    clip_grad: Optional[float] = 1.0       # max global grad norm; null disables
    precision: Literal["auto", "bf16", "fp32"] = "auto"   # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False                  # torch.compile the model
    awp_lambda: float = 0.0                # adversarial weight perturbation size; 0 disables
    awp_start_epoch: int = 0
    awp_exclude: Literal["none", "bias-norm"] = "none"   # bias-norm: only weight matrices move (Fingerspelling 2nd)
    early_stopping: Optional[int] = None   # epochs without val improvement before stopping
    seed: int = 42
    device: str = "auto"                   # auto | cpu | cuda | cuda:N
    log_every: int = 10                    # steps between progress callbacks / TensorBoard points
    checkpoint_every: Optional[int] = None  # also checkpoint every N steps mid-epoch (resumable)


@dataclass
class DataConfig:
    """Which shards feed the run and how they are batched (see ``sltdata.loader.loader``)."""

    val_fold: Optional[int] = None         # validate on fold K, train on the others; null: train on all
    batch_size: int = DEFAULT_BATCH_SIZE
    eval_batch_size: Optional[int] = None  # defaults to batch_size
    shuffle_buffer: int = 1000
    num_workers: int = 0
    augment_on: Literal["auto", "device", "loader"] = "auto"  # auto: device on CUDA, loader on CPU
    drop_last: bool = True


@dataclass
class RunConfig:
    trainer: str = "islr"
    train: LoopConfig = field(default_factory=LoopConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # None: not given, so pre-transformed shards keep their own and raw shards get the defaults.
    transforms: Optional[TransformConfig] = None
    model: Any = None                      # the trainer's config dataclass

    def to_dict(self) -> dict:
        return {"trainer": self.trainer, "train": dataclasses.asdict(self.train),
                "data": dataclasses.asdict(self.data),
                "transforms": self.transforms.to_dict() if self.transforms is not None else None,
                "model": dataclasses.asdict(self.model) if self.model is not None else {}}


ORIGIN = "run config"  # how messages name a config given as a dict


def load_config(source: str | Path | dict | None, overrides: list[str] | dict | None = None,
                model_class: type | None = None) -> RunConfig:
    """Resolve a run config: YAML file (or dict) + overrides, every section type-checked.

    ``model_class`` is the trainer's config dataclass; when None the trainer named in the config is
    looked up in the registry to find it.
    """
    data, origin = read_source(source, ORIGIN)
    if overrides:
        data = merge(expand_shorthands(RunConfig, data, origin),
                     overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    model = data.pop("model", None)
    cfg = build(RunConfig, data, origin)
    if model_class is None:
        from sltdata.train.registry import get_trainer
        model_class = get_trainer(cfg.trainer).config_class
    return dataclasses.replace(cfg, model=build(model_class, model, origin, "model"))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
