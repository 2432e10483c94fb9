"""Run directories: train into one, and evaluate / export from one without the training data's
config at hand (everything needed is saved there: config.yaml, dataset.json, checkpoints/)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from sltdata import fs, outputs
from sltdata.errors import ConfigError
from sltdata.shards import ShardError
from sltdata.train import checkpoint as ckpt
from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.config import RunConfig, load_config
from sltdata.train.ensemble import is_ensemble, load_ensemble
from sltdata.train.registry import bundled_configs, get_trainer

log = logging.getLogger(__name__)


def resolve_config(config: str | Path | dict | None) -> str | Path | dict | None:
    """A config file path, or the name of a recipe a registered trainer ships (``islr-tiny``)."""
    if config is None or isinstance(config, dict) or Path(config).is_file():
        return config
    found = bundled_configs()
    if str(config) not in found:
        raise ConfigError(f"{config}: no such config file or bundled recipe (bundled: {', '.join(found) or 'none'})")
    return found[str(config)]


def train(trainer_name: str, data_dir: str | Path, out: str | Path, config: str | Path | dict | None = None,
          overrides: list[str] | None = None, *, val_fold: int | None = None, epochs: int | None = None,
          test: bool = False, resume: bool = False, device: str | None = None, progress=None) -> dict:
    """What ``sltdata train`` does: resolve the config, open the shards, run the loop.

    ``out`` must be new, empty, or a run that stopped before its first checkpoint (a re-run starts
    it over); ``resume`` continues it from its last checkpoint, or starts it over with its own
    config when it has none. ``out`` may be a URL (``s3://bucket/runs/x``): the run is written to a
    local staging directory holding what the remote holds (so ``resume`` works from another
    machine), each file put to the remote as it is committed (config, dataset info, metrics and
    checkpoints), and the remote made to hold the whole run at the end."""
    if not fs.is_remote(out) and not fs.is_remote(data_dir):  # shards on object storage are never a run dir
        data_path = Path(data_dir)
        outputs.check_apart(out, [data_path if data_path.is_dir() else data_path.parent])
    with _staged_run(out, data_dir) as run_dir:
        return _train(trainer_name, data_dir, run_dir, out if fs.is_remote(out) else run_dir, config, overrides,
                      val_fold=val_fold, epochs=epochs, test=test, resume=resume, device=device, progress=progress)


@contextmanager
def _staged_run(out: str | Path, data_dir: str | Path) -> Iterator[Path]:
    """The local directory the run writes: ``out`` itself, or for a URL a staging directory
    (``fs.output_dir``) on rank 0. The other ranks of a ``torchrun`` only read the run (its
    checkpoint, to resume): they pull it, and never sync (an empty staging directory synced would
    empty the remote)."""
    if not fs.is_remote(out):
        yield Path(out)
    elif int(os.environ.get("RANK", "0")) == 0:
        with fs.output_dir(out, inputs=[data_dir]) as staging:
            yield staging
    else:
        with fs.input_files(out, lambda rel: not rel.startswith("tensorboard/")) as pulled:
            yield pulled


def _train(trainer_name: str, data_dir: str | Path, out: Path, shown: str | Path, config, overrides, *,
           val_fold, epochs, test, resume, device, progress) -> dict:
    """``train`` in the local run directory ``out``; messages name ``shown`` (the URL of a remote run)."""
    from sltdata.train.data import ShardData
    from sltdata.train.loop import fit

    trainer = get_trainer(trainer_name)
    shown = fs.display(shown)
    if resume:
        if not (out / "config.yaml").is_file():
            raise ConfigError(f"{shown}: no run to resume (config.yaml missing)")
        config = out / "config.yaml"  # the run's own resolved config; overrides still apply
        if not has_checkpoint(out):  # killed before its first checkpoint: start it over, same config
            log.warning("%s: no checkpoint yet; starting the run from the beginning", shown)
            resume = False
    elif out.exists() and any(out.iterdir()) and not started_without_checkpoint(out):
        if (out / "config.yaml").is_file():
            raise ConfigError(f"{shown}: run directory is not empty (use --resume to continue it)")
        raise ConfigError(f"{shown}: exists, is not empty and is not a run directory (no config.yaml); "
                          "choose another --out")
    extra = list(overrides or [])
    if val_fold is not None:
        extra.append(f"data.val_fold={val_fold}")
    if epochs is not None:
        extra.append(f"train.epochs={epochs}")
    if device is not None:
        extra.append(f"train.device={device}")
    cfg = load_config(resolve_config(config), extra, model_class=trainer.config_class)
    cfg.trainer = trainer_name
    data = ShardData(data_dir, cfg, trainer.target)
    if resume and (out / "dataset.json").is_file():
        check_data_matches_run(DatasetInfo.load(out / "dataset.json"), data.info, shown, data_dir)
    with outputs.faults_as_errors(out, "re-run with --resume to continue"):  # one line, not a traceback
        return fit(trainer, cfg, data, out, resume=resume, test=test, progress=progress)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run saved a resumable checkpoint (its ``last`` state)."""
    return ckpt.last_paths(ckpt.checkpoint_dir(run_dir))[1].is_file()


def started_without_checkpoint(run_dir: Path) -> bool:
    """A run directory that a start left before its first checkpoint (a failed start, a run killed in
    its first epoch): it holds the config the run writes first and nothing resumable, so a re-run
    may take it over instead of leaving the user a directory neither re-run nor --resume accepts."""
    return (run_dir / "config.yaml").is_file() and not has_checkpoint(run_dir)


_RUN_FACTS = ("labels", "characters", "layout", "feature_dim")


def check_data_matches_run(run: DatasetInfo, shards: DatasetInfo, run_dir: str | Path, data_dir: str | Path,
                           facts: tuple[str, ...] = _RUN_FACTS) -> None:
    """Refuse shards whose label map, character map, layout or feature size differ from the run's
    ``dataset.json``: the model's outputs would then mean other classes (or its inputs other points)
    and resuming or evaluating would go on silently wrong."""
    for name in facts:
        if getattr(run, name) != getattr(shards, name):
            raise ShardError(f"{fs.display(data_dir)}: {name} not the same as the run's "
                             f"({fs.display(fs.join(run_dir, 'dataset.json'))}); "
                             "these shards were not made for this run")


def load_run(run_dir: str | Path, checkpoint: str = "best") -> tuple[Trainer, RunConfig, DatasetInfo, nn.Module]:
    """Rebuild the trainer, config, dataset info and model (weights loaded) of a run directory; for an
    ensemble (``sltdata ensemble``) the model averages its members' logits. A run on object storage
    (``s3://...``) is read from a temporary copy of the files loading needs (``pulled_run``)."""
    if fs.is_remote(run_dir):
        with pulled_run(run_dir, checkpoint) as local_dir:
            return load_run(local_dir, checkpoint)
    run_dir = Path(run_dir)
    if is_ensemble(run_dir):
        return load_ensemble(run_dir, load_run)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    trainer = get_trainer(cfg.trainer)
    info = DatasetInfo.load(run_dir / "dataset.json")
    model = trainer.build(cfg.model, info)
    ckpt.load_weights(model, ckpt.checkpoint_dir(run_dir) / f"{checkpoint}.safetensors")
    return trainer, cfg, info, model.eval()


# What a run holds that loading it never reads: logs, reports, exports, resumable states.
_NOT_LOADED = ("tensorboard/", "eval-", "model.", "metrics.jsonl", "summary.json")


@contextmanager
def pulled_run(run_dir: str | Path, checkpoint: str = "best") -> Iterator[Path]:
    """A local directory holding what ``load_run`` reads of the run ``run_dir``: its config, dataset
    info and trainer files (tokenizer...), the ``checkpoint`` weights (not the optimizer state) and an
    ensemble's members. A local run is yielded as it is; a remote one is downloaded to a temporary
    directory, removed after the block. A remote that is not a run is a ConfigError, as locally."""
    def wanted(rel: str) -> bool:
        if rel.startswith(_NOT_LOADED) or rel.endswith(".tmp"):
            return False
        parts = rel.split("/")
        if "checkpoints" in parts[:-1]:  # a member holds only the checkpoint its ensemble chose
            return parts[0] == "members" or parts[-1] == f"{checkpoint}.safetensors"
        return True

    with fs.input_files(run_dir, wanted) as local_dir:
        if fs.is_remote(run_dir) and not (local_dir / "config.yaml").is_file():
            raise ConfigError(f"{fs.display(run_dir)}: not a run directory (no config.yaml)")
        yield local_dir


def evaluate_run(run_dir: str | Path, data_dir: str | Path, split: str = "test", checkpoint: str = "best",
                 out: str | Path | None = None, device: str = "auto") -> tuple[dict, Path | str]:
    """Metrics of a run's checkpoint on one split; writes metrics.json and the trainer's reports
    (into ``RUN/eval-SPLIT`` by default: on the remote for a remote run). Returns the metrics and
    where the reports went (a URL as messages may show it, for a remote one)."""
    from sltdata.train.data import ShardData
    from sltdata.train.loop import evaluate_split, setup_distributed

    trainer, cfg, info, model = load_run(run_dir, checkpoint)
    data = ShardData(data_dir, cfg, trainer.target)
    # layout and features must be the run's; labels/characters may be in another order (matched by name)
    check_data_matches_run(info, data.info, run_dir, data_dir, facts=("layout", "feature_dim"))
    data.use_run_maps(info, trainer.target)  # targets in the run's ids, matched by name
    _, dev = setup_distributed(device)
    target = out if out else fs.join(run_dir, f"eval-{split}")
    with fs.output_dir(target) as local_out:
        metrics = evaluate_split(trainer, model.to(dev), data, split, cfg, dev, Path(local_out))
    return metrics, fs.display(target) if fs.is_remote(target) else Path(target)


def export_run(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None,
               checkpoint: str = "best") -> tuple[Path | str, float | None]:
    """Export a run's model; for ONNX also returns the max output difference between onnxruntime
    and PyTorch (for a raw-input model: on raw sequences of 1, short, max_length and longer frames,
    against the run's NumPy pipeline + model, the path ``predict`` takes). The model goes to ``out``,
    by default beside the run (``RUN/model.FORMAT``); a remote one is written locally, checked, then
    put (the returned path is then its URL as messages may show it)."""
    trainer, cfg, info, model = load_run(run_dir, checkpoint)
    target = out if out else fs.join(run_dir, f"model.{format}")
    if not fs.is_remote(target):
        return _export(trainer, cfg, info, model, Path(target), format)
    with tempfile.TemporaryDirectory(prefix="sltdata-export-") as tmp:
        parent, name = str(target).rstrip("/").rsplit("/", 1)
        path, diff = _export(trainer, cfg, info, model, Path(tmp) / name, format)
        url = fs.join(parent, path.name)  # the trainer may rename it (hf: a directory without .hf)
        with fs.output_file(url) as dest:
            shutil.move(str(path), str(dest))
    return fs.display(url), diff


def _export(trainer: Trainer, cfg: RunConfig, info: DatasetInfo, model: nn.Module, path: Path,
            format: str) -> tuple[Path, float | None]:
    path = trainer.export(model, info, path, format, cfg.model)
    diff = None
    if format == "onnx":
        from sltdata.train.export import check_exported
        with torch.no_grad():
            diff = check_exported(model, info, path)
    return path, diff
