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

import contextlib
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


def make_ensemble(runs: list[str | Path], out: str | Path, checkpoint: str = "best") -> Path | str:
    """Write an ensemble run directory ``out`` from the run directories ``runs`` (two or more). Runs
    and ``out`` may be URLs (``s3://...``): of a remote run only what a member copies is pulled (its
    config, dataset info and chosen weights), a remote ``out`` is written through ``fs.output_dir``."""
    from sltdata import fs

    if len(runs) < 2:
        raise ConfigError(f"an ensemble needs two or more runs, got {len(runs)}")
    needed = {"config.yaml", "dataset.json", ENSEMBLE_FILE, f"checkpoints/{checkpoint}.safetensors"}
    with contextlib.ExitStack() as stack:
        local = [stack.enter_context(fs.input_files(r, needed.__contains__)) for r in runs]
        names = [fs.display(r) if fs.is_remote(r) else Path(r) for r in runs]
        sources = [str(n) if fs.is_remote(r) else str(Path(r).resolve()) for r, n in zip(runs, names)]
        staging = stack.enter_context(fs.output_dir(out))
        _write_ensemble(local, names, sources, Path(staging), checkpoint, fs.display(out))
    return fs.display(out) if fs.is_remote(out) else Path(out)


def _write_ensemble(runs: list[Path], names: list, sources: list[str], out: Path, checkpoint: str,
                    shown: str) -> None:
    """``make_ensemble`` on local directories; messages name ``names`` and ``shown``."""
    from sltdata import fs
    from sltdata.train import checkpoint as ckpt
    from sltdata.train.base import DatasetInfo
    from sltdata.train.config import load_config
    from sltdata.train.registry import get_trainer

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{shown}: directory is not empty")
    infos, trainers = [], []
    for run, name in zip(runs, names):
        if is_ensemble(run):
            raise ConfigError(f"{name}: is an ensemble already (list its member runs instead)")
        if not (run / "config.yaml").is_file() or not (run / "dataset.json").is_file():
            raise ConfigError(f"{name}: not a run directory (no config.yaml or dataset.json)")
        weights = ckpt.checkpoint_dir(run) / f"{checkpoint}.safetensors"
        if not weights.is_file():
            raise ConfigError(f"{fs.join(name, 'checkpoints', weights.name)}: no {checkpoint} checkpoint "
                              "(did the run finish an epoch?)")
        trainers.append(load_config(run / "config.yaml").trainer)
        infos.append(DatasetInfo.load(run / "dataset.json"))
    if len(set(trainers)) > 1:
        raise ConfigError(f"members were trained by different trainers ({', '.join(sorted(set(trainers)))})")
    if get_trainer(trainers[0]).target != "label":
        raise ConfigError(f"trainer {trainers[0]!r}: ensembles average class logits, only label trainers have them")
    first = infos[0].to_dict()
    for name, info in zip(names[1:], infos[1:]):
        d = info.to_dict()
        for key in SHARED_INFO:
            if d[key] != first[key]:
                raise ConfigError(f"{name}: its dataset.json {key} differs from {names[0]}'s "
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
        {"members": members, "checkpoint": checkpoint, "sources": sources}, indent=1))
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)


def load_ensemble(run_dir: str | Path, load_member) -> tuple:
    """``(trainer, cfg, info, Ensemble)`` of an ensemble run directory, each member loaded by
    ``load_member(member_dir, checkpoint)`` (``runs.load_run``); cfg and info are the ensemble's own
    (the first member's, which every member shares)."""
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / ENSEMBLE_FILE).read_text())
    loaded = [load_member(run_dir / m, spec["checkpoint"]) for m in spec["members"]]
    trainer, cfg, info, _ = loaded[0]
    return trainer, cfg, info, Ensemble([model for *_, model in loaded]).eval()
