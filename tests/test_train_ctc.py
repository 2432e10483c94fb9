"""The ctc trainer: decoding, the character LM, masking, the competition metric, learning on synth
fingerspelling through `sltdata train`, and kill-and-resume with the LM's state."""

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, load_model, save_model

import sltdata.train.checkpoint as ckpt
from sltdata.cli import main
from sltdata.errors import ConfigError
from sltdata.testing.text import bundled_config, constant_phrase_baseline, split_texts, text_shards
from sltdata.train.config import load_config
from sltdata.train.metrics import text_metrics
from sltdata.train.runs import train
from trainers.common.ctc_decode import CharNgramLM, greedy_decode, prefix_beam_search
from trainers.ctc import CTCConfig, CTCModel

CHARS = {c: i for i, c in enumerate("abc")}      # blank = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(fingerspelling_store, tmp_path_factory):
    return text_shards(fingerspelling_store, tmp_path_factory.mktemp("fs-shards") / "shards", folds=4)


@pytest.fixture(scope="module")
def trained_run(shards, tmp_path_factory):
    """ctc-tiny through the CLI, validating on fold 0 with beam search and a 3-gram character LM."""
    run = tmp_path_factory.mktemp("ctc-run") / "run"
    rc = main(["train", "--trainer", "ctc", "--data", str(shards), "--config", "ctc-tiny", "--out", str(run),
               "--val-fold", "0", "--set", "model.decoder=beam", "--set", "model.lm_order=3",
               "--set", "model.beam_width=4"])
    assert rc == 0
    return run, json.loads((run / "summary.json").read_text())


def test_greedy_decode_merges_repeats_and_drops_blanks():
    ids = np.array([3, 0, 0, 3, 0, 1, 1, 3, 3, 2, 2, 2])
    assert greedy_decode(ids, len(ids), blank=3) == [0, 0, 1, 2]
    assert greedy_decode(ids, 3, blank=3) == [0]          # frames past the length are padding


def test_prefix_beam_search_finds_the_labelling_the_best_path_misses():
    # Two frames. Best path is blank,blank (0.36) -> "", but "a" has 0.6*0.4 + 0.4*0.6 + 0.4*0.4 = 0.64.
    p = np.array([[0.4, 1e-6, 1e-6, 0.6], [0.4, 1e-6, 1e-6, 0.6]])
    logp = np.log(p / p.sum(1, keepdims=True))
    assert greedy_decode(logp.argmax(1), 2, blank=3) == []
    assert prefix_beam_search(logp, blank=3, beam_width=4) == [0]


def test_character_lm_breaks_a_tie_the_frames_leave_open():
    lm = CharNgramLM(CHARS, order=3)
    lm.observe(["abc", "abc", "abcabc", "ab"])
    # frames: a certain, then b or c equally likely, then blank
    p = np.array([[0.98, 0.005, 0.005, 0.01], [0.005, 0.49, 0.49, 0.015], [0.01, 0.01, 0.01, 0.97]])
    logp = np.log(p)
    assert lm.score("ab") > lm.score("ac")
    assert prefix_beam_search(logp, 3, 8, lm, lm_weight=1.0) == [0, 1]
    assert lm.log_probs((0,)).shape == (4,) and np.isclose(np.exp(lm.log_probs((0,))).sum(), 1.0)


def test_character_lm_state_travels_with_the_weights(tmp_path):
    cfg = CTCConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, decoder="beam", lm_order=2)
    a = CTCModel(cfg, 6, CHARS, CharNgramLM(CHARS, 2))
    a.lm.observe(["abc", "cab", "abc"])
    a.lm.set_train_progress(1)                         # collection closes after the first epoch
    a.lm.observe(["ccc"])
    save_model(a, str(tmp_path / "w.safetensors"))
    b = CTCModel(cfg, 6, CHARS, CharNgramLM(CHARS, 2))
    missing, unexpected = load_model(b, str(tmp_path / "w.safetensors"))
    assert not missing and not unexpected
    assert list(b.lm.phrases) == ["abc", "cab"] and not b.lm.collecting
    assert b.lm.score("abc") == a.lm.score("abc")


@pytest.mark.parametrize("arch", ["cnn-transformer", "conformer"])
def test_padded_frames_never_change_the_real_frames_logits(arch):
    torch.manual_seed(0)
    cfg = CTCConfig(arch=arch, dim=16, stages=1, conv_per_stage=2, kernel_size=3, heads=2, drop=0.0,
                    attn_drop=0.0, head_drop=0.0)
    model = CTCModel(cfg, 6, CHARS, None).eval()
    x = torch.randn(1, 7, 6)
    padded = torch.cat([x, torch.randn(1, 5, 6) * 100], 1)
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[:, :7] = True
    short, m_short = model(x, torch.ones(1, 7, dtype=torch.bool))
    long, m_long = model(padded, mask)
    assert m_long.sum() == 7 and torch.allclose(short, long[:, :7], atol=1e-5)


def test_subsampling_halves_the_ctc_steps_and_keeps_lengths():
    cfg = CTCConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, subsample=2)
    model = CTCModel(cfg, 6, CHARS, None).eval()
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :9], mask[1, :4] = True, True
    logits, m = model(torch.randn(2, 9, 6), mask)
    assert logits.shape == (2, 5, 4) and m.sum(1).tolist() == [5, 2]


def test_metric_is_the_competition_normalized_levenshtein_score():
    m = text_metrics(["abd", "help", "xyz"], ["abc", "hello", "xyz"])
    assert m["score"] == pytest.approx(1 - (1 + 2 + 0) / (3 + 5 + 3))
    assert m["cer"] == pytest.approx((1 / 3 + 2 / 5 + 0) / 3)
    assert m["exact_match"] == pytest.approx(1 / 3)


def test_lm_order_without_beam_search_is_a_config_error():
    with pytest.raises(ConfigError, match="decoder: beam"):
        load_config({"model": {"lm_order": 3}}, model_class=CTCConfig)


def test_tiny_ctc_model_spells_synth_phrases_far_above_the_constant_phrase_baseline(shards, trained_run):
    # Fold 0 holds signers never trained on. The baseline predicts one training phrase for every
    # sequence (synth phrases are all distinct, so the best-scoring one): it scores ~0.13 here.
    run, summary = trained_run
    phrase, baseline = constant_phrase_baseline(split_texts(shards, ["fold1", "fold2", "fold3"]),
                                                split_texts(shards, ["fold0"]))
    assert baseline < 0.2
    val = summary["val"]
    assert summary["best"] >= 0.3 >= baseline + 0.1, (phrase, baseline, summary)
    assert val["greedy_score"] >= 0.25                      # without the LM, too
    # every training sample is counted each epoch; none of the synth phrases outruns its frames
    ends = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "epoch_end" in x]
    per_epoch = len(split_texts(shards, ["fold1", "fold2", "fold3"])) // 16 * 16
    assert [(r["train_samples"], r["train_too_short"]) for r in ends] == [(per_epoch, 0)] * len(ends)
    assert val["too_short"] == 0.0
    assert (run / "character_to_prediction_index.json").is_file()


def test_evaluate_writes_predictions_beside_references(shards, trained_run):
    run, _ = trained_run
    assert main(["evaluate", str(run), "--data", str(shards), "--split", "val"]) == 0
    rows = list(csv.DictReader((run / "eval-val" / "predictions.csv").open(encoding="utf-8")))
    assert set(rows[0]) == {"key", "reference", "prediction", "greedy", "distance"}
    assert len(rows) == len(split_texts(shards, ["fold0"]))
    metrics = json.loads((run / "eval-val" / "metrics.json").read_text())
    assert set(metrics) >= {"score", "cer", "exact_match", "greedy_score"}


class Killed(Exception):
    pass


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one_lm_included(shards, tmp_path, monkeypatch):
    # Killed mid-epoch 0 (checkpoint_every: 2), while the LM is still collecting training phrases.
    cfg = bundled_config("ctc-tiny", train={"epochs": 2, "checkpoint_every": 2},
                         model={"dim": 32, "decoder": "beam", "lm_order": 2, "beam_width": 2, "drop": 0.1})
    whole = train("ctc", shards, tmp_path / "whole", cfg, val_fold=0)
    real, calls = ckpt.save_last, []

    def save_then_die(model, state, directory, step):
        real(model, state, directory, step)
        calls.append(step)
        if len(calls) == 1:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(ckpt, "save_last", save_then_die)
        with pytest.raises(Killed):
            train("ctc", shards, tmp_path / "run", cfg, val_fold=0)
    partial = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))["lm._extra_state"]
    resumed = train("ctc", shards, tmp_path / "run", None, resume=True)
    assert resumed["global_step"] == whole["global_step"] and resumed["val"] == whole["val"]
    a = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "whole" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert 0 < len(partial) < len(a["lm._extra_state"])      # the kill came mid-collection
    lm = CharNgramLM(CHARS, 2)
    lm.set_extra_state(a["lm._extra_state"])
    train_texts = split_texts(shards, ["fold1", "fold2", "fold3"])
    seen = len(train_texts) // 16 * 16                       # drop_last: epoch 0's full batches of 16
    assert set(lm.phrases) <= set(train_texts) and len(lm.phrases) == seen
