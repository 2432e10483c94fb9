"""Transform configs: defaults, round trips, and every bad config caught at load as one ConfigError."""

import numpy as np
import pytest

from sltdata.errors import ConfigError
from sltdata.layouts import HOLISTIC_543, POSE_POINTS, mirror_indices, preset_indices
from sltdata.transforms import build_pipeline, load_transform_config, selection_indices


def test_default_config_is_the_islr_first_place_selection():
    cfg = load_transform_config(None)
    pipe = build_pipeline(cfg)
    assert (cfg.preset, cfg.max_length, cfg.normalize.center, cfg.normalize.scale) == ("islr-1st", 384, "nose", "std")
    assert len(pipe.selection) == 118
    assert pipe.feature_dim == 118 * 2 * 3
    assert pipe.max_length == 384


def test_islr_preset_is_lips_hands_nose_eyes_in_the_published_order():
    idx = preset_indices("holistic-543", "islr-1st")
    face, lh, rh = (HOLISTIC_543.offsets[c] for c in ("face", "left_hand", "right_hand"))
    assert idx[:3].tolist() == [face + 0, face + 61, face + 185]
    assert idx[40:61].tolist() == list(range(lh, lh + 21))
    assert idx[61:82].tolist() == list(range(rh, rh + 21))
    assert idx[82:86].tolist() == [1, 2, 98, 327]
    assert len(idx) == len(set(idx.tolist())) == 118


def test_presets_combine_with_plus():
    assert len(preset_indices("holistic-543", "hands+lips+pose-upper")) == 42 + 40 + 25
    assert len(preset_indices("holistic-543", "hands+hands")) == 42


def test_mirror_is_an_involution_that_swaps_hands_and_pose_sides():
    m = mirror_indices("holistic-543")
    assert (m[m] == np.arange(543)).all()
    lh, rh, pose = (HOLISTIC_543.offsets[c] for c in ("left_hand", "right_hand", "pose"))
    assert m[lh + 4] == rh + 4
    assert m[pose + POSE_POINTS.index("LEFT_SHOULDER")] == pose + POSE_POINTS.index("RIGHT_SHOULDER")
    assert m[pose] == pose  # the nose is its own mirror
    assert m[61] == 291  # lip corners


def test_to_dict_round_trips():
    cfg = load_transform_config({"preset": "hands", "points": {"pose": ["LEFT_SHOULDER", "RIGHT_SHOULDER"]},
                                 "max_length": 64, "motion": ["velocity", "lag2"],
                                 "augment": {"affine": {"p": 0.3, "scale": [0.9, 1.1]}}})
    assert load_transform_config(cfg.to_dict()) == cfg
    assert load_transform_config(load_transform_config(None).to_dict()) == load_transform_config(None)


def test_yaml_file_loads(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("preset: hands+lips\nmax_length: 128\nnormalize:\n  scale: shoulders\naugment:\n  flip:\n    p: 0\n")
    cfg = load_transform_config(path)
    assert (cfg.preset, cfg.max_length, cfg.normalize.scale, cfg.augment.flip.p) == ("hands+lips", 128, "shoulders", 0.0)


def test_custom_points_follow_the_preset():
    cfg = load_transform_config({"preset": "nose", "points": {"left_hand": "all", "right_hand": [0, "THUMB_TIP"]},
                                 "augment": {"flip": {"p": 0}}})
    assert len(selection_indices(cfg)) == 4 + 21 + 2


@pytest.mark.parametrize("bad, where", [
    ({"preset": "handz"}, "preset"),
    ({"preset": "hands+lipz"}, "preset"),
    ({"augment": {"flip": {"p": 1.5}}}, "augment.flip.p"),
    ({"augment": {"cutout": {"p": -0.1}}}, "augment.cutout.p"),
    ({"points": {"left_hand": [21]}}, "points.left_hand"),
    ({"points": {"tail": [0]}}, "points.tail"),
    ({"augment": {"flipp": {"p": 0.5}}}, "augment.flipp"),
    ({"max_len": 10}, "max_len"),
    ({"max_length": 0}, "max_length"),
    ({"normalize": {"center": "belly"}}, "normalize.center"),
    ({"normalize": {"scale": "height"}}, "normalize.scale"),
    ({"temporal": {"drop_frames": "some"}}, "temporal.drop_frames"),
    ({"motion": ["jerk"]}, "motion"),
    ({"augment": {"rescale": {"range": [1.5, 0.5]}}}, "augment.rescale.range"),
    ({"augment": {"affine": {"rotate": "lots"}}}, "augment.affine.rotate"),
    ({"preset": "left-hand"}, "augment.flip"),
    ({"layout": "openpose-25"}, "layout"),
])
def test_bad_config_is_one_config_error_naming_the_key(bad, where):
    with pytest.raises(ConfigError, match=rf"transform config: {where.replace('.', '[.]')}"):
        load_transform_config(bad)


def test_asymmetric_selection_is_fine_without_flip():
    cfg = load_transform_config({"preset": "left-hand", "augment": {"flip": {"p": 0}}})
    assert build_pipeline(cfg).feature_dim == 21 * 2 * 3


def test_augment_false_turns_every_augmentation_off():
    assert not load_transform_config({"augment": False}).augment.any


def test_missing_yaml_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_transform_config(tmp_path / "nope.yaml")


def test_landmarks_of_another_layout_are_rejected():
    with pytest.raises(ConfigError, match="do not fit layout"):
        build_pipeline(None)(np.zeros((4, 75, 3), np.float32))
