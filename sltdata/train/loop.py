"""The one training loop every trainer shares (read top to bottom, as nanoGPT's ``train.py``).

Per optimizer step: micro-batches (``grad_accum`` of them) go to the device, where the batched
transforms run; the trainer's ``loss`` runs under bf16 autocast on GPU; optionally the weights are
first nudged uphill (AWP); gradients are clipped; the optimizer, Lookahead and the per-step schedule
advance. Per epoch: validation with the trainer's metrics, ``metrics.jsonl`` + TensorBoard, a
checkpoint (``last``, and ``best`` by the trainer's monitored metric), early stopping.

Resuming restores weights, optimizer, schedule, Lookahead, RNG states and the data position (epoch
and batch within it; the loader's order depends only on seed and epoch), so a killed run resumed
ends with the weights an uninterrupted run ends with.

Multi-GPU: run under ``torchrun``; each rank reads its own shards (``rank``/``world_size`` passed to
the loader), DistributedDataParallel averages gradients (NCCL on GPU, gloo on CPU), rank 0
validates, logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from sltdata.errors import ConfigError
from sltdata.loader import IGNORE_INDEX
from sltdata.train import checkpoint as ckpt
from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.config import RunConfig, save_config
from sltdata.train.optim import Lookahead, awp_perturb, awp_restore, build_optimizer, build_scheduler

log = logging.getLogger(__name__)
Progress = Callable[[dict], None]


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; join the process group when there is more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda") or device_pref.startswith("cuda:")
    if device_pref.startswith("cuda:"):
        device = torch.device(device_pref)
    elif cuda:
        device = torch.device("cuda", d.local_rank)
    else:
        device = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module under DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def autocast(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def gather_outputs(parts: list[dict]) -> dict[str, Any]:
    """Concatenate per-batch prediction dicts: tensors along dim 0, lists by extension."""
    out: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).append(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
    for k, vs in out.items():
        if isinstance(vs[0], torch.Tensor):
            if vs[0].ndim >= 2 and len({v.shape[1:] for v in vs}) > 1:  # ragged (B, L) outputs
                width = max(v.shape[1] for v in vs)
                vs = [torch.nn.functional.pad(v, (0, width - v.shape[1]), value=IGNORE_INDEX) for v in vs]
            out[k] = torch.cat(vs)
        else:
            out[k] = [x for v in vs for x in v]
    return out


@torch.no_grad()
def evaluate(trainer: Trainer, model: nn.Module, data, split: str, cfg: RunConfig,
             device: torch.device) -> tuple[dict[str, float], dict[str, Any]]:
    """The trainer's metrics (plus mean ``loss``) and concatenated outputs on one split."""
    model.eval()
    parts, loss_sum, n = [], 0.0, 0
    bs = cfg.data.eval_batch_size or cfg.data.batch_size
    for batch in data.batches(split, epoch=0, train=False, batch_size=bs):
        b = data.to_device(batch, device, None, train=False)
        with autocast(device, cfg.train.precision):
            loss = trainer.loss(model, b, cfg.model)
            out = trainer.predict(model, b, cfg.model)
        k = len(b["key"])
        loss_sum, n = loss_sum + float(loss) * k, n + k
        parts.append({k_: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                      for k_, v in out.items()})
    if not n:
        return {}, {}
    outputs = gather_outputs(parts)
    metrics = {"loss": loss_sum / n, **trainer.metrics(outputs, data.info)}
    return metrics, outputs


class MetricsLog:
    """``RUN_DIR/metrics.jsonl`` (one JSON record per line) and TensorBoard, when installed."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():  # drop records after the checkpoint
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif resume_step is None:
            self.path.write_text("")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            log.info("tensorboard not installed: metrics go to metrics.jsonl only")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def fit(trainer: Trainer, cfg: RunConfig, data, run_dir: str | Path, *, resume: bool = False,
        test: bool = False, progress: Progress | None = None) -> dict:
    """Train ``trainer`` on ``data`` (a ``ShardData`` or ``TensorData``) into ``run_dir``.

    Returns a summary: steps and epochs run, best validation metric, last validation and (with
    ``test``) held-out metrics.
    """
    run_dir = Path(run_dir)
    tc = cfg.train
    dd, device = setup_distributed(tc.device)
    info: DatasetInfo = data.info
    if dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(tc.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = trainer.build(cfg.model, info).to(device)
    raw = model
    if dd.main:
        save_config(cfg, run_dir / "config.yaml")
        info.save(run_dir / "dataset.json")
        trainer.save_artifacts(info, run_dir)

    optimizer = build_optimizer(raw, tc)
    lookahead = Lookahead(raw.parameters(), tc.lookahead_k, tc.lookahead_alpha) \
        if tc.optimizer == "radam-lookahead" else None
    bs = cfg.data.batch_size
    per_rank = data.num_samples("train") // dd.world_size
    micro_per_epoch = per_rank // bs if cfg.data.drop_last else -(-per_rank // bs)
    if micro_per_epoch < 1:
        raise ConfigError(f"{per_rank} training samples per rank: fewer than one batch of {bs}")
    steps_per_epoch = max(1, micro_per_epoch // tc.grad_accum)
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    generator = torch.Generator(device=device)

    start_epoch, skip, global_step, best, bad_epochs = 0, 0, 0, None, 0
    state_path = ckpt.checkpoint_dir(run_dir) / "last.state.pt"
    if resume:
        state = ckpt.load_state(state_path)
        ckpt.load_weights(raw, ckpt.checkpoint_dir(run_dir) / "last.safetensors")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        planned = getattr(scheduler, "total_steps", total_steps + 1) - 1
        if planned != total_steps:
            raise ConfigError(f"{run_dir}: the run was planned for {planned} steps, now {total_steps}: "
                              "resume with the run's own epochs, batch size and max_steps")
        if lookahead is not None:
            lookahead.load_state_dict(state["lookahead"])
        start_epoch, skip = int(state["epoch"]), int(state["step_in_epoch"])
        global_step, bad_epochs = int(state["global_step"]), int(state["bad_epochs"])
        best = state.get("best")
        rng = state["rng"][min(dd.rank, len(state["rng"]) - 1)]
        if not skip:
            ckpt.restore_rng(rng, None)
        log.info("resuming at epoch %d, batch %d (step %d)", start_epoch, skip, global_step)
    else:
        rng = None

    if tc.compile:
        model = torch.compile(model)
    if dd.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=trainer.find_unused_parameters)
    hooks = [m for m in raw.modules() if hasattr(m, "set_train_progress")]
    logger = MetricsLog(run_dir, dd.main, global_step if resume else None)

    def save(epoch_next: int, step_in_epoch: int) -> None:
        states = [ckpt.rng_state(generator)]
        if dd.world_size > 1:  # every rank's RNG, so each resumes its own stream
            gathered = [None] * dd.world_size
            dist.all_gather_object(gathered, states[0])
            states = gathered
        if not dd.main:
            return
        d = ckpt.checkpoint_dir(run_dir)
        ckpt.save_weights(raw, d / "last.safetensors", global_step)
        ckpt.save_state({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "lookahead": lookahead.state_dict() if lookahead else None,
                         "epoch": epoch_next, "step_in_epoch": step_in_epoch, "global_step": global_step,
                         "best": best, "bad_epochs": bad_epochs, "rng": states}, state_path)

    def emit(event: dict) -> None:
        if progress is not None and dd.main:
            progress(event)

    monitor, mode = trainer.monitor, trainer.monitor_mode
    has_val = _num_samples(data, "val") > 0
    last_val: dict = {}
    stop = False
    emit({"kind": "start", "epochs": tc.epochs, "steps_per_epoch": steps_per_epoch, "start_epoch": start_epoch,
          "total_steps": total_steps})
    for epoch in range(start_epoch, tc.epochs):
        if global_step >= total_steps:
            break
        model.train()
        generator.manual_seed(tc.seed * 1_000_003 + epoch * 7919 + dd.rank)
        for h in hooks:
            h.set_train_progress(epoch)
        awp_on = tc.awp_lambda > 0 and epoch >= tc.awp_start_epoch
        batches = iter(data.batches("train", epoch=epoch, train=True, batch_size=bs, rank=dd.rank,
                                    world_size=dd.world_size, drop_last=cfg.data.drop_last))
        if skip:
            # A mid-epoch checkpoint: go to its data position, then restore its RNG states. Order
            # matters: creating the loader iterator draws from the torch RNG, as it did before the
            # checkpoint in the uninterrupted run.
            for _ in range(skip):
                next(batches, None)
            ckpt.restore_rng(rng, generator)
        # the running loss stays on the device: reading it every step would sync the GPU every step
        micro, t0, seen, loss_acc, loss_n = skip, time.perf_counter(), 0, torch.zeros((), device=device, dtype=torch.float64), 0
        skip = 0
        emit({"kind": "epoch_start", "epoch": epoch})
        while micro < steps_per_epoch * tc.grad_accum and global_step < total_steps:
            batch = next(batches, None)
            if dd.world_size > 1:  # ranks may hold unequal shards: stop together
                flag = torch.tensor([0 if batch is None else 1], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                if not int(flag):
                    break
            elif batch is None:
                break
            b = data.to_device(batch, device, generator, train=True)
            sync = (micro + 1) % tc.grad_accum == 0
            moved = []
            if awp_on:
                with autocast(device, tc.precision):
                    moved = awp_perturb(raw, lambda: trainer.loss(raw, b, cfg.model), tc.awp_lambda)
            no_sync = model.no_sync() if (dd.world_size > 1 and not sync) else contextlib.nullcontext()
            with no_sync:
                with autocast(device, tc.precision):
                    loss = trainer.loss(model, b, cfg.model)
                (loss / tc.grad_accum).backward()
            awp_restore(moved)
            micro += 1
            n = len(b["key"])
            seen += n
            loss_acc, loss_n = loss_acc + loss.detach().double() * n, loss_n + n
            if not sync:
                continue
            if tc.clip_grad:
                torch.nn.utils.clip_grad_norm_(raw.parameters(), tc.clip_grad)
            optimizer.step()
            if lookahead is not None:
                lookahead.after_step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            if global_step == 1 or global_step % tc.log_every == 0:
                mean = torch.stack([loss_acc, torch.tensor(float(loss_n), device=device, dtype=torch.float64)])
                if dd.world_size > 1:
                    dist.all_reduce(mean)
                elapsed = time.perf_counter() - t0
                rec = {"step": global_step, "epoch": epoch, "loss": float(mean[0] / max(mean[1], 1)),
                       "lr": optimizer.param_groups[0]["lr"],
                       "samples_per_s": seen * dd.world_size / max(elapsed, 1e-9)}
                logger.write(rec)
                emit({"kind": "step", **rec, "micro": micro, "micro_total": steps_per_epoch * tc.grad_accum})
                loss_acc, loss_n = torch.zeros((), device=device, dtype=torch.float64), 0
            if tc.checkpoint_every and global_step % tc.checkpoint_every == 0:
                save(epoch, micro)

        # end of epoch: validate on rank 0, then checkpoint and decide on early stopping together
        rec = {"step": global_step, "epoch": epoch, "epoch_end": True}
        if dd.main and has_val:
            last_val, _ = evaluate(trainer, raw, data, "val", cfg, device)
            rec.update({f"val_{k}": v for k, v in last_val.items()})
            value = last_val.get(monitor)
            if value is not None and _improved(value, best, mode):
                best, bad_epochs = value, 0
                ckpt.save_weights(raw, ckpt.checkpoint_dir(run_dir) / "best.safetensors", global_step)
            else:
                bad_epochs += 1
            rec["best_" + monitor] = best
        if dd.main and not has_val:
            ckpt.save_weights(raw, ckpt.checkpoint_dir(run_dir) / "best.safetensors", global_step)
        logger.write(rec)
        emit({"kind": "epoch", **rec})
        stop = bool(tc.early_stopping and has_val and bad_epochs >= tc.early_stopping)
        if dd.world_size > 1:
            flags = torch.tensor([float(stop), float(bad_epochs)], device=device)
            dist.broadcast(flags, 0)
            stop, bad_epochs = bool(flags[0]), int(flags[1])
        save(epoch + 1, 0)
        if stop:
            log.info("early stopping after epoch %d: no %s improvement for %d epochs", epoch, monitor, bad_epochs)
            break

    summary = {"global_step": global_step, "epochs": tc.epochs, "best": best, "monitor": monitor,
               "val": last_val}
    if test and dd.main:
        ckpt.load_weights(raw, ckpt.checkpoint_dir(run_dir) / "best.safetensors")
        summary["test"], outputs = evaluate(trainer, raw, data, "test", cfg, device)
        out = run_dir / "eval-test"
        out.mkdir(exist_ok=True)
        trainer.write_report(outputs, info, out)
        (out / "metrics.json").write_text(json.dumps(summary["test"], indent=1))
    logger.close()
    if dd.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    if dd.world_size > 1:
        dist.barrier()
    return summary


def _num_samples(data, split: str) -> int:
    try:
        return data.num_samples(split)
    except ConfigError:  # a source without that split
        return 0
