"""`sltdata extract`: input discovery and errors (no mediapipe needed), then Holistic on a real photo clip."""

import csv
import json
import os

import numpy as np
import pytest

from sltdata.errors import SltdataError, SourceError
from sltdata.extract import backends
from sltdata.extract.backends import HolisticConfig, resolve_backend
from sltdata.extract.video import find_inputs, keep_frame

# --- without mediapipe ---------------------------------------------------------------------------


def test_folder_inputs_are_videos_and_image_folders_named_by_stem(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.AVI").write_bytes(b"x")
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "0001.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [v.stem for v in find_inputs(tmp_path)] == ["a", "seq", "b"]


def test_csv_video_path_column_is_relative_to_the_csv(tmp_path):
    with open(tmp_path / "data.csv", "w", newline="") as f:
        csv.writer(f).writerows([["video_path", "text"], ["clips/x.mp4", "hello"], ["y.mov", "world"]])
    inputs = find_inputs(tmp_path / "data.csv")
    assert [(v.path, v.stem) for v in inputs] == [(tmp_path / "clips/x.mp4", "x"), (tmp_path / "y.mov", "y")]


def test_csv_without_video_path_column_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text("uid,text\na,b\n")
    with pytest.raises(SourceError, match="no 'video_path' column"):
        find_inputs(tmp_path / "data.csv")


def test_two_inputs_with_one_stem_are_refused(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.avi").write_bytes(b"x")
    with pytest.raises(SltdataError, match="both be written as a.pose"):
        find_inputs(tmp_path)


def test_subsampling_25_to_10_fps_keeps_every_2_5th_frame():
    assert [i for i in range(10) if keep_frame(i, 25.0, 10.0)] == [0, 3, 5, 8]
    assert all(keep_frame(i, 25.0, None) for i in range(5))
    assert all(keep_frame(i, 25.0, 30.0) for i in range(5))


def test_without_mediapipe_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backends, "_has_module", lambda name: False)
    with pytest.raises(SltdataError, match=r"pip install 'sltdata\[extract\]'") as e:
        resolve_backend(HolisticConfig())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("verbose", [False, True])
def test_mediapipe_native_logs_are_silenced_unless_verbose(monkeypatch, tmp_path, verbose):
    for name in backends.QUIET_NATIVE_LOGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(backends, "_has_module", lambda name: False)  # stop right after the env is set
    from sltdata.cli import main

    args = ["extract", str(tmp_path), "--out", str(tmp_path / "out")] + (["--verbose"] if verbose else [])
    assert main(args) == 2
    got = {name: os.environ.get(name) for name in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")}
    assert got == ({"GLOG_minloglevel": None, "TF_CPP_MIN_LOG_LEVEL": None} if verbose
                   else {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_a_log_level_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("GLOG_minloglevel", "0")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    backends.quiet_native_logs()
    assert (os.environ["GLOG_minloglevel"], os.environ["TF_CPP_MIN_LOG_LEVEL"]) == ("0", "2")


NATIVE_NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                b"W0000 00:00:1795900773.483029   12634 inference_feedback_manager.cc:114] Feedback manager ...\n"
                b"I1128 21:14:46.000000   12634 graph.cc:1] started\n")
KEPT = b"E0000 00:00:1795900773.5   12634 calculator.cc:9] a real error\nWARNING: sltdata's own warning\n"


def test_native_log_filter_drops_mediapipe_noise_and_keeps_the_rest(capfd):
    import subprocess
    import sys

    from sltdata.extract.quiet import native_log_filter

    with native_log_filter():
        os.write(2, NATIVE_NOISE + KEPT)
        child = f"import os; os.write(2, {NATIVE_NOISE + b'from a worker process' + bytes([10])!r})"
        subprocess.run([sys.executable, "-c", child], check=True)  # workers inherit the filtered fd 2
        print("python's stderr goes straight through", file=sys.stderr)
    err = capfd.readouterr().err
    assert sorted(err.splitlines()) == sorted(KEPT.decode().splitlines()
                                              + ["from a worker process", "python's stderr goes straight through"])


def test_verbose_leaves_native_logs_alone(capfd):
    from sltdata.extract.quiet import native_log_filter

    with native_log_filter(enabled=False):
        os.write(2, NATIVE_NOISE)
    assert capfd.readouterr().err.encode() == NATIVE_NOISE


def test_cli_help_lists_extract_without_importing_mediapipe():
    import subprocess
    import sys

    code = ("import sys; from sltdata.cli import main; rc = main(['--help']); "
            "print(rc, 'mediapipe' in sys.modules, 'cv2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "extract" in out and out.strip().endswith("0 False False")


# --- tasks backend: only what runs offline (the .task bundle is the user's) --------------------------


def test_tasks_backend_without_task_model_is_a_clear_error():
    pytest.importorskip("mediapipe")
    if not backends.tasks_available():
        pytest.skip("this mediapipe has no HolisticLandmarker")
    with pytest.raises(SltdataError, match="needs --task-model PATH"):
        resolve_backend(HolisticConfig(backend="tasks"))


def test_tasks_backend_with_missing_task_file_is_a_clear_error(tmp_path):
    pytest.importorskip("mediapipe")
    if not backends.tasks_available():
        pytest.skip("this mediapipe has no HolisticLandmarker")
    with pytest.raises(SltdataError, match="no such file"):
        resolve_backend(HolisticConfig(task_model=str(tmp_path / "holistic_landmarker.task")))


def test_tasks_backend_with_a_file_that_is_no_task_bundle_is_a_clear_error(tmp_path):
    pytest.importorskip("mediapipe")
    if not backends.tasks_available():
        pytest.skip("this mediapipe has no HolisticLandmarker")
    bad = tmp_path / "holistic_landmarker.task"
    bad.write_bytes(b"not a model bundle")
    with pytest.raises(SltdataError, match="not a usable HolisticLandmarker bundle"):
        backends.make_holistic(HolisticConfig(task_model=str(bad)))


def test_model_complexity_without_its_model_file_is_a_clear_error():
    pytest.importorskip("mediapipe")
    if not backends.legacy_available():
        pytest.skip("no legacy Holistic")
    if backends.pose_model_path(0).is_file():
        pytest.skip("pose_landmark_lite.tflite is installed here")
    with pytest.raises(SltdataError, match="--model-complexity 0 needs .*pose_landmark_lite.tflite"):
        resolve_backend(HolisticConfig(model_complexity=0))


# --- MediaPipe Holistic on a real photograph -------------------------------------------------------

FACE, LEFT, POSE, RIGHT = slice(0, 468), slice(468, 489), slice(489, 522), slice(522, 543)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """astronaut.mp4 (8 frames, 25 fps), a garbage file and a truncated copy, extracted once."""
    pytest.importorskip("mediapipe")
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    if not backends.legacy_available():
        pytest.skip("the proof runs on the legacy Holistic (mediapipe==0.10.21)")
    from sltdata.extract import extract
    from sltdata.testing.video import astronaut, write_clip, write_truncated

    root = tmp_path_factory.mktemp("extract")
    videos = root / "videos"
    videos.mkdir()
    clip = write_clip(videos / "astronaut.mp4", astronaut(), frames=8, fps=25.0)
    (videos / "garbage.mp4").write_bytes(b"\x00\x01 this is not a video " * 64)
    write_truncated(clip, videos / "cut.mp4")
    result = extract(videos, root / "poses")
    return root, result


def read_pose(path):
    from pose_format import Pose

    return Pose.read(path.read_bytes())


def test_holistic_finds_face_and_pose_in_every_frame_and_no_hands(run):
    root, _ = run
    pose = read_pose(root / "poses" / "astronaut.pose")
    conf = np.asarray(pose.body.confidence)[:, 0]  # pose-format order: pose 33, face 468, hands 21+21, world 33
    assert pose.body.data.shape == (8, 1, 576, 3)
    assert (conf[:, :33] > 0).all()
    assert (conf[:, 33:501] == 1).all()
    assert (conf[:, 501:543] == 0).all()  # the photo shows no hands


def test_pose_file_has_load_holistic_header_and_video_facts(run):
    from pose_format.utils.holistic import holistic_components

    root, _ = run
    pose = read_pose(root / "poses" / "astronaut.pose")
    want = holistic_components("XYZC", 0)
    assert [(c.name, c.points, c.limbs) for c in pose.header.components] == \
           [(c.name, c.points, c.limbs) for c in want]
    assert (pose.header.dimensions.width, pose.header.dimensions.height, pose.body.fps) == (512, 512, 25.0)


def test_points_match_pose_format_load_holistic_on_the_same_frames(run):
    from pose_format.utils.holistic import load_holistic

    from sltdata.testing.video import astronaut

    root, _ = run
    ours = read_pose(root / "poses" / "astronaut.pose")
    # The clip went through mp4v compression; feed load_holistic the decoded frames, as extract saw them.
    from sltdata.extract.video import VideoInput, open_video

    _, frames = open_video(VideoInput(root / "videos" / "astronaut.mp4", "astronaut"))
    ref = load_holistic(list(frames), fps=25.0, width=512, height=512, reuse=False)
    assert astronaut().shape == (512, 512, 3)
    np.testing.assert_allclose(np.asarray(ours.body.data), np.asarray(ref.body.data, dtype=np.float32),
                               rtol=0, atol=1e-2)
    np.testing.assert_array_equal(np.asarray(ours.body.confidence) > 0, np.asarray(ref.body.confidence) > 0)


def test_ingest_pose_stores_face_and_pose_in_holistic_543_slots(run):
    from sltdata.ingest import ingest
    from sltdata.store import Store

    root, _ = run
    (root / "poses_root").mkdir(exist_ok=True)
    data_root = root / "poses_root"
    (data_root / "poses").mkdir(exist_ok=True)
    (data_root / "poses" / "astronaut.pose").write_bytes((root / "poses" / "astronaut.pose").read_bytes())
    (data_root / "data.csv").write_text("uid,text\nastronaut,hello from orbit\n")
    result = ingest("pose", data_root, root / "store")
    assert (result.stored, result.rejected) == (1, 0)
    seq = Store(root / "store").get("astronaut")
    x = seq.landmarks
    assert (seq.layout, x.shape, seq.text) == ("holistic-543", (8, 543, 3), "hello from orbit")
    assert not np.isnan(x[:, FACE]).any() and not np.isnan(x[:, POSE]).any()
    assert np.isnan(x[:, LEFT]).all() and np.isnan(x[:, RIGHT]).all()
    nose, face = x[:, 489, :2], x[:, FACE, :2]  # pose point 0 is the nose: inside the face mesh, in pixels
    assert ((nose > face.min(axis=1)) & (nose < face.max(axis=1))).all()


def test_garbage_and_truncated_videos_are_quarantined_with_reason(run):
    root, result = run
    lines = [json.loads(s) for s in (root / "poses" / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["pose"], q["reason"].split(" (")[0]) for q in lines] == [
        ("cut.pose", "OpenCV cannot open it"), ("garbage.pose", "OpenCV cannot open it")]
    assert (result.count("written"), result.count("quarantined")) == (1, 2)
    assert sorted(p.name for p in (root / "poses").iterdir()) == ["astronaut.pose", "astronaut.pose.json",
                                                                   "quarantine.jsonl"]
    side = json.loads((root / "poses" / "astronaut.pose.json").read_text())
    assert side["extractor"] == "mediapipe-holistic" and side["settings"]["backend"] == result.backend


def test_rerun_skips_complete_pose_files(run):
    from sltdata.extract import extract

    root, _ = run
    before = (root / "poses" / "astronaut.pose").read_bytes()
    again = extract(root / "videos", root / "poses")
    assert (again.count("skipped"), again.count("written"), again.count("quarantined")) == (1, 0, 2)
    assert (root / "poses" / "astronaut.pose").read_bytes() == before


def test_fps_option_subsamples_and_sets_the_header_rate(run, tmp_path):
    from sltdata.extract import extract

    root, _ = run
    extract(root / "videos" / "astronaut.mp4", tmp_path, fps=10.0)
    pose = read_pose(tmp_path / "astronaut.pose")
    assert (pose.body.data.shape[0], pose.body.fps) == (3, 10.0)


def test_image_folder_is_one_sequence_with_refined_face(run, tmp_path):
    import cv2

    from sltdata.extract import extract
    from sltdata.testing.video import astronaut

    folder = tmp_path / "frames" / "signer1"
    folder.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    result = extract(tmp_path / "frames", tmp_path / "out", HolisticConfig(refine_face=True))
    pose = read_pose(tmp_path / "out" / "signer1.pose")
    assert result.count("written") == 1
    assert (pose.body.data.shape, pose.body.fps) == ((2, 1, 586, 3), 25.0)
    assert (np.asarray(pose.body.confidence)[:, 0, 33:511] == 1).all()  # 478 face points, iris included


def test_two_workers_write_what_one_worker_writes(run, tmp_path):
    from sltdata.extract import extract
    from sltdata.testing.video import astronaut, write_clip

    src = tmp_path / "v"
    src.mkdir()
    for name in ("p", "q"):
        write_clip(src / f"{name}.mp4", astronaut(), frames=2)
    extract(src, tmp_path / "one", workers=1)
    result = extract(src, tmp_path / "two", workers=2)
    assert result.count("written") == 2
    for name in ("p", "q"):  # a video's output does not depend on which video its worker ran before
        assert (tmp_path / "one" / f"{name}.pose").read_bytes() == (tmp_path / "two" / f"{name}.pose").read_bytes()
