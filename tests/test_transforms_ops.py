"""NumPy transform steps and pipeline: the properties the issue names, and each step's behaviour."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sltdata.layouts import HOLISTIC_543
from sltdata.testing import fake_landmarks
from sltdata.transforms import build_pipeline, load_transform_config, sample_rng
from sltdata.transforms import numpy_ops as ops

AUGS = ("rescale", "flip", "affine", "jitter", "frame_mask", "cutout", "spatial_mask", "crop")
ALL_ON = {"augment": {k: {"p": 1.0} for k in AUGS}}
NO_AUG = {"augment": False}
LH, RH = HOLISTIC_543.offsets["left_hand"], HOLISTIC_543.offsets["right_hand"]


def planes(frames: int, points: int, seed: int, nan_fraction: float = 0.2) -> np.ndarray:
    """A (coords, frames, points) float32 array with whole points missing, as the steps take it."""
    return np.ascontiguousarray(fake_landmarks(frames, points, seed, nan_fraction)[..., :2].transpose(2, 0, 1))


seeds = st.integers(0, 2**31 - 1)
lengths = st.integers(1, 60)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, frames=lengths)
def test_flip_twice_is_identity(seed, frames):
    pipe = build_pipeline(None)
    x = planes(frames, pipe.n_selected, seed)
    twice = ops.flip(ops.flip(x, pipe.flip_perm), pipe.flip_perm)
    np.testing.assert_array_equal(twice, x)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, frames=lengths)
def test_identity_affine_is_identity(seed, frames):
    x = planes(frames, 30, seed)
    np.testing.assert_array_equal(ops.affine(x, ops.affine_matrix(0, 1, 0, 0, 0, 0)), x)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, frames=lengths, shift=st.tuples(*[st.floats(-5, 5)] * 3), scale=st.floats(0.2, 5),
       center=st.sampled_from(["nose", "mean", "shoulders", "face:17"]), how=st.sampled_from(["std", "shoulders"]))
def test_normalized_output_is_invariant_to_translating_and_scaling_the_input(seed, frames, shift, scale, center, how):
    pipe = build_pipeline({**NO_AUG, "normalize": {"center": center, "scale": how, "drop_z": False}})
    lm = fake_landmarks(frames, seed=seed)
    moved = (lm * np.float32(scale) + np.asarray(shift, np.float32)).astype(np.float32)
    a, ma = pipe(lm)
    b, mb = pipe(moved)
    np.testing.assert_array_equal(ma, mb)
    np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-3)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, frames=st.integers(2, 80), length=st.integers(2, 80))
def test_resize_keeps_the_first_and_last_frames(seed, frames, length):
    x = planes(frames, 10, seed)
    y = ops.interpolate_frames(x, length)
    assert y.shape == (2, length, 10)
    np.testing.assert_array_equal(y[:, 0], x[:, 0])
    np.testing.assert_array_equal(y[:, -1], x[:, -1])


@settings(max_examples=30, deadline=None)
@given(seed=seeds, frames=st.integers(0, 120), train=st.booleans(), resize=st.booleans())
def test_mask_marks_every_real_frame_valid_and_only_those(seed, frames, train, resize):
    pipe = build_pipeline({"max_length": 64, "temporal": {"drop_frames": "none", "resize": resize}})
    feats, mask = pipe(fake_landmarks(frames, seed=seed), sample_rng(seed, "k"), train=train)
    assert feats.shape == (64, pipe.feature_dim) and mask.shape == (64,)
    n = int(mask.sum())
    assert mask[:n].all() and not mask[n:].any()
    if not train:
        assert n == min(frames, 64)
    assert not feats[n:].any()


@settings(max_examples=30, deadline=None)
@given(seed=seeds, frames=lengths, train=st.booleans())
def test_outputs_are_float32_and_bool(seed, frames, train):
    feats, mask = build_pipeline(None)(fake_landmarks(frames, seed=seed), sample_rng(seed, "k"), train=train)
    assert feats.dtype == np.float32 and mask.dtype == np.bool_


@settings(max_examples=40, deadline=None)
@given(seed=seeds, frames=lengths, empty=st.sets(st.integers(0, 59)), train=st.booleans(),
       cfg=st.sampled_from([None, ALL_ON, {"temporal": {"drop_frames": "none", "fill_gaps": 4}},
                            {"normalize": {"center": "shoulders", "scale": "shoulders", "drop_z": False}}]))
def test_all_nan_frames_never_produce_nan(seed, frames, empty, train, cfg):
    lm = fake_landmarks(frames, seed=seed, nan_fraction=0.5)
    lm[[i for i in empty if i < frames]] = np.nan
    feats, _ = build_pipeline(cfg)(lm, sample_rng(seed, "k"), train=train)
    assert np.isfinite(feats).all()


def test_an_all_nan_sequence_gives_zeros_with_its_frames_valid():
    feats, mask = build_pipeline({"temporal": {"drop_frames": "empty"}})(np.full((7, 543, 3), np.nan, np.float32))
    assert not feats.any() and mask.sum() == 7


def test_same_seed_key_and_epoch_give_the_same_augmentation():
    pipe, lm = build_pipeline(ALL_ON), fake_landmarks(40, seed=3)
    a, _ = pipe(lm, sample_rng(7, "seq-1", 2), train=True)
    b, _ = pipe(lm, sample_rng(7, "seq-1", 2), train=True)
    c, _ = pipe(lm, sample_rng(7, "seq-1", 3), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_rng_does_not_depend_on_other_samples_drawn_before():
    first = sample_rng(0, "b").random(4)
    sample_rng(0, "a").random(100)
    np.testing.assert_array_equal(sample_rng(0, "b").random(4), first)
    assert not np.array_equal(sample_rng(0, "a").random(4), first)


def test_augmentations_need_train_and_a_generator():
    pipe, lm = build_pipeline(ALL_ON), fake_landmarks(30, seed=1)
    plain, _ = pipe(lm)
    np.testing.assert_array_equal(pipe(lm, sample_rng(0, "k"))[0], plain)
    np.testing.assert_array_equal(pipe(lm, None, train=True)[0], plain)


def test_fill_gaps_interpolates_short_inner_gaps_only():
    x = np.full((2, 10, 1), np.nan, np.float32)
    x[:, [1, 4, 9], 0] = [[1.0, 4.0, 9.0], [0.0, 0.0, 0.0]]
    y = ops.fill_gaps(x, 2)
    np.testing.assert_allclose(y[0, :, 0], [np.nan, 1, 2, 3, 4, np.nan, np.nan, np.nan, np.nan, 9])


def test_drop_handless_frames_removes_frames_without_a_hand():
    lm = fake_landmarks(6, seed=0, nan_fraction=0.0)
    lm[[1, 3], LH:LH + 21] = np.nan
    lm[[1, 3], RH:RH + 21] = np.nan
    _, mask = build_pipeline({**NO_AUG, "temporal": {"drop_frames": "handless"}})(lm)
    assert mask.sum() == 4


def test_velocity_is_constant_and_acceleration_zero_for_uniform_motion():
    x = np.zeros((2, 5, 1), np.float32)
    x[0, :, 0] = np.arange(5) * 0.5
    vel, acc, lag2 = ops.motion_features(x, ("velocity", "acceleration", "lag2"))
    np.testing.assert_allclose(vel[0, :, 0], [0.5, 0.5, 0.5, 0.5, 0])
    np.testing.assert_allclose(acc[0, :, 0], 0)
    np.testing.assert_allclose(lag2[0, :, 0], [1, 1, 1, 0, 0])


def test_features_are_positions_then_motion_coordinate_major():
    pipe = build_pipeline({**NO_AUG, "preset": "nose", "normalize": {"center": "none", "scale": "none"}})
    lm = fake_landmarks(3, seed=0, nan_fraction=0.0)
    feats, _ = pipe(lm)
    np.testing.assert_allclose(feats[0, :4], lm[0, [1, 2, 98, 327], 0])  # x of the 4 nose points
    np.testing.assert_allclose(feats[0, 4:8], lm[0, [1, 2, 98, 327], 1])  # then their y
    np.testing.assert_allclose(feats[0, 8:12], lm[1, [1, 2, 98, 327], 0] - lm[0, [1, 2, 98, 327], 0], rtol=1e-6)


def test_rescale_resamples_to_round_length_times_factor():
    x = planes(40, 5, 0)
    assert ops.interpolate_frames(x, ops.rescaled_length(40, 1.26)).shape[1] == 50


def test_flip_mirrors_a_left_hand_into_a_right_hand():
    lm = np.full((4, 543, 3), np.nan, np.float32)
    lm[:, LH:LH + 21] = fake_landmarks(4, 21, seed=0, nan_fraction=0.0)
    pipe = build_pipeline({**NO_AUG, "preset": "hands", "normalize": {"center": "mean", "scale": "none"},
                           "augment": {k: {"p": 1.0 if k == "flip" else 0.0} for k in AUGS}})
    plain, _ = pipe(lm)
    flipped, _ = pipe(lm, sample_rng(0, "k"), train=True)
    # columns: x of left hand (21), x of right hand (21), y left, y right
    np.testing.assert_array_equal(flipped[:4, 21:42], -plain[:4, 0:21])
    np.testing.assert_array_equal(flipped[:4, 63:84], plain[:4, 42:63])
    assert not flipped[:4, 0:21].any()


def test_cutout_hides_one_contiguous_block_and_keeps_it_in_the_mask():
    aug = load_transform_config({"augment": {k: {"p": 1.0 if k == "cutout" else 0.0} for k in AUGS}}).augment
    d, fire = ops.draw_scalars(aug, sample_rng(0, "k"))
    d = ops.draw_frames(aug, sample_rng(0, "k"), d, fire, 50)
    hidden = np.flatnonzero(d.hidden)
    assert 10 <= len(hidden) <= 20 and (np.diff(hidden) == 1).all()


def test_feature_layout_splits_positions_and_motion_back_out():
    pipe = build_pipeline({"preset": "hands", "max_length": 12, "motion": ["velocity", "lag2"], **NO_AUG,
                           "temporal": {"drop_frames": "none"}, "normalize": {"center": "none", "scale": "none"}})
    lm = fake_landmarks(8, seed=5, nan_fraction=0.0)
    features, mask = pipe(lm)
    layout = pipe.feature_layout
    assert layout.parts == ("position", "velocity", "lag2") and layout.coords == 2
    assert layout.points.tolist() == list(range(LH, LH + 21)) + list(range(RH, RH + 21))
    parts = layout.split(features)
    raw = lm[:, layout.points, :2]
    assert parts["position"].shape == (12, 42, 2)
    np.testing.assert_array_equal(parts["position"][:8], raw)
    np.testing.assert_array_equal(parts["position"][8:], 0)  # padding
    np.testing.assert_allclose(parts["velocity"][:7], raw[1:] - raw[:-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(parts["lag2"][:6], raw[2:] - raw[:-2], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(layout.join(parts), features)


def test_feature_layout_split_works_on_a_torch_batch():
    torch = pytest.importorskip("torch")
    layout = ops.FeatureLayout(("position", "velocity"), 3, np.arange(4))
    batch = np.arange(2 * 5 * layout.dim, dtype=np.float32).reshape(2, 5, layout.dim)
    want = layout.split(batch)
    got = layout.split(torch.from_numpy(batch))
    for name in layout.parts:
        np.testing.assert_array_equal(got[name].numpy(), want[name])
    assert want["velocity"][1, 2, 3].tolist() == [batch[1, 2, 12 + 3], batch[1, 2, 16 + 3], batch[1, 2, 20 + 3]]


def test_hands_are_the_two_hand_components_of_the_layout():
    assert HOLISTIC_543.hand_components == ("left_hand", "right_hand")
    assert HOLISTIC_543.hand_indices().tolist() == list(range(LH, LH + 21)) + list(range(RH, RH + 21))
    assert build_pipeline(None).hands.tolist() == HOLISTIC_543.hand_indices().tolist()


def only(name: str, **settings) -> dict:
    """A config with one augmentation always on and every other off."""
    return {"augment": {k: {"p": 1.0, **settings} if k == name else {"p": 0.0} for k in AUGS}}


def test_spatial_mask_hides_exactly_the_points_strictly_inside_the_square():
    x = np.array([[[0.30, 0.50, 0.29, 0.60, 0.45]],     # x of 5 points, one frame
                  [[0.30, 0.40, 0.35, 0.60, 0.10]]], np.float32)  # y
    out = ops.spatial_mask(x, np.array([0.25, 0.25, 0.3]))  # square (0.25, 0.55) x (0.25, 0.55)
    np.testing.assert_array_equal(np.isnan(out[0, 0]), [True, True, True, False, False])
    np.testing.assert_array_equal(np.isnan(out[1, 0]), [True, True, True, False, False])
    np.testing.assert_array_equal(out[:, 0, 3:], x[:, 0, 3:])


def test_spatial_mask_is_drawn_in_its_size_range_and_applied_before_normalization():
    aug = load_transform_config(only("spatial_mask")).augment
    sides = [ops.draw_scalars(aug, sample_rng(s, "k"))[0].spatial_mask[2] for s in range(200)]
    assert 0.2 <= min(sides) < 0.22 and 0.38 < max(sides) <= 0.4
    # a sequence whose raw points all lie inside the drawn square: every point hidden -> all zeros
    pipe = build_pipeline({**only("spatial_mask"), "preset": "hands", "normalize": {"center": "mean"}})
    draw = ops.draw_scalars(pipe.cfg.augment, sample_rng(0, "k"))[0]
    x0, y0, side = draw.spatial_mask
    lm = np.full((6, 543, 3), np.nan, np.float32)
    lm[:, LH:LH + 21, 0] = x0 + side * np.linspace(0.1, 0.9, 21)
    lm[:, LH:LH + 21, 1] = y0 + side * 0.5
    lm[:, LH:LH + 21, 2] = 0
    feats, mask, _ = pipe.run(lm, draw=draw)
    plain, _ = pipe(lm)
    assert plain[:6].any() and not feats[:6].any() and mask[:6].all()


def test_training_crops_a_random_window_and_eval_keeps_the_first_frames():
    cfg = {**only("crop"), "preset": "nose", "normalize": {"center": "none", "scale": "none"}, "motion": [],
           "max_length": 10}
    lm = np.zeros((40, 543, 3), np.float32)
    lm[:, 1, 0] = np.arange(40)  # x of the nose tip = frame number
    pipe = build_pipeline(cfg)
    plain, _ = pipe(lm)
    np.testing.assert_array_equal(plain[:, 0], np.arange(10))
    starts = set()
    for s in range(60):
        feats, mask, draw = pipe.run(lm, sample_rng(s, "k"), train=True)
        start = ops.crop_start(40, 10, draw.crop)
        np.testing.assert_array_equal(feats[:, 0], np.arange(start, start + 10))
        assert mask.all()
        starts.add(start)
    assert min(starts) <= 3 and max(starts) >= 27 and len(starts) > 15  # every start 0..30 can be drawn


def test_crop_start_covers_every_window_and_never_runs_past_the_end():
    assert [ops.crop_start(13, 10, p) for p in (0.0, 0.2499, 0.25, 0.5, 0.75, 0.9999)] == [0, 0, 1, 2, 3, 3]
    assert ops.crop_start(8, 10, 0.9) == 0

HANDS_PLAIN = {"preset": "hands", "normalize": {"center": "mean", "scale": "none"},
               "augment": {"flip": {"p": 1.0}, **{k: {"p": 0.0} for k in ("rescale", "affine", "jitter", "frame_mask",
                                                                           "cutout")}}}
TO_RIGHT = {**HANDS_PLAIN, "augment": False, "normalize": {**HANDS_PLAIN["normalize"], "handedness": "right"}}


def one_handed(frames: int, left: int, right: int, seed: int = 0) -> np.ndarray:
    """Raw landmarks with the left hand seen in the first ``left`` frames, the right in the first ``right``."""
    lm = fake_landmarks(frames, seed=seed, nan_fraction=0.0)
    lm[left:, LH:LH + 21] = np.nan
    lm[right:, RH:RH + 21] = np.nan
    return lm


def test_handedness_right_mirrors_a_left_handed_sequence_exactly_as_the_flip_does():
    lm = one_handed(6, left=6, right=0)
    flipped, _, _ = build_pipeline(HANDS_PLAIN).run(lm, draw=ops.AugmentDraw(flip=True))
    mirrored, _ = build_pipeline(TO_RIGHT)(lm)
    plain, _ = build_pipeline({**HANDS_PLAIN, "augment": False})(lm)
    np.testing.assert_array_equal(mirrored, flipped)
    # the left hand's x (columns 0-20) now sits, negated, where the right hand's x goes (21-41)
    np.testing.assert_array_equal(mirrored[:6, 21:42], -plain[:6, 0:21])
    assert not mirrored[:6, 0:21].any() and plain[:6, 0:21].any()


@pytest.mark.parametrize("left, right", [(2, 5), (0, 6), (3, 3), (0, 0)])
def test_handedness_right_leaves_right_dominant_and_tied_sequences_alone(left, right):
    lm = one_handed(6, left, right, seed=left + right)
    kept, _ = build_pipeline(TO_RIGHT)(lm)
    plain, _ = build_pipeline({**HANDS_PLAIN, "augment": False})(lm)
    np.testing.assert_array_equal(kept, plain)


def test_handedness_counts_frames_not_points():
    # the left hand: 4 frames with a single point; the right: 3 frames with every point -> left dominates
    lm = one_handed(6, left=0, right=3)
    lm[:4, LH + 5] = 0.5
    pipe = build_pipeline(TO_RIGHT)
    assert pipe.mirrored(lm) and not pipe.mirrored(one_handed(6, left=3, right=4))


def test_handedness_left_mirrors_right_handed_sequences():
    lm = one_handed(5, left=1, right=5)
    cfg = {**TO_RIGHT, "normalize": {**TO_RIGHT["normalize"], "handedness": "left"}}
    flipped, _, _ = build_pipeline(HANDS_PLAIN).run(lm, draw=ops.AugmentDraw(flip=True))
    np.testing.assert_array_equal(build_pipeline(cfg)(lm)[0], flipped)


def test_handedness_on_a_selection_without_its_mirror_is_a_config_error():
    from sltdata.errors import ConfigError
    with pytest.raises(ConfigError, match="normalize.handedness.*not mirror-symmetric.*handedness: keep"):
        load_transform_config({"preset": "left-hand", "augment": False, "normalize": {"handedness": "right"}})


@pytest.mark.parametrize("motion", [[], ["velocity"], ["velocity", "acceleration"]])
def test_all_points_with_z_give_543_times_3_columns_per_part(motion):
    pipe = build_pipeline({"preset": "all", "normalize": {"drop_z": False, "scale": "none"}, "motion": motion,
                           "max_length": 16})
    assert pipe.feature_dim == 543 * 3 * (1 + len(motion))
    lm = fake_landmarks(5, seed=1, nan_fraction=0.0)
    feats, _ = pipe(lm)
    z = pipe.feature_layout.split(feats)["position"][:5, :, 2]
    np.testing.assert_allclose(z, lm[:, :, 2] - lm[:, :, 2][:, [1]].mean(), atol=1e-6)   # z kept, nose-centred
