"""`sltdata predict`: the run's own preprocessing on new inputs agrees with `evaluate` on the same
sequences once ingested (synth store; real video, .pose and ISLR parquet from shared/realdata)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sltdata.predict import Predictor, predict
from sltdata.testing import realdata_dir
from sltdata.testing.stores import store_from_sequences
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.runs import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REAL = realdata_dir()
needs_real = pytest.mark.skipif(REAL is None, reason="no shared/realdata beside the checkout (set SLTDATA_REALDATA)")


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("pred-shards") / "shards", folds=4, test_fraction=0.15)


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred-run") / "run"
    train("islr", shards, out, tiny_islr_config(train={"epochs": 2}), val_fold=0)
    return out


def evaluate_probs(run_dir: Path, shard_dir: Path, splits: list[str]) -> dict[str, np.ndarray]:
    """key -> softmax probabilities from the loop's ``evaluate`` (what `sltdata evaluate` runs)."""
    from sltdata.train.data import ShardData
    from sltdata.train.loop import evaluate
    from sltdata.train.runs import load_run

    trainer, cfg, info, model = load_run(run_dir)
    data = ShardData(shard_dir, cfg, trainer.target)
    data.use_run_maps(info, trainer.target)
    out = {}
    for split in splits:
        _, outputs = evaluate(trainer, model, data, split, cfg, torch.device("cpu"))
        probs = torch.softmax(outputs["logits"], -1).numpy()
        out.update(zip(outputs["key"], probs))
    return out


def as_probs(record: dict, labels: dict[str, int]) -> np.ndarray:
    p = np.zeros(len(labels))
    for x in record["predictions"]:
        p[labels[x["label"]]] = x["score"]
    return p


def test_predict_on_a_store_equals_evaluate(run, shards, islr_store):
    from sltdata.shards import ShardIndex
    from sltdata.shards.read import iter_samples

    ev = evaluate_probs(run, shards, ["test"])
    test_keys = [s.key for _, s in iter_samples(ShardIndex.open(shards), ["test"], arrays=False)]
    labels = Predictor(run).info.labels
    result = predict(run, [islr_store], keys=test_keys, top_k=len(labels), batch_size=7)
    assert not result.failures
    assert [r["key"] for r in result] == test_keys
    for r in result:
        scores = [p["score"] for p in r["predictions"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-5)
        np.testing.assert_allclose(as_probs(r, labels), ev[r["key"]], atol=1e-5)
        assert labels[r["predictions"][0]["label"]] == int(np.argmax(ev[r["key"]]))


def test_shard_directory_split_gives_the_same_as_the_store(run, shards, islr_store):
    from_shards = predict(run, [shards], split="test", top_k=3)
    keys = [r["key"] for r in from_shards]
    from_store = predict(run, [islr_store], keys=keys, top_k=3)
    from sltdata.shards import ShardIndex

    assert len(keys) == ShardIndex.open(shards).samples(["test"]) == 40
    for a, b in zip(from_shards, from_store):
        assert a["key"] == b["key"]
        assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
        np.testing.assert_allclose([p["score"] for p in a["predictions"]],
                                   [p["score"] for p in b["predictions"]], atol=1e-6)


def test_bad_inputs_fail_alone_with_their_reason(run, islr_store, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    key = predict(run, [islr_store], top_k=1, batch_size=1000).records[0]["key"]
    result = predict(run, [tmp_path / "missing.pose", tmp_path / "notes.txt", islr_store], keys=[key, "nope"])
    assert [r["key"] for r in result] == [key]
    assert [str(f) for f in result.failures][:2] == [
        f"{tmp_path / 'missing.pose'}: no such file or directory",
        f"{tmp_path / 'notes.txt'}: not a video, .pose, .parquet, sequence store or shard directory"]
    assert str(result.failures[2]).startswith(f"{islr_store}#nope: ") and "no sequence with key 'nope'" in str(
        result.failures[2])


def test_cli_json_lines_csv_and_exit_code(run, islr_store, tmp_path, capsys):
    from sltdata.cli import main

    key = predict(run, [islr_store], top_k=1).records[0]["key"]
    csv_path = tmp_path / "p.csv"
    assert main(["predict", str(run), str(islr_store), "--keys", key, "--json", "--top-k", "2",
                 "--out", str(csv_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rec = json.loads(lines[0])
    assert len(lines) == 1 and rec["input"] == str(islr_store) and rec["key"] == key
    assert len(rec["predictions"]) == 2 and rec["predictions"][0]["score"] >= rec["predictions"][1]["score"]
    rows = list(csv.DictReader(open(csv_path)))
    assert [(r["key"], r["rank"], r["label"]) for r in rows] == [(key, "1", rec["predictions"][0]["label"]),
                                                               (key, "2", rec["predictions"][1]["label"])]
    assert main(["predict", str(run), str(tmp_path / "gone.mp4"), str(islr_store), "--keys", key, "--json"]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert f"{tmp_path / 'gone.mp4'}: no such file or directory" in captured.err
    assert main(["predict", str(tmp_path), str(islr_store)]) == 2  # not a run: one error line, exit 2


# --- real data: a video, a .pose and an ISLR parquet, predicted and ingested -----------------------

@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    """The three real inputs, and a store of the same sequences made by `extract` and `ingest`."""
    if REAL is None:
        pytest.skip("no shared/realdata beside the checkout (set SLTDATA_REALDATA)")
    pytest.importorskip("mediapipe", reason="video extraction needs the extract extra")
    from sltdata.extract import extract
    from sltdata.ingest import ingest
    from sltdata.store import Store

    video = REAL / "video/datasets/autsl/signer0_sample1000_color.mp4"
    pose = REAL / "pose/datasets/autsl/signer0_sample1000.pose"
    row = next(csv.DictReader(open(REAL / "islr/train.csv")))
    parquet = REAL / "islr" / row["path"]
    work = tmp_path_factory.mktemp("real")
    # pose recipe: data.csv (uid,text) + poses/<uid>.pose; the video goes through `extract` first
    (work / "pose/poses").mkdir(parents=True)
    shutil.copy(pose, work / "pose/poses/real_pose.pose")
    (work / "videos").mkdir()
    shutil.copy(video, work / "videos/real_video.mp4")
    assert extract(work / "videos", work / "pose/poses").count("written") == 1
    (work / "pose/data.csv").write_text("uid,text\nreal_pose,x\nreal_video,x\n")
    # kaggle-islr recipe: train.csv + train_landmark_files/...
    (work / "islr" / row["path"]).parent.mkdir(parents=True)
    shutil.copy(parquet, work / "islr" / row["path"])
    (work / "islr/train.csv").write_text("path,participant_id,sequence_id,sign\n"
                                         f"{row['path']},{row['participant_id']},{row['sequence_id']},{row['sign']}\n")
    ingest("pose", work / "pose", work / "pose-store")
    ingest("kaggle-islr", work / "islr", work / "islr-store")
    seqs = {s.key: s for st in ("pose-store", "islr-store") for s in Store(work / st)}
    return {"video": (video, seqs["real_video"]), "pose": (pose, seqs["real_pose"]),
            "parquet": (parquet, seqs[row["sequence_id"]])}


@pytest.fixture(scope="module")
def real_evaluated(real_inputs, run, tmp_path_factory):
    """key -> evaluate's probabilities for the ingested real sequences (one store, two folds)."""
    import dataclasses

    from sltdata.shards import write_shards

    info = Predictor(run).info
    work = tmp_path_factory.mktemp("real-eval")
    # evaluate scores labelled shards in the run's ids: label each sequence with a sign of the run
    seqs = [dataclasses.replace(seq, label=info.class_names[0], participant=f"p{i}")
            for i, (_, seq) in enumerate(real_inputs.values())]
    store_from_sequences(seqs, work / "store", labels=info.labels)
    write_shards(work / "store", work / "shards", folds=2, test_fraction=0.0)
    return evaluate_probs(run, work / "shards", ["fold0", "fold1"])


@needs_real
@pytest.mark.parametrize("kind", ["video", "pose", "parquet"])
def test_real_input_agrees_with_evaluate_once_ingested(kind, real_inputs, real_evaluated, run):
    path, seq = real_inputs[kind]
    labels = Predictor(run).info.labels
    result = predict(run, [path], top_k=len(labels))
    assert not result.failures and len(result.records) == 1
    rec = result.records[0]
    assert rec["input"] == str(path) and rec["key"] == path.stem
    np.testing.assert_allclose(as_probs(rec, labels), real_evaluated[seq.key], atol=1e-5)
    assert labels[rec["predictions"][0]["label"]] == int(np.argmax(real_evaluated[seq.key]))


@needs_real
def test_a_pose_in_another_registered_layout_is_mapped_to_the_runs_layout(run):
    # the real OpenPose-137 file, predicted by a holistic-543 run: its hands and shared body points go
    # to the run's slots (map_layout), exactly as if the mapped sequence had been given
    from sltdata.layouts import HOLISTIC_543, map_layout
    from sltdata.predict import Item
    from sltdata.sources.pose import read_pose_file

    path = REAL / "pose" / "pose-format" / "openpose.pose"
    landmarks, layout, _ = read_pose_file(path)
    assert layout.name == "openpose-137"
    predictor = Predictor(run, device="cpu")
    got = predictor.predict([path], top_k=3)
    assert not got.failures and len(got.records) == 1
    mapped = Item(input=str(path), key="openpose", landmarks=map_layout(landmarks, layout, HOLISTIC_543),
                  layout=HOLISTIC_543)
    assert got.records[0]["predictions"] == predictor.predict_batch([mapped], top_k=3)[0]["predictions"]


def test_a_layout_with_no_mapping_fails_alone(run, islr_store, tmp_path):
    from sltdata.layouts import Component, Layout
    from sltdata.predict import Item

    predictor = Predictor(run, device="cpu")
    odd = Layout("custom-2", (Component("pose", ("a", "b")),))
    good = next(iter(predictor.predict([islr_store], keys=None, top_k=1).records))
    result = predictor.run([Item(input="odd.pose", key="odd", landmarks=np.zeros((3, 2, 3), np.float32), layout=odd)])
    assert not result.records and "layout custom-2: the run was trained on holistic-543 and no mapping" in str(
        result.failures[0])
    assert good["predictions"]
