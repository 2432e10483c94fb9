"""Fakes for trainer tests: tiny shard sets and a tiny run config, made in seconds on CPU."""

from __future__ import annotations

from pathlib import Path

import yaml


def islr_shards(store: str | Path, out: str | Path, folds: int = 4, test_fraction: float = 0.0,
                max_samples_per_shard: int = 16) -> Path:
    """Participant-grouped fold shards of an ISLR store (small shards, so two ranks each get some)."""
    from sltdata.shards import write_shards

    write_shards(store, out, folds=folds, test_fraction=test_fraction, max_samples_per_shard=max_samples_per_shard)
    return Path(out)


def recipe(name: str, **sections) -> dict:
    """A bundled recipe (``islr-tiny``, found through the trainer registry) as a dict, each section
    updated from ``sections`` (a dict updates keys of that section; anything else replaces it)."""
    from sltdata.train.registry import bundled_config

    cfg = yaml.safe_load(bundled_config(name).read_text())
    for section, values in sections.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    return cfg


def tiny_islr_config(**sections) -> dict:
    """The bundled ``islr-tiny`` recipe as a dict, each section updated from ``sections``."""
    return recipe("islr-tiny", **sections)
