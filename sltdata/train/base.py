"""What a trainer plugin implements. The shared loop (``sltdata.train.loop``) does everything else.

A trainer is a small class holding a model and a recipe (nanoGPT-style: readable in one sitting),
registered under a name in the ``sltdata.trainers`` entry-point group::

    [project.entry-points."sltdata.trainers"]
    islr = "trainers.islr:ISLRTrainer"

The loop calls, in order:

1. ``build(cfg.model, info)`` -> ``nn.Module``. ``info`` (:class:`DatasetInfo`) says what the data
   holds: feature size, classes, characters. It is saved as ``RUN_DIR/dataset.json`` so ``evaluate``
   and ``export`` rebuild the same model without the data. A trainer that needs more (a tokenizer,
   a character map it made) puts JSON-able values in ``info.extra`` inside ``build`` or writes files
   in ``save_artifacts(run_dir)``.
2. per step: ``loss(model, batch, cfg.model)`` -> scalar tensor (mean over the batch). ``batch`` is the
   loader's dict on the device, with ``batch["features"]`` (B, T, D) float32 and ``batch["mask"]`` (B, T)
   bool (True = real frame), plus ``target`` / ``target_lengths`` / ``text`` / ``key`` as the loader gave
   them. The loop handles precision, accumulation, clipping, AWP and DDP around it. Call the model
   as ``model(...)`` (it may be wrapped by DDP or torch.compile; ``sltdata.train.loop.unwrap`` gives
   the bare module, e.g. for ``generate``). Modules with a ``set_train_progress(epoch)`` method are
   told the epoch at its start (late dropout uses it).
3. evaluation: ``predict(model, batch, cfg.model)`` -> dict of per-sample values (tensors with a
   leading batch dim, or lists), concatenated over batches by the loop; then
   ``metrics(outputs, info)`` -> ``{name: float}`` and ``write_report(outputs, info, out_dir)`` for
   prediction files, confusion matrices and the like.
4. ``export(model, info, path, format)`` for ``sltdata export``.

Recipes a trainer ships (run configs usable as ``sltdata train --config NAME``) are found through it:
``configs_dir`` names their folder and ``bundled_configs()`` lists them, so the registry finds a
third-party package's recipes as it finds the built-in ones, and ``sltdata`` never imports a plugin.

``target`` says what the loader yields as ``batch["target"]`` ("label", "text" or None), and
``monitor``/``monitor_mode`` name the validation metric for best-checkpoint and early stopping.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from sltdata.errors import ConfigError


@dataclass
class DatasetInfo:
    """What a model must know about its data, saved with the run (``RUN_DIR/dataset.json``)."""

    feature_dim: int                               # D of batch["features"]
    max_length: int | None = None                  # T after transforms (None = variable)
    labels: dict[str, int] | None = None           # sign -> class id (isolated signs)
    characters: dict[str, int] | None = None       # char -> id (fingerspelling / text)
    layout: str | None = None
    transform: dict | None = None                  # resolved TransformConfig.to_dict()
    extra: dict = field(default_factory=dict)      # trainer-specific JSON-able values

    @property
    def num_classes(self) -> int:
        if not self.labels:
            raise ConfigError("this dataset has no labels (isolated-sign trainers need a label per sequence)")
        return len(self.labels)

    @property
    def class_names(self) -> list[str]:
        return [k for k, _ in sorted((self.labels or {}).items(), key=lambda kv: kv[1])]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetInfo":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "DatasetInfo":
        return cls.from_dict(json.loads(Path(path).read_text()))


class Trainer:
    """Base class of trainer plugins; subclass and override what your task needs."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type]                   # dataclass for the config's ``model`` section
    target: ClassVar[Literal["label", "text"] | None] = "label"
    monitor: ClassVar[str] = "loss"                # validation metric that picks the best checkpoint
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    export_formats: ClassVar[tuple[str, ...]] = ()
    find_unused_parameters: ClassVar[bool] = False  # DDP: set True when some weights get no gradient
    configs_dir: ClassVar[Path | None] = None      # folder of the trainer's bundled recipes (YAML)

    @classmethod
    def bundled_configs(cls) -> dict[str, Path]:
        """{recipe name: path} of the recipes this trainer ships: ``configs_dir/NAME.yaml`` and
        ``configs_dir/NAME-*.yaml`` with NAME the trainer's name, so trainers can share one folder.
        Override to ship recipes some other way."""
        if cls.configs_dir is None:
            return {}
        folder = Path(cls.configs_dir)
        paths = [*folder.glob(f"{cls.name}.yaml"), *folder.glob(f"{cls.name}-*.yaml")]
        return {p.stem: p for p in sorted(paths)}

    def build(self, cfg: Any, info: DatasetInfo) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, cfg: Any) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: dict, cfg: Any) -> dict[str, Any]:
        """Per-sample outputs for metrics; the default keeps the keys only."""
        return {"key": list(batch["key"])}

    def metrics(self, outputs: dict[str, Any], info: DatasetInfo) -> dict[str, float]:
        return {}

    def write_report(self, outputs: dict[str, Any], info: DatasetInfo, out_dir: Path) -> list[Path]:
        """Write prediction files into ``out_dir``; return the paths written."""
        return []

    def save_artifacts(self, info: DatasetInfo, run_dir: Path) -> None:
        """Files beyond weights and dataset.json that ``evaluate``/``export`` need (tokenizers)."""

    def export(self, model: nn.Module, info: DatasetInfo, path: Path, format: str, cfg: Any) -> Path:
        raise ConfigError(f"trainer {self.name!r} cannot export {format!r} "
                          f"(supports: {', '.join(self.export_formats) or 'none'})")
