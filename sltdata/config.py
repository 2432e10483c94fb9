"""One loader for every config: a YAML file or a dict (plus ``a.b=value`` overrides) into a dataclass tree.

Recipes, transform configs and run configs are all dataclasses; this module fills them and checks the
types their annotations name (bool, int, float, str, ``Optional``, ``Literal`` choices, lists, fixed
and variable tuples, mappings, nested dataclasses). Every mistake is one
:class:`~sltdata.errors.ConfigError` in one style, ``ORIGIN: KEY: REASON``, where ORIGIN is the file
(or what the dict was, e.g. ``transform config``) and KEY the dotted path::

    islr-tiny.yaml: train.lr: expected a number, got 'abc'
    islr-tiny.yaml: model.dimm: unknown key, did you mean 'dim'? (known: arch, dim, ...)

Rules that depend on values (ranges, preset names, point indices) stay with the dataclass that owns
them, as two optional hooks the loader calls:

- ``prepare(cls, data) -> data`` (a classmethod): rewrites shorthands in the raw mapping before the type
  checks (``augment: false``, ``manifest: train.csv`` for a one-element list);
- ``validate(self)``: checks values once the object is built.

A hook names the bad key with :class:`FieldError` (relative to its own section); the loader adds the
section's path and the origin. A plain ``ConfigError`` from a hook keeps its words and gets the origin.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
import types
import typing
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml

from sltdata.errors import ConfigError


class FieldError(ConfigError):
    """A bad value at ``key`` (dotted, relative to the section that raised it); the loader completes it."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}" if key else reason)


def message(origin: str, key: str, reason: str) -> str:
    return ": ".join(p for p in (origin, key, reason) if p)


@contextmanager
def reported_as(origin: str) -> Iterator[None]:
    """Turn a FieldError raised inside into the one-line ``ORIGIN: KEY: REASON`` ConfigError."""
    try:
        yield
    except FieldError as e:
        raise ConfigError(message(origin, e.key, e.reason)) from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where and key else where or key


# --- building a dataclass from a mapping -------------------------------------------------------------

def build(cls: type, data: Mapping | None, origin: str, where: str = "") -> Any:
    """Dataclass ``cls`` from ``data``; ``where`` is its dotted path when it is a section of a larger config."""
    with reported_as(origin):
        return _build(cls, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:  # an empty YAML section (`train:` with nothing under it) means the defaults
        data = {}
    if not isinstance(data, Mapping):
        raise FieldError(where, f"expected a mapping, got {data!r}")
    data = dict(data)
    prepare = getattr(cls, "prepare", None)
    if callable(prepare):
        data = _hook(lambda: prepare(data), where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise FieldError(_join(where, str(key)), unknown_key(str(key), fields))
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FieldError(_join(where, name), "required, but missing")
    hints = typing.get_type_hints(cls)
    obj = cls(**{k: convert(v, hints[k], _join(where, k)) for k, v in data.items()})
    check = getattr(obj, "validate", None)
    if callable(check):
        _hook(check, where)
    return obj


def _hook(call, where: str):
    try:
        return call()
    except FieldError as e:
        raise FieldError(_join(where, e.key), e.reason) from None
    except ConfigError as e:
        # Hooks that predate FieldError name the key themselves ("config model.dim ...").
        raise FieldError("", str(e).removeprefix("config ")) from None


def unknown_key(key: str, known, what: str = "key") -> str:
    """``unknown key, did you mean 'dim'? (known: ...)``: the reason for a name not in ``known``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"unknown {what}{hint} (known: {', '.join(known)})"


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against annotation ``tp`` (int is accepted for float; lists become tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        first = None
        for a in options:
            try:
                return convert(value, a, key)
            except FieldError as e:
                first = first or e
        raise first
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise FieldError(key, f"{value!r} is not one of {', '.join(map(repr, args))}{hint}")
    if tp is bool:
        if not isinstance(value, bool):
            raise FieldError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise FieldError(key, f"expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads 1e-3, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise FieldError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise FieldError(key, f"expected a string, got {value!r}")
        return value
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise FieldError(key, f"expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise FieldError(key, f"expected a list of {len(args)} values, got {list(value)!r}")
            return tuple(convert(v, a, key) for v, a in zip(value, args))
        item = args[0] if args else Any
        items = [convert(v, item, key) for v in value]
        return tuple(items) if (tp is tuple or origin is tuple) else items
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise FieldError(key, f"expected a mapping, got {value!r}")
        item = args[1] if args else Any
        return {k: convert(v, item, _join(key, str(k))) for k, v in value.items()}
    return value


# --- files and overrides -----------------------------------------------------------------------------

def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.lr=1e-3", "model.arch=cnn"]`` -> nested dict; each value is parsed as YAML."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item}: bad key {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item}: not valid YAML ({' '.join(str(e).split())})") from None
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node[parts[-1]] = value
    return out


def merge(base: Mapping, over: Mapping) -> dict:
    """Deep-merge ``over`` into a copy of ``base`` (sections merge, values replace)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def expand_shorthands(cls: type, data: Mapping, origin: str) -> dict:
    """``data`` with each section's ``prepare`` shorthands spelled out (``augment: false`` -> every
    augmentation with p 0), so an override merged afterwards changes one value of the spelled-out
    section instead of replacing the shorthand (``augment: false`` then ``augment.flip.p=0.5`` would
    otherwise turn every other augmentation back on at its default)."""
    def walk(cls: type, data: Any, where: str) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        prepare = getattr(cls, "prepare", None)
        if callable(prepare):
            data = _hook(lambda: prepare(data), where)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = data.get(f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a shorthand made an object
                data[f.name] = dataclasses.asdict(value)
            section = _dataclass_of(hints.get(f.name))
            if section is not None and isinstance(data.get(f.name), Mapping):
                data[f.name] = walk(section, data[f.name], _join(where, f.name))
        return data

    with reported_as(origin):
        return walk(cls, data, "")


def _dataclass_of(hint) -> type | None:
    """The dataclass a field holds (``T`` or ``Optional[T]``), else None."""
    for t in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(t):
            return t
    return None


def load(cls: type, source: str | Path | Mapping | None, overrides: list[str] | Mapping | None = None, *,
         origin: str) -> Any:
    """Dataclass ``cls`` from a YAML path, a mapping or None (defaults), with overrides applied.

    ``origin`` names a mapping in messages; a file is named by its path.
    """
    data, origin = read_source(source, origin)
    if overrides:
        data = merge(expand_shorthands(cls, data, origin),
                     overrides if isinstance(overrides, Mapping) else parse_overrides(overrides))
    return build(cls, data, origin)


def read_source(source: str | Path | Mapping | None, origin: str) -> tuple[dict, str]:
    """(mapping, origin) for a YAML path, a mapping or None."""
    if source is None:
        return {}, origin
    if isinstance(source, Mapping):
        return dict(source), origin
    if isinstance(source, (str, Path)):
        return read_yaml(source), str(source)
    raise ConfigError(f"{origin}: expected a YAML path or a mapping, got {type(source).__name__}")
