"""Issue 14: memory bounded by the work unit (a part), not by the file."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sltdata.ingest import pack_parts
from sltdata.manifest import ManifestRow
from sltdata.plan import Group
from sltdata.sources import kaggle_fingerspelling as fs
from sltdata.testing import fake_landmarks


def reference_read(path, keys):
    """The whole file in memory, sorted by (sequence_id, frame): what the reader must give."""
    t = pq.read_table(path).to_pandas()
    out = {}
    for k in keys:
        rows = t[t["sequence_id"].astype(str) == k].sort_values("frame", kind="stable")
        out[k] = rows[fs.coordinate_columns()].to_numpy(np.float32).reshape(len(rows), 543, 3)
    return out


def test_reading_by_row_group_and_batch_gives_the_whole_file_read(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=5 + k % 7, seed=k) for k in range(10, 40)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    t = pq.read_table(path)
    shuffled = t.take(np.random.default_rng(0).permutation(t.num_rows))  # frames out of order, across groups
    pq.write_table(shuffled, path, row_group_size=37)
    monkeypatch.setattr(fs, "BATCH_ROWS", 11)
    keys = ["12", "39", "25", "10"]
    found, rejected = fs.read_fingerspelling_file(path, keys)
    assert rejected == {}
    want = reference_read(path, keys)
    assert sorted(found) == sorted(keys)
    for k in keys:
        np.testing.assert_array_equal(found[k], want[k])
        np.testing.assert_array_equal(found[k], seqs[k])


def test_row_groups_without_a_wanted_sequence_are_not_read(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=8, seed=k) for k in range(10, 20)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    pq.write_table(pq.read_table(path), path, row_group_size=8)  # one sequence per row group
    read = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, row_groups=None, **kwargs):
        read.extend(row_groups)
        return real(self, *args, row_groups=row_groups, **kwargs)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    found, _ = fs.read_fingerspelling_file(path, ["13", "17"])
    assert read == [3, 7]
    np.testing.assert_array_equal(found["17"], seqs["17"])


def test_float64_file_read_by_batches_is_float32_with_inf_beyond_range(tmp_path, monkeypatch):
    seqs = {"5": fake_landmarks(frames=4, seed=1)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("x_face_0"), "x_face_0",
                     pa.array([1e300, 0.5, 0.25, 0.125], pa.float64()))
    pq.write_table(t, path)
    monkeypatch.setattr(fs, "BATCH_ROWS", 3)
    found, _ = fs.read_fingerspelling_file(path, ["5"])
    assert found["5"].dtype == np.float32
    assert found["5"][:, 0, 0].tolist() == [np.inf, 0.5, 0.25, 0.125]


def test_a_file_larger_than_a_part_is_cut_into_parts_of_half_a_part():
    def rows(file, n, start):
        return tuple(ManifestRow("m.csv", start + i, str(start + i), file, None, "a", None) for i in range(n))
    groups = [Group("z.parquet", rows("z.parquet", 1, 0)), Group("a.parquet", rows("a.parquet", 7, 1)),
              Group("b.parquet", rows("b.parquet", 2, 8)), Group("c.parquet", rows("c.parquet", 2, 10))]
    parts = pack_parts(groups, 4)
    assert [[(g.file, [r.row for r in g.rows]) for g in p] for p in parts] == [
        [("z.parquet", [0])], [("a.parquet", [1, 2])], [("a.parquet", [3, 4])], [("a.parquet", [5, 6])],
        [("a.parquet", [7])], [("b.parquet", [8, 9]), ("c.parquet", [10, 11])]]
