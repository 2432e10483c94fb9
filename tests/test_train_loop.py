"""The shared loop on plain tensors (TensorData): early stopping, schedule length checks on resume."""

import json

import numpy as np
import pytest
import torch

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo
from sltdata.train.config import load_config
from sltdata.train.data import TensorData
from sltdata.train.loop import fit
from trainers.islr import ISLRConfig, ISLRTrainer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tensor_data(n: int = 64, t: int = 8, d: int = 6, classes: int = 4) -> TensorData:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.randn(classes, t, d, generator=g)[y] + 0.5 * torch.randn(n, t, d, generator=g)
    mask = torch.ones(n, t, dtype=torch.bool)
    info = DatasetInfo(feature_dim=d, max_length=t, labels={f"c{i}": i for i in range(classes)})
    return TensorData(x, mask, y, {"train": np.arange(48), "val": np.arange(48, n)}, info)


def config(model=None, **train):
    return load_config({"train": {"epochs": 6, **train}, "data": {"batch_size": 16},
                        "model": {"dim": 16, "stages": 1, "conv_per_stage": 1, "kernel_size": 3, "heads": 2,
                                  **(model or {})}}, model_class=ISLRConfig)


def test_early_stopping_ends_the_run_when_validation_stops_improving(tmp_path):
    # lr 0 and frozen batch-norm statistics: validation never improves after the first epoch, so
    # patience 2 stops after the third
    summary = fit(ISLRTrainer(), config({"bn_momentum": 0.0}, lr=0.0, early_stopping=2, schedule="constant",
                                        warmup=0.0),
                  tensor_data(), tmp_path / "run")
    epochs = [r["epoch"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if r.get("epoch_end")]
    assert epochs == [0, 1, 2] and summary["global_step"] == 9


def test_resume_with_a_different_schedule_length_is_refused(tmp_path):
    fit(ISLRTrainer(), config(epochs=1), tensor_data(), tmp_path / "run")
    with pytest.raises(ConfigError, match="planned for 3 steps, now 6"):
        fit(ISLRTrainer(), config(epochs=2), tensor_data(), tmp_path / "run", resume=True)


def test_gradient_accumulation_takes_one_optimizer_step_per_group_of_batches(tmp_path):
    summary = fit(ISLRTrainer(), config(epochs=1, grad_accum=3), tensor_data(), tmp_path / "run")
    assert summary["global_step"] == 1
