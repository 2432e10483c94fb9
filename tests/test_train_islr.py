"""The islr trainer: architectures, masking, metrics, learning on synth shards, ONNX export."""

import json

import numpy as np
import pytest
import torch

from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.base import DatasetInfo
from sltdata.train.runs import export_run, train
from trainers.islr import ARCHS, ISLRConfig, ISLRModel, classification_metrics, write_classification_report


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("islr-shards") / "shards", folds=4, test_fraction=0.15)


@pytest.fixture(scope="module")
def trained_run(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("islr-run") / "run"
    summary = train("islr", shards, run, tiny_islr_config(), val_fold=0, test=True)
    return run, summary


def tiny_model(arch: str, seed: int = 0) -> ISLRModel:
    torch.manual_seed(seed)
    cfg = ISLRConfig(arch=arch, dim=16, stages=1, conv_per_stage=2, kernel_size=5, heads=2, drop=0.0,
                     attn_drop=0.0, late_dropout=0.0)
    return ISLRModel(cfg, feature_dim=10, num_classes=4, max_length=32)


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_gives_one_logit_row_per_sequence(arch):
    logits = tiny_model(arch)(torch.randn(3, 12, 10), torch.ones(3, 12, dtype=torch.bool))
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("training", [False, True])
def test_padded_frames_never_change_the_output(arch, training):
    model = tiny_model(arch).train(training)
    x = torch.randn(2, 9, 10)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    padded = torch.cat([x, 50 * torch.randn(2, 7, 10)], 1)  # garbage in the padding
    padded_mask = torch.cat([mask, torch.zeros(2, 7, dtype=torch.bool)], 1)
    torch.testing.assert_close(model(padded, padded_mask), model(x, mask), rtol=1e-4, atol=1e-5)


def test_late_dropout_is_off_before_its_epoch_and_on_after():
    cfg = ISLRConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, drop=0.0, attn_drop=0.0,
                     late_dropout=0.5, late_dropout_start_epoch=2)
    model = ISLRModel(cfg, feature_dim=10, num_classes=4).train()
    x, m = torch.randn(4, 8, 10), torch.ones(4, 8, dtype=torch.bool)
    model.late_dropout.set_train_progress(1)
    torch.testing.assert_close(model(x, m), model(x, m))
    model.late_dropout.set_train_progress(2)
    assert not torch.allclose(model(x, m), model(x, m))


def test_metrics_on_known_predictions():
    logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]  # predicts 0, 1, 2, 2
    m = classification_metrics(logits, np.array([0, 1, 2, 1]), 3)
    assert m["accuracy"] == 0.75 and m["micro_f1"] == 0.75
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_report_files_hold_predictions_per_class_accuracy_and_confusion(tmp_path):
    logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    write_classification_report(logits, np.array([0, 1, 2, 1]), ["a", "b", "c", "d"], ["x", "y", "z"], tmp_path)
    assert (tmp_path / "predictions.csv").read_text().splitlines()[4].startswith("d,y,z,")
    assert (tmp_path / "per_class.csv").read_text().splitlines()[2] == "y,2,0.50000"
    assert (tmp_path / "confusion_matrix.csv").read_text().splitlines()[2] == "y,0,1,1"


def test_tiny_cnn_transformer_learns_synth_signs_far_above_chance(trained_run):
    # 6 signs, balanced: chance is 1/6 ~ 0.17. Validation fold 0 holds participants never trained on
    # (participant-grouped folds); 12 epochs x ~4 steps of batch 32 on CPU.
    run, summary = trained_run
    chance, threshold = 1 / 6, 0.8
    assert summary["best"] >= threshold > 4 * chance
    assert summary["test"]["accuracy"] >= 0.6
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 1 and records[-1]["epoch_end"]


def test_onnx_export_gives_pytorch_logits(trained_run):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run, _ = trained_run
    path, diff = export_run(run, "onnx")
    assert path == run / "model.onnx" and path.is_file()
    assert diff is not None and diff < 1e-4


def test_dataset_info_round_trips_through_json(tmp_path):
    info = DatasetInfo(feature_dim=12, max_length=8, labels={"a": 0, "b": 1}, extra={"vocab": 3})
    info.save(tmp_path / "d.json")
    assert DatasetInfo.load(tmp_path / "d.json") == info and info.class_names == ["a", "b"]
