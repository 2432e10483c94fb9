"""DistributedDataParallel on CPU: two gloo processes under torchrun finish and start where one does."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.runs import train


def first_step_loss(run) -> float:
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    return first["loss"]


@pytest.mark.skipif(shutil.which("sltdata") is None, reason="sltdata console script not installed")
def test_two_gloo_processes_finish_and_match_single_process_first_loss(islr_store, tmp_path):
    shards = islr_shards(islr_store, tmp_path / "shards", folds=4, max_samples_per_shard=8)
    # global batch 32 either way: one process x 32, or two ranks x 16 (DDP averages their gradients)
    config = tiny_islr_config(train={"epochs": 2, "device": "cpu"})
    single = tmp_path / "single"
    train("islr", shards, single, config, val_fold=0)

    config["data"]["batch_size"] = 16
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           shutil.which("sltdata"), "train", "--data", str(shards), "--config", str(tmp_path / "ddp.yaml"),
           "--out", str(tmp_path / "ddp"), "--val-fold", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["global_step"] > 0 and (tmp_path / "ddp" / "checkpoints" / "last.safetensors").is_file()
    # same initial weights (seeded, broadcast by DDP), different samples per rank: within 5 %
    assert first_step_loss(tmp_path / "ddp") == pytest.approx(first_step_loss(single), rel=0.05)
