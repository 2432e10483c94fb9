"""Self-contained ONNX exports: the graph takes raw Kaggle landmarks (frames, 543, 3) with NaN and
gives what the run's PyTorch path gives (NumPy pipeline + model), on real ISLR sequences of 1 frame,
a few frames, exactly max_length and more; the maps travel in the metadata."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sltdata.cli import main
from sltdata.testing import realdata_dir
from sltdata.testing.text import text_shards
from sltdata.testing.train import islr_shards, recipe
from sltdata.train.base import DatasetInfo
from sltdata.train.export import (HEADS, check_lengths, check_raw_onnx, export_raw_onnx, read_metadata,
                                  run_raw)
from sltdata.train.runs import export_run, load_run, train
from sltdata.transforms import build_pipeline
from sltdata.transforms.torch_ops import RawPreprocess

pytestmark = pytest.mark.usefixtures("one_torch_thread")
for module in ("onnx", "onnxruntime", "onnxscript"):
    pytest.importorskip(module)



def realdata_islr() -> Path | None:
    """``shared/realdata/islr`` when the real files are here (``sltdata.testing.realdata_dir``)."""
    real = realdata_dir()
    return real / "islr" if real and (real / "islr" / "train.csv").is_file() else None


@pytest.fixture(scope="module")
def real_sequences() -> list[np.ndarray]:
    from sltdata.sources.kaggle_islr import read_islr_landmarks

    root = realdata_islr()
    if root is None:
        pytest.skip("real ISLR sequences absent: no shared/realdata/islr at or above the checkout")
    return [read_islr_landmarks(p) for p in sorted((root / "train_landmark_files").glob("*/*.parquet"))]


def real_of_length(seqs: list[np.ndarray], frames: int) -> np.ndarray:
    """``frames`` real frames: the real sequences end to end, repeated as needed, then cut."""
    whole = np.concatenate(seqs)
    return np.concatenate([whole] * (frames // len(whole) + 1))[:frames]


def lengths_to_check(m: int) -> dict[str, int]:
    return {"one": 1, "short": 7, "max_length": m, "longer": 3 * m + 11}


def with_empty_frames(lm: np.ndarray) -> np.ndarray:
    """Every third frame undetected (all NaN): frames the islr-1st and hands configs drop."""
    out = lm.copy()
    out[::3] = np.nan
    return out


@pytest.fixture(scope="module")
def islr_run(islr_store, tmp_path_factory):
    shards = islr_shards(islr_store, tmp_path_factory.mktemp("xr-islr") / "shards", folds=4)
    run = tmp_path_factory.mktemp("xr-islr-run") / "run"
    train("islr", shards, run, recipe("islr-tiny", train={"epochs": 2}), val_fold=0)
    path, diff = export_run(run, "onnx")
    return run, path, diff


@pytest.fixture(scope="module")
def ctc_run(fingerspelling_store, tmp_path_factory):
    shards = text_shards(fingerspelling_store, tmp_path_factory.mktemp("xr-fs") / "shards", folds=4)
    run = tmp_path_factory.mktemp("xr-ctc-run") / "run"
    train("ctc", shards, run, recipe("ctc-tiny", train={"epochs": 1}, transforms={"max_length": 40}), val_fold=0)
    path, diff = export_run(run, "onnx")
    return run, path, diff


def session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- the preprocessing module equals the NumPy pipeline -----------------------------------------------

@pytest.mark.parametrize("cfg", [
    {"preset": "islr-1st", "max_length": 48, "augment": False},
    {"preset": "hands", "max_length": 32, "temporal": {"resize": True, "drop_frames": "handless"}, "augment": False},
    {"preset": "islr-1st", "max_length": None, "motion": ["velocity", "lag2"], "augment": False,
     "temporal": {"fill_gaps": 3}, "normalize": {"center": "shoulders", "scale": "shoulders", "drop_z": False}},
])
def test_raw_preprocess_equals_the_numpy_pipeline_on_real_sequences(real_sequences, cfg):
    pipe, pre = build_pipeline(cfg), RawPreprocess(cfg)
    inputs = [*real_sequences, real_sequences[0][:1], with_empty_frames(real_of_length(real_sequences, 150))]
    for lm in inputs:
        want, want_mask = pipe(lm)
        got, got_mask = pre(torch.from_numpy(lm))
        n = len(want)
        assert got_mask[0, :n].tolist() == want_mask.tolist() and not got_mask[0, n:].any()
        assert np.array_equal(got[0, :n].numpy(), want)
        assert not got[0, n:].any()                       # the extra frames are zero padding


@pytest.mark.parametrize("handedness", ["right", "left"])
def test_raw_preprocess_mirrors_by_handedness_as_the_numpy_pipeline_does(real_sequences, handedness):
    cfg = {"preset": "hands", "max_length": 32, "augment": False, "normalize": {"handedness": handedness}}
    pipe, pre = build_pipeline(cfg), RawPreprocess(cfg)
    mirrored = set()
    for lm in real_sequences:
        for hide in (slice(468, 489), slice(522, 543)):  # no left hand, then no right hand
            one_handed = lm.copy()
            one_handed[:, hide] = np.nan
            want, _ = pipe(one_handed)
            got, _ = pre(torch.from_numpy(one_handed))
            assert np.array_equal(got[0, :len(want)].numpy(), want)
            mirrored.add(pipe.mirrored(one_handed))
    assert mirrored == {True, False}  # both branches of the rule were compared


# --- islr ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["one", "short", "max_length", "longer", "longer_with_empty_frames"])
def test_islr_onnx_on_raw_real_landmarks_gives_the_run_path_logits(islr_run, real_sequences, case):
    run, path, _ = islr_run
    _, _, info, model = load_run(run)
    frames = lengths_to_check(info.max_length)[case.replace("_with_empty_frames", "")]
    lm = real_of_length(real_sequences, frames)
    if case.endswith("empty_frames"):
        lm = with_empty_frames(lm)
    want = run_raw(model, info, HEADS["logits"], lm)
    got = session(path).run(None, {"landmarks": lm})[0]
    assert got.shape == (len(info.labels),)
    assert float(np.abs(got - want).max()) <= 1e-4
    assert int(got.argmax()) == int(want.argmax())


@pytest.mark.parametrize("case", ["one", "short", "max_length", "longer"])
def test_islr_onnx_on_raw_real_landmarks_agrees_with_sltdata_predict(islr_run, real_sequences, case):
    # the exported graph against the path a user runs: `sltdata predict`'s Predictor (its batched
    # collate and the trainer's predict), not a reference written for the test
    from sltdata.layouts import HOLISTIC_543
    from sltdata.predict import Item, Predictor

    run, path, _ = islr_run
    predictor = Predictor(run, device="cpu")
    lm = real_of_length(real_sequences, lengths_to_check(predictor.info.max_length)[case])
    want = predictor.outputs([Item(input="real", key="k", landmarks=lm, layout=HOLISTIC_543)])["logits"][0].numpy()
    got = session(path).run(None, {"landmarks": lm})[0]
    assert float(np.abs(got - want).max()) <= 1e-4
    assert int(got.argmax()) == int(want.argmax())
    record = predictor.predict_batch([Item(input="real", key="k", landmarks=lm, layout=HOLISTIC_543)], top_k=1)[0]
    assert record["predictions"][0]["label"] == predictor.info.class_names[int(got.argmax())]


def test_islr_export_reports_its_raw_difference_and_carries_the_label_map(islr_run):
    run, path, diff = islr_run
    _, _, info, _ = load_run(run)
    assert path == run / "model.onnx" and diff is not None and diff <= 1e-4
    meta = read_metadata(path)
    assert meta["labels"] == info.labels and meta["transform"] == info.transform
    assert (meta["layout"], meta["trainer"], meta["output"]) == ("holistic-543", "islr", "logits")


def test_input_is_named_landmarks_with_a_dynamic_frame_axis(islr_run):
    (inp,) = session(islr_run[1]).get_inputs()
    assert inp.name == "landmarks" and inp.type == "tensor(float)" and inp.shape[1:] == [543, 3]
    assert isinstance(inp.shape[0], str)


def test_export_cli_prints_the_raw_difference(islr_run, tmp_path, capsys):
    run = islr_run[0]
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'm.onnx'}" in out and "raw landmarks" in out


def test_a_diverging_export_is_an_error_naming_the_frames(islr_run):
    run, path, _ = islr_run
    _, _, info, model = load_run(run)
    with torch.no_grad():
        model.classifier.bias += 1e-3                     # PyTorch now disagrees with the file
    from sltdata.errors import ConfigError
    with pytest.raises(ConfigError, match="differs from PyTorch by .* on a sequence of 1 frames"):
        check_raw_onnx(model, info, HEADS["logits"], path)


# --- ctc ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["one", "short", "max_length", "longer", "longer_with_empty_frames"])
def test_ctc_onnx_on_raw_real_landmarks_gives_the_run_path_log_probs(ctc_run, real_sequences, case):
    run, path, _ = ctc_run
    _, _, info, model = load_run(run)
    frames = lengths_to_check(info.max_length)[case.replace("_with_empty_frames", "")]
    lm = real_of_length(real_sequences, frames)
    if case.endswith("empty_frames"):
        lm = with_empty_frames(lm)
    want = run_raw(model, info, HEADS["log_probs"], lm)
    got = session(path).run(None, {"landmarks": lm})[0]
    kept = int(build_pipeline(info.transform, info.layout)(lm)[1].sum())    # frames with a hand, at most max_length
    assert got.shape == want.shape == (kept, len(info.characters) + 1)
    if case.startswith("longer"):
        assert kept == info.max_length                    # resized to max_length (ctc-tiny: resize)
    assert float(np.abs(got - want).max()) <= 1e-4
    assert np.array_equal(got.argmax(-1), want.argmax(-1))


def test_ctc_export_carries_the_character_map(ctc_run):
    run, path, diff = ctc_run
    _, _, info, _ = load_run(run)
    meta = read_metadata(path)
    assert diff is not None and diff <= 1e-4
    assert meta["characters"] == info.characters and meta["output"] == "log_probs" and "labels" not in meta


# --- a model without max_length: the frame axis is dynamic inside the model too ----------------------

def test_islr_without_max_length_exports_with_a_dynamic_model_axis(real_sequences, tmp_path):
    from trainers.islr import ISLRConfig, ISLRModel

    cfg = {"preset": "islr-1st", "max_length": None, "augment": False}
    pipe = build_pipeline(cfg)
    info = DatasetInfo(feature_dim=pipe.feature_dim, max_length=None, labels={"a": 0, "b": 1, "c": 2},
                       layout="holistic-543", transform=pipe.cfg.to_dict())
    torch.manual_seed(0)
    model = ISLRModel(ISLRConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, drop=0.0,
                                 attn_drop=0.0), info.feature_dim, 3).eval()
    path = export_raw_onnx(model, info, tmp_path / "m.onnx", output="logits", trainer="islr")
    seqs = [real_of_length(real_sequences, n) for n in (1, 5, 90)]
    assert check_raw_onnx(model, info, HEADS["logits"], path, seqs) <= 1e-4
    assert check_lengths(info) == [1, 21, 64, 133]
