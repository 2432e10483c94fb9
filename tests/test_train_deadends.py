"""No dead ends on small runs: a schedule that fits the batches that run, one-cycle on any step count,
devices that exist or one error line, preconditions checked before training, run directories that a
re-run or --resume takes over after a failed start, fold counts the data can fill, help that lists
what is installed."""

import json

import numpy as np
import pytest
import torch

import sltdata.train.loop as loop
from sltdata.cli import main
from sltdata.errors import ConfigError
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.base import DatasetInfo
from sltdata.train.config import LoopConfig, load_config
from sltdata.train.data import TensorData
from sltdata.train.registry import bundled_config_names, trainer_class, trainer_entry_points
from sltdata.train.runs import train
from trainers.islr import ISLRConfig, ISLRTrainer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    """Four folds of about 60 sequences in shards of at most 16: uneven shard sizes."""
    return islr_shards(islr_store, tmp_path_factory.mktemp("deadends") / "shards", folds=4, max_samples_per_shard=16)


@pytest.fixture(scope="module")
def test_shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("deadends-test") / "shards", folds=4, test_fraction=0.15)


def one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


# --- the schedule spans the steps that run ----------------------------------------------------------

def test_schedule_plans_the_steps_two_loader_workers_really_yield(shards, tmp_path):
    sizes = sorted({s["samples"] for s in json.loads((shards / "index.json").read_text())["shards"]})
    assert len(sizes) > 1                                     # uneven shards: workers' partial batches differ
    events = []
    summary = train("islr", shards, tmp_path / "run",
                    tiny_islr_config(train={"epochs": 3}, data={"batch_size": 24, "num_workers": 2}), val_fold=0,
                    progress=events.append)
    planned = next(e for e in events if e["kind"] == "start")["total_steps"]
    train_samples = sum(json.loads((shards / "index.json").read_text())["splits"][f"fold{i}"]["samples"]
                        for i in (1, 2, 3))
    assert planned < 3 * (train_samples // 24)                # what planning from the sample count said
    assert summary["global_step"] == planned


def test_tensor_data_counts_its_batches_exactly():
    data = tensor_data(n=64)
    for drop_last, want in ((True, 3), (False, 4)):           # 48 training samples in batches of 14
        n = data.num_batches("train", epoch=0, train=True, batch_size=14, drop_last=drop_last)
        assert n == want == len(list(data.batches("train", 0, True, 14, drop_last=drop_last)))


# --- one-cycle on any step count --------------------------------------------------------------------

def tensor_data(n: int = 64, t: int = 8, d: int = 6, classes: int = 4) -> TensorData:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.randn(classes, t, d, generator=g)[y] + 0.5 * torch.randn(n, t, d, generator=g)
    info = DatasetInfo(feature_dim=d, max_length=t, labels={f"c{i}": i for i in range(classes)})
    return TensorData(x, torch.ones(n, t, dtype=torch.bool), y, {"train": np.arange(48), "val": np.arange(48, n)},
                      info)


def loop_config(**train):
    return load_config({"train": {"epochs": 6, **train}, "data": {"batch_size": 16},
                        "model": {"dim": 16, "stages": 1, "conv_per_stage": 1, "kernel_size": 3, "heads": 2}},
                       model_class=ISLRConfig)


def test_one_cycle_with_a_one_step_warmup_runs_nine_steps(tmp_path):
    # (9 + 1) x 0.1 == 1: torch's OneCycleLR divided by zero here
    summary = fit_run(tmp_path, loop_config(max_steps=9, warmup=0.1))
    assert summary["global_step"] == 9


def fit_run(tmp_path, cfg):
    return loop.fit(ISLRTrainer(), cfg, tensor_data(), tmp_path / "run")


def test_one_cycle_with_a_zero_length_warmup_starts_at_the_peak_and_ends_at_the_floor():
    from sltdata.train.optim import build_scheduler

    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    sched = build_scheduler(opt, LoopConfig(lr=1.0, warmup=0.1, min_lr_ratio=0.01), total_steps=9)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 1.0 and lrs[-1] == pytest.approx(0.01) and all(a > b for a, b in zip(lrs, lrs[1:]))


# --- devices ----------------------------------------------------------------------------------------

def test_cpu_and_auto_are_devices_here():
    assert loop.resolve_device("cpu") == torch.device("cpu")
    want = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert loop.resolve_device("auto") == want


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_on_a_machine_without_it_is_one_error_line(shards, tmp_path, capsys, device):
    err = one_line_error(capsys, ["train", "--data", str(shards), "--config", "islr-tiny", "--out",
                                  str(tmp_path / "run"), "--device", device])
    assert f"device {device!r}: not available here" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x"])
def test_an_unknown_device_is_one_error_line(shards, tmp_path, capsys, device):
    err = one_line_error(capsys, ["train", "--data", str(shards), "--config", "islr-tiny", "--out",
                                  str(tmp_path / "run"), "--device", device])
    assert err == f"error: device {device!r}: unknown (use auto, cpu, cuda or cuda:N)"


# --- preconditions before training --------------------------------------------------------------------

def test_test_without_a_test_split_fails_before_training(shards, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "train_epoch", lambda *a: pytest.fail("trained before checking --test"))
    with pytest.raises(ConfigError, match="has no held-out test split"):
        train("islr", shards, tmp_path / "run", tiny_islr_config(), val_fold=0, test=True)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_missing_validation_fold_fails_before_the_run_directory_is_written(shards, tmp_path):
    with pytest.raises(ConfigError, match="--val-fold 7"):
        train("islr", shards, tmp_path / "run", tiny_islr_config(), val_fold=7)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_a_trainer_without_its_targets_fails_before_training(shards, tmp_path):
    with pytest.raises(ConfigError, match="no character map; the ctc trainer needs a phrase"):
        train("ctc", shards, tmp_path / "run", None, val_fold=0)


# --- a failed start is not a dead end ---------------------------------------------------------------

class Killed(Exception):
    pass


def kill_in_first_epoch(monkeypatch):
    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(loop, "train_epoch", die)


CONFIG = tiny_islr_config(train={"epochs": 1})


def test_a_rerun_takes_over_a_run_killed_before_its_first_checkpoint(shards, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        kill_in_first_epoch(m)
        with pytest.raises(Killed):
            train("islr", shards, tmp_path / "run", CONFIG, val_fold=0)
    assert (tmp_path / "run" / "config.yaml").is_file()
    summary = train("islr", shards, tmp_path / "run", CONFIG, val_fold=0)
    assert summary["global_step"] > 0 and (tmp_path / "run" / "checkpoints" / "last.state.pt").is_file()


def test_resume_starts_over_a_run_killed_before_its_first_checkpoint(shards, tmp_path, monkeypatch):
    whole = train("islr", shards, tmp_path / "whole", CONFIG, val_fold=0)
    with monkeypatch.context() as m:
        kill_in_first_epoch(m)
        with pytest.raises(Killed):
            train("islr", shards, tmp_path / "run", CONFIG, val_fold=0)
    resumed = train("islr", shards, tmp_path / "run", None, resume=True)
    assert resumed["global_step"] == whole["global_step"] and resumed["val"] == whole["val"]


def test_a_directory_that_is_not_a_run_is_still_refused(shards, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and is not a run directory"):
        train("islr", shards, tmp_path / "run", CONFIG, val_fold=0)


# --- folds the data can fill ------------------------------------------------------------------------

def test_more_folds_than_members_per_label_is_one_line_naming_the_fix(tmp_path, capsys):
    from sltdata.testing import synth_store

    store = synth_store("kaggle-islr", tmp_path, sequences=24, classes=6, participants=6)  # 4 per sign
    err = one_line_error(capsys, ["shard", str(store), "--out", str(tmp_path / "shards"), "--folds", "5"])
    assert err == ("error: every label has fewer than 5 sequences (at most 4): stratified folds need "
                   "--folds 4 or fewer")


# --- help lists what is installed ---------------------------------------------------------------------

def help_text(capsys, command: str) -> str:
    assert main([command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_train_help_lists_every_bundled_recipe(capsys):
    text = help_text(capsys, "train")
    names = bundled_config_names()
    assert {"islr-default", "islr-tiny", "ctc-tiny"} <= set(names)
    for name in trainer_entry_points():
        assert f"{name}: {', '.join(trainer_class(name).bundled_configs()) or 'none'}" in text


def test_export_help_lists_every_format_per_trainer(capsys):
    text = help_text(capsys, "export")
    assert "islr: onnx" in text
    for name in trainer_entry_points():
        assert f"{name}: {', '.join(trainer_class(name).export_formats) or 'none'}" in text
