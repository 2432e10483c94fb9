"""Issue 12, bad input: every damaged input is named in a reject (or one error line), never stored."""

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sltdata.cli import main
from sltdata.errors import ConfigError, SourceError
from sltdata.ingest import ingest
from sltdata.sources.kaggle_fingerspelling import write_fingerspelling_parquet
from sltdata.sources.kaggle_islr import read_islr_landmarks, write_islr_parquet
from sltdata.sources.pose import write_holistic_pose
from sltdata.store import Store
from sltdata.testing import fake_landmarks

ISLR_HEADER = ["path", "participant_id", "sequence_id", "sign"]
FS_HEADER = ["path", "file_id", "sequence_id", "participant_id", "phrase"]
FS_FILE = "train_landmarks/5.parquet"


def write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def islr_root(tmp_path: Path, arrays: dict[str, np.ndarray], label_map: bool = True) -> Path:
    root = tmp_path / "asl-signs"
    (root / "train_landmark_files" / "7").mkdir(parents=True)
    rows = []
    for key, lm in arrays.items():
        rel = f"train_landmark_files/7/{key}.parquet"
        write_islr_parquet(root / rel, lm)
        rows.append([rel, "7", key, "hello"])
    write_csv(root / "train.csv", ISLR_HEADER, rows)
    if label_map:
        (root / "sign_to_prediction_index_map.json").write_text(json.dumps({"hello": 0}))
    return root


def fs_root(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    root = tmp_path / "fs"
    (root / "train_landmarks").mkdir(parents=True)
    write_fingerspelling_parquet(root / FS_FILE, arrays)
    write_csv(root / "train.csv", FS_HEADER, [[FS_FILE, "5", k, "3", "ab"] for k in arrays])
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(" ab")}))
    return root


def pose_root(tmp_path: Path, arrays: dict[str, np.ndarray]) -> Path:
    root = tmp_path / "isign"
    (root / "poses").mkdir(parents=True)
    for key, lm in arrays.items():
        write_holistic_pose(root / "poses" / f"{key}.pose", lm, fps=25.0)  # 640x480 header
    write_csv(root / "data.csv", ["uid", "text"], [[k, "hello"] for k in arrays])
    return root


def rejects(store_dir: Path) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in Store(store_dir).rejects()}


def with_value(lm: np.ndarray, value: float, frame: int = 1, point: int = 40, axis: int = 0) -> np.ndarray:
    out = lm.copy()
    out[frame, point, axis] = value
    return out


def replace_column(path: Path, name: str, values: pa.Array) -> None:
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.schema.get_field_index(name), name, values), path)


GOOD = fake_landmarks(4, seed=1, nan_fraction=0.0)


# --- non-finite and implausible coordinates, in every source -------------------------------------

def test_islr_infinite_coordinate_is_rejected_and_nan_is_not(tmp_path):
    nan = GOOD.copy()
    nan[0, :21] = np.nan
    root = islr_root(tmp_path, {"1": with_value(GOOD, np.inf), "2": with_value(GOOD, -np.inf, frame=3, point=7),
                                "3": nan})
    result = ingest("kaggle-islr", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (3, 1, 2)
    assert rejects(tmp_path / "s") == {
        "1": "1 coordinate(s) infinite or beyond float32 range (first: inf at frame 1, point 40)",
        "2": "1 coordinate(s) infinite or beyond float32 range (first: -inf at frame 3, point 7)"}


def test_islr_float64_value_beyond_float32_is_rejected_not_stored_as_inf(tmp_path):
    root = islr_root(tmp_path, {"1": GOOD})
    p = root / "train_landmark_files/7/1.parquet"
    y = pq.read_table(p).column("y").to_numpy().copy()
    y[543 * 2 + 5] = 1e300  # frame 2, point 5
    replace_column(p, "y", pa.array(y, type=pa.float64()))
    result = ingest("kaggle-islr", root, tmp_path / "s")
    assert (result.stored, result.rejected) == (0, 1)
    assert rejects(tmp_path / "s")["1"] == \
        "1 coordinate(s) infinite or beyond float32 range (first: inf at frame 2, point 5)"


def test_islr_bit_rot_value_is_rejected_by_the_recipe_threshold(tmp_path):
    root = islr_root(tmp_path, {"1": with_value(GOOD, 1e22, frame=0, point=3, axis=2),
                                "2": with_value(GOOD, -9999.0)})  # large but inside ±1e4: stored
    result = ingest("kaggle-islr", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (2, 1, 1)
    assert rejects(tmp_path / "s")["1"] == (
        "1 coordinate(s) beyond ±10000, the recipe's max_abs_coordinate for normalized coordinates "
        "(first: 1e+22 at frame 0, point 3)")
    assert Store(tmp_path / "s").get("2").landmarks[1, 40, 0] == np.float32(-9999.0)


def test_recipe_max_abs_coordinate_sets_the_threshold(tmp_path):
    root = islr_root(tmp_path, {"1": with_value(GOOD, 2.5), "2": GOOD})
    recipe = Path(__file__).resolve().parents[1] / "manifests" / "kaggle-islr.yaml"
    custom = tmp_path / "tight.yaml"
    custom.write_text(recipe.read_text().replace("max_abs_coordinate: 10000", "max_abs_coordinate: 2"))
    result = ingest(str(custom), root, tmp_path / "s")
    assert (result.stored, result.rejected) == (1, 1)
    assert rejects(tmp_path / "s")["1"].startswith("1 coordinate(s) beyond ±2, the recipe's max_abs_coordinate")


def test_bundled_recipes_state_their_threshold():
    from sltdata.recipes import load_recipe

    assert {n: load_recipe(n).max_abs_coordinate for n in ("kaggle-islr", "kaggle-fingerspelling", "pose")} == \
        {"kaggle-islr": 10000, "kaggle-fingerspelling": 10000, "pose": 100}


def test_fingerspelling_non_finite_and_implausible_sequences_are_rejected(tmp_path):
    root = fs_root(tmp_path, {"11": with_value(GOOD, np.inf), "12": with_value(GOOD, 3e22, frame=2, point=0),
                              "13": GOOD})
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (3, 1, 2)
    assert rejects(tmp_path / "s") == {
        "11": "1 coordinate(s) infinite or beyond float32 range (first: inf at frame 1, point 40)",
        "12": "1 coordinate(s) beyond ±10000, the recipe's max_abs_coordinate for normalized coordinates "
              "(first: 3e+22 at frame 2, point 0)"}


def test_fingerspelling_float64_column_beyond_float32_is_rejected(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD, "12": GOOD})
    p = root / FS_FILE
    x = pq.read_table(p).column("x_face_3").to_numpy().astype(np.float64)
    x[1] = 1e300  # sequence 11, frame 1
    replace_column(p, "x_face_3", pa.array(x))
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.stored, result.rejected) == (1, 1)
    assert rejects(tmp_path / "s")["11"] == \
        "1 coordinate(s) infinite or beyond float32 range (first: inf at frame 1, point 3)"


def test_pose_non_finite_and_implausible_pixels_are_rejected(tmp_path):
    px = GOOD * 640
    root = pose_root(tmp_path, {"inf": with_value(px, np.inf), "rot": with_value(px, 1e22, frame=0, point=500),
                                "far": with_value(px, 60000.0), "ok": px})
    result = ingest("pose", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (4, 2, 2)
    assert rejects(tmp_path / "s") == {
        "inf": "1 coordinate(s) infinite or beyond float32 range (first: inf at frame 1, point 40)",
        "rot": "1 coordinate(s) beyond ±64000, the recipe's max_abs_coordinate (100) × the 640×480 frame "
               "(first: 1e+22 at frame 0, point 500)"}
    assert Store(tmp_path / "s").get("far").landmarks[1, 40, 0] == np.float32(60000.0)  # < 100 × 640


def test_cli_shows_the_reject_and_the_counts(tmp_path, capsys):
    root = islr_root(tmp_path, {"1": with_value(GOOD, np.inf), "2": GOOD})
    assert main(["ingest", "kaggle-islr", str(root), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr()
    assert "2 rows read, 1 stored, 1 rejected" in out.out
    assert ("train.csv row 1: 1 coordinate(s) infinite or beyond float32 range (first: inf at frame 1, point 40)"
            in out.err)


# --- fingerspelling frames ---------------------------------------------------------------------

def test_fingerspelling_string_frame_column_is_ordered_as_numbers(tmp_path):
    lm = fake_landmarks(12, seed=2)
    root = fs_root(tmp_path, {"11": lm})
    p = root / FS_FILE
    t = pq.read_table(p)
    order = np.random.default_rng(0).permutation(12)
    t = t.take(pa.array(order))
    pq.write_table(t.set_column(t.schema.get_field_index("frame"), "frame",
                                pa.array([str(f) for f in t.column("frame").to_pylist()])), p)
    ingest("kaggle-fingerspelling", root, tmp_path / "s")
    got = Store(tmp_path / "s").get("11").landmarks
    assert got.tobytes() == lm.tobytes()  # frames 0..11, not 0, 1, 10, 11, 2, ...


def test_fingerspelling_frame_that_is_not_a_number_rejects_its_file(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD, "12": GOOD})
    frames = [str(f) for f in range(8)]
    frames[5] = "five"
    replace_column(root / FS_FILE, "frame", pa.array(frames))
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.stored, result.rejected) == (0, 2)
    assert rejects(tmp_path / "s")["12"] == ("column frame is string and holds a value that is not a frame number "
                                             "(Failed to parse string: 'five' as a scalar of type int64)")


def test_fingerspelling_null_sequence_id_rejects_the_file_naming_it(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD, "12": GOOD})
    ids = pq.read_table(root / FS_FILE).column("sequence_id").to_pylist()
    ids[6] = None  # a frame of sequence 12 no longer says whose it is
    replace_column(root / FS_FILE, "sequence_id", pa.array(ids, type=pa.int64()))
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (2, 0, 2)
    assert rejects(tmp_path / "s") == dict.fromkeys(
        ["11", "12"], "train_landmarks/5.parquet has 1 row(s) with a null sequence_id (frames of an unknown sequence)")


def test_fingerspelling_repeated_frame_numbers_are_rejected(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD, "12": GOOD, "13": GOOD})
    # 11: every frame is frame 0; 12: frame 2 twice; 13: frames 0..3 as written.
    replace_column(root / FS_FILE, "frame", pa.array([0, 0, 0, 0, 0, 1, 2, 2, 0, 1, 2, 3], type=pa.int16()))
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (3, 1, 2)
    assert rejects(tmp_path / "s") == {"11": "frame 0 appears 4 times", "12": "frame 2 appears 2 times"}


# --- label and character maps ----------------------------------------------------------------------

def test_missing_label_map_is_said_and_recorded(tmp_path, caplog):
    root = islr_root(tmp_path, {"1": GOOD}, label_map=False)
    with caplog.at_level(logging.WARNING, logger="sltdata.ingest"):
        ingest("kaggle-islr", root, tmp_path / "s")
    assert ["label map named by recipe kaggle-islr not found" in m for m in caplog.messages] == [True]
    store = Store(tmp_path / "s")
    assert store.meta["label_map"] == {"source": "derived",
                                       "reason": "sign_to_prediction_index_map.json not found in the dataset root"}
    assert store.labels == {"hello": 0}


def test_present_label_map_is_recorded_as_the_publishers(tmp_path):
    ingest("kaggle-islr", islr_root(tmp_path, {"1": GOOD}), tmp_path / "s")
    assert Store(tmp_path / "s").meta["label_map"] == {"source": "file", "file": "sign_to_prediction_index_map.json"}


def test_missing_maps_are_refused_with_strict(tmp_path, capsys):
    root = islr_root(tmp_path, {"1": GOOD}, label_map=False)
    with pytest.raises(SourceError, match="label map named by recipe kaggle-islr not found"):
        ingest("kaggle-islr", root, tmp_path / "s", strict=True)
    assert not (tmp_path / "s").exists()
    assert main(["ingest", "kaggle-islr", str(root), "--out", str(tmp_path / "s"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert err.endswith("sign_to_prediction_index_map.json: label map named by recipe kaggle-islr not found "
                        "(--strict refuses a label map derived from the data)")
    fs = fs_root(tmp_path, {"11": GOOD})
    (fs / "character_to_prediction_index.json").unlink()
    with pytest.raises(SourceError, match="character map named by recipe kaggle-fingerspelling not found"):
        ingest("kaggle-fingerspelling", fs, tmp_path / "f", strict=True)


@pytest.mark.parametrize("mapping, reason", [
    ('{"hello": 0, "bye": -1}', "index of 'bye' is -1, expected a non-negative integer"),
    ('{"hello": 0, "bye": 0}', "index 0 is given to both 'hello' and 'bye'"),
    ('{"hello": 0, "bye": 1.5}', "index of 'bye' is 1.5, expected a non-negative integer"),
    ('{"hello": 0, "bye": "1"}', 'index of \'bye\' is "1", expected a non-negative integer'),
    ('{"hello": 0, "bye": true}', "index of 'bye' is true, expected a non-negative integer"),
    ('{"hello": 0, "hello": 1}', "'hello' appears twice"),
])
def test_bad_label_map_is_one_error_naming_the_file(tmp_path, mapping, reason):
    root = islr_root(tmp_path, {"1": GOOD})
    (root / "sign_to_prediction_index_map.json").write_text(mapping)
    with pytest.raises(SourceError) as e:
        ingest("kaggle-islr", root, tmp_path / "s")
    assert e.value.path == str(root.resolve() / "sign_to_prediction_index_map.json")
    assert e.value.reason == reason


def test_bad_character_map_is_one_error(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD})
    (root / "character_to_prediction_index.json").write_text('{"a": 0, "b": -2}')
    with pytest.raises(SourceError, match=r"character_to_prediction_index.json: index of 'b' is -2"):
        ingest("kaggle-fingerspelling", root, tmp_path / "s")


# --- manifest and file system ----------------------------------------------------------------------

def test_unterminated_quote_rejects_each_swallowed_row(tmp_path):
    root = fs_root(tmp_path, {str(k): GOOD for k in range(11, 16)})
    lines = [",".join(FS_HEADER)] + [f"{FS_FILE},5,{k},3,ab" for k in range(11, 16)]
    lines[2] = f'{FS_FILE},5,12,3,"ab'  # the quote never closes
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (5, 1, 4)
    got = [(r["row"], r["key"], r["reason"]) for r in Store(tmp_path / "s").rejects()]
    assert got == [(2, "12", "unterminated quote: the row runs on over the next 3 line(s), rejected with it"),
                   (3, "13", "swallowed by the unterminated quote in row 2"),
                   (4, "14", "swallowed by the unterminated quote in row 2"),
                   (5, "15", "swallowed by the unterminated quote in row 2")]


def test_quoted_multiline_fields_are_still_read_when_the_manifest_uses_them(tmp_path):
    root = fs_root(tmp_path, {"11": GOOD, "12": GOOD})
    write_csv(root / "train.csv", FS_HEADER, [[FS_FILE, "5", "11", "3", "a\nb"], [FS_FILE, "5", "12", "3", "b\na"]])
    result = ingest("kaggle-fingerspelling", root, tmp_path / "s", manifest="train.csv")
    assert result.rejected == 2  # "\n" is not in the character map: read as text, not as swallowed rows
    assert {r["reason"] for r in Store(tmp_path / "s").rejects()} == \
        {"phrase has character(s) '\\n' not in character_to_prediction_index.json"}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_under_the_root_is_a_reject(tmp_path):
    root = islr_root(tmp_path, {"1": GOOD, "2": GOOD})
    d = root / "train_landmark_files"
    os.symlink(d / "loop_b", d / "loop_a")
    os.symlink(d / "loop_a", d / "loop_b")
    write_csv(root / "train.csv", ISLR_HEADER, [["train_landmark_files/7/1.parquet", "7", "1", "hello"],
                                                ["train_landmark_files/loop_a/2.parquet", "7", "2", "hello"]])
    result = ingest("kaggle-islr", root, tmp_path / "s")
    assert (result.rows, result.stored, result.rejected) == (2, 1, 1)
    assert rejects(tmp_path / "s") == {"2": "train_landmark_files/loop_a/2.parquet runs into a symlink loop"}


# --- synthetic writers' frame type -----------------------------------------------------------------

def test_islr_writer_refuses_frame_numbers_past_int16(tmp_path):
    with pytest.raises(ConfigError, match=r"kaggle-islr stores frame numbers as int16.*32760\.\.32769 do not fit"):
        write_islr_parquet(tmp_path / "x.parquet", fake_landmarks(10), frame_start=32760)
    assert not (tmp_path / "x.parquet").exists()
    write_islr_parquet(tmp_path / "y.parquet", fake_landmarks(10), frame_start=32758)  # last frame 32767 fits
    assert pq.read_table(tmp_path / "y.parquet").column("frame").to_pylist()[-1] == 32767
    assert read_islr_landmarks(tmp_path / "y.parquet").shape == (10, 543, 3)


def test_fingerspelling_writer_refuses_more_frames_than_int16_holds(tmp_path):
    long = np.broadcast_to(np.zeros((1, 543, 3), np.float32), (32769, 543, 3))  # no memory for 32,769 frames
    with pytest.raises(ConfigError, match=r"kaggle-fingerspelling stores frame numbers as int16.*0\.\.32768"):
        write_fingerspelling_parquet(tmp_path / "x.parquet", {"1": long})
    assert not (tmp_path / "x.parquet").exists()
