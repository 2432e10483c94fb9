"""Run configs: dataclasses filled from YAML plus ``--set key=value`` overrides, type-checked on load.

A run config has four sections, each a dataclass (one place per default):

- ``train``: the shared loop (:class:`LoopConfig`): epochs, optimizer, schedule, precision, AWP, ...
- ``data``: which folds, batch size, shuffle buffer, workers (:class:`DataConfig`).
- ``transforms``: passed as-is to ``sltdata.transforms.load_transform_config`` (it validates its own).
- ``model``: the trainer's own dataclass (``Trainer.config_class``): architecture and recipe.

Overrides are dotted paths (``train.lr=1e-3``, ``model.arch=cnn``, ``transforms.max_length=64``); each
value is parsed as YAML (so ``true``, ``1e-3``, ``[1, 2]`` work) and then checked against the field's
annotation. Mistakes raise :class:`~sltdata.errors.ConfigError` naming the key and the valid choices.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from sltdata.errors import ConfigError
from sltdata.loader import DEFAULT_BATCH_SIZE


@dataclass
class LoopConfig:
    """The shared training loop. Defaults follow the ISLR first-place recipe where it has one."""

    epochs: int = 30
    max_steps: Optional[int] = None        # stop after this many optimizer steps (tests, smoke runs)
    lr: float = 1e-3
    weight_decay: float = 0.1              # decoupled (AdamW-style): scaled by the lr schedule
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
    transforms: dict = field(default_factory=dict)
    model: Any = None                      # the trainer's config dataclass

    def to_dict(self) -> dict:
        return {"trainer": self.trainer, "train": dataclasses.asdict(self.train),
                "data": dataclasses.asdict(self.data), "transforms": dict(self.transforms),
                "model": dataclasses.asdict(self.model) if self.model is not None else {}}


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to annotation ``tp`` or raise ConfigError (int -> float allowed)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"config {key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config {key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config {key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config {key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config {key}: expected a string, got {value!r}")
        return value
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config {key}: expected a list, got {value!r}")
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config {key}: expected a mapping, got {value!r}")
        return value
    return value


def from_dict(cls: type, d: dict | None, where: str) -> Any:
    """Build dataclass ``cls`` from ``d``, checking every key and type. ``where`` prefixes messages."""
    d = dict(d or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"config {where}: unknown key {unknown[0]!r} (valid: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}") for k, v in d.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.lr=1e-3", "model.arch=cnn"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: bad key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: {e}") from None
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path | None) -> dict:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return d


SECTIONS = ("trainer", "train", "data", "transforms", "model")


def load_config(source: str | Path | dict | None, overrides: list[str] | dict | None = None,
                model_class: type | None = None) -> RunConfig:
    """Resolve a run config: YAML file (or dict) + overrides, every section type-checked.

    ``model_class`` is the trainer's config dataclass; when None the trainer named in the config is
    looked up in the registry to find it.
    """
    d = dict(source) if isinstance(source, dict) else read_yaml(source)
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    d = merge(d, over)
    unknown = sorted(set(d) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config: unknown section {unknown[0]!r} (valid: {', '.join(SECTIONS)})")
    trainer = d.get("trainer", "islr")
    if not isinstance(trainer, str):
        raise ConfigError(f"config trainer: expected a name, got {trainer!r}")
    if model_class is None:
        from sltdata.train.registry import get_trainer
        model_class = get_trainer(trainer).config_class
    transforms = d.get("transforms") or {}
    if not isinstance(transforms, dict):
        raise ConfigError("config transforms: expected a mapping")
    return RunConfig(trainer=trainer, train=from_dict(LoopConfig, d.get("train"), "train"),
                     data=from_dict(DataConfig, d.get("data"), "data"), transforms=transforms,
                     model=from_dict(model_class, d.get("model"), "model"))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
