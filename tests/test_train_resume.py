"""A run killed and resumed ends with the weights and metrics of an uninterrupted run."""

import json

import pytest
import torch
from safetensors.torch import load_file

import sltdata.train.checkpoint as ckpt
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.runs import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("resume-shards") / "shards", folds=4)


# dropout, late dropout, AWP and Lookahead on, so every piece of state the resume restores matters
CONFIG = tiny_islr_config(
    train={"epochs": 3, "optimizer": "radam-lookahead", "lookahead_k": 3, "awp_lambda": 0.05, "awp_start_epoch": 1,
           "checkpoint_every": 2},
    model={"drop": 0.1, "attn_drop": 0.1, "late_dropout_start_epoch": 1},
    data={"shuffle_buffer": 50})


class Killed(Exception):
    pass


def kill_after_saves(monkeypatch, n: int) -> None:
    """Make the n-th checkpoint write the last thing the run does, as a kill right after it would."""
    real, calls = ckpt.save_last, []

    def save_then_die(model, state, directory, step):
        real(model, state, directory, step)
        calls.append(step)
        if len(calls) == n:
            raise Killed

    monkeypatch.setattr(ckpt, "save_last", save_then_die)


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    return run, train("islr", shards, run, CONFIG, val_fold=0)


def weights(run):
    return load_file(str(run / "checkpoints" / "last.safetensors"))


@pytest.mark.parametrize("saves, where", [(3, "after the first epoch"), (4, "mid-epoch (checkpoint_every)")])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(shards, tmp_path, monkeypatch, uninterrupted,
                                                                 saves, where):
    whole_run, whole = uninterrupted
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        kill_after_saves(m, saves)
        with pytest.raises(Killed):
            train("islr", shards, run, CONFIG, val_fold=0)
    resumed = train("islr", shards, run, None, resume=True)
    assert resumed["global_step"] == whole["global_step"]
    assert resumed["val"] == whole["val"], where
    a, b = weights(run), weights(whole_run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), where
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(x)["step"] for x in (whole_run / "metrics.jsonl").read_text().splitlines()]


def test_resume_without_a_run_is_a_config_error(shards, tmp_path):
    from sltdata.errors import ConfigError

    with pytest.raises(ConfigError, match="no run to resume"):
        train("islr", shards, tmp_path / "empty", None, resume=True)
