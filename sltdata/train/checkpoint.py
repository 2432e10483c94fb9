"""Checkpoints: weights as safetensors, everything else (optimizer, schedule, RNG, data position) as a
tensors-and-numbers dict saved with ``torch.save`` and read back with ``weights_only=True`` (no pickle
of arbitrary objects). Files are written under a temporary name and renamed, so a run killed while
saving leaves the previous checkpoint intact.

Layout in the run directory::

    checkpoints/last.safetensors   model weights after the latest completed epoch (or step)
    checkpoints/last.state.pt      optimizer, scheduler, lookahead, RNG states, position, best metric
    checkpoints/last.json          the manifest: the step and the sha256 of the two files above
    checkpoints/best.safetensors   weights with the best validation metric so far

``last`` is one unit, written by ``save_last``: both files are written in full under temporary names
first (a full disk fails there, leaving the previous pair untouched), then renamed, then the manifest
names them. Two independent atomic writes could leave weights of step 6 beside a state of step 3,
and ``--resume`` would silently train a different model; ``load_last`` refuses any pair the manifest
does not name.

A run written to object storage (``train --out s3://...``, a staging directory of ``fs.output_dir``)
puts each file to the remote once it is final here: ``best`` when it changes, ``last`` as weights,
state, then manifest. An object store has no rename, so a kill in the moment between those PUTs can leave the remote
with weights the manifest does not name beside its state; ``load_last`` then refuses it (naming the
file) rather than resume a different model, and the run must be started again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from sltdata import fs
from sltdata.errors import ConfigError


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_weights(model: nn.Module, path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_model(model, str(tmp), metadata={"global_step": str(step)})  # handles tied weights
    except SafetensorError as e:  # its I/O errors arrive as text: an OSError naming the file instead
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(tmp)) from None
    os.replace(tmp, path)
    if path.suffix == ".safetensors":  # best.safetensors; a pending pair file is put by save_last once renamed
        fs.committed(path)


def load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint (did the run finish an epoch?)")
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not match the model built from the run's config "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def save_state(state: dict, path: Path) -> None:
    """Serialized in memory, then written: ``torch.save`` to a file turns a full disk into an opaque
    ``RuntimeError`` (``unexpected pos``), a plain write gives the ``OSError`` that names the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    buf = io.BytesIO()
    torch.save(state, buf)
    with open(tmp, "wb") as f:
        f.write(buf.getbuffer())
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: nothing to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _names_pair(record: dict, *files: Path) -> bool:
    return all(p.is_file() and _sha256(p) == record["files"].get(p.name) for p in files)


def last_paths(directory: Path, name: str = "last") -> tuple[Path, Path, Path]:
    """The weights, state and manifest of checkpoint ``name`` in ``directory``."""
    return directory / f"{name}.safetensors", directory / f"{name}.state.pt", directory / f"{name}.json"


def save_last(model: nn.Module, state: dict, directory: Path, step: int, name: str = "last") -> None:
    """Weights, state and manifest of ``name`` as one unit (see the module docstring)."""
    weights, state_file, manifest = last_paths(Path(directory), name)
    pending = [p.with_name(p.name + ".tmp") for p in (weights, state_file)]
    try:
        save_weights(model, pending[0], step)
        save_state(state, pending[1])
    except BaseException as e:  # a full or read-only disk, a kill: the previous pair stays the checkpoint
        if isinstance(e, OSError) and e.filename is None:  # say which file could not be written
            e.filename = str(state_file if pending[0].is_file() else weights)
        for p in pending:
            p.unlink(missing_ok=True)
            p.with_name(p.name + ".tmp").unlink(missing_ok=True)
        raise
    record = {"step": int(step), "files": {weights.name: _sha256(pending[0]), state_file.name: _sha256(pending[1])}}
    # The new manifest is written (as .tmp) before the pair is renamed into place, so a kill between
    # the renames and its own rename still leaves a manifest that names the files on disk.
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(pending[0], weights)
    os.replace(pending[1], state_file)
    os.replace(tmp, manifest)
    for p in (weights, state_file, manifest):  # a remote run (fs.output_dir): the pair first, the manifest last
        fs.committed(p)


def load_last(model: nn.Module, directory: Path, name: str = "last") -> dict:
    """Load checkpoint ``name`` into ``model`` and return its state, after checking that the weights
    and the state are the pair the manifest names (a run from before manifests: the same step)."""
    weights, state_file, manifest = last_paths(Path(directory), name)
    state = load_state(state_file)
    if not weights.is_file():
        raise ConfigError(f"{weights}: missing beside {state_file.name}; cannot resume this run, start a new one")
    if manifest.is_file():
        record = json.loads(manifest.read_text(encoding="utf-8"))
        pending = manifest.with_name(manifest.name + ".tmp")
        if pending.is_file() and not _names_pair(record, weights, state_file):
            record = json.loads(pending.read_text(encoding="utf-8"))  # killed after the renames: the new pair
        for p in (weights, state_file):
            if not p.is_file() or _sha256(p) != record["files"].get(p.name):
                raise ConfigError(f"{p}: is not the file {manifest.name} names for step {record['step']} (the "
                                  f"checkpoint's weights and state are not one unit); cannot resume this run, "
                                  "start a new one")
    else:
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            step = (f.metadata() or {}).get("global_step")
        if step is not None and int(step) != int(state["global_step"]):
            raise ConfigError(f"{weights}: weights of step {step} beside a state of step {state['global_step']} "
                              "(not one checkpoint); cannot resume this run, start a new one")
    load_weights(model, weights)
    return state


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
