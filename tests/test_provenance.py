"""Every sequence says where it came from: frame size, units, fps as given, extractor, source file,
kept from the .pose file through the store into the shard JSON and the HF features; and old stores
(written before these columns existed) still open and shard."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sltdata.ingest import ingest
from sltdata.shards import iter_samples, write_shards
from sltdata.store import PROVENANCE_COLUMNS, Store
from sltdata.testing import realdata_dir
from sltdata.transforms import build_pipeline
from sltdata.transforms.pipeline import frame_size


_REAL = realdata_dir()
REAL = _REAL / "pose" if _REAL and (_REAL / "pose").is_dir() else None
needs_real = pytest.mark.skipif(REAL is None, reason="the real .pose files (shared/realdata/pose) are not here")

# file -> (width, height, depth or None, fps as pose-format reads it)
FILES = {
    "pose-format/history/FOOTBALL.pose": (640, 360, None, 29.969999313354492),
    "pose-evaluation/refined_landmarks/colin-HOUSE-needs-trim.pose": (1280, 720, None, 22.392236709594727),
    "pose-evaluation/mixed/000017451997373907346-LIBRARY.pose": (640, 480, None, 30.00811004638672),
    "pose-evaluation/mixed/SbTU6uS4cc1tZpqCnE3g.pose": (640, 480, 1000, 30.0),
}


def _pose_root(tmp_path: Path, files) -> Path:
    root = tmp_path / "raw"
    (root / "poses").mkdir(parents=True)
    rows = ["uid,text"]
    for i, f in enumerate(files):
        shutil.copy(REAL / f, root / "poses" / f"s{i}.pose")
        rows.append(f"s{i},phrase {i}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    if REAL is None:
        pytest.skip("the real .pose files (shared/realdata/pose) are not here")
    tmp = tmp_path_factory.mktemp("real")
    result = ingest("pose", _pose_root(tmp, FILES), tmp / "store")
    assert (result.stored, result.rejected) == (len(FILES), 0)
    return tmp / "store"


@needs_real
def test_real_pose_files_keep_size_fps_units_and_source_file(real_store):
    meta = {m["key"]: m for m in Store(real_store).metadata().to_pylist()}
    for i, (f, (width, height, depth, fps)) in enumerate(FILES.items()):
        m = meta[f"s{i}"]
        assert (m["width"], m["height"], m["depth"]) == (width, height, depth), f
        assert m["fps"] == fps, f  # float64, exactly what pose-format reads (29.97 as the file's float32)
        assert m["units"] == "pixels" and m["extractor"] == "mediapipe-holistic"
        assert m["source_file"] == f"poses/s{i}.pose"
        assert json.loads(m["extractor_settings"]) == {"pose_header_version": 0.2}
    assert abs(meta["s2"]["fps"] - 30.0081) < 1e-4 and abs(meta["s1"]["fps"] - 22.3922) < 1e-4


@needs_real
def test_provenance_reaches_the_shard_json_and_the_hf_rows(real_store, tmp_path):
    from sltdata.hf import _split_rows, hf_features

    index = write_shards(real_store, tmp_path / "shards", folds=2, test_fraction=0.0)
    records = {s.meta["key"]: s.meta for _, s in iter_samples(index, arrays=False)}
    assert (records["s0"]["width"], records["s0"]["height"], records["s0"]["units"]) == (640, 360, "pixels")
    assert records["s3"]["depth"] == 1000 and records["s2"]["fps"] == 30.00811004638672
    assert records["s1"]["source_file"] == "poses/s1.pose"
    row = next(_split_rows(str(real_store), ("s1",), "fold0"))
    assert (row["width"], row["height"], row["fps"], row["units"]) == (1280, 720, 22.392236709594727, "pixels")
    features = hf_features(None, 543)
    assert features["fps"].dtype == "float64" and features["units"].dtype == "string"
    assert set(PROVENANCE_COLUMNS) <= set(features)


def test_kaggle_sequences_are_normalized_mediapipe(islr_store):
    meta = Store(islr_store).metadata(("units", "extractor", "width", "source_file")).to_pylist()
    assert {(m["units"], m["extractor"], m["width"]) for m in meta} == {("normalized", "mediapipe-holistic", None)}
    assert all(m["source_file"].startswith("train_landmark_files/") for m in meta)


def _as_old_store(src: Path, dst: Path) -> Path:
    """The store as the code before provenance wrote it: no provenance columns, fps float32."""
    shutil.copytree(src, dst)
    for part in dst.glob("part-*.parquet"):
        t = pq.read_table(part).drop_columns(list(PROVENANCE_COLUMNS))
        t = t.set_column(t.schema.get_field_index("fps"), "fps", t.column("fps").cast(pa.float32()))
        pq.write_table(t, part)
    return dst


def test_a_store_written_before_provenance_opens_and_shards(pose_store, tmp_path):
    old = Store(_as_old_store(pose_store, tmp_path / "old"))
    assert "width" not in pq.ParquetFile(old.parts[0]).schema_arrow.names
    meta = old.metadata().to_pylist()
    assert len(meta) == 60 and all(m["width"] is None and m["units"] is None for m in meta)
    assert meta[0]["fps"] == 25.0
    seq = old.get(meta[0]["key"])
    assert seq.units is None and seq.landmarks.shape[1] == 543
    index = write_shards(old, tmp_path / "shards", folds=2, test_fraction=0.0)
    records = [s.meta for _, s in iter_samples(index, arrays=False)]
    assert len(records) == 60 and all(r["units"] is None and r["width"] is None for r in records)
    new = Store(pose_store).metadata().to_pylist()
    assert {(m["width"], m["height"], m["units"]) for m in new} == {(640, 480, "pixels")}


UNITS_CFG = {"preset": "all", "max_length": None, "motion": [], "augment": False,
             "normalize": {"units": "normalized", "center": "none", "scale": "none", "drop_z": True},
             "temporal": {"drop_frames": "none", "pad": False}}


@needs_real
def test_units_normalized_brings_a_pixel_holistic_file_into_the_unit_square(real_store):
    store = Store(real_store)
    pipe = build_pipeline(UNITS_CFG)
    for key, (width, height) in (("s0", (640, 360)), ("s1", (1280, 720))):
        seq = store.get(key)
        size = frame_size({"units": seq.units, "width": seq.width, "height": seq.height})
        assert size == {"width": width, "height": height}
        features, _ = pipe(seq.landmarks, **size)
        xy = features.reshape(len(features), 2, 543)  # coordinate-major: x block, y block
        x, y = xy[:, 0][np.isfinite(xy[:, 0]) & (xy[:, 0] != 0)], xy[:, 1][np.isfinite(xy[:, 1]) & (xy[:, 1] != 0)]
        for v in (x, y):  # the bulk is inside the frame; a few real points lie outside it
            lo, hi = np.percentile(v, [5, 95])
            assert 0.0 <= lo < hi <= 1.0, (key, lo, hi)
        raw_x = seq.landmarks[..., 0][np.isfinite(seq.landmarks[..., 0])]
        np.testing.assert_allclose(np.sort(x), np.sort(raw_x / width), rtol=1e-6)
        unchanged, _ = pipe(seq.landmarks)  # no size given: taken as already normalized
        assert np.nanmax(unchanged) > 100


def test_units_as_stored_ignores_the_size():
    cfg = {**UNITS_CFG, "normalize": {**UNITS_CFG["normalize"], "units": "as-stored"}}
    lm = np.full((2, 543, 3), 320.0, np.float32)
    features, _ = build_pipeline(cfg)(lm, width=640, height=480)
    assert np.all(features == 320.0)
    features, _ = build_pipeline(UNITS_CFG)(lm, width=640, height=480)
    assert np.allclose(features.reshape(2, 2, 543)[:, 0], 0.5) and np.allclose(features.reshape(2, 2, 543)[:, 1], 2 / 3)


def test_frame_size_is_only_given_for_pixel_samples():
    assert frame_size({"units": "pixels", "width": 640, "height": 360}) == {"width": 640, "height": 360}
    assert frame_size({"units": "normalized", "width": 640, "height": 360}) == {}
    assert frame_size({"units": "pixels", "width": None, "height": 360}) == {}
    assert frame_size({}) == {}


@needs_real
def test_stats_show_the_spaces_and_sizes_found(real_store, tmp_path):
    from sltdata.stats import compute_stats

    spaces = compute_stats(real_store, landmarks=False)["spaces"]
    assert sorted((r["width"], r["height"], r["depth"] or 0) for r in spaces) == [
        (640, 360, 0), (640, 480, 0), (640, 480, 1000), (1280, 720, 0)]
    assert all(r["units"] == "pixels" and r["sequences"] == 1 for r in spaces)
    index = write_shards(real_store, tmp_path / "shards", folds=2, test_fraction=0.0)
    assert sorted(map(str, compute_stats(index.path, landmarks=False)["spaces"])) == sorted(map(str, spaces))


def test_stats_of_a_kaggle_store_show_one_normalized_space(islr_store):
    from sltdata.stats import compute_stats

    assert compute_stats(islr_store, landmarks=False)["spaces"] == [
        {"units": "normalized", "width": None, "height": None, "depth": None, "sequences": 240}]


def test_extract_settings_in_the_sidecar_become_the_sequence_provenance(tmp_path):
    from sltdata.extract import HolisticConfig
    from sltdata.extract import extractor_info
    from sltdata.sources.pose import write_holistic_pose
    from sltdata.testing import fake_landmarks

    root = tmp_path / "raw"
    (root / "poses").mkdir(parents=True)
    write_holistic_pose(root / "poses" / "a.pose", fake_landmarks(frames=4) * 100, fps=29.97, width=1280, height=720)
    info = extractor_info(HolisticConfig(model_complexity=2, refine_face=True), "legacy", 12.5)
    (root / "poses" / "a.pose.json").write_text(json.dumps(info))
    (root / "data.csv").write_text("uid,text\na,hello\n")
    ingest("pose", root, tmp_path / "store")
    m = Store(tmp_path / "store").metadata().to_pylist()[0]
    assert (m["extractor"], m["extractor_version"]) == ("mediapipe-holistic", info["version"])
    assert json.loads(m["extractor_settings"]) == {
        "pose_header_version": 0.2, "backend": "legacy", "model_complexity": 2, "refine_face": True, "fps": 12.5,
        "task_model": None}
    assert (m["width"], m["height"], m["units"]) == (1280, 720, "pixels")
    assert m["fps"] == float(np.float32(29.97))  # the .pose file holds fps as float32


def test_an_unreadable_sidecar_rejects_its_rows_with_the_reason(tmp_path):
    from sltdata.sources.pose import write_holistic_pose
    from sltdata.testing import fake_landmarks

    root = tmp_path / "raw"
    (root / "poses").mkdir(parents=True)
    write_holistic_pose(root / "poses" / "a.pose", fake_landmarks(frames=4) * 100)
    (root / "poses" / "a.pose.json").write_text("{not json")
    (root / "data.csv").write_text("uid,text\na,hello\n")
    result = ingest("pose", root, tmp_path / "store")
    assert result.rejected == 1 and "unreadable extract sidecar" in result.rejects[0].reason
