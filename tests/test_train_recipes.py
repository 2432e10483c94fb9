"""The ISLR first-place recipe complete: its schedule, training on every fold, seed ensembles
(averaged logits, evaluated and exported like a run), and seed 001's sixth architecture."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sltdata.cli import main
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train import checkpoint as ckpt
from sltdata.train.config import load_config
from sltdata.train.data import ShardData
from sltdata.errors import ConfigError
from sltdata.train.ensemble import Ensemble, make_ensemble
from sltdata.train.export import HEADS, example_batch, example_landmarks, run_raw
from sltdata.train.loop import evaluate
from sltdata.train.optim import build_scheduler
from sltdata.train.registry import bundled_config
from sltdata.train.runs import evaluate_run, export_run, load_run, train
from trainers.common.blocks import LinformerBlock
from trainers.islr import ARCHS, ISLRConfig, ISLRModel, ISLRTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, epochs", [("islr-default", 120), ("islr-1st-300", 300)])
def test_islr_recipes_start_at_the_published_peak_lr_with_no_warmup_or_clipping(name, epochs):
    cfg = load_config(bundled_config(name), model_class=ISLRConfig)
    assert (cfg.train.lr, cfg.data.batch_size, cfg.train.epochs, cfg.train.clip_grad) == (4e-3, 512, epochs, None)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = build_scheduler(opt, cfg.train, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(4e-3) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[50] == pytest.approx(4e-3 * (0.01 + 0.99 * 0.5), rel=1e-6)  # cosine half-way
    assert cfg.transforms.augment.spatial_mask.p == 0.5 and cfg.transforms.augment.crop.p == 1.0


# --- final models: every fold, several seeds, one ensemble -------------------------------------------

@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    return islr_shards(islr_store, tmp_path_factory.mktemp("recipe-shards") / "shards", folds=3)


@pytest.fixture(scope="module")
def seed_runs(shards, tmp_path_factory):
    """Two short runs on every fold that differ only by seed (the ensemble's members)."""
    root = tmp_path_factory.mktemp("seed-runs")
    runs = []
    for seed in (1, 2):
        cfg = tiny_islr_config(train={"epochs": 2, "seed": seed}, data={"val_fold": None})
        train("islr", shards, root / f"seed{seed}", cfg)
        runs.append(root / f"seed{seed}")
    return runs


def test_val_fold_none_trains_on_every_fold_and_keeps_the_last_weights(shards, tmp_path):
    run = tmp_path / "all-folds"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps(tiny_islr_config(train={"epochs": 2}, data={"val_fold": 0})))
    assert main(["train", "--data", str(shards), "--config", str(cfg), "--out", str(run), "--val-fold", "none"]) == 0
    assert load_config(run / "config.yaml").data.val_fold is None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and not any(k.startswith("val_") for r in records for k in r)
    best = load_file(ckpt.checkpoint_dir(run) / "best.safetensors")
    last = load_file(ckpt.checkpoint_dir(run) / "last.safetensors")
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)
    # every fold's samples were trained on: the step count covers all of them
    batch = tiny_islr_config()["data"]["batch_size"]
    assert records[-1]["step"] == 2 * (ShardData(shards, load_config(run / "config.yaml"), "label")
                                       .num_samples("train") // batch)


def test_val_fold_that_is_not_a_number_or_none_is_one_error_line(shards, tmp_path, capsys):
    assert main(["train", "--data", str(shards), "--config", "islr-tiny", "--out", str(tmp_path / "r"),
                 "--val-fold", "first"]) == 2
    assert capsys.readouterr().err.strip() == "error: --val-fold first: a fold number or 'none'"


@pytest.fixture(scope="module")
def ensemble_run(seed_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "run-e"
    assert main(["ensemble", *map(str, seed_runs), "--out", str(out)]) == 0
    return out


def test_ensemble_logits_are_the_mean_of_its_members_logits(seed_runs, ensemble_run):
    _, _, info, model = load_run(ensemble_run)
    assert isinstance(model, Ensemble) and len(model.members) == 2
    features, mask = example_batch(info, batch=4, seed=3)
    with torch.no_grad():
        members = [load_run(r)[3](features, mask) for r in seed_runs]
        got = model(features, mask)
    assert not torch.allclose(members[0], members[1])  # two seeds, two different models
    torch.testing.assert_close(got, (members[0] + members[1]) / 2, rtol=0, atol=1e-6)


def test_evaluate_scores_the_ensemble_on_its_averaged_logits(shards, seed_runs, ensemble_run, tmp_path):
    metrics, where = evaluate_run(ensemble_run, shards, split="fold1", out=tmp_path / "eval", device="cpu")
    logits = []
    for run in seed_runs:
        trainer, cfg, info, model = load_run(run)
        data = ShardData(shards, cfg, "label")
        logits.append(evaluate(trainer, model, data, "fold1", cfg, torch.device("cpu"))[1])
    keys, target = logits[0]["key"], logits[0]["target"].numpy()
    mean = ((logits[0]["logits"] + logits[1]["logits"]) / 2).numpy()
    assert metrics["accuracy"] == pytest.approx(float((mean.argmax(1) == target).mean()))
    names = info.class_names
    with (where / "predictions.csv").open() as f:
        rows = {r["key"]: r["prediction"] for r in csv.DictReader(f)}
    assert [rows[k] for k in keys] == [names[i] for i in mean.argmax(1)]


def test_ensemble_exports_to_one_onnx_graph_averaging_its_members(seed_runs, ensemble_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path, diff = export_run(ensemble_run, out=tmp_path / "e.onnx")
    assert diff is not None and diff < 1e-4
    # the graph takes the raw (frames, 543, 3) sequence, preprocesses it, and averages the members' logits
    info = load_run(ensemble_run)[2]
    session = ort.InferenceSession(str(path))
    for frames in (1, 9, 40):
        landmarks = example_landmarks(info, frames, seed=frames)
        got = session.run(None, {"landmarks": landmarks})[0]
        want = sum(run_raw(load_run(r)[3], info, HEADS["logits"], landmarks) for r in seed_runs) / 2
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_ensemble_refuses_members_with_different_label_maps(seed_runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(seed_runs[1], other)
    info = json.loads((other / "dataset.json").read_text())
    info["labels"] = {k: len(info["labels"]) - 1 - v for k, v in info["labels"].items()}
    (other / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="dataset.json labels differs"):
        make_ensemble([seed_runs[0], other], tmp_path / "e")
    assert not (tmp_path / "e").exists()


# --- seed 001's architectures --------------------------------------------------------------------

def small(arch: str, **kw) -> ISLRConfig:
    return ISLRConfig(arch=arch, dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, drop=0.0,
                      attn_drop=0.0, late_dropout=0.0, linformer_k=8, **kw)


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_learns_a_fixed_batch(arch):
    torch.manual_seed(0)
    model, trainer = ISLRModel(small(arch), feature_dim=10, num_classes=3, max_length=20), ISLRTrainer()
    lengths = torch.tensor([20, 15, 9, 20, 4, 12])
    batch = {"features": torch.randn(6, 20, 10), "mask": torch.arange(20)[None, :] < lengths[:, None],
             "target": torch.tensor([0, 1, 2, 0, 1, 2])}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = trainer.loss(model.train(), batch, model.cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_recurrent_blocks_have_192_units_per_direction_as_in_the_seed():
    for arch, rnn in (("cnn-bigru", torch.nn.GRU), ("cnn-bilstm", torch.nn.LSTM)):
        model = ISLRModel(ISLRConfig(arch=arch), feature_dim=10, num_classes=3)
        block = next(b for b in model.blocks if hasattr(b, "fwd"))
        assert isinstance(block.fwd, rnn) and (block.fwd.hidden_size, block.bwd.hidden_size) == (192, 192)
        x = torch.randn(2, 7, 192)
        out = block.eval()(x, torch.ones(2, 7, 1), None)
        f, _ = block.fwd(x)
        r, _ = block.bwd(x.flip(1))
        torch.testing.assert_close(out, x + block.proj(torch.cat([f, r.flip(1)], -1)))


def test_linformer_output_of_real_frames_ignores_what_and_how_much_padding_follows():
    torch.manual_seed(0)
    block = LinformerBlock(16, heads=2, k=8, max_frames=24, mlp_expand=2, drop=0.0, attn_drop=0.0).eval()
    x = torch.randn(1, 10, 16)
    m = torch.ones(1, 10, 1)
    want = block(x, m)
    padded = torch.cat([x, 100 * torch.randn(1, 14, 16)], 1)
    got = block(padded, torch.cat([m, torch.zeros(1, 14, 1)], 1))
    torch.testing.assert_close(got[:, :10], want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(block(torch.cat([x[:, :9], 100 * x[:, 9:]], 1), m)[:, 0], want[:, 0])  # real keys do count
    with pytest.raises(ValueError, match="25 frames"):
        block(torch.randn(1, 25, 16), torch.ones(1, 25, 1))


def test_linformer_needs_a_fixed_max_length():
    with pytest.raises(ConfigError, match="transforms.max_length"):
        ISLRModel(small("cnn-linformer"), feature_dim=10, num_classes=3, max_length=None)
