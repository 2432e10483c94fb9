"""Fakes for the text trainers' tests (`ctc`, `seq2seq`, `causal-lm`): fold shards of a synth store
and the bundled tiny recipes as dicts, so no test downloads a model, a tokenizer or data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sltdata.testing.train import recipe


def text_shards(store: str | Path, out: str | Path, folds: int = 4, max_samples_per_shard: int = 64) -> Path:
    """Participant-grouped fold shards of a store with phrases (the index carries the character map)."""
    from sltdata.shards import write_shards

    write_shards(store, out, folds=folds, max_samples_per_shard=max_samples_per_shard)
    return Path(out)


def bundled_config(name: str, **sections) -> dict:
    """A bundled recipe (``ctc-tiny``) as a dict, each section updated from ``sections``."""
    return recipe(name, **sections)


def split_texts(shards: str | Path, folds: list[str]) -> list[str]:
    """Every phrase of ``folds``, in index order."""
    from sltdata.loader import loader

    return [t for b in loader(shards, folds=folds, batch_size=256, target=None, train=False) for t in b["text"]]


def constant_phrase_baseline(train_texts: list[str], val_texts: list[str]) -> tuple[str, float]:
    """The Fingerspelling competition's trivial baseline: predict one training phrase for everything.

    The phrase is the most common training phrase; where phrases tie (synth phrases are all distinct),
    the one with the best normalized Levenshtein score on the training phrases themselves, so the
    baseline is the strongest a constant prediction chosen without looking at validation gets.
    Returns the phrase and its score on ``val_texts``.
    """
    from sltdata.train.metrics import text_metrics

    counts = Counter(train_texts)
    top = max(counts.values())
    tied = sorted(p for p, c in counts.items() if c == top)
    phrase = max(tied, key=lambda p: text_metrics([p] * len(train_texts), train_texts)["score"])
    return phrase, text_metrics([phrase] * len(val_texts), val_texts)["score"]
