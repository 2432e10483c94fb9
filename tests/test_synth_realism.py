"""`sltdata synth --realism real`: byte-reproducible, and with the statistics of real captures."""

import hashlib

import numpy as np
import pytest

from sltdata.cli import main
from sltdata.layouts import HOLISTIC_543
from sltdata.synth import FINGERSPELLING_CHARACTERS, real_phrase, synth
from sltdata.synth_real import islr_length, make_real_signs, make_styles, render_real

OFF = HOLISTIC_543.offsets
LH, RH, POSE = slice(OFF["left_hand"], OFF["left_hand"] + 21), slice(OFF["right_hand"], OFF["right_hand"] + 21), \
    slice(OFF["pose"], OFF["pose"] + 33)


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt, sizes", [("kaggle-islr", dict(sequences=12, classes=4, participants=3)),
                                        ("kaggle-fingerspelling", dict(files=1, sequences_per_file=4, participants=2)),
                                        ("pose", dict(sequences=3, participants=2))])
def test_same_seed_writes_identical_bytes_and_another_seed_does_not(tmp_path, fmt, sizes):
    a = _digest(synth(fmt, tmp_path / "a", seed=3, realism="real", **sizes))
    b = _digest(synth(fmt, tmp_path / "b", seed=3, realism="real", **sizes))
    c = _digest(synth(fmt, tmp_path / "c", seed=4, realism="real", **sizes))
    assert a == b and len(a) >= 3
    assert a != c


def _sequences(n=300, seed=0, left_handed=0.3):
    rng = np.random.default_rng(seed)
    signs, styles = make_real_signs(20, rng), make_styles(20, rng, left_handed)
    out = []
    for i in range(n):
        sign, style = signs[i % 20], styles[int(rng.integers(20))]
        out.append((style, render_real([sign], style, rng, frames=islr_length(sign, style, rng))))
    return out


def test_real_lengths_follow_the_kaggle_distribution():
    lengths = np.array([len(seq) for _, seq in _sequences()])
    assert 15 <= np.median(lengths) <= 21  # real asl-signs: median 18
    assert lengths.min() >= 2 and lengths.max() <= 272 and lengths.max() >= 80


def test_face_and_pose_are_always_present_and_the_body_leaves_the_image():
    seqs = [seq for _, seq in _sequences(120)]
    assert not any(np.isnan(s[:, :468]).any() or np.isnan(s[:, POSE]).any() for s in seqs)
    assert np.median([np.nanmax(s[..., 1]) for s in seqs]) > 2.0  # legs far below the frame (real: ~2.4)
    assert np.mean([np.nanmin(s[..., 0]) < 0 for s in seqs]) > 0.3  # real: 6 of 10 files


def test_left_handed_signers_lead_with_the_left_hand_and_the_other_hand_is_mostly_missing():
    pairs = _sequences(200, left_handed=0.5)
    seen = lambda hand, lefty: np.mean([(~np.isnan(s[:, hand, 0]).all(1)).mean()  # noqa: E731
                                        for st, s in pairs if st.left_handed == lefty])
    assert seen(LH, True) > seen(RH, True) + 0.4  # the dominant hand is seen in most frames, the other rarely
    assert seen(RH, False) > seen(LH, False) + 0.4
    other_missing = np.mean([np.isnan(s[:, LH if not st.left_handed else RH, 0]).all(1).mean() for st, s in pairs])
    assert 0.6 < other_missing < 0.98  # real: ~0.8-0.99 of frames
    assert sum(st.left_handed for st in make_styles(20, np.random.default_rng(1), 0.5)) == 10


def test_classes_share_elements_so_many_pairs_differ_in_one_element_only():
    signs = make_real_signs(50, np.random.default_rng(0))
    elements = np.array([s.elements for s in signs])
    assert len({tuple(e) for e in elements}) == 50
    same = (elements[:, None, :] == elements[None, :, :]).sum(-1)
    one_apart = (same == 2).sum() // 2
    assert one_apart >= 50  # each sign has on average two or more one-element neighbours


def test_fingerspelling_phrases_look_like_the_kaggle_set():
    phrases = [real_phrase(np.random.default_rng(i)) for i in range(400)]
    text = "".join(phrases)
    assert set(text) <= set(FINGERSPELLING_CHARACTERS)
    assert 12 <= np.mean([len(p) for p in phrases]) <= 24  # Kaggle: ~18 characters
    assert 0.15 <= np.mean([c.isdigit() for c in text]) <= 0.45
    assert {"-", ".", "/", " "} <= set(text)


def test_real_pose_files_hold_pixels_and_a_real_frame_size(tmp_path):
    from sltdata.sources.pose import load_pose

    root = synth("pose", tmp_path / "p", seed=0, realism="real", sequences=4, participants=2)
    for path in sorted((root / "poses").glob("*.pose")):
        pose = load_pose(path)
        w, h = pose.header.dimensions.width, pose.header.dimensions.height
        assert (w, h) in {(640, 480), (1280, 720), (640, 360), (320, 240), (512, 512)}
        xy = np.asarray(pose.body.data[:, 0, :, :2].filled(np.nan))
        assert np.nanmax(xy[..., 1]) > h  # legs below the frame, as real captures have them
        assert np.nanmedian(xy[..., 0]) > 0.2 * w


def test_cli_defaults_to_real_and_refuses_an_unknown_realism(tmp_path, capsys):
    assert main(["synth", "kaggle-islr", str(tmp_path / "r"), "--sequences", "4", "--classes", "2"]) == 0
    assert "(real)" in capsys.readouterr().out
    assert main(["synth", "kaggle-islr", str(tmp_path / "x"), "--realism", "hard"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown synth realism 'hard' (known: real, easy)"
