"""sltdata merge: one vocabulary through a gloss map, origins kept, key collisions refused, nothing lost."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from sltdata.errors import StoreError
from sltdata.merge import merge_stores
from sltdata.store import QUALITY_COLUMNS, Store
from sltdata.testing import fake_sequence
from sltdata.testing.stores import store_from_sequences


def _store(path, labels, prefix="k"):
    seqs = [fake_sequence(f"{prefix}{i}", frames=5 + i, seed=i, label=l, participant=f"p{i}")
            for i, l in enumerate(labels)]
    return store_from_sequences(seqs, path)


def test_gloss_map_unifies_labels_and_keeps_origin(tmp_path):
    a = _store(tmp_path / "asl_a", ["HOUSE", "book", "drop-me"], prefix="a")
    b = _store(tmp_path / "asl_b", ["house1", "BOOK"], prefix="b")
    gm = tmp_path / "map.csv"
    gm.write_text("store,source_label,label\n,HOUSE,house\nasl_b,house1,house\nasl_b,BOOK,book\n,drop-me,\n")
    result = merge_stores([a, b], tmp_path / "merged", gloss_map=gm)
    assert (result.rows, result.stored, result.rejected) == (5, 4, 1)
    merged = Store(tmp_path / "merged")
    got = {s.key: s.label for s in merged}
    assert got == {"a0": "house", "a1": "book", "b0": "house", "b1": "book"}
    assert merged.labels == {"book": 0, "house": 1}
    origin = merged.metadata(("key", "merged_from")).to_pylist()
    assert {r["key"]: r["merged_from"] for r in origin} == {"a0": "asl_a", "a1": "asl_a", "b0": "asl_b", "b1": "asl_b"}
    np.testing.assert_array_equal(merged.get("b1").landmarks, Store(b).get("b1").landmarks)
    assert [r["key"] for r in merged.rejects()] == ["a2"]
    assert merged.meta["counts"] == {"rows": 5, "stored": 4, "rejected": 1, "frames": 5 + 6 + 5 + 6}


def test_key_collision_is_refused_in_one_line_unless_keys_are_prefixed(tmp_path, capsys):
    from sltdata.cli import main

    a = _store(tmp_path / "one", ["x", "y"])
    b = _store(tmp_path / "two", ["y"])
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: key 'k0' is in both one and two; pass --prefix-keys to make keys STORE/KEY"
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m2"), "--prefix-keys"]) == 0
    assert "3 sequences read, 3 stored, 0 rejected" in capsys.readouterr().out
    assert sorted(s.key for s in Store(tmp_path / "m2")) == ["one/k0", "one/k1", "two/k0"]


def test_store_without_quality_columns_merges_with_nulls(tmp_path):
    a = _store(tmp_path / "old", ["x"])
    part = Store(a).parts[0]
    pq.write_table(pq.read_table(part).drop_columns(list(QUALITY_COLUMNS) + ["merged_from"]), part)
    b = _store(tmp_path / "new", ["y"], prefix="n")
    merge_stores([a, b], tmp_path / "m")
    t = Store(tmp_path / "m").metadata(("key", "quality_jitter"))
    assert t.column("quality_jitter").null_count == 2


def test_gloss_map_without_its_columns_is_refused(tmp_path):
    from sltdata.errors import ConfigError

    a = _store(tmp_path / "a", ["x"])
    gm = tmp_path / "bad.csv"
    gm.write_text("from,to\nx,y\n")
    with pytest.raises(ConfigError, match="source_label,label"):
        merge_stores([a], tmp_path / "m", gloss_map=gm)
    with pytest.raises(StoreError, match="not empty"):
        (tmp_path / "m2").mkdir()
        (tmp_path / "m2" / "f").write_text("x")
        merge_stores([a], tmp_path / "m2")
    assert json.loads((tmp_path / "a" / "store.json").read_text())["counts"]["stored"] == 1
