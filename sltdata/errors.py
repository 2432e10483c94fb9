"""Typed errors. The CLI turns each into one line: ``error: <where>: <reason>``."""

from __future__ import annotations

from pathlib import Path


class SltdataError(Exception):
    """A mistake a user can act on (bad input, bad config). Never a bug in sltdata."""


class SourceError(SltdataError):
    """Bad input data: names the file and, when known, the manifest row."""

    def __init__(self, path: str | Path, reason: str, row: int | None = None):
        self.path = str(path)
        self.row = row
        self.reason = reason
        where = self.path if row is None else f"{self.path} row {row}"
        super().__init__(f"{where}: {reason}")


class ConfigError(SltdataError):
    """A bad recipe or transform/train config, caught when it is loaded."""


class StoreError(SltdataError):
    """A sequence store that is missing, incomplete or not a store."""
