"""Numbers a run reports that cannot mislead: macro-F1 over the classes that occur, top-k named by its
k, evaluation in the run's own label and character ids, the reference's weight decay, and a schedule
planned for the steps the loader really yields."""

import json
import shutil
import types

import numpy as np
import pytest
import torch
from torch import nn

from sltdata.errors import ConfigError
from sltdata.testing.text import bundled_config, text_shards
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.config import LoopConfig
from sltdata.train.runs import evaluate_run, train
from trainers.islr import classification_metrics


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- classification metrics -----------------------------------------------------------------------

def test_macro_f1_averages_over_the_classes_present_not_all_of_the_dataset():
    target = np.repeat(np.arange(10), 5)                   # 50 samples over 10 of 250 classes
    logits = np.eye(250, dtype=np.float32)[target]         # every prediction right
    m = classification_metrics(logits, target, 250)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["micro_f1"] == 1.0
    assert m["macro_f1_classes"] == 10


def test_macro_f1_counts_a_class_that_is_only_predicted():
    # targets 0, 0, 1, 1; predictions 0, 2, 1, 1: class 2 is never a target but is predicted once
    logits = np.eye(100, dtype=np.float32)[[0, 2, 1, 1]]
    m = classification_metrics(logits, np.array([0, 0, 1, 1]), 100)
    assert m["macro_f1_classes"] == 3
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_top_k_is_named_by_its_real_k_below_six_classes():
    # five classes: top-5 would be 1.0 whatever the model does, so it is top-4 and named so
    logits = np.array([[5, 4, 3, 2, 1], [5, 4, 3, 2, 1], [5, 4, 3, 2, 1]], dtype=np.float32)
    m = classification_metrics(logits, np.array([3, 4, 0]), 5)  # ranks 4, 5 and 1
    assert "top5_accuracy" not in m
    assert m["top4_accuracy"] == pytest.approx(2 / 3)


def test_top5_with_six_classes_or_more_and_no_top_k_with_two():
    logits = np.array([[6, 5, 4, 3, 2, 1]] * 2, dtype=np.float32)
    m = classification_metrics(logits, np.array([4, 5]), 6)  # ranks 5 and 6
    assert m["top5_accuracy"] == 0.5
    two = classification_metrics(np.array([[1, 0], [0, 1]], dtype=np.float32), np.array([0, 0]), 2)
    assert sorted(two) == ["accuracy", "macro_f1", "macro_f1_classes", "micro_f1"] and two["accuracy"] == 0.5


def test_unlabelled_samples_are_not_scored():
    logits = np.eye(3, dtype=np.float32)[[0, 1, 2]]
    m = classification_metrics(logits, np.array([0, 1, -100]), 3)
    assert m["accuracy"] == 1.0 and m["macro_f1_classes"] == 2


# --- evaluation in the run's ids --------------------------------------------------------------------

def copy_with_map(shards, dst, key: str, change) -> str:
    shutil.copytree(shards, dst)
    index = json.loads((dst / "index.json").read_text())
    index[key] = change(index[key])
    (dst / "index.json").write_text(json.dumps(index))
    return dst


def reversed_ids(m: dict) -> dict:
    names = sorted(m, key=m.get)
    return {name: i for i, name in enumerate(reversed(names))}


@pytest.fixture(scope="module")
def islr_run(islr_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-islr")
    shards = islr_shards(islr_store, tmp / "shards", folds=4)
    run = tmp / "run"
    train("islr", shards, run, tiny_islr_config(train={"epochs": 2}), val_fold=0)
    return shards, run


def test_evaluate_remaps_a_reordered_label_map_by_name(islr_run, tmp_path):
    shards, run = islr_run
    same, _ = evaluate_run(run, shards, split="val", out=tmp_path / "a")
    moved = copy_with_map(shards, tmp_path / "reordered", "labels", reversed_ids)
    other, _ = evaluate_run(run, moved, split="val", out=tmp_path / "b")
    assert other == same
    assert (tmp_path / "b" / "predictions.csv").read_text() == (tmp_path / "a" / "predictions.csv").read_text()


def test_evaluate_refuses_shards_that_name_other_signs(islr_run, tmp_path):
    shards, run = islr_run
    renamed = copy_with_map(shards, tmp_path / "renamed", "labels",
                            lambda m: {("zz-" + k if v == 0 else k): v for k, v in m.items()})
    with pytest.raises(ConfigError, match=r"label map names other labels than the run's \(only in the run: '"):
        evaluate_run(run, renamed, split="val", out=tmp_path / "c")


@pytest.fixture(scope="module")
def ctc_run(fingerspelling_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-ctc")
    shards = text_shards(fingerspelling_store, tmp / "shards", folds=4)
    run = tmp / "run"
    train("ctc", shards, run, bundled_config("ctc-tiny", train={"epochs": 1}), val_fold=0)
    return shards, run


def test_evaluate_remaps_a_reordered_character_map_by_name(ctc_run, tmp_path):
    shards, run = ctc_run
    same, _ = evaluate_run(run, shards, split="val", out=tmp_path / "a")
    moved = copy_with_map(shards, tmp_path / "reordered", "characters", reversed_ids)
    other, _ = evaluate_run(run, moved, split="val", out=tmp_path / "b")
    assert other == same  # the loss too, which reads the target ids


def test_evaluate_refuses_shards_with_other_characters(ctc_run, tmp_path):
    shards, run = ctc_run
    fewer = copy_with_map(shards, tmp_path / "fewer", "characters",
                          lambda m: {k: v for k, v in m.items() if v != max(m.values())})
    with pytest.raises(ConfigError, match="character map names other characters than the run's"):
        evaluate_run(run, fewer, split="val", out=tmp_path / "c")


# --- weight decay as the ISLR first place applied it -------------------------------------------------

def zero_grad_step(model: nn.Module, optimizer, scheduler=None) -> float:
    """One loop optimizer step with all-zero gradients (so only weight decay moves the weights);
    returns the learning rate the step used."""
    from sltdata.train.loop import optimizer_step

    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    lr = optimizer.param_groups[0]["lr"]
    session = types.SimpleNamespace(cfg=types.SimpleNamespace(train=LoopConfig(clip_grad=None)), raw=model,
                                    optimizer=optimizer, lookahead=None,
                                    scheduler=scheduler or types.SimpleNamespace(step=lambda: None))
    optimizer_step(session)
    return lr


@pytest.mark.parametrize("optimizer", ["radam-lookahead", "adamw"])
def test_lr_squared_decay_shrinks_every_weight_by_ratio_times_lr_squared(optimizer):
    from sltdata.train.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Linear(3, 2)                                   # a 2-d weight and a 1-d bias
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, LoopConfig(lr=0.1, weight_decay=0.1, weight_decay_mode="lr-squared",
                                            optimizer=optimizer))
    zero_grad_step(model, opt)
    for k, v in model.state_dict().items():                   # the bias decays too, as in tfa
        torch.testing.assert_close(v, before[k] * (1 - 0.1 * 0.1 ** 2), rtol=1e-6, atol=0)


def test_lr_squared_decay_follows_the_schedule_step_by_step():
    from sltdata.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w = model.weight.detach().clone().double()
    cfg = LoopConfig(lr=0.2, weight_decay=0.1, weight_decay_mode="lr-squared", optimizer="radam-lookahead",
                     schedule="onecycle", warmup=0.3)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    lrs = [zero_grad_step(model, opt, sched) for _ in range(10)]
    assert len(set(lrs)) > 5                                  # the lr really moved
    expected = w * np.prod([1 - 0.1 * lr ** 2 for lr in lrs])
    torch.testing.assert_close(model.weight.detach().double(), expected, rtol=1e-5, atol=0)


def test_decoupled_decay_is_torchs_and_spares_1d_params():
    from sltdata.train.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    zero_grad_step(model, build_optimizer(model, LoopConfig(lr=0.1, weight_decay=0.1, optimizer="adamw")))
    torch.testing.assert_close(model.weight.detach(), w * (1 - 0.1 * 0.1), rtol=1e-6, atol=0)
    assert torch.equal(model.bias.detach(), b)


def test_islr_default_is_the_first_place_decay():
    from sltdata.train.config import load_config
    from sltdata.train.registry import bundled_config

    tc = load_config(bundled_config("islr-default")).train
    assert (tc.weight_decay, tc.weight_decay_mode, tc.optimizer) == (0.1, "lr-squared", "radam-lookahead")
