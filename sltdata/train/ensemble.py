"""Ensembles of runs: one model whose logits are the mean of its members' logits.

The ISLR first place (hoyso48, Kaggle asl-signs 2023) submitted models trained on every fold with
several seeds and averaged their outputs. ``make_ensemble(runs, out)`` writes such an ensemble as a
run directory of its own, so ``evaluate``, ``predict`` and ``export`` take it like any run:

    RUN_E/config.yaml      the first member's config (data and transforms are what every member shares)
    RUN_E/dataset.json     the members' common dataset info (label map, features, transforms)
    RUN_E/ensemble.json    {"members": ["members/00", ...], "checkpoint": "best", "sources": [...]}
    RUN_E/members/NN/      each member's config.yaml, dataset.json and chosen checkpoint weights

Members are copied, not referenced, so the ensemble stays usable when the member runs are moved or
deleted. Every member must read the same features (feature size, transforms, layout) and name the
same classes in the same order; their architectures may differ. Averaging logits needs a model of the
form ``model(features, mask) -> logits``, so only label trainers (``target == "label"``) are accepted.
The members' checkpoints are fixed when the ensemble is made (``checkpoint``); the checkpoint option
of ``evaluate`` and ``export`` does not apply to an ensemble.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from sltdata.errors import ConfigError

ENSEMBLE_FILE = "ensemble.json"
# What every member must agree on: the inputs the model reads and the classes its logits name.
SHARED_INFO = ("feature_dim", "max_length", "labels", "characters", "layout", "transform")


class Ensemble(nn.Module):
    """``(features, mask) -> mean of the members' logits``; exports to ONNX as one graph."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(features, mask).float() for m in self.members]).mean(0)


def is_ensemble(run_dir: str | Path) -> bool:
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


def make_ensemble(runs: list[str | Path], out: str | Path, checkpoint: str = "best") -> Path:
    """Write an ensemble run directory ``out`` from the run directories ``runs`` (two or more)."""
    from sltdata.train import checkpoint as ckpt
    from sltdata.train.base import DatasetInfo
    from sltdata.train.config import load_config
    from sltdata.train.registry import get_trainer

    runs, out = [Path(r) for r in runs], Path(out)
    if len(runs) < 2:
        raise ConfigError(f"an ensemble needs two or more runs, got {len(runs)}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: directory is not empty")
    infos, trainers = [], []
    for run in runs:
        if is_ensemble(run):
            raise ConfigError(f"{run}: is an ensemble already (list its member runs instead)")
        if not (run / "config.yaml").is_file() or not (run / "dataset.json").is_file():
            raise ConfigError(f"{run}: not a run directory (no config.yaml or dataset.json)")
        weights = ckpt.checkpoint_dir(run) / f"{checkpoint}.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{weights}: no {checkpoint} checkpoint (did the run finish an epoch?)")
        trainers.append(load_config(run / "config.yaml").trainer)
        infos.append(DatasetInfo.load(run / "dataset.json"))
    if len(set(trainers)) > 1:
        raise ConfigError(f"members were trained by different trainers ({', '.join(sorted(set(trainers)))})")
    if get_trainer(trainers[0]).target != "label":
        raise ConfigError(f"trainer {trainers[0]!r}: ensembles average class logits, only label trainers have them")
    first = infos[0].to_dict()
    for run, info in zip(runs[1:], infos[1:]):
        d = info.to_dict()
        for key in SHARED_INFO:
            if d[key] != first[key]:
                raise ConfigError(f"{run}: its dataset.json {key} differs from {runs[0]}'s "
                                  "(members must read the same features and name the same classes)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    members = []
    for i, run in enumerate(runs):
        member = tmp / "members" / f"{i:02d}"
        (member / "checkpoints").mkdir(parents=True)
        shutil.copy2(run / "config.yaml", member / "config.yaml")
        shutil.copy2(run / "dataset.json", member / "dataset.json")
        shutil.copy2(ckpt.checkpoint_dir(run) / f"{checkpoint}.safetensors",
                     member / "checkpoints" / f"{checkpoint}.safetensors")
        members.append(f"members/{i:02d}")
    shutil.copy2(runs[0] / "config.yaml", tmp / "config.yaml")
    shutil.copy2(runs[0] / "dataset.json", tmp / "dataset.json")
    (tmp / ENSEMBLE_FILE).write_text(json.dumps(
        {"members": members, "checkpoint": checkpoint, "sources": [str(r.resolve()) for r in runs]}, indent=1))
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)
    return out


def load_ensemble(run_dir: str | Path, load_member) -> tuple:
    """``(trainer, cfg, info, Ensemble)`` of an ensemble run directory, each member loaded by
    ``load_member(member_dir, checkpoint)`` (``runs.load_run``); cfg and info are the ensemble's own
    (the first member's, which every member shares)."""
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / ENSEMBLE_FILE).read_text())
    loaded = [load_member(run_dir / m, spec["checkpoint"]) for m in spec["members"]]
    trainer, cfg, info, _ = loaded[0]
    return trainer, cfg, info, Ensemble([model for *_, model in loaded]).eval()
