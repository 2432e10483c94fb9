"""Fold assignment: participant-grouped, label-stratified, held-out test by participant, deterministic."""

from collections import Counter

import numpy as np
import pytest

from sltdata.errors import ConfigError
from sltdata.folds import assign_folds, assign_store_folds
from sltdata.store import Store


def _meta(participants=30, per=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    keys, parts, labels = [], [], []
    for p in range(participants):
        for j in range(per):
            keys.append(f"s{p:03d}-{j:03d}")
            parts.append(f"p{p}")
            labels.append(f"c{rng.integers(classes)}")
    return keys, parts, labels


def test_no_participant_in_two_folds(islr_store):
    plan = assign_store_folds(Store(islr_store), folds=3, test_fraction=0.2, seed=1)
    meta = Store(islr_store).metadata(("key", "participant"))
    split_of_participant = {}
    for k, p in zip(meta.column("key").to_pylist(), meta.column("participant").to_pylist()):
        split_of_participant.setdefault(p, set()).add(plan.split_of_key[k])
    assert all(len(s) == 1 for s in split_of_participant.values())
    assert {p: next(iter(s)) for p, s in split_of_participant.items()} == plan.participants


def test_every_sequence_gets_exactly_one_split(islr_store):
    store = Store(islr_store)
    plan = assign_store_folds(store, folds=3, test_fraction=0.2)
    assert sorted(plan.split_of_key) == sorted(store.metadata(("key",)).column("key").to_pylist())
    assert set(plan.split_of_key.values()) == {"fold0", "fold1", "fold2", "test"}
    assert sum(plan.counts().values()) == len(store)


def test_same_seed_gives_same_folds_whatever_the_input_order():
    keys, parts, labels = _meta()
    a = assign_folds(keys, parts, labels, folds=5, test_fraction=0.2, seed=7)
    order = np.random.default_rng(3).permutation(len(keys))
    b = assign_folds([keys[i] for i in order], [parts[i] for i in order], [labels[i] for i in order],
                     folds=5, test_fraction=0.2, seed=7)
    assert a.split_of_key == b.split_of_key
    assert a.participants == b.participants


def test_stratification_roughly_balances_labels():
    keys, parts, labels = _meta(participants=40, per=15, classes=4)
    plan = assign_folds(keys, parts, labels, folds=5, seed=0)
    assert plan.stratified
    overall = Counter(labels)
    for fold in plan.splits:
        got = Counter(l for k, l in zip(keys, labels) if plan.split_of_key[k] == fold)
        n = sum(got.values())
        for label, count in overall.items():
            assert abs(got[label] / n - count / len(labels)) < 0.06, (fold, label)


def test_held_out_test_takes_whole_participants_near_the_fraction():
    keys, parts, labels = _meta(participants=20, per=10)
    plan = assign_folds(keys, parts, labels, folds=4, test_fraction=0.2, seed=0)
    assert plan.counts()["test"] == 40
    test_participants = {p for p, s in plan.participants.items() if s == "test"}
    assert len(test_participants) == 4


def test_sequences_without_participant_are_each_their_own_group(pose_store):
    plan = assign_store_folds(Store(pose_store), folds=3)
    assert plan.ungrouped == 60
    assert plan.participants == {}
    assert not plan.stratified  # text only: GroupKFold
    assert plan.counts() == {"fold0": 20, "fold1": 20, "fold2": 20}


def test_fewer_participants_than_folds_is_a_config_error():
    keys, parts, labels = _meta(participants=3, per=4)
    with pytest.raises(ConfigError, match="3 participant group"):
        assign_folds(keys, parts, labels, folds=5)


def test_duplicate_keys_are_a_config_error():
    with pytest.raises(ConfigError, match="not unique"):
        assign_folds(["a", "a", "b"], ["1", "2", "3"], folds=2)
