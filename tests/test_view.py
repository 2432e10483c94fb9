"""`sltdata view`: one animation frame per sequence frame, skeleton drawn without missing points."""

import json

import numpy as np
import pytest
from PIL import Image

from sltdata.cli import main
from sltdata.errors import ConfigError
from sltdata.layouts import FACEMESH_CONTOURS, HOLISTIC_543
from sltdata.sequence import Sequence
from sltdata.store import META_FILE, STORE_FORMAT, STORE_VERSION, part_name, write_json_atomic, write_part
from sltdata.testing import fake_landmarks
from sltdata.view import Panel, _frame_artists, animate, layout_edges, raw_panel


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three short sequences; "blank" has frames with nothing detected (identical consecutive frames)."""
    path = tmp_path_factory.mktemp("view") / "store"
    path.mkdir()
    blank = fake_landmarks(6, seed=2)
    blank[1:4] = np.nan
    seqs = [Sequence("hello", fake_landmarks(7, seed=1), HOLISTIC_543.name, label="hello", participant="p1"),
            Sequence("blank", blank, HOLISTIC_543.name, label="thanks", participant="p2"),
            Sequence("phrase", fake_landmarks(5, seed=3), HOLISTIC_543.name, text="a phrase", participant="p1")]
    write_part(path / part_name(0), seqs)
    write_json_atomic(path / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True, "layouts": [HOLISTIC_543.to_dict()],
        "labels": {"hello": 0, "thanks": 1}, "characters": None,
        "parts": [{"file": part_name(0), "sequences": 3, "frames": 18}],
        "counts": {"rows": 3, "stored": 3, "rejected": 0, "frames": 18}})
    return path


@pytest.mark.parametrize("key,frames", [("hello", 7), ("blank", 6), ("phrase", 5)])
def test_gif_has_one_frame_per_sequence_frame(store, tmp_path, key, frames):
    out = tmp_path / f"{key}.gif"
    assert main(["view", str(store), key, "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == frames


def test_missing_key_is_one_clear_error(store, tmp_path, capsys):
    assert main(["view", str(store), "no-such-key", "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error:") and "no sequence with key 'no-such-key'" in err
    assert err.endswith(f'(run "sltdata keys {store}" to list them)')
    assert not (tmp_path / "x.gif").exists()


def test_unknown_format_is_an_error(store, tmp_path, capsys):
    assert main(["view", str(store), "hello", "--out", str(tmp_path / "x.avi")]) == 2
    assert "use .gif or .mp4" in capsys.readouterr().err


def test_mp4_needs_ffmpeg(store, tmp_path):
    from matplotlib import animation

    panel = raw_panel(Sequence("s", fake_landmarks(2), HOLISTIC_543.name))
    if animation.FFMpegWriter.isAvailable():
        assert animate([panel], tmp_path / "s.mp4", "s").stat().st_size > 0
    else:
        with pytest.raises(ConfigError, match="needs ffmpeg"):
            animate([panel], tmp_path / "s.mp4", "s")


def test_missing_points_and_their_edges_are_left_out():
    xy = np.array([[[0, 0], [1, 1], [np.nan, np.nan], [3, 3]]], dtype=np.float32)
    panel = Panel("t", xy, np.array([[0, 1], [1, 2], [2, 3], [0, 3]]), np.array(["k"] * 4, dtype=object))
    points, segments, colors = _frame_artists(panel, 0)
    assert points.tolist() == [[0, 0], [1, 1], [3, 3]]
    assert [s.tolist() for s in segments] == [[[0, 0], [1, 1]], [[0, 0], [3, 3]]]
    assert len(colors) == 3


def test_shorter_panel_holds_its_last_frame():
    xy = np.arange(2 * 1 * 2, dtype=np.float32).reshape(2, 1, 2)
    panel = Panel("t", xy, np.zeros((0, 2), np.int64), np.array(["k"], dtype=object))
    assert _frame_artists(panel, 5)[0].tolist() == [[2.0, 3.0]]


def test_edges_cover_hands_pose_and_face_contour():
    edges = layout_edges(HOLISTIC_543)
    face = set(HOLISTIC_543.indices("face").tolist())
    face_edges = [e for e in edges.tolist() if e[0] in face and e[1] in face]
    assert len(face_edges) == len(FACEMESH_CONTOURS) == 124
    assert len(edges) == len(HOLISTIC_543.edges()) + 124
    assert edges.min() >= 0 and edges.max() < HOLISTIC_543.num_points


def test_transformed_is_drawn_beside_raw(store, tmp_path):
    pytest.importorskip("sltdata.transforms")
    config = tmp_path / "t.json"  # JSON is valid YAML
    config.write_text(json.dumps({"preset": "islr-1st", "max_length": None, "augment": False}))
    out = tmp_path / "side.gif"
    assert main(["view", str(store), "hello", "--out", str(out), "--transformed", str(config)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 7
        assert im.size[0] > im.size[1]  # two panels side by side


def test_transformed_panel_holds_the_selected_points(store):
    pytest.importorskip("sltdata.transforms")
    from sltdata.store import Store
    from sltdata.transforms import build_pipeline
    from sltdata.view import transformed_panel

    seq = Store(store).get("hello")
    cfg = {"preset": "islr-1st", "max_length": 32, "augment": False}
    panel = transformed_panel(seq, cfg)
    pipe = build_pipeline(cfg)
    assert panel.xy.shape == (7, len(pipe.selection), 2)  # padding (mask False) is not drawn
    assert panel.edges.max() < len(pipe.selection)


def test_augmented_view_draws_the_seeded_draw(store, tmp_path):
    pytest.importorskip("sltdata.transforms")
    from sltdata.store import Store
    from sltdata.transforms import build_pipeline, sample_rng

    cfg = {"preset": "islr-1st", "max_length": None, "augment": {"rescale": {"p": 1.0, "range": [1.5, 1.5]}}}
    config = tmp_path / "aug.json"
    config.write_text(json.dumps(cfg))
    _, mask = build_pipeline(cfg)(Store(store).get("hello").landmarks, rng=sample_rng(4, "hello"), train=True)
    out = tmp_path / "aug.gif"
    assert main(["view", str(store), "hello", "--out", str(out), "--transformed", str(config), "--seed", "4"]) == 0
    with Image.open(out) as im:
        assert im.n_frames == max(7, int(mask.sum())) > 7  # the slowed-down side is longer


def test_transformed_view_draws_the_normalized_preset_points(store):
    """Augmentation off, the right-hand panel is exactly the preset's raw points after normalization:
    values computed here by hand (select, centre on the mean, divide by the std), not through the pipeline."""
    from sltdata.store import Store
    from sltdata.view import transformed_panel

    seq = Store(store).get("hello")
    cfg = {"preset": "hands+nose", "max_length": None, "augment": False, "motion": ["velocity", "acceleration"],
           "normalize": {"center": "mean", "scale": "std"}, "temporal": {"drop_frames": "none"}}
    points = np.r_[468:489, 522:543, [1, 2, 98, 327]]  # left hand, right hand, the 4 nose points
    xy = seq.landmarks[:, points, :2].astype(np.float64)
    center = np.nanmean(xy.reshape(-1, 2), axis=0)
    scale = np.sqrt(np.nanmean((xy - center) ** 2))
    expected = (xy - center) / scale

    panel = transformed_panel(seq, cfg)
    assert panel.xy.shape == expected.shape
    np.testing.assert_allclose(panel.xy, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    for i in range(len(expected)):  # what each animation frame scatters
        drawn, _, _ = _frame_artists(panel, i)
        np.testing.assert_allclose(drawn, expected[i][np.isfinite(expected[i]).all(1)], rtol=1e-5, atol=1e-6)
    assert np.isnan(expected).any()  # the check covers undetected points too
