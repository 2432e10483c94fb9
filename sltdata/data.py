"""Compatibility: ``sltdata.data`` is now ``sltdata.loader`` (torch stages) on top of ``sltdata.shards``.

The old import path keeps working for a release (docs/interfaces.md)."""

from sltdata.loader import (DEFAULT_BATCH_SIZE, IGNORE_INDEX, ShardError, ShardIndex, ShardLoader, collate,
                            count_batches, load_npy, loader)

__all__ = ["DEFAULT_BATCH_SIZE", "IGNORE_INDEX", "ShardError", "ShardIndex", "ShardLoader", "collate", "count_batches",
           "load_npy", "loader"]
