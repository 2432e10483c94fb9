"""Run directories are URLs: ``train --out s3://...`` writes the run a local ``--out`` writes, a run
killed there resumes from the remote alone, and evaluate / predict / export / ensemble read it in place.

The server is moto's (``ThreadedMotoServer``) on 127.0.0.1, spoken to over HTTP by s3fs/botocore as a
real bucket would be; endpoint and (fake) keys come from the standard environment.
"""

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
torch = pytest.importorskip("torch")

import sltdata.train.checkpoint as ckpt  # noqa: E402
from sltdata import fs  # noqa: E402
from sltdata.cli import main  # noqa: E402
from sltdata.testing.s3 import moto_bucket  # noqa: E402
from sltdata.errors import ConfigError  # noqa: E402
from sltdata.predict import predict  # noqa: E402
from sltdata.testing.train import islr_shards, tiny_islr_config  # noqa: E402
from sltdata.train.runs import evaluate_run, export_run, load_run, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = tiny_islr_config(train={"epochs": 2})
# What differs between two runs of one seed: wall-clock figures and TensorBoard's file names (time, host).
NOT_REPRODUCIBLE = ("tensorboard/", "metrics.jsonl")


@pytest.fixture(scope="module")
def bucket():
    with moto_bucket("sltdata-runs") as url:
        yield url


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("s3run-shards") / "shards", folds=4, test_fraction=0.15)


@pytest.fixture(scope="module")
def local_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("s3run-local") / "run"
    return out, train("islr", shards, out, CONFIG, val_fold=0)


@pytest.fixture(scope="module")
def s3_run(bucket, shards, tmp_path_factory):
    """The same run through the CLI into ``s3://.../runs/r``."""
    config = tmp_path_factory.mktemp("s3run-config") / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    url = f"{bucket}/runs/r"
    assert main(["train", "--trainer", "islr", "--data", str(shards), "--config", str(config), "--out", url,
                 "--val-fold", "0"]) == 0
    return url


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _records(text: str) -> list[dict]:
    """metrics.jsonl without its wall-clock figure (samples/s)."""
    return [{k: v for k, v in json.loads(ln).items() if k != "samples_per_s"} for ln in text.splitlines()]


def test_a_run_on_s3_holds_the_files_of_the_same_run_trained_locally(s3_run, local_run, tmp_path):
    fs.download_dir(s3_run, tmp_path / "r")
    remote, local = _files(tmp_path / "r"), _files(local_run[0])
    def names(files):  # one TensorBoard events file, named by time and host
        return sorted("tensorboard/events" if n.startswith("tensorboard/") else n for n in files)

    assert names(remote) == names(local)
    assert {"config.yaml", "dataset.json", "summary.json", "checkpoints/last.json", "checkpoints/last.state.pt",
            "checkpoints/last.safetensors", "checkpoints/best.safetensors"} <= set(remote)
    same = {n: remote[n] == local[n] for n in remote if not n.startswith(NOT_REPRODUCIBLE)}
    assert all(same.values()), [n for n, ok in same.items() if not ok]
    assert json.loads(remote["checkpoints/last.json"])["step"] == local_run[1]["global_step"]
    assert _records(remote["metrics.jsonl"].decode()) == _records(local["metrics.jsonl"].decode())


class Killed(Exception):
    pass


def test_a_run_killed_on_s3_resumes_from_the_remote_and_ends_like_an_uninterrupted_run(bucket, shards, local_run,
                                                                                        monkeypatch, tmp_path):
    url = f"{bucket}/runs/killed"
    real = ckpt.save_last

    def save_then_die(*args, **kwargs):  # the first checkpoint is the last thing the run does
        real(*args, **kwargs)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(ckpt, "save_last", save_then_die)
        with pytest.raises(Killed):
            train("islr", shards, url, CONFIG, val_fold=0)
    s3, root = fs.url_to_fs(url)
    left = sorted(p[len(root) + 1:] for p in s3.find(root))
    assert left == ["checkpoints/best.safetensors", "checkpoints/last.json", "checkpoints/last.safetensors",
                    "checkpoints/last.state.pt", "config.yaml", "dataset.json", "metrics.jsonl"]
    first = json.loads(s3.cat_file(f"{root}/checkpoints/last.json"))["step"]
    assert 0 < first < local_run[1]["global_step"]
    assert [r["step"] for r in _records(s3.cat_file(f"{root}/metrics.jsonl").decode())][-1] == first

    resumed = train("islr", shards, url, None, resume=True)  # a fresh staging directory: only the remote
    whole_dir, whole = local_run
    assert (resumed["global_step"], resumed["val"], resumed["best"]) == (whole["global_step"], whole["val"],
                                                                          whole["best"])
    fs.download_dir(url, tmp_path / "r")
    for name in ("checkpoints/last.safetensors", "checkpoints/best.safetensors", "checkpoints/last.json"):
        assert (tmp_path / "r" / name).read_bytes() == (whole_dir / name).read_bytes(), name
    assert _records((tmp_path / "r" / "metrics.jsonl").read_text()) == _records(
        (whole_dir / "metrics.jsonl").read_text())


def test_evaluate_reads_a_run_on_s3_and_writes_its_report_there(s3_run, local_run, shards, tmp_path):
    here, _ = evaluate_run(local_run[0], shards, split="test", out=tmp_path / "eval")
    there, where = evaluate_run(s3_run, shards, split="test")
    assert there == here and here["accuracy"] > 0
    assert where == f"{s3_run}/eval-test"
    assert json.loads(fs.as_path(f"{where}/metrics.json").read_text()) == here


def test_the_evaluate_command_takes_a_run_url(s3_run, shards, capsys):
    assert main(["evaluate", s3_run, "--data", str(shards), "--split", "val", "--out",
                 f"{s3_run}-eval-val"]) == 0
    assert f"predictions and reports in {s3_run}-eval-val" in capsys.readouterr().out.replace("\n", "")
    assert fs.as_path(f"{s3_run}-eval-val/metrics.json").is_file()


def test_predict_from_a_run_on_s3_gives_the_local_runs_predictions(s3_run, local_run, shards):
    here = predict(local_run[0], [shards], split="test", top_k=3).records
    there = predict(s3_run, [shards], split="test", top_k=3).records
    assert len(here) > 0 and there == here


def test_export_writes_the_model_beside_a_run_on_s3(s3_run, local_run, tmp_path):
    pytest.importorskip("onnx")
    path, diff = export_run(s3_run, "onnx")
    assert path == f"{s3_run}/model.onnx" and diff is not None and diff < 1e-4
    local_path, _ = export_run(local_run[0], "onnx", out=tmp_path / "model.onnx")
    assert fs.as_path(path).read_bytes() == local_path.read_bytes()


def test_an_ensemble_of_runs_on_s3_is_written_to_s3_and_loads_from_there(s3_run, local_run, shards, bucket):
    from sltdata.train.ensemble import Ensemble, make_ensemble

    out = make_ensemble([s3_run, local_run[0]], f"{bucket}/runs/ens")
    assert out == f"{bucket}/runs/ens"
    spec = json.loads(fs.as_path(f"{out}/ensemble.json").read_text())
    assert spec["members"] == ["members/00", "members/01"] and spec["sources"][0] == s3_run
    _, _, info, model = load_run(out)
    assert isinstance(model, Ensemble) and len(model.members) == 2
    single, _ = evaluate_run(s3_run, shards, split="val", out=None)
    both, _ = evaluate_run(out, shards, split="val")  # two copies of one run: the same logits
    assert both["accuracy"] == single["accuracy"]
    assert both["loss"] == pytest.approx(single["loss"], abs=1e-6)


def test_a_url_that_holds_no_run_is_one_config_error_without_credentials(bucket):
    with pytest.raises(ConfigError) as e:
        load_run(f"{bucket}/runs/nothing-here")
    assert str(e.value) == "s3://sltdata-runs/runs/nothing-here: not a run directory (no config.yaml)"
    assert "testing" not in str(e.value)
