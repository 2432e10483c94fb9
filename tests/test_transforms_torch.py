"""The batched torch path equals the NumPy pipeline sample by sample (same draws), within 1e-5."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from sltdata.testing import fake_landmarks  # noqa: E402
from sltdata.transforms import build_pipeline, load_transform_config, sample_rng  # noqa: E402
from sltdata.transforms.torch_ops import BatchAugment, stack_draws  # noqa: E402

AUGS = ("rescale", "flip", "affine", "jitter", "frame_mask", "cutout", "spatial_mask", "crop")
CONFIGS = [
    None,
    {"augment": {k: {"p": 1.0} for k in AUGS}},
    {"max_length": 16, "augment": {k: {"p": 1.0} for k in AUGS}},  # random crops of most samples
    {"max_length": 24, "temporal": {"resize": True, "fill_gaps": 3, "drop_frames": "handless"},
     "motion": ["velocity", "acceleration", "lag2"], "normalize": {"scale": "shoulders", "drop_z": False}},
    {"preset": "hands+pose-upper", "max_length": None, "temporal": {"pad": False, "drop_frames": "none"},
     "normalize": {"center": "shoulders"}},
    {"preset": "lips+eyes", "normalize": {"center": "mean", "scale": "none"}, "motion": []},
    {"preset": "hands+lips", "augment": {k: {"p": 1.0} for k in AUGS}, "normalize": {"handedness": "right"}},
    {"preset": "all", "max_length": 32, "temporal": {"resize": True},
     "normalize": {"drop_z": False, "handedness": "left"}},
]


def padded_batch(seqs, zeros=False):
    t = max(len(s) for s in seqs)
    x = np.full((len(seqs), t, 543, 3), 0.0 if zeros else np.nan, np.float32)
    mask = np.zeros((len(seqs), t), bool)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = np.nan_to_num(s, nan=0.0) if zeros else s
        mask[i, :len(s)] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


def assert_batch_equals_numpy(cfg, seqs, train, seed=0, zeros=False, chunk=32):
    pipe, batch = build_pipeline(cfg), BatchAugment(cfg, device="cpu", cpu_chunk=chunk)
    runs = [pipe.run(s, sample_rng(seed, f"k{i}"), train=train) for i, s in enumerate(seqs)]
    x, mask = padded_batch(seqs, zeros)
    params = stack_draws([r[2] for r in runs]) if train else None
    feats, out_mask = batch(x, mask, train=train, params=params)
    assert feats.dtype == torch.float32 and feats.shape[2] == pipe.feature_dim
    for i, (f, m, _) in enumerate(runs):
        n = len(m)
        np.testing.assert_array_equal(out_mask[i, :n].numpy(), m)
        assert not out_mask[i, n:].any()
        np.testing.assert_allclose(feats[i, :n].numpy(), f, atol=1e-5, rtol=0)
        assert not feats[i, n:].any()


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lengths=st.lists(st.integers(1, 50), min_size=1, max_size=5),
       cfg=st.sampled_from(CONFIGS), train=st.booleans())
def test_batch_path_equals_numpy_path(seed, lengths, cfg, train):
    seqs = [fake_landmarks(n, seed=seed + i, nan_fraction=0.3) for i, n in enumerate(lengths)]
    assert_batch_equals_numpy(cfg, seqs, train, seed)


def test_batch_path_equals_numpy_path_with_all_nan_frames_and_empty_samples():
    seqs = [fake_landmarks(20, seed=1), np.full((5, 543, 3), np.nan, np.float32), fake_landmarks(40, seed=2)]
    seqs[0][[0, 3, 4, 19]] = np.nan
    for cfg in CONFIGS:
        assert_batch_equals_numpy(cfg, seqs, train=True)


def test_loader_style_zero_padding_reads_as_missing():
    seqs = [fake_landmarks(n, seed=n, nan_fraction=0.3) for n in (8, 30, 17)]
    assert_batch_equals_numpy(CONFIGS[1], seqs, train=True, zeros=True)


def test_own_draws_are_reproducible_from_the_generator():
    aug = BatchAugment(CONFIGS[1])
    x, mask = padded_batch([fake_landmarks(n, seed=n) for n in (10, 40, 25)])
    a = aug(x, mask, torch.Generator().manual_seed(5), train=True)
    b = aug(x, mask, torch.Generator().manual_seed(5), train=True)
    c = aug(x, mask, torch.Generator().manual_seed(6), train=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])
    assert torch.isfinite(a[0]).all() and a[0].shape == (3, 384, aug.feature_dim)


def test_no_generator_or_eval_means_no_augmentation():
    aug = BatchAugment(CONFIGS[1])
    x, mask = padded_batch([fake_landmarks(12, seed=0)])
    plain = aug(x, mask, None, train=True)
    torch.testing.assert_close(aug(x, mask, torch.Generator().manual_seed(0), train=False), plain)
    assert load_transform_config(CONFIGS[1]).augment.any


def test_batch_path_handles_samples_with_no_frames():
    seqs = [np.zeros((0, 543, 3), np.float32), fake_landmarks(6, seed=0)]
    for cfg in CONFIGS:
        assert_batch_equals_numpy(cfg, seqs, train=True)
    feats, mask = BatchAugment(None)(*padded_batch([seqs[0], seqs[0]]), torch.Generator().manual_seed(0))
    assert feats.shape == (2, 384, 708) and not mask.any() and not feats.any()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_batch_processed_in_cpu_chunks_equals_numpy_path(cfg):
    seqs = [fake_landmarks(n, seed=n, nan_fraction=0.3) for n in (3, 30, 1, 17, 44)]
    assert_batch_equals_numpy(cfg, seqs, train=True, chunk=2)


def lopsided(frames: int, seed: int, left_seen: int, right_seen: int) -> np.ndarray:
    lm = fake_landmarks(frames, seed=seed, nan_fraction=0.2)
    lm[left_seen:, 468:489] = np.nan
    lm[right_seen:, 522:543] = np.nan
    return lm


@pytest.mark.parametrize("cfg", CONFIGS[-2:])
@pytest.mark.parametrize("zeros", [False, True])
def test_batch_path_mirrors_the_same_samples_for_handedness(cfg, zeros):
    seqs = [lopsided(12, 0, 12, 3), lopsided(9, 1, 2, 9), lopsided(20, 2, 5, 5), lopsided(7, 3, 0, 0),
            lopsided(40, 4, 40, 0)]
    pipe = build_pipeline(cfg)
    assert [pipe.mirrored(s) for s in seqs] == ([True, False, False, False, True] if cfg["normalize"]["handedness"]
                                                == "right" else [False, True, False, False, False])
    for train in (False, True):
        assert_batch_equals_numpy(cfg, seqs, train, zeros=zeros)


def test_preselected_batch_mirrors_like_the_full_batch():
    cfg = {"preset": "lips", "points": {"left_hand": "all", "right_hand": "all"}, "augment": False,
           "normalize": {"handedness": "right"}}
    seqs = [lopsided(12, 0, 12, 3), lopsided(9, 1, 2, 9)]
    x, mask = padded_batch(seqs, zeros=True)
    points = torch.from_numpy(build_pipeline(cfg).input_points)
    full, _ = BatchAugment(cfg)(x, mask, train=False)
    pre, _ = BatchAugment(cfg, preselected=True)(x[:, :, points], mask, train=False)
    assert torch.equal(full, pre)
    assert_batch_equals_numpy(cfg, seqs, train=False)
