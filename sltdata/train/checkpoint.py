"""Checkpoints: weights as safetensors, everything else (optimizer, schedule, RNG, data position) as a
tensors-and-numbers dict saved with ``torch.save`` and read back with ``weights_only=True`` (no pickle
of arbitrary objects). Files are written under a temporary name and renamed, so a run killed while
saving leaves the previous checkpoint intact.

Layout in the run directory::

    checkpoints/last.safetensors   model weights after the latest completed epoch (or step)
    checkpoints/last.state.pt      optimizer, scheduler, lookahead, RNG states, position, best metric
    checkpoints/best.safetensors   weights with the best validation metric so far
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from sltdata.errors import ConfigError


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_weights(model: nn.Module, path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={"global_step": str(step)})  # handles tied weights
    os.replace(tmp, path)


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint (did the run finish an epoch?)")
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not match the model built from the run's config "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def save_state(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: nothing to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(generator: torch.Generator | None) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict, generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
