"""Ingest: lossless for each source, every bad row rejected with its reason, re-runs identical."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sltdata.cli import main
from sltdata.errors import SourceError, StoreError
from sltdata.ingest import ingest
from sltdata.layouts import HOLISTIC_543
from sltdata.sources.kaggle_fingerspelling import write_fingerspelling_parquet
from sltdata.sources.kaggle_islr import write_islr_parquet
from sltdata.sources.pose import write_holistic_pose
from sltdata.store import Store
from sltdata.synth import synth
from sltdata.testing import fake_landmarks


def write_csv(path: Path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equal float32 arrays, NaN positions included."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def tree_digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir()) if p.is_file()}


# --- kaggle-islr ---------------------------------------------------------------------------------

ISLR_HEADER = ["path", "participant_id", "sequence_id", "sign"]


def islr_root(tmp_path: Path, arrays: dict[str, np.ndarray], signs=("hello", "world")) -> Path:
    root = tmp_path / "asl-signs"
    (root / "train_landmark_files" / "7").mkdir(parents=True)
    rows = []
    for i, (key, lm) in enumerate(arrays.items()):
        rel = f"train_landmark_files/7/{key}.parquet"
        write_islr_parquet(root / rel, lm)
        rows.append([rel, "7", key, signs[i % len(signs)]])
    write_csv(root / "train.csv", ISLR_HEADER, rows)
    (root / "sign_to_prediction_index_map.json").write_text(json.dumps({s: i for i, s in enumerate(signs)}))
    return root


def test_islr_is_lossless_with_nan_positions(tmp_path):
    arrays = {"101": fake_landmarks(7, seed=1), "102": fake_landmarks(13, seed=2)}
    result = ingest("kaggle-islr", islr_root(tmp_path, arrays), tmp_path / "store")
    assert (result.rows, result.stored, result.rejected) == (2, 2, 0)
    store = Store(tmp_path / "store")
    got = {s.key: s for s in store}
    for key, lm in arrays.items():
        assert same(got[key].landmarks, lm)
        assert got[key].layout == "holistic-543" and got[key].participant == "7"
    assert got["101"].label == "hello" and got["102"].label == "world"
    assert store.labels == {"hello": 0, "world": 1}


def test_islr_unsorted_file_reads_frames_in_order(tmp_path):
    lm = fake_landmarks(5, seed=3)
    root = islr_root(tmp_path, {"1": lm})
    path = root / "train_landmark_files/7/1.parquet"
    table = pq.read_table(path)
    order = np.random.default_rng(0).permutation(table.num_rows)
    pq.write_table(table.take(pa.array(order)), path)
    ingest("kaggle-islr", root, tmp_path / "store")
    assert same(Store(tmp_path / "store").get("1").landmarks, lm)


def test_islr_float64_source_values_stored_as_float32(tmp_path):
    lm = fake_landmarks(4, seed=4)
    ingest("kaggle-islr", islr_root(tmp_path, {"1": lm}), tmp_path / "store")
    stored = Store(tmp_path / "store").get("1").landmarks
    source = pq.read_table(islr_root(tmp_path / "again", {"1": lm}) / "train_landmark_files/7/1.parquet")
    assert source.schema.field("x").type == pa.float64()
    assert same(stored[..., 0].reshape(-1), source.column("x").to_numpy().astype(np.float32))


def rejects_by_key(store_dir: Path) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in Store(store_dir).rejects()}


def test_islr_bad_rows_are_each_rejected_with_their_reason(tmp_path):
    good = fake_landmarks(6, seed=5)
    root = islr_root(tmp_path, {"1": good, "2": good, "3": good, "4": good, "5": good, "6": good, "7": good})
    d = root / "train_landmark_files/7"
    (d / "2.parquet").unlink()  # missing file
    (d / "3.parquet").write_bytes((d / "3.parquet").read_bytes()[:200])  # truncated parquet
    t = pq.read_table(d / "4.parquet")
    pq.write_table(t.drop_columns(["z"]), d / "4.parquet")  # wrong columns
    pq.write_table(t.slice(0, 543 + 100), d / "5.parquet")  # second frame has 100 points
    pq.write_table(t.slice(0, 0), d / "6.parquet")  # zero frames
    nan = np.full_like(good, np.nan)
    write_islr_parquet(d / "7.parquet", nan)  # every value NaN
    rows = list(csv.reader(open(root / "train.csv")))[1:]
    rows += [["train_landmark_files/7/1.parquet", "7", "1", "hello"],  # duplicate key
             ["../outside.parquet", "7", "8", "hello"],  # escapes root
             ["train_landmark_files/7/1.parquet", "7", "9", ""],  # empty label
             ["train_landmark_files/7/1.parquet", "7", "10", "goodbye"]]  # not in the label map
    write_csv(root / "train.csv", ISLR_HEADER, rows)
    (tmp_path / "outside.parquet").write_bytes((d / "1.parquet").read_bytes())
    result = ingest("kaggle-islr", root, tmp_path / "store")
    assert (result.rows, result.stored, result.rejected) == (11, 1, 10)
    reasons = rejects_by_key(tmp_path / "store")
    assert reasons["2"] == "train_landmark_files/7/2.parquet not found"
    assert reasons["3"].startswith("unreadable parquet")
    assert reasons["4"].startswith("missing column(s) z")
    assert reasons["5"] == "frame 1 has 100 points, expected 543"
    assert reasons["6"] == "zero frames"
    assert reasons["7"] == "every landmark value is NaN (nothing detected)"
    assert reasons["1"] == "duplicate sequence_id 1 (first at train.csv row 1)"
    assert reasons["8"] == "../outside.parquet escapes the dataset root"
    assert reasons["9"] == "empty sign"
    assert reasons["10"] == "sign 'goodbye' is not in sign_to_prediction_index_map.json"
    rows_of = {r["key"]: r["row"] for r in Store(tmp_path / "store").rejects()}
    assert rows_of["2"] == 2 and rows_of["10"] == 11


def test_islr_wrong_column_type_is_rejected(tmp_path):
    root = islr_root(tmp_path, {"1": fake_landmarks(3)})
    p = root / "train_landmark_files/7/1.parquet"
    t = pq.read_table(p)
    pq.write_table(t.set_column(t.schema.get_field_index("x"), "x", t.column("x").cast(pa.string())), p)
    ingest("kaggle-islr", root, tmp_path / "store")
    assert rejects_by_key(tmp_path / "store")["1"] == "column x is string, expected a float"


def test_manifest_missing_a_column_is_one_error(tmp_path):
    root = islr_root(tmp_path, {"1": fake_landmarks(3)})
    write_csv(root / "train.csv", ["path", "participant_id", "sequence_id"], [["a", "1", "2"]])
    with pytest.raises(SourceError, match=r"train.csv: missing column\(s\) sign"):
        ingest("kaggle-islr", root, tmp_path / "store")


# --- kaggle-fingerspelling -------------------------------------------------------------------------

FS_HEADER = ["path", "file_id", "sequence_id", "participant_id", "phrase"]


def test_fingerspelling_is_lossless_and_reads_quoted_phrases(tmp_path):
    root = tmp_path / "fs"
    (root / "train_landmarks").mkdir(parents=True)
    arrays = {"11": fake_landmarks(5, seed=1), "12": fake_landmarks(9, seed=2), "13": fake_landmarks(2, seed=3)}
    write_fingerspelling_parquet(root / "train_landmarks/5.parquet", arrays)
    write_csv(root / "train.csv", FS_HEADER, [["train_landmarks/5.parquet", "5", "11", "3", "1, main street"],
                                              ["train_landmarks/5.parquet", "5", "12", "4", 'say "hi"']])
    write_csv(root / "supplemental_metadata.csv", FS_HEADER, [["train_landmarks/5.parquet", "5", "13", "4", "x"]])
    result = ingest("kaggle-fingerspelling", root, tmp_path / "store")
    assert (result.rows, result.stored, result.rejected) == (3, 3, 0)
    got = {s.key: s for s in Store(tmp_path / "store")}
    for key, lm in arrays.items():
        assert same(got[key].landmarks, lm)
    assert got["11"].text == "1, main street" and got["12"].text == 'say "hi"'


def test_fingerspelling_shuffled_rows_and_columns_read_the_same(tmp_path):
    root = tmp_path / "fs"
    (root / "train_landmarks").mkdir(parents=True)
    arrays = {"11": fake_landmarks(6, seed=1), "12": fake_landmarks(4, seed=2)}
    p = root / "train_landmarks/5.parquet"
    write_fingerspelling_parquet(p, arrays)
    t = pq.read_table(p)
    cols = list(np.random.default_rng(0).permutation(t.column_names))
    t = t.select(cols).take(pa.array(np.random.default_rng(1).permutation(t.num_rows)))
    pq.write_table(t, p)
    write_csv(root / "train.csv", FS_HEADER, [["train_landmarks/5.parquet", "5", k, "3", "ab"] for k in arrays])
    ingest("kaggle-fingerspelling", root, tmp_path / "store")
    got = {s.key: s for s in Store(tmp_path / "store")}
    assert all(same(got[k].landmarks, v) for k, v in arrays.items())


def test_fingerspelling_bad_rows_are_rejected(tmp_path):
    root = tmp_path / "fs"
    (root / "train_landmarks").mkdir(parents=True)
    write_fingerspelling_parquet(root / "train_landmarks/5.parquet", {"11": fake_landmarks(3)})
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(" abc")}))
    with open(root / "train.csv", "wb") as f:
        f.write(b"path,file_id,sequence_id,participant_id,phrase\n")
        f.write(b"train_landmarks/5.parquet,5,11,3,abc\n")
        f.write(b"train_landmarks/5.parquet,5,12,3,abc\n")  # not in the file
        f.write(b"train_landmarks/5.parquet,5,13,3,caf\xe9\n")  # Latin-1 byte: not UTF-8
        f.write(b"train_landmarks/5.parquet,5,14,3,\n")  # empty phrase
        f.write(b"train_landmarks/5.parquet,5,15,3,abz\n")  # character not in the map
    result = ingest("kaggle-fingerspelling", root, tmp_path / "store")
    assert (result.rows, result.stored, result.rejected) == (5, 1, 4)
    reasons = rejects_by_key(tmp_path / "store")
    assert reasons["12"] == "sequence_id 12 not found in train_landmarks/5.parquet"
    assert reasons["13"] == "phrase is not valid UTF-8"
    assert reasons["14"] == "empty phrase"
    assert reasons["15"] == "phrase has character(s) 'z' not in character_to_prediction_index.json"


# --- pose ----------------------------------------------------------------------------------------

def test_pose_holistic_maps_into_holistic_543(tmp_path):
    root = tmp_path / "isign"
    (root / "poses").mkdir(parents=True)
    lm = fake_landmarks(6, seed=7) * 100
    lm[:, HOLISTIC_543.indices("left_hand")] = np.nan  # a missing component
    write_holistic_pose(root / "poses" / "u1.pose", lm, fps=24.0)
    write_csv(root / "data.csv", ["uid", "text"], [["u1", "hello, there"]])
    ingest("pose", root, tmp_path / "store")
    s = Store(tmp_path / "store").get("u1")
    assert s.layout == "holistic-543" and s.fps == 24.0 and s.text == "hello, there"
    np.testing.assert_array_equal(np.isnan(s.landmarks), np.isnan(lm))
    ok = ~np.isnan(lm)
    # pose-format stores float32 values; the store holds exactly them.
    assert np.array_equal(s.landmarks[ok], lm[ok])


def test_pose_with_iris_points_drops_them(tmp_path):
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    from sltdata.sources.pose import holistic_header, read_pose_file

    header = holistic_header(face_points=478)
    n_points = header.total_points()
    data = np.random.default_rng(0).uniform(1, 2, (3, 1, n_points, 3)).astype(np.float32)
    body = NumPyPoseBody(fps=30, data=np.ma.masked_array(data), confidence=np.ones((3, 1, n_points), np.float32))
    p = tmp_path / "x.pose"
    with open(p, "wb") as f:
        Pose(header, body).write(f)
    lm, layout, fps = read_pose_file(p)
    assert layout is HOLISTIC_543 and lm.shape == (3, 543, 3)
    face_start = 33  # POSE_LANDMARKS come first in pose-format's holistic header
    np.testing.assert_array_equal(lm[:, :468], data[:, 0, face_start:face_start + 468])
    np.testing.assert_array_equal(lm[:, 489:522], data[:, 0, :33])


def three_point_pose_root(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A dataset of one .pose file whose header is not MediaPipe Holistic (3 points, x/y)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    comp = PoseHeaderComponent("BODY_X", ["a", "b", "c"], [(0, 1)], [(0, 0, 0)], "XYC")
    header = PoseHeader(0.2, PoseHeaderDimensions(100, 100, 1), [comp])
    data = np.arange(12, dtype=np.float32).reshape(2, 1, 3, 2)
    body = NumPyPoseBody(fps=10, data=np.ma.masked_array(data), confidence=np.ones((2, 1, 3), np.float32))
    root = tmp_path / "d"
    (root / "poses").mkdir(parents=True)
    with open(root / "poses" / "k.pose", "wb") as f:
        Pose(header, body).write(f)
    write_csv(root / "data.csv", ["uid", "text"], [["k", "t"]])
    return root, data


def recipe_with(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of a bundled recipe with some fields changed, as a .yaml path ingest accepts."""
    import yaml

    from sltdata.recipes import manifests_dir

    data = yaml.safe_load((manifests_dir() / f"{name}.yaml").read_text()) | changes
    path = tmp_path / f"{name}-changed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_pose_other_header_keeps_its_layout_when_the_recipe_says_header(tmp_path):
    root, data = three_point_pose_root(tmp_path)
    ingest(str(recipe_with(tmp_path, "pose", layout="header")), root, tmp_path / "store")
    store = Store(tmp_path / "store")
    s = store.get("k")
    assert s.layout.endswith("-3") and s.landmarks.shape == (2, 3, 3)
    np.testing.assert_array_equal(s.landmarks[..., :2], data[:, 0])
    np.testing.assert_array_equal(s.landmarks[..., 2], 0)
    assert store.meta["layouts"][0]["components"][0]["points"] == ["a", "b", "c"]


def test_pose_other_header_is_rejected_when_the_recipe_says_holistic_543(tmp_path):
    root, _ = three_point_pose_root(tmp_path)
    result = ingest("pose", root, tmp_path / "store")
    assert (result.stored, result.rejected) == (0, 1)
    reason = rejects_by_key(tmp_path / "store")["k"]
    assert reason.endswith("-3 pose, not MediaPipe Holistic: the recipe's layout is holistic-543 "
                           "(layout: header keeps each file's own)")


def test_recipe_layout_the_source_cannot_write_is_one_config_error(tmp_path):
    from sltdata.errors import ConfigError

    root = islr_root(tmp_path, {"1": fake_landmarks(3)})
    with pytest.raises(ConfigError) as e:
        ingest(str(recipe_with(tmp_path, "kaggle-islr", layout="openpose-25")), root, tmp_path / "s")
    assert str(e.value) == "recipe kaggle-islr-changed: layout: source kaggle-islr writes holistic-543, not 'openpose-25'"


def test_recipe_mistakes_name_the_file_and_the_field(tmp_path):
    from sltdata.errors import ConfigError
    from sltdata.recipes import load_recipe

    cases = {"colums": "colums: unknown key, did you mean 'columns'?",
             "fps": "fps: expected a number, got 'fast'",
             "label": "columns.sign: unknown role (known: key, path, label, text, participant)"}
    for field, reason in cases.items():
        path = tmp_path / f"{field}.yaml"
        body = {"colums": "source: x\nmanifest: a.csv\ncolums: {key: id}\n",
                "fps": "source: x\nmanifest: a.csv\ncolumns: {key: id}\nfps: fast\n",
                "label": "source: x\nmanifest: a.csv\ncolumns: {key: id, sign: sign}\n"}[field]
        path.write_text(body)
        with pytest.raises(ConfigError) as e:
            load_recipe(str(path))
        assert str(e.value).startswith(f"{path}: {reason}")


def test_pose_garbage_file_is_rejected(tmp_path):
    root = tmp_path / "d"
    (root / "poses").mkdir(parents=True)
    (root / "poses" / "bad.pose").write_bytes(b"not a pose file at all")
    write_csv(root / "data.csv", ["uid", "text"], [["bad", "t"], ["gone", "t"]])
    result = ingest("pose", root, tmp_path / "store")
    reasons = rejects_by_key(tmp_path / "store")
    assert result.stored == 0
    assert reasons["bad"].startswith("unreadable .pose file")
    assert reasons["gone"] == "poses/gone.pose not found"


# --- whole-store invariants -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def islr_raw(tmp_path_factory):
    return synth("kaggle-islr", tmp_path_factory.mktemp("raw"), sequences=60, classes=4, participants=3)


def test_rerun_into_a_new_store_is_byte_identical(tmp_path, islr_raw):
    ingest("kaggle-islr", islr_raw, tmp_path / "a", part_size=16, workers=2)
    ingest("kaggle-islr", islr_raw, tmp_path / "b", part_size=16, workers=1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_killed_run_rerun_finishes_without_duplicates(tmp_path, islr_raw, monkeypatch):
    import sltdata.ingest as ingest_mod

    ingest("kaggle-islr", islr_raw, tmp_path / "full", part_size=16)
    real = ingest_mod.write_part
    calls = {"n": 0}

    def dies_on_third(path, seqs, *rest):
        calls["n"] += 1
        if calls["n"] == 3:
            path.with_name(path.name + ".tmp").write_bytes(b"half a part")
            raise KeyboardInterrupt
        real(path, seqs, *rest)

    monkeypatch.setattr(ingest_mod, "write_part", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        ingest("kaggle-islr", islr_raw, tmp_path / "killed", part_size=16, workers=1)
    with pytest.raises(StoreError, match="did not finish"):
        Store(tmp_path / "killed")
    monkeypatch.setattr(ingest_mod, "write_part", real)
    ingest("kaggle-islr", islr_raw, tmp_path / "killed", part_size=16)
    store = Store(tmp_path / "killed")
    keys = [s.key for s in store]
    assert len(keys) == len(set(keys)) == 60
    full = tree_digest(tmp_path / "full")
    assert {k: v for k, v in tree_digest(tmp_path / "killed").items() if not k.endswith(".tmp")} == full


def test_other_ingest_into_same_out_is_refused(tmp_path, islr_raw):
    ingest("kaggle-islr", islr_raw, tmp_path / "s", part_size=16)
    with pytest.raises(StoreError, match="holds a different ingest"):
        ingest("kaggle-islr", islr_raw, tmp_path / "s", part_size=32)


def test_store_metadata_reads_no_landmarks(tmp_path, islr_raw):
    ingest("kaggle-islr", islr_raw, tmp_path / "s")
    meta = Store(tmp_path / "s").metadata()
    assert "landmarks" not in meta.column_names and meta.num_rows == 60
    assert set(meta.column("label").to_pylist()) == {"book", "drink", "computer", "before"}


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_prints_summary_and_strict_fails_on_rejects(tmp_path, capsys):
    root = islr_root(tmp_path, {"1": fake_landmarks(3), "2": fake_landmarks(3)})
    (root / "train_landmark_files/7/2.parquet").unlink()
    assert main(["ingest", "kaggle-islr", str(root), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr()
    assert "2 rows read, 1 stored, 1 rejected" in out.out
    assert "train.csv row 2: train_landmark_files/7/2.parquet not found" in out.err
    assert main(["ingest", "kaggle-islr", str(root), "--out", str(tmp_path / "s2"), "--strict"]) == 1


def test_cli_user_mistake_is_one_line(tmp_path, capsys):
    assert main(["ingest", "kaggle-islr", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "dataset root is not a directory" in err and "\n" not in err
