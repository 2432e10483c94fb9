"""The keypoint schema registry: built-in layouts with named points, presets that resolve on each,
and declared mappings between them (one implementation, ``map_layout``), proven on real files."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from sltdata.errors import ConfigError
from sltdata.layouts import (BUILTIN_LAYOUTS, PRESETS, get_layout, layout_mapping, map_layout, mirror_indices,
                             preset_indices, reference_indices)
from sltdata.testing import realdata_dir

PRESET_NAMES = sorted(PRESETS["holistic-543"])


_REAL = realdata_dir()
REAL = _REAL / "pose" if _REAL and (_REAL / "pose").is_dir() else None
needs_real = pytest.mark.skipif(REAL is None, reason="the real .pose files (shared/realdata/pose) are not here")


def test_the_registry_holds_the_layouts_of_the_common_estimators():
    sizes = {n: l.num_points for n, l in BUILTIN_LAYOUTS.items()}
    assert sizes == {"holistic-543": 543, "holistic-553": 553, "pose-format-holistic-576": 576,
                     "pose-format-holistic-586": 586, "coco-wholebody-133": 133, "openpose-137": 137}
    with pytest.raises(TypeError):
        BUILTIN_LAYOUTS["x"] = None  # immutable


@pytest.mark.parametrize("layout", sorted(BUILTIN_LAYOUTS))
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_preset_resolves_on_every_registered_layout(layout, preset):
    idx = preset_indices(layout, preset)
    l = get_layout(layout)
    assert len(idx) == len(np.unique(idx)) and idx.min() >= 0 and idx.max() < l.num_points
    if preset == "hands":
        assert np.array_equal(np.sort(idx), np.sort(l.hand_indices())) and len(idx) == 42
    if preset == "all":
        assert np.array_equal(np.sort(idx), np.arange(l.num_points))
    mirror = mirror_indices(l)
    if preset in ("hands", "lips", "eyes", "nose", "islr-1st", "pose-upper"):
        assert set(mirror[idx]) == set(idx)  # closed under a left/right flip


@pytest.mark.parametrize("layout", sorted(BUILTIN_LAYOUTS))
def test_mirror_is_an_involution_and_centring_references_resolve(layout):
    m = mirror_indices(layout)
    assert np.array_equal(m[m], np.arange(len(m))) and (m != np.arange(len(m))).sum() > 42
    for ref in ("nose", "shoulders"):
        assert all(len(c) for c in reference_indices(layout, ref))


def test_coco_to_holistic_puts_hands_and_shared_body_points_in_place_and_nan_elsewhere():
    src, dst = get_layout("coco-wholebody-133"), get_layout("holistic-543")
    lm = np.arange(2 * 133 * 3, dtype=np.float32).reshape(2, 133, 3)
    out = map_layout(lm, src, dst)
    assert out.shape == (2, 543, 3)
    np.testing.assert_array_equal(out[:, dst.indices("left_hand")], lm[:, src.indices("left_hand")])
    np.testing.assert_array_equal(out[:, dst.indices("right_hand")], lm[:, src.indices("right_hand")])
    for mp, coco in (("LEFT_SHOULDER", "left_shoulder"), ("RIGHT_WRIST", "right_wrist"), ("NOSE", "nose")):
        np.testing.assert_array_equal(out[:, dst.indices("pose", [mp])], lm[:, src.indices("pose", [coco])])
    assert np.isnan(out[:, dst.indices("face")]).all()  # no defined mesh <-> iBUG correspondence
    assert np.isnan(out[:, dst.indices("pose", ["MOUTH_LEFT", "LEFT_PINKY"])]).all()
    assert np.isfinite(out).all(-1).sum(-1).tolist() == [61, 61]  # 42 hand + 19 body points


def test_openpose_and_coco_share_the_ibug_face_and_body_but_not_neck():
    src, dst = get_layout("openpose-137"), get_layout("coco-wholebody-133")
    lm = np.random.default_rng(0).normal(size=(3, 137, 3)).astype(np.float32)
    out = map_layout(lm, src, dst)
    np.testing.assert_array_equal(out[:, dst.indices("face")], lm[:, src.indices("face", list(range(68)))])
    np.testing.assert_array_equal(out[:, dst.indices("pose", ["left_elbow"])], lm[:, src.indices("pose", ["LElbow"])])
    back = map_layout(out, dst, src)
    assert np.isnan(back[:, src.indices("pose", ["Neck", "MidHip"])]).all()


def test_holistic_layouts_map_into_each_other_losslessly():
    lm = np.random.default_rng(1).normal(size=(4, 543, 3)).astype(np.float32)
    wide = map_layout(lm, "holistic-543", "pose-format-holistic-586")
    assert np.isnan(wide).all(-1).sum(-1).tolist() == [43] * 4  # 10 iris + 33 world points
    np.testing.assert_array_equal(map_layout(wide, "pose-format-holistic-586", "holistic-543"), lm)


def test_mapping_an_unregistered_layout_is_refused():
    from sltdata.layouts import Component, Layout

    own = Layout("holistic-543", (Component("face", ("0",)),))
    with pytest.raises(ConfigError, match="not a registered layout"):
        layout_mapping(own, "openpose-137")


def _root(tmp_path, files) -> Path:
    root = tmp_path / "raw"
    (root / "poses").mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy(REAL / f, root / "poses" / f"s{i}.pose")
    (root / "data.csv").write_text("uid,text\n" + "".join(f"s{i},t{i}\n" for i in range(len(files))))
    return root


REAL_OTHER = {"pose-format/openpose.pose": "openpose-137",
              "pose-format/history/mmposewholebody/FOOTBALL.pose": "coco-wholebody-133",
              "pose-format/history/openpifpaf/SOUP.pose": "coco-wholebody-133",
              "pose-format/history/FOOTBALL.pose": "pose-format-holistic-576",
              "pose-evaluation/refined_landmarks/colin-HOUSE-needs-trim.pose": "pose-format-holistic-586",
              "pose-evaluation/mixed/SbTU6uS4cc1tZpqCnE3g.pose": "holistic-553"}


@needs_real
def test_real_headers_are_recognised_as_registered_layouts(tmp_path):
    from sltdata.ingest import ingest
    from sltdata.store import Store

    recipe = tmp_path / "header.yaml"
    recipe.write_text("source: pose\nmanifest: data.csv\ncolumns: {key: uid, text: text}\npose_dir: poses\n"
                      "layout: header\n")
    result = ingest(str(recipe), _root(tmp_path, REAL_OTHER), tmp_path / "store")
    assert result.stored == len(REAL_OTHER)
    store = Store(tmp_path / "store")
    got = {m["key"]: (m["layout"], m["extractor"]) for m in store.metadata(("key", "layout", "extractor")).to_pylist()}
    extractor = {"openpose-137": "openpose", "coco-wholebody-133": "coco-wholebody"}
    assert got == {f"s{i}": (l, extractor.get(l, "mediapipe-holistic")) for i, l in enumerate(REAL_OTHER.values())}
    for name in set(REAL_OTHER.values()):
        assert store.layout(name) == BUILTIN_LAYOUTS[name]


def _source_points(path: Path, component: str) -> np.ndarray:
    """A component's points straight from pose-format (first person, x/y, NaN where confidence 0)."""
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    start = 0
    for c in pose.header.components:
        if c.name == component:
            break
        start += len(c.points)
    data = np.ma.getdata(pose.body.data)[:, 0, start:start + 21, :2].astype(np.float32)
    data[np.asarray(pose.body.confidence)[:, 0, start:start + 21] <= 0] = np.nan
    return data


@needs_real
@pytest.mark.parametrize("file, left, right", [
    ("pose-format/openpose.pose", "hand_left_keypoints_2d", "hand_right_keypoints_2d"),
    ("pose-format/history/mmposewholebody/FOOTBALL.pose", "LEFT_HAND", "RIGHT_HAND"),
])
def test_real_137_and_133_point_files_map_to_holistic_543_with_hands_in_place(tmp_path, file, left, right):
    from sltdata.ingest import ingest
    from sltdata.store import Store

    src = "openpose-137" if "openpose" in file else "coco-wholebody-133"
    result = ingest("pose", _root(tmp_path, [file]), tmp_path / "store", layout_map={src: "holistic-543"})
    assert (result.stored, result.rejected) == (1, 0)
    store = Store(tmp_path / "store")
    seq = store.get("s0")
    h = get_layout("holistic-543")
    assert seq.layout == "holistic-543" and seq.landmarks.shape[1] == 543
    assert store.meta["recipe"]["layout_map"] == {src: "holistic-543"}
    for comp, name in (("left_hand", left), ("right_hand", right)):
        expected = _source_points(REAL / file, name)
        got = seq.landmarks[:, h.indices(comp), :2]
        np.testing.assert_array_equal(got, expected)
        assert np.isfinite(got).any()  # the real file does have detections in this hand
    assert np.isnan(seq.landmarks[:, h.indices("face")]).all()


@needs_real
def test_without_a_layout_map_a_133_point_file_is_rejected_with_the_hint(tmp_path):
    from sltdata.ingest import ingest
    from sltdata.store import Store

    ingest("pose", _root(tmp_path, ["pose-format/history/openpifpaf/SOUP.pose"]), tmp_path / "store")
    (reject,) = Store(tmp_path / "store").rejects()
    assert reject["reason"].endswith("(layout: header keeps each file's own; or layout_map: "
                                     "{coco-wholebody-133: holistic-543} converts it)")


def test_a_layout_map_between_unknown_layouts_is_a_config_error(tmp_path):
    from sltdata.recipes import parse_layout_map

    assert parse_layout_map(["a:b", " c : d "]) == {"a": "b", "c": "d"}
    with pytest.raises(ConfigError, match="SRC:DST"):
        parse_layout_map("coco-wholebody-133")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: pose\nmanifest: data.csv\ncolumns: {key: uid}\nlayout_map: nope-1:holistic-543\n")
    from sltdata.recipes import load_recipe

    with pytest.raises(ConfigError, match="layout_map.nope-1: unknown layout 'nope-1'"):
        load_recipe(str(recipe))
