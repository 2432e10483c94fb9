"""The Fingerspelling 2nd-place recipe: the joint CTC + attention decoder (loss, exact CTC prefix
scores, joint decoding, training through `sltdata train`, export refused) and the ctc-fs2nd recipe."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sltdata.cli import main
from sltdata.testing.text import text_shards
from sltdata.train.config import load_config
from sltdata.transforms import build_pipeline
from trainers.common.joint_decoder import (CharDecoder, ctc_initial_state, ctc_prefix_scores, ctc_sequence_score,
                                           joint_beam_search)
from trainers.ctc import CTCConfig, CTCModel, CTCTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHARS = {c: i for i, c in enumerate("ab")}      # blank = 2, decoder start/end = 2


def collapse(path, blank):
    out = []
    for i, c in enumerate(path):
        if c != blank and (i == 0 or path[i - 1] != c):
            out.append(c)
    return tuple(out)


def brute_force(logp, blank):
    """{labelling: probability} over every frame path: the definition CTC scores are checked against."""
    probs = {}
    for path in itertools.product(range(logp.shape[1]), repeat=len(logp)):
        p = float(np.exp(sum(logp[t, c] for t, c in enumerate(path))))
        key = collapse(path, blank)
        probs[key] = probs.get(key, 0.0) + p
    return probs


def random_logp(t, v, seed):
    x = np.random.default_rng(seed).normal(size=(t, v)) * 1.5
    return x - np.log(np.exp(x).sum(1, keepdims=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_prefix_scores_are_the_exact_prefix_probabilities(seed):
    logp, blank = random_logp(4, 3, seed), 2
    probs = brute_force(logp, blank)
    chars = np.array([0, 1])
    state, prefix = ctc_initial_state(logp, blank), ()
    for step in (0, 0, 1):                                   # prefixes a, aa, aab: a repeat needs a blank
        psi, states = ctc_prefix_scores(logp, blank, state, prefix[-1] if prefix else None, chars)
        for c, p in zip(chars, psi):
            want = sum(q for lab, q in probs.items() if lab[:len(prefix) + 1] == (*prefix, int(c)))
            assert np.exp(p) == pytest.approx(want, rel=1e-9, abs=1e-15)
        prefix, state = (*prefix, step), states[step]
        assert np.exp(ctc_sequence_score(state)) == pytest.approx(probs.get(prefix, 0.0), rel=1e-9, abs=1e-15)


def test_joint_search_with_ctc_weight_1_finds_the_most_probable_labelling():
    # beam 8 over 2 characters and 3 frames keeps every hypothesis: the search is exhaustive
    torch.manual_seed(0)
    decoder = CharDecoder(2, 8, 1, 2, 2, 0.0).eval()
    for seed in range(4):
        logp = random_logp(3, 3, seed)
        probs = brute_force(logp, 2)
        best = max(probs, key=probs.get)
        memory, mask = torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool)
        assert tuple(joint_beam_search(decoder, memory, mask, logp, 2, beam=8, ctc_weight=1.0)) == best


def synthetic_batch():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 7:] = mask[2, 4:] = False
    target = torch.tensor([[0, 1, 1], [1, 0, -100], [0, -100, -100]])
    return {"features": torch.randn(3, 10, 6, generator=g), "mask": mask, "target": target,
            "target_lengths": torch.tensor([3, 2, 1]), "text": ["abb", "ba", "a"], "key": ["k0", "k1", "k2"]}


@pytest.mark.parametrize("weight", [0.25, 0.6])
def test_joint_loss_is_the_weighted_sum_of_ctc_and_attention_cross_entropy(weight):
    torch.manual_seed(0)
    cfg = CTCConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, drop=0.0, attn_drop=0.0,
                    head_drop=0.0, decoder="joint", ctc_weight=weight)
    model = CTCModel(cfg, 6, CHARS, None).eval()
    batch = synthetic_batch()
    # the reference terms, built by hand
    logits, mask = model(batch["features"], batch["mask"])
    ctc = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), batch["target"].clamp_min(0), mask.sum(1),
                     batch["target_lengths"], blank=2, zero_infinity=True)
    inputs = torch.tensor([[2, 0, 1, 1], [2, 1, 0, 0], [2, 0, 0, 0]])       # start, then the characters
    outputs = torch.tensor([[0, 1, 1, 2], [1, 0, 2, -100], [0, 2, -100, -100]])   # characters, then end
    states, _ = model.encode(batch["features"], batch["mask"])
    att = model.decoder(inputs, states, mask)
    ce = F.cross_entropy(att.reshape(-1, 3), outputs.reshape(-1), ignore_index=-100)
    loss = CTCTrainer().loss(model, batch, cfg)
    assert ctc.item() > 0.5 and ce.item() > 0.5
    assert loss.item() == pytest.approx(weight * ctc.item() + (1 - weight) * ce.item(), rel=1e-6)


def test_joint_predictions_are_strings_beside_greedy_ctc():
    torch.manual_seed(0)
    cfg = CTCConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, decoder="joint", beam_width=3)
    model = CTCModel(cfg, 6, CHARS, None).eval()
    with torch.no_grad():                                                 # as the loop runs it
        out = CTCTrainer().predict(model, synthetic_batch(), cfg)
    assert len(out["prediction"]) == len(out["greedy"]) == 3
    assert all(isinstance(p, str) and set(p) <= {"a", "b"} for p in out["prediction"])


def test_joint_weights_outside_0_1_are_a_config_error():
    from sltdata.errors import ConfigError
    with pytest.raises(ConfigError, match="ctc_weight"):
        load_config({"model": {"decoder": "joint", "ctc_weight": 1.5}}, model_class=CTCConfig)


@pytest.fixture(scope="module")
def joint_run(fingerspelling_store, tmp_path_factory):
    shards = text_shards(fingerspelling_store, tmp_path_factory.mktemp("fs2-shards") / "shards", folds=4)
    run = tmp_path_factory.mktemp("fs2-run") / "run"
    rc = main(["train", "--trainer", "ctc", "--data", str(shards), "--config", "ctc-tiny", "--out", str(run),
               "--val-fold", "0", "--set", "model.decoder=joint", "--set", "model.beam_width=2",
               "--set", "train.epochs=3"])
    assert rc == 0
    return shards, run


def test_tiny_joint_model_trains_and_decodes_strings(joint_run):
    shards, run = joint_run
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in x and "epoch_end" not in x and "val" not in x]
    assert losses and losses[-1] < losses[0]
    assert main(["evaluate", str(run), "--data", str(shards), "--split", "val"]) == 0
    rows = list(csv.DictReader((run / "eval-val" / "predictions.csv").open(encoding="utf-8")))
    assert rows and all(isinstance(r["prediction"], str) for r in rows)
    metrics = json.loads((run / "eval-val" / "metrics.json").read_text())
    assert set(metrics) >= {"score", "greedy_score"}


def test_onnx_export_of_a_joint_run_is_refused_with_one_line(joint_run, capsys):
    _, run = joint_run
    assert main(["export", str(run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "decoder: joint" in err[0]


def test_fs2nd_recipe_is_the_second_place_setup():
    from sltdata.testing.text import bundled_config
    cfg = load_config(bundled_config("ctc-fs2nd"), model_class=CTCConfig)
    t = cfg.transforms
    assert (t.preset, t.normalize.drop_z, t.normalize.handedness, t.max_length, t.temporal.resize) == \
        ("all", False, "right", 768, True)
    assert build_pipeline(t).feature_dim == 543 * 3 * (1 + len(t.motion))
    assert (cfg.model.decoder, cfg.model.ctc_weight) == ("joint", 0.25)
    assert cfg.train.awp_exclude == "bias-norm" and cfg.train.awp_lambda > 0
