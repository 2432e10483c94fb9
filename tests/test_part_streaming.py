"""Store parts are written a row group at a time: bounded memory, same sequences, deterministic bytes."""

import hashlib

import numpy as np
import pyarrow.parquet as pq

import sltdata.store as store_mod
from sltdata.ingest import ingest
from sltdata.store import Store, part_name, sequences_to_table, write_part
from sltdata.synth import synth
from sltdata.testing import fake_sequence


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_a_part_under_the_row_group_bound_has_the_bytes_of_one_write_table(tmp_path):
    seqs = [fake_sequence(f"k{i}", frames=5 + i, seed=i, label="a", participant="p") for i in range(20)]
    write_part(tmp_path / "new.parquet", iter(seqs))
    pq.write_table(sequences_to_table(seqs), tmp_path / "old.parquet", compression="zstd", row_group_size=1024,
                   write_statistics=["key", "label", "participant", "frames"])
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "old.parquet").read_bytes()


def test_a_large_part_is_written_in_row_groups_of_the_byte_bound(tmp_path, monkeypatch):
    seqs = [fake_sequence(f"k{i}", frames=10, seed=i) for i in range(10)]
    per_seq = 4 * seqs[0].landmarks.size
    monkeypatch.setattr(store_mod, "ROW_GROUP_BYTES", 3 * per_seq)  # three sequences a row group
    tables = []
    real = store_mod.sequences_to_table
    monkeypatch.setattr(store_mod, "sequences_to_table", lambda s, q=None: tables.append(len(s)) or real(s, q))
    write_part(tmp_path / part_name(0), (s for s in seqs))
    assert tables == [3, 3, 3, 1]
    pf = pq.ParquetFile(tmp_path / part_name(0))
    assert [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)] == [3, 3, 3, 1]
    back = pq.read_table(tmp_path / part_name(0))
    assert back.column("key").to_pylist() == [s.key for s in seqs]
    for lm, s in zip(store_mod.table_landmarks(back), seqs):
        assert np.array_equal(lm, s.landmarks, equal_nan=True)


def test_fingerspelling_ingest_in_small_row_groups_stores_the_same_sequences_and_reruns_identically(tmp_path, monkeypatch):
    raw = synth("kaggle-fingerspelling", tmp_path / "raw", files=2, sequences_per_file=30, participants=3)
    ingest("kaggle-fingerspelling", raw, tmp_path / "whole")
    monkeypatch.setattr(store_mod, "ROW_GROUP_BYTES", 1 << 16)
    ingest("kaggle-fingerspelling", raw, tmp_path / "a", workers=2)
    ingest("kaggle-fingerspelling", raw, tmp_path / "b", workers=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    pf = pq.ParquetFile(tmp_path / "a" / part_name(0))
    assert pf.num_row_groups > 1
    whole, small = list(Store(tmp_path / "whole")), list(Store(tmp_path / "a"))
    assert [s.key for s in small] == [s.key for s in whole] and len(whole) == 60
    for a, b in zip(small, whole):
        assert a.text == b.text and np.array_equal(a.landmarks, b.landmarks, equal_nan=True)
