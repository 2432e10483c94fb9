"""Source readers, registered by name. One module per publisher format.

A source knows its publisher's files: which landmark file a manifest row points at, and how to read
a file into sequences. Everything generic (manifest checks, parts, rejects, resumption) is in
``sltdata.ingest``. Third-party packages add a source through the ``sltdata.sources`` entry-point
group, pointing at a ``Source`` subclass.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Iterator

from sltdata.errors import ConfigError
from sltdata.layouts import Layout, get_layout
from sltdata.manifest import ManifestRow
from sltdata.recipes import Recipe
from sltdata.sequence import Sequence
from sltdata.store import Reject

_BUILTIN = ("sltdata.sources.kaggle_islr", "sltdata.sources.kaggle_fingerspelling", "sltdata.sources.pose")
_SOURCES: dict[str, type["Source"]] = {}


class Source(ABC):
    name: ClassVar[str]
    layouts: ClassVar[tuple[str, ...]] = ("holistic-543",)

    def __init__(self, root: Path, recipe: Recipe):
        self.root = root
        self.recipe = recipe

    @abstractmethod
    def landmark_file(self, row: ManifestRow) -> str:
        """The landmark file a manifest row points at, relative to the dataset root."""

    def layout(self, name: str) -> Layout:
        """The Layout a sequence this source read names (ingest records it in store.json). Built-ins
        here; a source that reads layouts from its files (``.pose`` headers) answers for those."""
        return get_layout(name)

    @abstractmethod
    def read(self, file: Path, rows: list[ManifestRow]) -> Iterator[Sequence | Reject]:
        """Read one landmark file; yield a Sequence or a Reject for every row given, in order.

        A file that cannot be read at all raises ``SourceError``; ingest then rejects every row that
        points at it with that reason.
        """


def register_source(cls: type[Source]) -> type[Source]:
    _SOURCES[cls.name] = cls
    return cls


def _load() -> None:
    if _SOURCES:
        return
    for mod in _BUILTIN:
        importlib.import_module(mod)
    for ep in entry_points(group="sltdata.sources"):
        register_source(ep.load())


def get_source(name: str) -> type[Source]:
    _load()
    try:
        return _SOURCES[name]
    except KeyError:
        raise ConfigError(f"unknown source {name!r} (known: {', '.join(sorted(_SOURCES))})") from None


def list_sources() -> list[str]:
    _load()
    return sorted(_SOURCES)
