"""The one training loop every trainer shares. ``fit`` reads top to bottom, as nanoGPT's ``train.py``
does; each step of it is a small named function below it.

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
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from sltdata import fs
from sltdata.errors import ConfigError
from sltdata.loader import IGNORE_INDEX
from sltdata.train import checkpoint as ckpt
from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.config import LoopConfig, RunConfig, save_config
from sltdata.train.optim import (AWP_EXCLUDE, Lookahead, awp_perturb, awp_restore, build_optimizer, build_scheduler,
                                  decay_weights)

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


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when there is one, else CPU), ``cpu``, ``cuda`` (this rank's GPU) or ``cuda:N``.
    Anything else, or a CUDA device this machine does not have, is a ConfigError: a run asked for a
    GPU must not train for hours on the CPU instead, nor die in a torch traceback."""
    m = re.fullmatch(r"cuda(?::(\d+))?", pref)
    if pref == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if m is None:
        raise ConfigError(f"device {pref!r}: unknown (use auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        why = "built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        raise ConfigError(f"device {pref!r}: not available here (torch {torch.__version__}, {why}); "
                          "use --device cpu or auto")
    index = int(m[1]) if m[1] is not None else local_rank
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {pref!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; join the process group when there is more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_pref, d.local_rank)
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


def fit(trainer: Trainer, cfg: RunConfig, data, run_dir: str | Path, *, resume: bool = False,
        test: bool = False, progress: Progress | None = None) -> dict:
    """Train ``trainer`` on ``data`` (a ``ShardData`` or ``TensorData``) into ``run_dir``.

    Returns a summary: steps and epochs run, best validation metric, last validation and (with
    ``test``) held-out metrics.
    """
    run_dir, tc = Path(run_dir), cfg.train
    # every precondition before the run directory is written: a mistake costs seconds, not epochs
    dd, device = setup_distributed(tc.device)
    epoch_steps, total_steps = plan_steps(data, cfg, dd.world_size)
    check_preconditions(trainer, data, test)
    raw = build_model(trainer, cfg, data.info, run_dir, dd, device)
    steps_per_epoch = epoch_steps[0]
    optimizer, lookahead, scheduler = build_optimization(raw, tc, total_steps)
    pos, rng = Position(), None
    if resume:  # weights, optimizer, schedule, Lookahead, position; the RNG now or after the data skip
        pos, rng = restore_checkpoint(run_dir, raw, optimizer, scheduler, lookahead, total_steps, dd.rank)
    s = Session(trainer=trainer, cfg=cfg, data=data, run_dir=run_dir, dd=dd, device=device, raw=raw,
                model=wrap_model(raw, trainer, tc, dd, device), optimizer=optimizer, scheduler=scheduler,
                lookahead=lookahead, generator=torch.Generator(device=device),
                logger=MetricsLog(run_dir, dd.main, pos.global_step if resume else None), progress=progress,
                epoch_steps=epoch_steps, total_steps=total_steps, has_val=_num_samples(data, "val") > 0)

    s.emit({"kind": "start", "epochs": tc.epochs, "steps_per_epoch": steps_per_epoch, "start_epoch": pos.epoch,
            "total_steps": total_steps})
    last_val: dict = {}
    for epoch in range(pos.epoch, tc.epochs):
        if pos.global_step >= total_steps:
            break
        train_epoch(s, pos, epoch, rng)
        rng = None
        stats = epoch_train_stats(s)
        # end of epoch: validate on rank 0, then checkpoint and decide on early stopping together
        rec, val = validate_epoch(s, pos, epoch)
        rec.update(stats)
        last_val = last_val if val is None else val
        s.logger.write(rec)
        s.emit({"kind": "epoch", **rec})
        stop = agree_on_early_stop(s, pos)
        pos.epoch, pos.step_in_epoch = epoch + 1, 0
        save_checkpoint(s, pos)
        if stop:
            log.info("early stopping after epoch %d: no %s improvement for %d epochs", epoch, trainer.monitor,
                     pos.bad_epochs)
            break

    summary = {"global_step": pos.global_step, "epochs": tc.epochs, "best": pos.best, "monitor": trainer.monitor,
               "val": last_val}
    if test and dd.main:
        ckpt.load_weights(raw, ckpt.checkpoint_dir(run_dir) / "best.safetensors")
        summary["test"] = evaluate_split(trainer, raw, data, "test", cfg, device, run_dir / "eval-test")
    s.logger.close()
    if dd.main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    if dd.world_size > 1:
        dist.barrier()
    return summary


# --- what fit wires together ----------------------------------------------------------------------

@dataclass
class Position:
    """Where a run stands, as a checkpoint's state records it: the next micro-batch to run is number
    ``step_in_epoch`` of ``epoch``; ``best`` and ``bad_epochs`` drive best checkpoints and early stopping."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None
    bad_epochs: int = 0


@dataclass
class Session:
    """Everything one ``fit`` call wires together, passed to its steps instead of closures."""

    trainer: Trainer
    cfg: RunConfig
    data: Any
    run_dir: Path
    dd: Dist
    device: torch.device
    raw: nn.Module                                  # the bare model: checkpoints, AWP, clipping, validation
    model: nn.Module                                # raw, maybe compiled and DDP-wrapped: the training forward
    optimizer: torch.optim.Optimizer
    scheduler: Any
    lookahead: Lookahead | None
    generator: torch.Generator                      # the device-side augmentations' random stream
    logger: MetricsLog
    progress: Progress | None
    epoch_steps: list[int]                          # optimizer steps each epoch yields (plan_steps)
    total_steps: int
    has_val: bool
    hooks: list = field(init=False)                 # modules told the epoch (late dropout)

    def __post_init__(self) -> None:
        self.hooks = [m for m in self.raw.modules() if hasattr(m, "set_train_progress")]

    def emit(self, event: dict) -> None:
        if self.progress is not None and self.dd.main:
            self.progress(event)


def build_model(trainer: Trainer, cfg: RunConfig, info: DatasetInfo, run_dir: Path, dd: Dist,
                device: torch.device) -> nn.Module:
    """The trainer's model on ``device``; rank 0 saves what ``evaluate``/``export`` need to rebuild it."""
    if dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank (DDP broadcasts rank 0's anyway)
    model = trainer.build(cfg.model, info).to(device)
    if dd.main:
        save_config(cfg, run_dir / "config.yaml")
        info.save(run_dir / "dataset.json")
        before = _file_stamps(run_dir)
        trainer.save_artifacts(info, run_dir)
        # a remote run (fs.output_dir): what evaluate/export read is put before the first epoch
        for p in [run_dir / "config.yaml", run_dir / "dataset.json",
                  *(p for p, stamp in _file_stamps(run_dir).items() if before.get(p) != stamp)]:
            fs.committed(p)
    return model


def _file_stamps(run_dir: Path) -> dict[Path, tuple[int, int]]:
    """(mtime, size) of the run's files outside checkpoints/ and tensorboard/: what a trainer's
    ``save_artifacts`` wrote is what changed."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.rglob("*")
            if p.is_file() and p.relative_to(run_dir).parts[0] not in ("checkpoints", "tensorboard")}


def plan_steps(data, cfg: RunConfig, world_size: int) -> tuple[list[int], int]:
    """Optimizer steps of each epoch and in all (``max_steps`` caps the latter); the schedule spans them.

    Counted from the batches the loader really yields in each epoch (``data.num_batches``: every
    loader worker drops its own partial batch, and which shards a worker reads changes with the
    epoch's shuffle), on the rank that yields fewest (under DDP every rank stops when one runs out).
    """
    tc, dc = cfg.train, cfg.data
    micro = [min(data.num_batches("train", epoch=e, train=True, batch_size=dc.batch_size, rank=r,
                                  world_size=world_size, drop_last=dc.drop_last) for r in range(world_size))
             for e in range(tc.epochs)]
    if not micro or min(micro) < 1:
        per_rank = data.num_samples("train") // world_size
        raise ConfigError(f"{per_rank} training samples per rank: fewer than one batch of {dc.batch_size} "
                          "(lower data.batch_size)")
    if min(micro) < tc.grad_accum:
        raise ConfigError(f"{min(micro)} batches in an epoch: fewer than train.grad_accum {tc.grad_accum}")
    epoch_steps = [m // tc.grad_accum for m in micro]
    total_steps = sum(epoch_steps)
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)
    return epoch_steps, total_steps


def check_preconditions(trainer: Trainer, data, test: bool) -> None:
    """What would otherwise fail late: the test split ``--test`` evaluates at the end, and the label or
    character map the trainer's targets are numbered by. (The validation fold and the training
    batches are checked by ``plan_steps``.)"""
    if test and not _num_samples(data, "test", strict=True):
        raise ConfigError(f"{getattr(data, 'path', 'the data')}: the test split is empty, nothing for --test")
    info = data.info
    if trainer.target == "label" and not info.labels:
        raise ConfigError(f"{getattr(data, 'path', 'the data')}: no label map; the {trainer.name} trainer "
                          "needs a label per sequence")
    if trainer.target == "text" and not info.characters:
        raise ConfigError(f"{getattr(data, 'path', 'the data')}: no character map; the {trainer.name} trainer "
                          "needs a phrase per sequence")


def build_optimization(raw: nn.Module, tc: LoopConfig, total_steps: int):
    """Optimizer, Lookahead (``radam-lookahead`` only, else None) and the per-step schedule."""
    optimizer = build_optimizer(raw, tc)
    lookahead = Lookahead(raw.parameters(), tc.lookahead_k, tc.lookahead_alpha) \
        if tc.optimizer == "radam-lookahead" else None
    return optimizer, lookahead, build_scheduler(optimizer, tc, total_steps)


def restore_checkpoint(run_dir: Path, raw: nn.Module, optimizer, scheduler, lookahead: Lookahead | None,
                       total_steps: int, rank: int) -> tuple[Position, dict]:
    """Load ``last`` into the model and optimizers; returns the position and this rank's RNG states.

    At an epoch boundary the RNG is restored here; mid-epoch, ``train_epoch`` restores it after
    skipping the batches already seen (creating the loader iterator draws from the torch RNG, as it
    did before the checkpoint in the uninterrupted run).
    """
    state = ckpt.load_last(raw, ckpt.checkpoint_dir(run_dir))  # refuses weights and state of two checkpoints
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    planned = getattr(scheduler, "planned_steps", total_steps)
    if planned != total_steps:
        raise ConfigError(f"{run_dir}: the run was planned for {planned} steps, now {total_steps}: "
                          "resume with the run's own epochs, batch size and max_steps")
    if lookahead is not None:
        lookahead.load_state_dict(state["lookahead"])
    pos = Position(int(state["epoch"]), int(state["step_in_epoch"]), int(state["global_step"]),
                   state.get("best"), int(state["bad_epochs"]))
    rng = state["rng"][min(rank, len(state["rng"]) - 1)]
    if not pos.step_in_epoch:
        ckpt.restore_rng(rng, None)
    log.info("resuming at epoch %d, batch %d (step %d)", pos.epoch, pos.step_in_epoch, pos.global_step)
    return pos, rng


def wrap_model(raw: nn.Module, trainer: Trainer, tc: LoopConfig, dd: Dist, device: torch.device) -> nn.Module:
    """``torch.compile`` when asked, DistributedDataParallel with more than one rank."""
    model = torch.compile(raw) if tc.compile else raw
    if dd.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=trainer.find_unused_parameters)
    return model


def save_checkpoint(s: Session, pos: Position) -> None:
    """``last`` weights and state at ``pos``; every rank's RNG goes in, so each resumes its own stream."""
    states = [ckpt.rng_state(s.generator)]
    if s.dd.world_size > 1:
        gathered = [None] * s.dd.world_size
        dist.all_gather_object(gathered, states[0])
        states = gathered
    if not s.dd.main:
        return
    fs.committed(s.logger.path)  # a remote run: the records up to this checkpoint, before it
    ckpt.save_last(s.raw, {"optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
                           "lookahead": s.lookahead.state_dict() if s.lookahead else None,
                           "epoch": pos.epoch, "step_in_epoch": pos.step_in_epoch, "global_step": pos.global_step,
                           "best": pos.best, "bad_epochs": pos.bad_epochs, "rng": states},
                   ckpt.checkpoint_dir(s.run_dir), pos.global_step)  # weights + state + manifest, one unit


# --- one epoch ------------------------------------------------------------------------------------

def train_epoch(s: Session, pos: Position, epoch: int, rng: dict | None) -> None:
    """Micro-batches of one epoch from ``pos.step_in_epoch`` on, an optimizer step every
    ``grad_accum`` of them, logging every ``log_every`` steps and checkpointing every
    ``checkpoint_every``; stops early at ``total_steps`` or when a rank runs out of batches."""
    tc = s.cfg.train
    s.model.train()
    s.generator.manual_seed(tc.seed * 1_000_003 + epoch * 7919 + s.dd.rank)
    for h in s.hooks:
        h.set_train_progress(epoch)
    awp_on = tc.awp_lambda > 0 and epoch >= tc.awp_start_epoch
    batches = epoch_batches(s, epoch, pos.step_in_epoch, rng)
    pos.epoch, micro, meter = epoch, pos.step_in_epoch, LossMeter(s.device)
    s.emit({"kind": "epoch_start", "epoch": epoch})
    micro_total = s.epoch_steps[epoch] * tc.grad_accum
    while micro < micro_total and pos.global_step < s.total_steps:
        batch = next_batch(s, batches)
        if batch is None:
            break
        b = s.data.to_device(batch, s.device, s.generator, train=True)
        sync = (micro + 1) % tc.grad_accum == 0
        loss = forward_backward(s, b, awp_on, sync)
        micro += 1
        meter.add(loss, len(b["key"]))
        if not sync:
            continue
        optimizer_step(s)
        pos.global_step += 1
        if pos.global_step == 1 or pos.global_step % tc.log_every == 0:
            rec = {"step": pos.global_step, "epoch": epoch, "loss": meter.mean_and_reset(s.dd),
                   "lr": s.optimizer.param_groups[0]["lr"], "samples_per_s": meter.samples_per_s(s.dd)}
            s.logger.write(rec)
            s.emit({"kind": "step", **rec, "micro": micro, "micro_total": micro_total})
        if tc.checkpoint_every and pos.global_step % tc.checkpoint_every == 0:
            pos.step_in_epoch = micro
            save_checkpoint(s, pos)


def epoch_batches(s: Session, epoch: int, skip: int, rng: dict | None):
    """The epoch's training batches; after a mid-epoch checkpoint, from its data position on, and
    only then its RNG states (order matters: creating the iterator draws from the torch RNG)."""
    c = s.cfg.data
    batches = iter(s.data.batches("train", epoch=epoch, train=True, batch_size=c.batch_size, rank=s.dd.rank,
                                  world_size=s.dd.world_size, drop_last=c.drop_last))
    if skip:
        for _ in range(skip):
            next(batches, None)
        ckpt.restore_rng(rng, s.generator)
    return batches


def next_batch(s: Session, batches):
    """The next batch, or None when this rank (under DDP: any rank, as shards may be unequal) is out."""
    batch = next(batches, None)
    if s.dd.world_size > 1:
        flag = torch.tensor([0 if batch is None else 1], device=s.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return batch if int(flag) else None
    return batch


def forward_backward(s: Session, b: dict, awp_on: bool, sync: bool) -> torch.Tensor:
    """One micro-batch's loss and gradients (scaled by 1/grad_accum). With AWP the weights are first
    nudged uphill and put back after the backward pass; under DDP gradients are averaged only on the
    micro-batch that completes a step."""
    tc, model_cfg = s.cfg.train, s.cfg.model
    moved = []
    if awp_on:
        with autocast(s.device, tc.precision):
            moved = awp_perturb(s.raw, lambda: s.trainer.loss(s.raw, b, model_cfg), tc.awp_lambda,
                                exclude=AWP_EXCLUDE[tc.awp_exclude])
    no_sync = s.model.no_sync() if (s.dd.world_size > 1 and not sync) else contextlib.nullcontext()
    with no_sync:
        with autocast(s.device, tc.precision):
            loss = s.trainer.loss(s.model, b, model_cfg)
        (loss / tc.grad_accum).backward()
    awp_restore(moved)
    return loss


def optimizer_step(s: Session) -> None:
    """Clip, decay (``lr-squared`` weight decay), step the optimizer, Lookahead and the schedule, clear
    the gradients."""
    if s.cfg.train.clip_grad:
        torch.nn.utils.clip_grad_norm_(s.raw.parameters(), s.cfg.train.clip_grad)
    decay_weights(s.optimizer)
    s.optimizer.step()
    if s.lookahead is not None:
        s.lookahead.after_step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)


class LossMeter:
    """Mean training loss since the last log line and samples/s since the epoch began. The running
    sum stays on the device (float64): reading it every step would sync the GPU every step."""

    def __init__(self, device: torch.device):
        self.device, self.t0, self.seen = device, time.perf_counter(), 0
        self.total, self.n = torch.zeros((), device=device, dtype=torch.float64), 0

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.seen += n
        self.total, self.n = self.total + loss.detach().double() * n, self.n + n

    def mean_and_reset(self, dd: Dist) -> float:
        mean = torch.stack([self.total, torch.tensor(float(self.n), device=self.device, dtype=torch.float64)])
        if dd.world_size > 1:
            dist.all_reduce(mean)
        self.total, self.n = torch.zeros((), device=self.device, dtype=torch.float64), 0
        return float(mean[0] / max(mean[1], 1))

    def samples_per_s(self, dd: Dist) -> float:
        return self.seen * dd.world_size / max(time.perf_counter() - self.t0, 1e-9)


# --- end of epoch ---------------------------------------------------------------------------------

def epoch_train_stats(s: Session) -> dict[str, int]:
    """Counts the model kept over the epoch's training batches (modules with ``pop_train_stats() ->
    {name: count}``, e.g. text targets too long for their frames), summed over ranks, as ``train_NAME``."""
    stats: dict[str, int] = {}
    for m in s.raw.modules():
        if hasattr(m, "pop_train_stats"):
            for k, v in m.pop_train_stats().items():
                stats[k] = stats.get(k, 0) + int(v)
    if s.dd.world_size > 1 and stats:
        keys = sorted(stats)
        total = torch.tensor([float(stats[k]) for k in keys], device=s.device, dtype=torch.float64)
        dist.all_reduce(total)
        stats = {k: int(v) for k, v in zip(keys, total.tolist())}
    return {f"train_{k}": v for k, v in stats.items()}


def validate_epoch(s: Session, pos: Position, epoch: int) -> tuple[dict, dict | None]:
    """The epoch's record and (rank 0, with a validation split) its validation metrics; saves ``best``
    when the monitored metric improved (every epoch when there is nothing to validate on)."""
    rec = {"step": pos.global_step, "epoch": epoch, "epoch_end": True}
    if not s.dd.main:
        return rec, None
    best_path = ckpt.checkpoint_dir(s.run_dir) / "best.safetensors"
    if not s.has_val:
        ckpt.save_weights(s.raw, best_path, pos.global_step)
        return rec, None
    monitor = s.trainer.monitor
    val, _ = evaluate(s.trainer, s.raw, s.data, "val", s.cfg, s.device)
    rec.update({f"val_{k}": v for k, v in val.items()})
    value = val.get(monitor)
    if value is not None and _improved(value, pos.best, s.trainer.monitor_mode):
        pos.best, pos.bad_epochs = value, 0
        ckpt.save_weights(s.raw, best_path, pos.global_step)
    else:
        pos.bad_epochs += 1
    rec["best_" + monitor] = pos.best
    return rec, val


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def agree_on_early_stop(s: Session, pos: Position) -> bool:
    """Whether ``early_stopping`` epochs passed without improvement; rank 0 decides for all ranks."""
    tc = s.cfg.train
    stop = bool(tc.early_stopping and s.has_val and pos.bad_epochs >= tc.early_stopping)
    if s.dd.world_size > 1:
        flags = torch.tensor([float(stop), float(pos.bad_epochs)], device=s.device)
        dist.broadcast(flags, 0)
        stop, pos.bad_epochs = bool(flags[0]), int(flags[1])
    return stop


def evaluate_split(trainer: Trainer, model: nn.Module, data, split: str, cfg: RunConfig, device: torch.device,
                   out: Path) -> dict[str, float]:
    """Metrics on one split, written with the trainer's reports into ``out`` (``metrics.json``,
    predictions); what ``fit --test`` and ``sltdata evaluate`` both do."""
    metrics, outputs = evaluate(trainer, model, data, split, cfg, device)
    if not metrics:
        raise ConfigError(f"{getattr(data, 'path', 'the data')}: split {split!r} is empty")
    out.mkdir(parents=True, exist_ok=True)
    trainer.write_report(outputs, data.info, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _num_samples(data, split: str, strict: bool = False) -> int:
    try:
        return data.num_samples(split)
    except ConfigError:  # a source without that split
        if strict:
            raise
        return 0
