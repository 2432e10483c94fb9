"""Where the loop's batches come from: shards through ``sltdata.loader.loader``, or plain tensors.

Both sources give the loop the same thing: an iterable of batch dicts per (split, epoch, rank), and a
``to_device`` step that moves a batch to the accelerator and produces ``batch["features"]`` (B, T, D)
and ``batch["mask"]`` (B, T). With ``augment_on: device`` (the default on
a CUDA device, where ``sltdata.transforms.torch_ops.BatchAugment`` exists) the loader only reads and pads raw landmarks and
the transforms and augmentations run batched on the device, so data loading stays cheap (the ISLR
issue's "loader never the limit" goal).

Splits are ``train`` (every fold but the validation fold), ``val`` (``fold{val_fold}``) and ``test``
(names from ``sltdata.shards``: ``fold_name``, ``TEST_SPLIT``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from sltdata import fs
from sltdata.errors import ConfigError
from sltdata.layouts import HOLISTIC_543
from sltdata.train.base import DatasetInfo
from sltdata.train.config import RunConfig

log = logging.getLogger(__name__)


def _move(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class TensorData:
    """In-memory features: (N, T, D) float32, (N, T) bool mask, (N,) or (N, L) targets.

    For tests, notebooks and model-only benchmarks; shuffling is a seeded permutation per epoch and
    ranks take every ``world_size``-th sample, so runs are reproducible and resumable.
    """

    def __init__(self, features: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None,
                 splits: dict[str, np.ndarray], info: DatasetInfo, keys: list[str] | None = None,
                 seed: int = 0):
        self.features, self.mask, self.target = features, mask, target
        self.splits = {k: np.asarray(v) for k, v in splits.items()}
        self.info = info
        self.keys = keys or [f"s{i}" for i in range(len(features))]
        self.seed = seed

    def num_samples(self, split: str) -> int:
        return len(self._indices(split))

    def _indices(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise ConfigError(f"no {split!r} split (have: {', '.join(self.splits)})")
        return self.splits[split]

    def num_batches(self, split: str, epoch: int, train: bool, batch_size: int, rank: int = 0,
                    world_size: int = 1, drop_last: bool = False) -> int:
        """How many batches ``batches`` with the same arguments yields."""
        n = len(self._indices(split)[rank::world_size])
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(self, split: str, epoch: int, train: bool, batch_size: int, rank: int = 0,
                world_size: int = 1, drop_last: bool = False) -> Iterator[dict]:
        idx = self._indices(split)
        if train:
            idx = np.random.default_rng([self.seed, epoch]).permutation(idx)
        idx = idx[rank::world_size]
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            j = torch.as_tensor(idx[i:i + batch_size])
            b = {"landmarks": self.features[j], "mask": self.mask[j], "lengths": self.mask[j].sum(1),
                 "key": [self.keys[k] for k in j.tolist()]}
            if self.target is not None:
                b["target"] = self.target[j]
            yield b

    def to_device(self, batch: dict, device: torch.device, generator: torch.Generator | None,
                  train: bool) -> dict:
        b = _move(batch, device)
        b["features"] = b["landmarks"]
        return b


class ShardData:
    """Shards written by ``sltdata shard`` (``index.json`` + ``{split}-{i:06d}.tar``), read through
    ``sltdata.loader.loader`` with the run's transform config; pipelines are built on the layout as
    the shard index defines it."""

    def __init__(self, path: str | Path, cfg: RunConfig, target: str | None):
        from sltdata.shards import ShardError, ShardIndex
        from sltdata.transforms import build_pipeline, load_transform_config

        self.path = fs.as_path(path)  # a local Path, or shards read in place from object storage
        self.index = ShardIndex.open(self.path)
        problems = self.index.map_problems()  # before a model is sized on a map it cannot use
        if problems:
            raise ShardError(f"{self.path}: {problems[0]}")
        self.cfg, self.target = cfg, target
        self.layout_def = next(iter(self.index.layouts.values()), HOLISTIC_543)  # what pipelines are built on
        self.layout = self.layout_def.name  # the name, for DatasetInfo
        if self.index.transform:  # shards already hold features: the loader passes them through
            if cfg.transforms:
                log.warning("shards in %s hold transformed features; the config's transforms are ignored", self.path)
            self.tcfg = load_transform_config(self.index.transform)
            self.device_aug, self.loader_transforms = False, None
        else:
            self.tcfg = load_transform_config(cfg.transforms or None)
            # Batched augmentation pays off on a GPU; on a CPU the per-sample NumPy path in the
            # loader workers is faster (benchmarks/train_islr.py), so "auto" picks by device.
            self.device_aug = cfg.data.augment_on == "device" or (
                cfg.data.augment_on == "auto" and _runs_on_cuda(cfg.train.device))
            if self.device_aug and self.tcfg.normalize.units != "as-stored":
                # the batched path has no per-sample frame size; the loader's NumPy path reads it from
                # each sample's metadata, so the unit conversion runs there
                if cfg.data.augment_on == "device":
                    raise ConfigError("data.augment_on: device cannot convert units (normalize.units: "
                                      f"{self.tcfg.normalize.units}); use augment_on: loader or auto")
                self.device_aug = False
            self.loader_transforms = None if self.device_aug else self.tcfg
        pipe = build_pipeline(self.tcfg, layout=self.layout_def)
        # With batched device augmentation the loader sends only the points the pipeline reads.
        self.points = pipe.input_points if self.device_aug else None
        self.info = DatasetInfo(feature_dim=int(pipe.feature_dim), max_length=pipe.max_length,
                                labels=self.index.labels, characters=self.index.characters,
                                layout=self.layout, transform=self.tcfg.to_dict())
        self._aug = None
        self.labels, self.characters = self.index.labels, self.index.characters  # name -> id the loader uses
        self.fold_names = self.index.fold_names

    def use_run_maps(self, info: DatasetInfo, target: str | None) -> None:
        """Read these shards with a trained run's ids: ``evaluate`` (and ``predict``) score a model whose
        outputs are in the run's label or character ids, while the loader would number targets by this
        shard directory's map. The maps are matched by name, so a directory whose index lists the same
        signs in another order scores exactly as the run's own; one naming other signs or characters is
        refused (its targets have no id in the model's output)."""
        if target == "label":
            self.labels = run_map("label", info.labels, self.index.labels, self.path)
        elif target == "text" and info.characters:
            self.characters = run_map("character", info.characters, self.index.characters, self.path)
        self.info = info

    def split_names(self, split: str) -> list[str]:
        from sltdata.shards import TEST_SPLIT, fold_name

        vf = self.cfg.data.val_fold
        val = None if vf is None else fold_name(vf)
        if val is not None and val not in self.fold_names:
            raise ConfigError(f"--val-fold {vf}: {self.path} has folds {', '.join(self.fold_names)}")
        if split == "train":
            return [f for f in self.fold_names if f != val]
        if split == "val":
            return [] if val is None else [val]
        if split == TEST_SPLIT:
            if TEST_SPLIT not in self.index.splits:
                raise ConfigError(f"{self.path} has no held-out test split (shard with --test-fraction)")
            return [TEST_SPLIT]
        if split in self.index.splits:
            return [split]
        raise ConfigError(f"unknown split {split!r} (train, val, test, or one of {', '.join(self.index.splits)})")

    def num_samples(self, split: str) -> int:
        names = self.split_names(split)
        return self.index.samples(names) if names else 0

    def num_batches(self, split: str, epoch: int, train: bool, batch_size: int, rank: int = 0,
                    world_size: int = 1, drop_last: bool = False) -> int:
        """How many batches ``batches`` with the same arguments yields (per loader worker, see
        ``sltdata.loader.count_batches``), so the schedule is planned for the steps that run."""
        from sltdata.loader import count_batches

        names = self.split_names(split)
        if not names:
            return 0
        return count_batches(self.index, folds=names, batch_size=batch_size, num_workers=self.cfg.data.num_workers,
                             seed=self.cfg.train.seed, epoch=epoch, train=train, rank=rank, world_size=world_size,
                             drop_last=drop_last)

    def batches(self, split: str, epoch: int, train: bool, batch_size: int, rank: int = 0,
                world_size: int = 1, drop_last: bool = False) -> Iterable[dict]:
        from sltdata.loader import loader

        names = self.split_names(split)
        if not names:
            return iter(())
        d = self.cfg.data
        return loader(self.path, folds=names, transforms=self.loader_transforms, batch_size=batch_size,
                      shuffle_buffer=d.shuffle_buffer if train else 0, num_workers=d.num_workers,
                      seed=self.cfg.train.seed, epoch=epoch, target=self.target, train=train,
                      rank=rank, world_size=world_size, drop_last=drop_last, points=self.points,
                      labels=self.labels, characters=self.characters)

    def to_device(self, batch: dict, device: torch.device, generator: torch.Generator | None,
                  train: bool) -> dict:
        b = _move(batch, device)
        if self.device_aug:
            if self._aug is None:
                from sltdata.transforms.torch_ops import BatchAugment
                self._aug = BatchAugment(self.tcfg, layout=self.layout_def, device=str(device), preselected=True)
            b["features"], b["mask"] = self._aug(b["landmarks"].float(), b["mask"], generator=generator,
                                                 train=train)
        else:
            b["features"] = b["landmarks"]
        return b


def run_map(kind: str, run: dict[str, int] | None, shards: dict[str, int] | None, where: Path) -> dict[str, int]:
    """The run's ``kind`` map (name -> id) when the shards' map names the same things, else a
    ConfigError naming a few of the differences."""
    if not run:
        raise ConfigError(f"the run has no {kind} map to score {where} with")
    if not shards:
        raise ConfigError(f"{where}: the shards have no {kind} map (the run was trained on {kind}s)")
    if set(run) == set(shards):
        return dict(run)

    def some(names: set) -> str:
        return ", ".join(repr(n) for n in sorted(names)[:5]) + (", ..." if len(names) > 5 else "") or "none"

    raise ConfigError(f"{where}: its {kind} map names other {kind}s than the run's "
                      f"(only in the run: {some(set(run) - set(shards))}; only in the shards: "
                      f"{some(set(shards) - set(run))}); evaluate on shards of the run's dataset")


def _runs_on_cuda(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())

