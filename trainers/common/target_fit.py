"""Text targets that do not fit their frames: refuse the transforms that cause them, count the rest.

A text model reads every frame of a sequence to produce its whole phrase, so a transform that cuts
frames off (``max_length`` with ``temporal.resize: false`` keeps the first frames) silently drops the
signs of the phrase's end while the loss still asks for it; the speed augmentation, which runs
before the cut, makes it worse (x1.5 on 300 frames leaves 384 of 450). The text trainers refuse such
a transform config (:func:`require_no_cut`) and resize instead, as the Fingerspelling 2nd-place
solution did with its 768-frame limit.

What still cannot fit is counted, never silently zeroed: a CTC alignment needs one frame per
character plus one blank between repeated characters ("aa" needs 3), after subsampling; a
translation model is counted when it has fewer pose vectors (after subsampling) than target tokens.
:class:`FitCounter` is a module without weights (checkpoints are unchanged) that sums these per
epoch; the shared loop reads ``pop_train_stats`` at each epoch's end into ``metrics.jsonl``
(``train_too_short`` of ``train_samples``), and each trainer's evaluation reports ``too_short``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from sltdata.errors import ConfigError

log = logging.getLogger(__name__)


def require_no_cut(transform: dict | None, trainer: str) -> None:
    """ConfigError when the run's transforms keep only the first ``max_length`` frames."""
    if not transform or transform.get("max_length") is None:
        return
    if not (transform.get("temporal") or {}).get("resize", False):
        raise ConfigError(
            f"the {trainer} trainer needs every frame its phrase is signed in, but transforms.max_length: "
            f"{transform['max_length']} with transforms.temporal.resize: false cuts longer sequences; set "
            "transforms.temporal.resize: true (resample to max_length) or transforms.max_length: null")


def ctc_frames_needed(target: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Fewest frames a CTC alignment of each target needs: its length plus one blank per repeat.

    ``target`` (B, L) padded with anything past ``target_lengths`` (B,)."""
    if target.shape[1] < 2:
        return target_lengths.clone()
    inside = torch.arange(1, target.shape[1], device=target.device)[None, :] < target_lengths[:, None]
    repeats = ((target[:, 1:] == target[:, :-1]) & inside).sum(1)
    return target_lengths + repeats


class FitCounter(nn.Module):
    """Training samples seen and those too short for their target, since the last epoch's report."""

    def __init__(self, consequence: str | None = None):
        super().__init__()
        self.consequence = consequence          # what happens to such a sample; None: no warning
        self.seen, self.too_short = 0, 0
        self._last = None                       # the batch counted last (AWP runs the loss twice on it)

    def observe(self, frames: torch.Tensor, needed: torch.Tensor, source: object = None) -> torch.Tensor:
        """Count a batch (in training mode only, once per ``source``, e.g. the batch's features
        tensor); returns the per-sample too-short flags."""
        short = frames < needed
        if self.training and (source is None or source is not self._last):
            self._last = source
            self.seen += int(short.numel())
            self.too_short += int(short.sum())
        return short

    def pop_train_stats(self) -> dict[str, int]:
        """``{"too_short": n, "samples": n}`` since the last call, then zeroed."""
        out = {"too_short": self.too_short, "samples": self.seen}
        if self.too_short and self.consequence:
            log.warning("%d of %d training samples had fewer frames (after subsampling) than their target "
                        "needs: %s", self.too_short, self.seen, self.consequence)
        self.seen, self.too_short, self._last = 0, 0, None
        return out


def pose_vector_counts(mask: torch.Tensor, subsample: int) -> torch.Tensor:
    """Real frames per sequence after ``subsample_frames`` (a window of k frames is real if any is)."""
    b, t = mask.shape
    pad = (-t) % subsample
    m = torch.nn.functional.pad(mask.bool(), (0, pad))
    return m.view(b, -1, subsample).any(2).sum(1)


def target_token_counts(tokenizer, texts: list, max_length: int) -> torch.Tensor:
    """Supervised tokens per sentence: its tokens plus end-of-sequence, at most ``max_length``."""
    return torch.tensor([min(len(tokenizer(t or "", add_special_tokens=False)["input_ids"]) + 1, max_length)
                         for t in texts], dtype=torch.long)
