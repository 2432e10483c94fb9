"""The training data loader: a torch DataLoader over a webdataset pipeline of sltdata shards.

Torch stages on top of ``sltdata.shards`` (the format's one home, torch-free). The pipeline, stage by
stage (webdataset's small generators, with sltdata's own where a check is needed)::

    shard list (index order; shuffled by seed+epoch when train)
      -> this rank's shards (every rank shuffles the same way, then takes shards[rank::world_size],
         so ranks read disjoint shards under torchrun)
      -> this DataLoader worker's shards (webdataset.split_by_worker)
      -> read: sltdata.shards.read.iter_shard (tar members -> key, json, arrays; npy with no
         pickle), counting samples per shard
      -> transforms (sltdata.transforms pipeline on the layout as the index defines it;
         augmentations only when train, each sample's rng from sample_rng(seed, key, epoch) so draws
         do not depend on the worker that reads it)
      -> sample shuffle buffer (seeded per seed, epoch, rank and worker)
      -> batch: pad, mask, lengths, targets

A damaged shard (bad tar, bad npy, fewer samples than the index says, a member whose sha256 is not
the one its member checksums list) raises one ``ShardError`` naming the file, from any worker, before
the damaged sample reaches a batch (shards of an older sltdata without member checksums: the whole
shard's sha256, checked at its end). The cost is measured in ``benchmarks/verify_stream.py``.
"""

from __future__ import annotations

import logging
import os
import random
import re
from functools import partial

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from sltdata.errors import ConfigError
from sltdata.shards import ShardError, ShardIndex
from sltdata.shards.read import iter_shard, load_npy

__all__ = ["ShardIndex", "ShardError", "IGNORE_INDEX", "DEFAULT_BATCH_SIZE", "loader", "count_batches", "load_npy",
           "collate"]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # padding of text targets and missing labels (torch's cross-entropy/CTC ignore value)
DEFAULT_BATCH_SIZE = 64  # the loader's and a run config's (sltdata.train.config.DataConfig) default


def _read(sources, entries: dict[str, dict], where: str, verify: bool = True):
    """Shard urls -> decoded samples, through the one shard reader: counts checked per shard, and
    (``verify``) each member's sha256 before its sample goes on."""
    hint = f"; run `sltdata verify {where}`"
    for src in sources:
        url = src["url"]
        entry = entries.get(url)
        if entry is not None and not verify:
            entry = {"samples": entry.get("samples")}
        for s in iter_shard(url, entry=entry, hint=hint):
            out = {"key": s.key, "meta": s.meta, "landmarks": s.arrays["landmarks"]}
            if "mask" in s.arrays:
                out["mask"] = s.arrays["mask"]
            yield out


def _transform(samples, cfg, pipelines: dict, seed: int, epoch: int, train: bool):
    from sltdata.transforms import build_pipeline, sample_rng
    from sltdata.transforms.pipeline import frame_size

    for s in samples:
        if s["meta"]["layout"] not in pipelines:  # a layout the index does not list: built-ins only
            pipelines[s["meta"]["layout"]] = build_pipeline(cfg, layout=s["meta"]["layout"])
        rng = sample_rng(seed, s["key"], epoch) if train else None
        features, mask = pipelines[s["meta"]["layout"]](s["landmarks"], rng=rng, train=train, **frame_size(s["meta"]))
        yield {**s, "landmarks": features, "mask": np.asarray(mask, dtype=bool)}


def _shuffle(samples, bufsize: int, seed: int, epoch: int, rank: int):
    info = torch.utils.data.get_worker_info()
    worker = info.id if info is not None else 0
    rng = random.Random(f"sltdata-{seed}-{epoch}-{rank}-{worker}")
    yield from wds.filters.shuffle(bufsize, initial=min(bufsize, 100), rng=rng)(samples)


def _batch_array(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """A tensor and its numpy view; in a DataLoader worker the tensor lives in shared memory from the
    start (as torch's default_collate does), so sending the batch to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is not None:
        nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
        t = torch.empty(0, dtype=dtype).set_(torch.UntypedStorage._new_shared(nbytes), 0, shape)
        return t, t.numpy()
    # in-process: numpy's allocation reuses freed heap memory, where torch.empty of a large batch
    # page-faults fresh memory every time (measured ~5x slower at batch sizes of tens of MB)
    x = np.empty(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    return torch.from_numpy(x), x


def collate(samples: list[dict], target: str | None, labels: dict | None, characters: dict | None,
            points: np.ndarray | None = None) -> dict:
    """Pad a list of decoded samples into a batch (see ``loader``)."""
    n = len(samples)
    arrays = [s["landmarks"] if points is None else s["landmarks"][:, points] for s in samples]
    t_max = max(a.shape[0] for a in arrays)
    tensor, x = _batch_array((n, t_max, *arrays[0].shape[1:]), torch.float32)
    mask = np.zeros((n, t_max), dtype=bool)
    for i, (s, a) in enumerate(zip(samples, arrays)):
        if a.shape[1:] != x.shape[2:]:
            raise ShardError(f"sample {s['key']}: shape {a.shape} does not batch with {x.shape[2:]} "
                             "(mixed layouts need transforms that select the same points)")
        dst = x[i, :a.shape[0]]
        np.copyto(dst, a)
        np.putmask(dst, np.isnan(dst), 0.0)  # undetected points -> 0; the mask says which frames are real
        x[i, a.shape[0]:] = 0.0
        if "mask" in s:
            mask[i, :a.shape[0]] = s["mask"]
        else:
            mask[i, :a.shape[0]] = True
    batch = {"landmarks": tensor, "mask": torch.from_numpy(mask),
             "lengths": torch.from_numpy(mask.sum(axis=1).astype(np.int64)),
             "key": [s["key"] for s in samples], "text": [s["meta"].get("text") for s in samples]}
    if target == "label":
        ids = [labels.get(s["meta"].get("label"), IGNORE_INDEX) if s["meta"].get("label") is not None
               else IGNORE_INDEX for s in samples]
        batch["target"] = torch.tensor(ids, dtype=torch.int64)
    elif target == "text":
        seqs = [[characters[c] for c in (t or "") if c in characters] for t in batch["text"]]
        width = max((len(q) for q in seqs), default=0)
        y = np.full((n, width), IGNORE_INDEX, dtype=np.int64)
        for i, q in enumerate(seqs):
            y[i, :len(q)] = q
        batch["target"] = torch.from_numpy(y)
        batch["target_lengths"] = torch.tensor([len(q) for q in seqs], dtype=torch.int64)
    return batch


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size: as given, else torch.distributed, else torchrun's env."""
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ConfigError("loader: give both rank and world_size, or neither")
        return int(rank), int(world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


_SHARD_ERROR_LINE = re.compile(r"ShardError: (.*)$", re.MULTILINE)


class ShardLoader(DataLoader):
    """A DataLoader that turns a worker's ShardError (re-raised by torch with the worker's whole
    traceback) back into one line naming the shard."""

    def __iter__(self):
        try:
            yield from super().__iter__()
        except ShardError as e:
            found = _SHARD_ERROR_LINE.findall(str(e))
            if found and "\n" in str(e):
                raise ShardError(found[-1]) from None
            raise


def _rank_shards(idx: ShardIndex, folds, train: bool, seed: int, epoch: int, rank: int, world_size: int) -> list[str]:
    """The shards one rank reads in one epoch, in reading order (shuffled by seed and epoch when train)."""
    urls = idx.shards_for(folds)
    if train:
        order = np.random.default_rng([seed, epoch]).permutation(len(urls))
        urls = [urls[i] for i in order]
    if world_size > 1:
        if len(urls) < world_size:
            raise ShardError(f"{idx.path}: {len(urls)} shard(s) cannot feed {world_size} ranks; "
                             "re-shard with a smaller --max-samples-per-shard")
        urls = urls[rank::world_size]
    return urls


def count_batches(shards, folds=None, batch_size: int = DEFAULT_BATCH_SIZE, num_workers: int = 0, seed: int = 0,
                  epoch: int = 0, train: bool = True, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> int:
    """How many batches ``loader`` with the same arguments yields, from the index alone.

    Not ``samples // batch_size``: each DataLoader worker reads every ``num_workers``-th of the rank's
    shards (webdataset.split_by_worker) and batches them on its own, so each worker ends with its own
    partial batch (dropped with ``drop_last``). A schedule planned from the sample count alone ran
    out of batches before its end (124 of 132 planned steps with 4 workers)."""
    idx = shards if isinstance(shards, ShardIndex) else ShardIndex.open(shards)
    sizes = idx.expected_samples()
    urls = _rank_shards(idx, folds, train, seed, epoch, rank, world_size)
    workers = max(1, num_workers)
    per_worker = [sum(sizes[u] for u in urls[w::workers]) for w in range(workers)]
    return sum(n // batch_size if drop_last else -(-n // batch_size) for n in per_worker)


def loader(shards, folds=None, transforms=None, batch_size: int = DEFAULT_BATCH_SIZE, shuffle_buffer: int = 1000,
           num_workers: int = 0, seed: int = 0, epoch: int = 0, target: str | None = "auto",
           train: bool = True, rank: int | None = None, world_size: int | None = None,
           drop_last: bool = False, points=None, labels: dict | None = None,
           characters: dict | None = None, verify: bool = True) -> DataLoader:
    """A DataLoader over the shards of ``folds`` (names; None = every fold, not ``test``).

    ``shards``: a shard directory, its index.json, or a ShardIndex. ``transforms``: a transform config
    (path, dict, TransformConfig) or None for raw landmarks. ``target``: "label" (class ids), "text"
    (character ids padded with ``IGNORE_INDEX``, plus ``target_lengths``), None, or "auto" (label when the index
    has a label map, else text when it has a character map). ``train`` shuffles shards and samples
    and runs augmentations; ``train=False`` reads in index order, deterministically.

    Each batch is a dict: ``landmarks`` float32 (B, T, P, 3) raw with NaN -> 0, or (B, T, D) features;
    ``mask`` bool (B, T) True = real frame; ``lengths`` int64 (B,) real frames per sample; ``target``;
    ``target_lengths`` (text); ``key`` and ``text`` lists.

    ``points`` (raw landmarks only): point indices to keep, in that order, before batching, e.g. a
    transform pipeline's ``input_points`` when the augmentations run batched on the GPU; fewer bytes
    then cross from the workers.

    ``labels`` / ``characters``: the name -> id maps targets are numbered by, when not the index's own
    (a trained run's maps, matched by name: ``sltdata.train.data.ShardData.use_run_maps``).

    ``verify=False`` skips the per-member checksum checks (sample counts are still checked); it exists
    to measure their cost, not for training.
    """
    idx = shards if isinstance(shards, ShardIndex) else ShardIndex.open(shards)
    if transforms is not None and idx.transform is not None:
        raise ConfigError(f"{idx.path}: shards already hold transformed features; load them with transforms=None")
    if target == "auto":
        target = "label" if idx.labels else ("text" if idx.characters else None)
    if target == "label" and not idx.labels:
        raise ConfigError(f"{idx.path}: target='label' but the shards have no label map")
    if target == "text" and not idx.characters:
        raise ConfigError(f"{idx.path}: target='text' but the shards have no character map")
    if target not in ("label", "text", None):
        raise ConfigError(f"loader: target must be 'label', 'text', None or 'auto' (got {target!r})")
    if batch_size < 1:
        raise ConfigError("loader: batch_size must be positive")
    if points is not None:
        if transforms is not None or idx.transform is not None:
            raise ConfigError("loader: points selects raw landmarks; it does not apply to transformed features")
        points = np.asarray(points, dtype=np.int64)
    rank, world_size = _dist_info(rank, world_size)
    urls = _rank_shards(idx, folds, train, seed, epoch, rank, world_size)
    stages = [wds.SimpleShardList(urls), wds.split_by_worker,
              partial(_read, entries=idx.shard_entries(), where=str(idx.path), verify=verify)]
    if transforms is not None:
        from sltdata.transforms import build_pipeline, load_transform_config

        cfg = load_transform_config(transforms)
        pipelines = {name: build_pipeline(cfg, layout=layout) for name, layout in idx.layouts.items()}
        stages.append(partial(_transform, cfg=cfg, pipelines=pipelines, seed=seed, epoch=epoch, train=train))
    if train and shuffle_buffer > 1:
        stages.append(partial(_shuffle, bufsize=shuffle_buffer, seed=seed, epoch=epoch, rank=rank))
    collation = partial(collate, target=target, labels=idx.labels if labels is None else labels,
                        characters=idx.characters if characters is None else characters, points=points)
    stages.append(wds.batched(batch_size, collation_fn=collation, partial=not drop_last))
    return ShardLoader(wds.DataPipeline(*stages), batch_size=None, num_workers=num_workers)
