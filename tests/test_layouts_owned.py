"""Layouts travel with the store or shard directory that holds them: no global registry, so two
datasets that use one layout name differently open (and are described) side by side."""

import numpy as np
import pytest

from sltdata.errors import ConfigError
from sltdata.layouts import BUILTIN_LAYOUTS, Component, Layout, get_layout
from sltdata.sequence import Sequence
from sltdata.shards import ShardIndex, write_shards
from sltdata.stats import compute_stats
from sltdata.store import Store
from sltdata.testing.stores import store_from_sequences

NAME = "custom-4"
HANDS = Layout(NAME, (Component("left_hand", ("a", "b")), Component("right_hand", ("c", "d"))))
BODY = Layout(NAME, (Component("body", ("a", "b", "c")), Component("head", ("d",))))


def _store(path, layout, nan_point):
    """Six sequences of 2 frames; ``nan_point`` is undetected in every frame."""
    seqs = []
    for i in range(6):
        lm = np.full((2, 4, 3), 0.5, np.float32)
        lm[:, nan_point] = np.nan
        seqs.append(Sequence(f"k{i}", lm, NAME, participant=f"p{i}"))
    return store_from_sequences(seqs, path, layouts=[layout])


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    return _store(d / "hands", HANDS, nan_point=0), _store(d / "body", BODY, nan_point=3)


def test_two_stores_define_one_name_differently_and_both_open(two):
    hands, body = Store(two[0]), Store(two[1])
    assert hands.layout(NAME) == HANDS and body.layout(NAME) == BODY
    assert Store(two[0]).layout(NAME) == HANDS  # opening the other store changed nothing
    assert NAME not in BUILTIN_LAYOUTS
    with pytest.raises(ConfigError, match="unknown layout"):
        get_layout(NAME)


def test_each_store_is_described_with_its_own_layout(two):
    hands, body = (compute_stats(p)["detection"] for p in two)
    # point a (left_hand) is NaN but b is seen, so left_hand counts; a layout without hands has no "no hand" frame
    assert hands["frames_with"] == {"left_hand": 12, "right_hand": 12, "no_hand": 0}
    assert body["frames_with"] == {"body": 12, "head": 0, "no_hand": 0}


def test_shard_indexes_carry_their_own_layout(two, tmp_path):
    a = write_shards(two[0], tmp_path / "a", folds=2)
    b = write_shards(two[1], tmp_path / "b", folds=2)
    assert ShardIndex.open(a.path).layout(NAME) == HANDS
    assert ShardIndex.open(b.path).layout(NAME) == BODY
    assert compute_stats(b.path)["detection"]["frames_with"] == {"body": 12, "head": 0, "no_hand": 0}
