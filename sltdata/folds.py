"""Fold assignment: participant-grouped, label-stratified cross-validation splits.

A signer's sequences must never sit in two folds: a model that has seen a signer in training scores
far higher on that signer, and the cross-validation estimate no longer says how it does on new
people. So folds are groups of participants. Within that constraint, folds are stratified by label
with scikit-learn's ``StratifiedGroupKFold`` when the store has labels (isolated signs), and split by
``GroupKFold`` (balanced sequence counts) otherwise.

Sequences with no participant (e.g. a ``.pose`` corpus that does not name its signers) are each
their own group: they spread over folds like ungrouped samples. Nothing can be promised about
signer overlap for them, and ``FoldPlan.ungrouped`` counts them so the CLI can say so.

An optional held-out ``test`` split takes whole participants too: the groups are shuffled with the
seed and taken in that order until they hold ``test_fraction`` of the sequences.

Everything is a function of the metadata (sorted by key) and the seed, so the same store and seed
give the same folds whatever the store's part order.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from sltdata.errors import ConfigError

log = logging.getLogger(__name__)

# Split names: the one place they are spelled (shards, HF export and the training loop ask here).
TEST_SPLIT = "test"
FOLD_PREFIX = "fold"


def fold_name(i: int) -> str:
    return f"{FOLD_PREFIX}{i}"


@dataclass(frozen=True)
class FoldDefaults:
    """Defaults of every fold plan (``assign_folds``, ``write_shards``, ``export_hf`` and their CLI
    commands), so the library and the CLI cannot drift apart."""

    folds: int = 5
    test_fraction: float = 0.0  # no held-out test split
    seed: int = 0


FOLD_DEFAULTS = FoldDefaults()


@dataclass(frozen=True)
class FoldPlan:
    """Which split (``fold0``.. or ``test``) each sequence and each participant belongs to."""

    folds: int
    seed: int
    test_fraction: float
    split_of_key: dict[str, str]  # sequence key -> split name
    participants: dict[str, str]  # participant -> split name (named participants only)
    stratified: bool  # True when StratifiedGroupKFold was used (the store has labels)
    ungrouped: int  # sequences with no participant, each its own group
    splits: tuple[str, ...] = field(default=())  # split names in order: fold0..fold{K-1}[, test]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.splits, 0)
        for s in self.split_of_key.values():
            out[s] += 1
        return out


def _groups(keys: np.ndarray, participants: list[str | None]) -> np.ndarray:
    """Participant as the group; a sequence without one is a group of its own (prefixed so it can
    never equal a participant id)."""
    return np.array([f"p:{p}" if p is not None else f"k:{k}" for k, p in zip(keys, participants)], dtype=object)


def _held_out(groups: np.ndarray, fraction: float, rng: np.random.Generator, keep: int) -> set:
    """Whole groups, in a seeded order, until they hold ``fraction`` of the sequences; at least
    ``keep`` groups stay outside for the folds."""
    names, sizes = np.unique(groups, return_counts=True)
    order = rng.permutation(len(names))
    target = fraction * len(groups)
    chosen, total = set(), 0
    for i in order:
        if total >= target or len(names) - len(chosen) <= keep:
            break
        # take the group unless it overshoots the target by more than leaving it out undershoots
        if total + sizes[i] - target > target - total and chosen:
            continue
        chosen.add(names[i])
        total += int(sizes[i])
    return chosen


def assign_folds(keys, participants, labels=None, folds: int = FOLD_DEFAULTS.folds,
                 test_fraction: float = FOLD_DEFAULTS.test_fraction, seed: int = FOLD_DEFAULTS.seed) -> FoldPlan:
    """Assign every sequence to ``fold0``..``fold{folds-1}`` or ``test``.

    ``keys``, ``participants``, ``labels``: equal-length sequences (labels None or all None when the
    store has none). Raises ConfigError when there are fewer groups than folds.
    """
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {folds})")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"--test-fraction must be in [0, 1) (got {test_fraction})")
    keys = np.asarray(list(keys), dtype=object)
    participants = list(participants)
    labels = list(labels) if labels is not None else [None] * len(keys)
    if not (len(keys) == len(participants) == len(labels)):
        raise ValueError("keys, participants and labels differ in length")
    if len(set(keys.tolist())) != len(keys):
        raise ConfigError("sequence keys are not unique")
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    participants = [participants[i] for i in order]
    labels = np.array(["" if labels[i] is None else str(labels[i]) for i in order], dtype=object)
    groups = _groups(keys, participants)
    n_groups = len(set(groups.tolist()))
    if n_groups < folds:
        raise ConfigError(f"{n_groups} participant group(s) cannot fill {folds} folds; use --folds {max(2, n_groups)} or fewer")
    rng = np.random.default_rng(seed)
    split = np.empty(len(keys), dtype=object)
    test_groups = _held_out(groups, test_fraction, rng, keep=folds) if test_fraction > 0 else set()
    is_test = np.array([g in test_groups for g in groups], dtype=bool)
    split[is_test] = TEST_SPLIT
    rest = np.flatnonzero(~is_test)
    stratified = bool(np.any(labels[rest] != ""))
    if stratified:
        from sklearn.model_selection import StratifiedGroupKFold

        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        from sklearn.model_selection import GroupKFold

        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    after_test = " after the test split (or a smaller --test-fraction)" if test_groups else ""
    if stratified:
        most = int(np.unique(labels[rest], return_counts=True)[1].max())
        if most < folds:  # StratifiedGroupKFold's ValueError, said in the CLI's words
            raise ConfigError(f"every label has fewer than {folds} sequences{after_test} (at most {most}): "
                              f"stratified folds need --folds {max(2, most)} or fewer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fold_splits = list(splitter.split(np.zeros(len(rest)), labels[rest].astype(str), groups[rest]))
        except ValueError as e:  # anything else scikit-learn refuses: a line, not a traceback
            raise ConfigError(f"cannot split {len(rest)} sequences into {folds} folds ({e}); "
                              f"use fewer --folds{after_test}") from None
    for w in caught:
        log.info("folds: %s", w.message)  # e.g. a class with fewer members than folds
    for i, (_, held) in enumerate(fold_splits):
        split[rest[held]] = fold_name(i)
    names = tuple(fold_name(i) for i in range(folds)) + ((TEST_SPLIT,) if test_groups else ())
    by_participant: dict[str, str] = {}
    for p, s in zip(participants, split):
        if p is not None:
            by_participant[p] = s
    return FoldPlan(folds=folds, seed=seed, test_fraction=test_fraction,
                    split_of_key=dict(zip(keys.tolist(), split.tolist())),
                    participants=dict(sorted(by_participant.items())), stratified=stratified,
                    ungrouped=sum(p is None for p in participants), splits=names)


def assign_store_folds(store, folds: int = FOLD_DEFAULTS.folds, test_fraction: float = FOLD_DEFAULTS.test_fraction,
                       seed: int = FOLD_DEFAULTS.seed) -> FoldPlan:
    """``assign_folds`` on a store's metadata (no landmarks read)."""
    meta = store.metadata(("key", "participant", "label"))
    return assign_folds(meta.column("key").to_pylist(), meta.column("participant").to_pylist(),
                        meta.column("label").to_pylist(), folds=folds, test_fraction=test_fraction, seed=seed)
