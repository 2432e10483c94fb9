"""Trainers by name, found through the ``sltdata.trainers`` entry-point group.

Built-in trainers (``trainers/``) register exactly as a third-party package would, in pyproject::

    [project.entry-points."sltdata.trainers"]
    islr = "trainers.islr:ISLRTrainer"

Entry points are loaded lazily (importing torch-heavy modules only for the trainer asked for), as
fsspec's ``process_entries`` does for filesystems. Bundled recipes are asked of the trainers
(``Trainer.bundled_configs``), so a third-party package ships recipes the same way and nothing in
``sltdata`` imports a trainer package.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from sltdata.errors import ConfigError
from sltdata.train.base import Trainer

GROUP = "sltdata.trainers"
_extra: dict[str, type[Trainer]] = {}


def register_trainer(cls: type[Trainer], name: str | None = None) -> type[Trainer]:
    """Register a trainer class in-process (tests, notebooks); entry points are the normal route."""
    _extra[name or cls.name] = cls
    return cls


def trainer_entry_points() -> dict[str, str]:
    """{name: "module:Class"} for everything installed, plus in-process registrations."""
    found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    found.update({name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in _extra.items()})
    return dict(sorted(found.items()))


def trainer_class(name: str) -> type[Trainer]:
    """The class registered as ``name`` (ConfigError listing what exists if none)."""
    if name in _extra:
        return _extra[name]
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        known = ", ".join(trainer_entry_points()) or "none installed"
        raise ConfigError(f"unknown trainer {name!r} (installed: {known})")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise ConfigError(f"trainer {name!r} ({eps[name].value}) is not a sltdata.train.base.Trainer")
    return cls


def get_trainer(name: str) -> Trainer:
    """An instance of the trainer registered as ``name``."""
    return trainer_class(name)()


def bundled_configs() -> dict[str, Path]:
    """{recipe name: path} over every registered trainer (this loads each trainer's module)."""
    found: dict[str, Path] = {}
    for name in trainer_entry_points():
        found.update(trainer_class(name).bundled_configs())
    return dict(sorted(found.items()))


def bundled_config_names() -> list[str]:
    return list(bundled_configs())


def bundled_config(name: str) -> Path:
    """The path of the bundled recipe ``name`` (``islr-tiny``), whichever trainer ships it."""
    found = bundled_configs()
    if name not in found:
        raise ConfigError(f"{name}: no bundled recipe of that name (bundled: {', '.join(found) or 'none'})")
    return found[name]
