"""The seq2seq trainer: a tiny config-built T5 learns synth pose-to-text, local model directories
load offline, metrics, config errors, HF export."""

import csv
import json

import pytest
import torch

from sltdata.errors import ConfigError
from sltdata.testing import synth_store
from sltdata.testing.text import bundled_config, text_shards
from sltdata.train.base import DatasetInfo
from sltdata.train.config import load_config
from sltdata.train.runs import evaluate_run, export_run, train
from trainers.seq2seq import Seq2SeqConfig, Seq2SeqTrainer
from trainers.common.translation import translation_metrics

TINY_T5 = bundled_config("seq2seq-tiny")["model"]["model_config"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Synth pose-to-text: 120 sentences of 2-5 words from 8, 4 folds."""
    work = tmp_path_factory.mktemp("s2s-data")
    store = synth_store("pose", work, sequences=120, words=8, participants=4)
    return text_shards(store, work / "shards", folds=4)


@pytest.fixture(scope="module")
def trained_run(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("s2s-run") / "run"
    return run, train("seq2seq", shards, run, bundled_config("seq2seq-tiny"), val_fold=0)


def test_metrics_of_perfect_and_empty_output():
    refs = ["book drink go now", "who is deaf"]
    assert translation_metrics(refs, refs) == {"bleu": pytest.approx(100), "chrf": pytest.approx(100),
                                               "rougeL": pytest.approx(100)}
    assert translation_metrics(["", ""], refs) == {"bleu": 0.0, "chrf": 0.0, "rougeL": 0.0}


def test_tiny_t5_drives_loss_down_and_beats_empty_output_bleu(trained_run):
    # Empty output scores BLEU 0 (and chrF 0); validation fold 0 holds sentences never trained on.
    run, summary = trained_run
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if "loss" in r and "epoch_end" not in r]
    assert losses[-1] < 0.5 * losses[0]
    empty = translation_metrics([""] * 30, ["book drink"] * 30)["bleu"]
    assert empty == 0.0 and summary["best"] > empty + 0.5 and summary["val"]["chrf"] > 20   # ~2.2 and ~29 here
    assert (run / "tokenizer" / "tokenizer_config.json").is_file()


def test_evaluate_writes_predictions_beside_references(shards, trained_run):
    run, _ = trained_run
    metrics, out = evaluate_run(run, shards, split="val")
    assert set(metrics) == {"loss", "bleu", "chrf", "rougeL", "too_short"}
    rows = list(csv.DictReader((out / "predictions.csv").open(encoding="utf-8")))
    assert set(rows[0]) == {"key", "reference", "prediction", "sentence_bleu"} and all(r["reference"] for r in rows)


def test_hf_export_reloads_with_from_pretrained(trained_run, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    run, _ = trained_run
    path, _ = export_run(run, format="hf", out=tmp_path / "export")
    model = AutoModelForSeq2SeqLM.from_pretrained(str(path))
    assert model.config.d_model == TINY_T5["d_model"] and (path / "pose_projector.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(str(path))("go").input_ids[-1] == 1   # ByT5's </s>


def test_a_local_model_directory_loads_offline(tmp_path):
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, ByT5Tokenizer

    torch.manual_seed(0)
    d = {k: v for k, v in TINY_T5.items() if k != "model_type"}
    saved = AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model("t5", vocab_size=384, **d))
    saved.save_pretrained(str(tmp_path / "t5"))
    ByT5Tokenizer().save_pretrained(str(tmp_path / "t5"))
    model = Seq2SeqTrainer().build(Seq2SeqConfig(model=str(tmp_path / "t5")), DatasetInfo(feature_dim=12))
    assert torch.equal(model.hf.shared.weight, saved.shared.weight)
    assert model.projector.out.weight.shape == (TINY_T5["d_model"], 12)


def test_model_and_model_config_are_exclusive():
    with pytest.raises(ConfigError, match="exactly one"):
        load_config({"model": {"model": "t5-small", "model_config": {"model_type": "t5"}}}, model_class=Seq2SeqConfig)
    with pytest.raises(ConfigError, match="exactly one"):
        load_config({}, model_class=Seq2SeqConfig)


def test_a_decoder_only_model_is_refused_with_a_pointer_to_causal_lm():
    cfg = Seq2SeqConfig(model_config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1, "n_head": 2},
                        tokenizer="byt5")
    with pytest.raises(ConfigError, match="causal-lm"):
        Seq2SeqTrainer().build(cfg, DatasetInfo(feature_dim=4))
