"""`sltdata quickstart`, the README's main job, runs every step on its own sample data."""

import json

import pytest

from sltdata.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quickstart_runs_every_step(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--sequences", "160"]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [ln.split("]")[0] + "]" for ln in lines if ln.startswith("[")]
    assert steps == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    assert "160 rows read, 160 stored, 0 rejected" in lines[1]
    metrics = json.loads((out / "runs" / "islr-tiny" / "eval-val" / "metrics.json").read_text())
    assert f"accuracy {metrics['accuracy']:.3f}" in next(ln for ln in lines if ln.startswith("[5]"))
    assert (out / "shards" / "index.json").is_file() and (out / "store" / "store.json").is_file()
