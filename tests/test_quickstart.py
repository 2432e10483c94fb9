"""`sltdata quickstart`, the README's main job, runs every step on its own sample data."""

import json

import pytest

from sltdata.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quickstart_runs_every_step_and_scores_below_perfect_above_chance(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--sequences", "160"]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [ln.split("]")[0] + "]" for ln in lines if ln.startswith("[")]
    assert steps == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    assert "160 rows read, 160 stored, 0 rejected" in lines[1]
    assert "10 signs, 10 signers, some left-handed; calibrated against real captures" in lines[0]
    metrics = json.loads((out / "runs" / "islr-tiny" / "eval-val" / "metrics.json").read_text())
    trained = next(ln for ln in lines if ln.startswith("[5]"))
    assert f"accuracy {metrics['accuracy']:.3f}" in trained and "(chance 0.100)" in trained
    assert 0.2 < metrics["accuracy"] < 0.97  # learns, but realistic data is not separable by design
    assert any("the data is synthetic" in ln for ln in lines)
    assert (out / "shards" / "index.json").is_file() and (out / "store" / "store.json").is_file()
