"""Issue 14: memory bounded by the work unit (a part), not by the file."""

import hashlib
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sltdata.ingest import ingest
from sltdata.manifest import ManifestRow
from sltdata.plan import Group, pack_parts
from sltdata.recipes import load_recipe
from sltdata.store import Store
from sltdata.synth import synth
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


def test_reading_by_row_group_and_column_block_gives_the_whole_file_read(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=5 + k % 7, seed=k) for k in range(10, 40)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    t = pq.read_table(path)
    shuffled = t.take(np.random.default_rng(0).permutation(t.num_rows))  # frames out of order, across groups
    pq.write_table(shuffled, path, row_group_size=37)
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 100)  # not a divisor of 1,629: the last block is short
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
    real = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        read.append(i)
        return real(self, i, *args, **kwargs)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 600)  # three blocks: 600 + 600 + 429 columns
    found, _ = fs.read_fingerspelling_file(path, ["13", "17"])
    assert read == [3, 3, 3, 7, 7, 7]
    np.testing.assert_array_equal(found["17"], seqs["17"])


def test_float64_file_read_by_column_blocks_is_float32_with_inf_beyond_range(tmp_path, monkeypatch):
    seqs = {"5": fake_landmarks(frames=4, seed=1)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("x_face_0"), "x_face_0",
                     pa.array([1e300, 0.5, 0.25, 0.125], pa.float64()))
    pq.write_table(t, path)
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 2)  # x_face_0 (float64) and y_face_0 (float32) in one block
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


# --- streaming: sequences go out as they are complete, the frame index is read once per file -----

def _shuffled_file(path, seqs, row_group_size):
    fs.write_fingerspelling_parquet(path, seqs)
    t = pq.read_table(path)
    pq.write_table(t.take(np.random.default_rng(1).permutation(t.num_rows)), path, row_group_size=row_group_size)


def test_sequences_go_out_in_key_order_as_soon_as_their_row_groups_are_read(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=8, seed=k) for k in range(10, 16)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    pq.write_table(pq.read_table(path), path, row_group_size=16)  # two sequences per row group
    read = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, *a, **k: read.append(i) or real(self, i, *a, **k))
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 1629)
    # "14" is the file's third row group; "11" is read with "10"; "99" is not in the file.
    seen = [(key, sorted(set(read))) for key, _ in fs.iter_fingerspelling_file(path, ["10", "99", "11", "14", "15"])]
    assert seen == [("10", [0]), ("99", [0]), ("11", [0]), ("14", [0, 2]), ("15", [0, 2])]


def test_keys_out_of_file_order_repeated_missing_or_with_repeated_frames_keep_their_order(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=3 + k % 5, seed=k) for k in range(10, 30)}
    path = tmp_path / "f.parquet"
    _shuffled_file(path, seqs, row_group_size=13)
    t = pq.read_table(path)
    frame = t.column("frame").to_numpy().copy()
    frame[(t.column("sequence_id").to_numpy() == 21) & (frame == 1)] = 0  # two frames 0 in sequence 21
    pq.write_table(t.set_column(t.schema.get_field_index("frame"), "frame", pa.array(frame)), path, row_group_size=13)
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 500)
    keys = ["29", "12", "404", "21", "12", "10"]
    out = list(fs.iter_fingerspelling_file(path, keys))
    assert [k for k, _ in out] == keys
    assert out[2][1] is None and out[3][1] == "frame 0 appears 2 times"
    for k, result in (out[0], out[1], out[4], out[5]):
        np.testing.assert_array_equal(result, seqs[k])


def test_a_file_is_indexed_once_for_all_its_parts(tmp_path, monkeypatch):
    seqs = {str(k): fake_landmarks(frames=4, seed=k) for k in range(10, 22)}
    path = tmp_path / "f.parquet"
    fs.write_fingerspelling_parquet(path, seqs)
    built = []
    real = fs.index_fingerspelling_file
    monkeypatch.setattr(fs, "index_fingerspelling_file", lambda p, name=None: built.append(p) or real(p, name))
    source = fs.KaggleFingerspelling(tmp_path, load_recipe("kaggle-fingerspelling"))
    rows = [ManifestRow("m.csv", i, k, "f.parquet", None, "a", None) for i, k in enumerate(seqs)]
    parts = [rows[:5], rows[5:9], rows[9:]]
    got = [s.key for part in parts for s in source.read(path, part)]
    assert got == list(seqs) and built == [path]
    again = pickle.loads(pickle.dumps(source))  # a Ray task's copy: no cached index, no lock
    assert [s.key for s in again.read(path, rows[:2])] == ["10", "11"] and built == [path, path]


class _FailsAtRowGroup2(pq.ParquetFile):
    def read_row_group(self, i, *args, **kwargs):
        if i == 2:
            raise pa.ArrowIOError("Corrupt snappy compressed data.")
        return super().read_row_group(i, *args, **kwargs)


def test_a_file_that_fails_after_some_sequences_went_out_rejects_all_its_rows(tmp_path, monkeypatch, caplog):
    raw = synth_fs(tmp_path)
    files = sorted((raw / "train_landmarks").glob("*.parquet"))
    for f in files:  # several row groups per file: the failure comes after sequences went to the writer
        pq.write_table(pq.read_table(f), f, row_group_size=50)
    monkeypatch.setattr(fs, "_open", lambda p: (_FailsAtRowGroup2 if p == files[1] else pq.ParquetFile)(p))
    result = ingest("kaggle-fingerspelling", raw, tmp_path / "s", part_size=1000)
    broken = f"train_landmarks/{files[1].name}"
    assert f"{broken}: unreadable parquet (Corrupt snappy compressed data.); writing part 0 again" in caplog.text
    assert (result.stored, result.rejected) == (24, 12)
    reason = "unreadable parquet (Corrupt snappy compressed data.)"
    assert {(r.file, r.reason) for r in result.rejects} == {(broken, reason)}
    assert {s.source_file for s in Store(tmp_path / "s")} == {f"train_landmarks/{f.name}" for f in (files[0], files[2])}


def synth_fs(tmp_path):
    return synth("kaggle-fingerspelling", tmp_path / "raw", files=3, sequences_per_file=12, participants=3)


def _digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_streamed_ingest_is_byte_identical_across_blocks_and_workers_and_equals_a_whole_file_read(tmp_path,
                                                                                                  monkeypatch):
    raw = synth_fs(tmp_path)
    for i, f in enumerate(sorted((raw / "train_landmarks").glob("*.parquet"))):
        t = pq.read_table(f)
        pq.write_table(t.take(np.random.default_rng(i).permutation(t.num_rows)), f, row_group_size=23 + 10 * i)
    ingest("kaggle-fingerspelling", raw, tmp_path / "a", workers=2, part_size=8)
    monkeypatch.setattr(fs, "COLUMN_BLOCK", 7)
    ingest("kaggle-fingerspelling", raw, tmp_path / "b", workers=1, part_size=8)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    stored = list(Store(tmp_path / "a"))
    assert len(stored) == 36
    for s in stored:
        want = reference_read(raw / s.source_file, [s.key])[s.key]
        np.testing.assert_array_equal(s.landmarks, want)
