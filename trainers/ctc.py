"""`ctc`: fingerspelling recognition (pose frames -> characters) with CTC — model, recipe, metrics.

The task is the Kaggle "Google - American Sign Language Fingerspelling Recognition" competition
(2023) and seed 000 of this project: a sequence of landmark frames is spelled out as a phrase
(addresses, URLs, phone numbers) over the 59 characters of ``character_to_prediction_index.json``,
with no alignment between frames and characters, scored by the normalized Levenshtein distance.

- Encoder: the Conv1D + transformer stack of the `islr` trainer (the same blocks, from
  ``trainers.common.blocks``: masked batch norm, causal depthwise Conv1D with ECA, masked self-attention), emitting a
  character distribution plus the CTC blank for every (optionally subsampled) frame. ``arch:
  conformer`` reorders each stage Conformer/Squeezeformer-style: a half-step feed-forward, attention,
  then the Conv1D blocks, and a final layer norm. Attention alone cannot tell frame order, and in that
  order the first attention block comes before any convolution, so sinusoidal position encodings
  (Vaswani et al. 2017) are added to the stem's output first (the cnn-transformer order needs none:
  its causal convolutions see order before the first attention).
- Loss: ``torch.nn.functional.ctc_loss`` with each sequence's input length taken from its frame mask,
  so padded frames are never aligned to characters. Frames are never cut to fit ``max_length`` (the
  trainer refuses transforms that would; they resize), and a phrase still longer than its frames can
  align (``zero_infinity`` zeroes its loss) is counted: ``train_too_short`` per epoch in
  ``metrics.jsonl``, ``too_short`` in evaluation (``trainers.common.target_fit``).
- Character map: the dataset's (``character_to_prediction_index.json`` when the publisher shipped it,
  else built from the phrases by ``sltdata shard``), saved in the run's ``dataset.json``. The blank is
  the id after the last character.
- Decoding: greedy (best path), or ``decoder: beam`` — CTC prefix beam search with an optional
  character n-gram LM (``lm_order``) trained on the training phrases (see ``trainers.common.ctc_decode``).
- ``decoder: joint`` (the Fingerspelling 2nd place): a small autoregressive transformer decoder over
  characters on top of the encoder, loss ``ctc_weight`` x CTC + (1 - ``ctc_weight``) x cross-entropy
  (0.25 / 0.75), decoded by attention beam search scored with the CTC prefix probability
  (``joint_ctc_weight``; ``trainers.common.joint_decoder``). Greedy CTC output is reported beside it.
  It cannot be exported to ONNX (the decoding loop is not a graph).
- Metrics: the competition's score, 1 - sum(edit distance) / sum(reference length), with rapidfuzz's
  Levenshtein distance; the mean per-sequence character error rate; exact-match rate
  (``sltdata.train.metrics.text_metrics``). Reports:
  ``predictions.csv`` (reference beside prediction, greedy beside beam) and examples in the log.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.loop import unwrap
from sltdata.train.metrics import text_metrics
from trainers.common import CONFIGS_DIR
from trainers.common.blocks import Conv1DBlock, MaskedBatchNorm, SampleDropout, TransformerBlock
from trainers.common.ctc_decode import CharNgramLM, greedy_decode, prefix_beam_search
from trainers.common.joint_decoder import (CharDecoder, attention_loss, joint_beam_search, sinusoidal_positions,
                                           teacher_forcing)
from trainers.common.pose_encoder import subsample_frames
from trainers.common.target_fit import FitCounter, ctc_frames_needed, require_no_cut

log = logging.getLogger(__name__)


@dataclass
class CTCConfig:
    arch: Literal["cnn-transformer", "conformer"] = "cnn-transformer"
    dim: int = 192
    stages: int = 2                 # each: conv_per_stage Conv1D blocks + one transformer block
    conv_per_stage: int = 3
    kernel_size: int = 17
    dilations: list = field(default_factory=lambda: [1])
    expand: int = 2
    eca_kernel: int = 5
    heads: int = 4
    mlp_expand: int = 2
    drop: float = 0.1
    attn_drop: float = 0.1
    head_drop: float = 0.1
    subsample: int = 1              # average every N frames before the encoder (N x fewer CTC steps)
    decoder: Literal["greedy", "beam", "joint"] = "greedy"
    beam_width: int = 10
    beam_prune: float = 0.001       # characters under this per-frame probability are not tried
    lm_order: int = 0               # character n-gram LM for beam search; 0 = none
    lm_weight: float = 0.5          # shallow-fusion weight of log P_lm
    lm_add_k: float = 0.1
    length_bonus: float = 0.0       # per-character bonus offsetting the LM's preference for short output
    # decoder: joint (Fingerspelling 2nd place): CTC + an attention decoder over characters
    ctc_weight: float = 0.25        # training loss = w * CTC + (1 - w) * attention cross-entropy
    joint_ctc_weight: float = 0.3   # decoding score = w * log p_ctc(prefix) + (1 - w) * log p_att
    decoder_layers: int = 2

    def validate(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"config model.dim {self.dim} must be divisible by model.heads {self.heads}")
        if self.subsample < 1 or self.beam_width < 1 or self.lm_order < 0 or self.stages < 1:
            raise ConfigError("config model: subsample, beam_width and stages must be >= 1, lm_order >= 0")
        if self.lm_order and self.decoder != "beam":
            raise ConfigError("config model.lm_order needs model.decoder: beam (greedy decoding uses no LM)")
        if not self.dilations or not all(isinstance(d, int) and d >= 1 for d in self.dilations):
            raise ConfigError("config model.dilations: a list of integers >= 1")
        for name in ("drop", "attn_drop", "head_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"config model.{name}: must be in [0, 1)")
        if not (0 <= self.ctc_weight <= 1 and 0 <= self.joint_ctc_weight <= 1) or self.decoder_layers < 1:
            raise ConfigError("config model.ctc_weight and model.joint_ctc_weight must be in [0, 1], "
                              "model.decoder_layers >= 1")
        if not 0 < self.beam_prune < 1 or self.lm_add_k <= 0:
            raise ConfigError("config model.beam_prune must be in (0, 1) and model.lm_add_k > 0")


# --- model -----------------------------------------------------------------------------------------

class HalfFeedForward(nn.Module):
    """Conformer's macaron feed-forward: x + 0.5 * FFN(LN(x))."""

    def __init__(self, dim: int, expand: int, drop: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim * expand), nn.SiLU(), nn.Linear(dim * expand, dim))
        self.drop = SampleDropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.drop(self.ff(self.norm(x)))


class SinusoidalPosition(nn.Module):
    """Adds the fixed sin/cos position encoding of each frame index to (B, T, D); no weights, so it
    works at any length (speed augmentation, max_length 768) and leaves checkpoints unchanged."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + sinusoidal_positions(x.shape[1], self.dim, x.device).to(x.dtype)


class CTCModel(nn.Module):
    """features (B, T, D), mask (B, T) -> (logits (B, T', chars + 1), mask (B, T')); blank is last.

    With ``decoder: joint`` and decoder input ``tokens`` (B, L) it also returns the attention decoder's
    logits (B, L, chars + 1) (one forward, so DDP sees every weight used)."""

    def __init__(self, cfg: CTCConfig, feature_dim: int, characters: dict[str, int], lm: CharNgramLM | None):
        super().__init__()
        self.cfg, d = cfg, cfg.dim
        self.characters = dict(characters)
        num_chars = max(characters.values()) + 1
        self.stem = nn.Linear(feature_dim, d, bias=False)
        self.stem_bn = MaskedBatchNorm(d)
        self.position = SinusoidalPosition(d) if cfg.arch == "conformer" else nn.Identity()
        blocks: list[nn.Module] = []
        for s in range(cfg.stages):
            convs = [Conv1DBlock(d, cfg.kernel_size, cfg.dilations[(s * cfg.conv_per_stage + i) % len(cfg.dilations)],
                                 cfg.expand, cfg.drop, cfg.eca_kernel) for i in range(cfg.conv_per_stage)]
            attn = TransformerBlock(d, cfg.heads, cfg.mlp_expand, cfg.drop, cfg.attn_drop)
            if cfg.arch == "conformer":
                blocks += [HalfFeedForward(d, cfg.mlp_expand, cfg.drop), attn, *convs]
            else:
                blocks += [*convs, attn]
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d) if cfg.arch == "conformer" else nn.Identity()
        self.head_drop = nn.Dropout(cfg.head_drop)
        self.head = nn.Linear(d, num_chars + 1)
        self.decoder = CharDecoder(num_chars, d, cfg.decoder_layers, cfg.heads, cfg.mlp_expand, cfg.drop) \
            if cfg.decoder == "joint" else None
        self.lm = lm                                 # not used in forward; checkpointed with the weights
        self.fit_counter = FitCounter("the CTC loss of each is zero (zero_infinity)")   # no weights

    def forward(self, features: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None = None):
        states, mask = self.encode(features, mask)
        logits = self.head(self.head_drop(states))
        if tokens is None:
            return logits, mask
        return logits, mask, self.decoder(tokens, states, mask)

    def encode(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, T', D) under the CTC head, and their mask."""
        mask = mask.bool()
        x = torch.nan_to_num(features) * mask.unsqueeze(-1).to(features.dtype)
        x, mask = subsample_frames(x, mask, self.cfg.subsample)
        m = mask.unsqueeze(-1).to(x.dtype)
        x = self.position(self.stem_bn(self.stem(x), m))
        keys = mask.clone()
        keys[:, 0] = True                            # an empty sequence attends to frame 0, not NaN
        key_mask = keys[:, None, None, :]
        for blk in self.blocks:
            if isinstance(blk, Conv1DBlock):
                x = blk(x, m)
            elif isinstance(blk, TransformerBlock):
                x = blk(x, m, key_mask)
            else:
                x = blk(x)
        return self.norm(x), mask


# --- trainer ---------------------------------------------------------------------------------------

class CTCTrainer(Trainer):
    name = "ctc"
    config_class = CTCConfig
    target = "text"
    monitor = "score"
    monitor_mode = "max"
    export_formats = ("onnx",)
    configs_dir = CONFIGS_DIR

    def build(self, cfg: CTCConfig, info: DatasetInfo) -> nn.Module:
        if not info.characters:
            raise ConfigError("the ctc trainer needs a character map (shards of a dataset with phrases)")
        require_no_cut(info.transform, self.name)
        lm = CharNgramLM(info.characters, cfg.lm_order, cfg.lm_add_k) if cfg.lm_order else None
        return CTCModel(cfg, info.feature_dim, info.characters, lm)

    def loss(self, model: nn.Module, batch: dict, cfg: CTCConfig) -> torch.Tensor:
        terms = self.loss_terms(model, batch, cfg)
        if cfg.decoder != "joint":
            return terms["ctc"]
        return cfg.ctc_weight * terms["ctc"] + (1 - cfg.ctc_weight) * terms["attention"]

    def loss_terms(self, model: nn.Module, batch: dict, cfg: CTCConfig) -> dict[str, torch.Tensor]:
        """``ctc`` (mean over the batch), and with ``decoder: joint`` ``attention`` (mean token
        cross-entropy of the decoder under teacher forcing)."""
        core = unwrap(model)
        tokens = outputs = None
        if cfg.decoder == "joint":
            tokens, outputs = teacher_forcing(batch["target"], batch["target_lengths"],
                                              core.decoder.start, core.decoder.end)
            logits, mask, att_logits = model(batch["features"], batch["mask"], tokens)
        else:
            logits, mask = model(batch["features"], batch["mask"])
        if core.lm is not None and core.training:
            core.lm.observe(batch["text"])
        frames = mask.sum(1)
        core.fit_counter.observe(frames, ctc_frames_needed(batch["target"], batch["target_lengths"]),
                                 source=batch["features"])
        logp = logits.float().log_softmax(-1).transpose(0, 1)      # (T, B, C) as ctc_loss wants
        terms = {"ctc": F.ctc_loss(logp, batch["target"].clamp_min(0), frames, batch["target_lengths"],
                                   blank=logits.shape[-1] - 1, reduction="mean", zero_infinity=True)}
        if tokens is not None:
            terms["attention"] = attention_loss(att_logits, outputs)
        return terms

    def predict(self, model: nn.Module, batch: dict, cfg: CTCConfig) -> dict[str, Any]:
        core = unwrap(model)
        states, mask = core.encode(batch["features"], batch["mask"])
        logits = core.head(core.head_drop(states))
        logp = logits.float().log_softmax(-1).cpu().numpy()
        lengths = mask.sum(1).cpu().numpy()
        blank = logp.shape[-1] - 1
        chars = id_to_char(core.characters, blank)
        best = logp.argmax(-1)
        greedy = [decode_text(greedy_decode(best[i], int(lengths[i]), blank), chars) for i in range(len(logp))]
        out = {"key": list(batch["key"]), "reference": list(batch["text"]), "prediction": greedy}
        if "target_lengths" in batch:
            out["too_short"] = (mask.sum(1) < ctc_frames_needed(batch["target"], batch["target_lengths"])).tolist()
        if cfg.decoder == "beam":
            out["greedy"] = greedy
            out["prediction"] = [decode_text(prefix_beam_search(
                logp[i, :int(lengths[i])], blank, cfg.beam_width, core.lm, cfg.lm_weight, cfg.length_bonus,
                cfg.beam_prune), chars) for i in range(len(logp))]
        elif cfg.decoder == "joint":
            out["greedy"] = greedy
            out["prediction"] = [decode_text(joint_beam_search(
                core.decoder, states[i:i + 1], mask[i:i + 1], logp[i, :int(lengths[i])], blank, cfg.beam_width,
                cfg.joint_ctc_weight), chars) for i in range(len(logp))]
        return out

    def metrics(self, outputs: dict[str, Any], info: DatasetInfo) -> dict[str, float]:
        refs = [r or "" for r in outputs["reference"]]
        out = text_metrics(outputs["prediction"], refs)
        if "greedy" in outputs:
            out["greedy_score"] = text_metrics(outputs["greedy"], refs)["score"]
        if "too_short" in outputs:
            out["too_short"] = float(sum(outputs["too_short"]))   # sequences CTC could not align
        return out

    def write_report(self, outputs: dict[str, Any], info: DatasetInfo, out_dir: Path) -> list[Path]:
        from rapidfuzz.distance import Levenshtein

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "predictions.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["key", "reference", "prediction", "greedy", "distance"])
            greedy = outputs.get("greedy", outputs["prediction"])
            for k, r, p, g in zip(outputs["key"], outputs["reference"], outputs["prediction"], greedy):
                w.writerow([k, r, p, g, Levenshtein.distance(p, r or "")])
        for r, p in list(zip(outputs["reference"], outputs["prediction"]))[:10]:
            log.info("ref %-32r pred %r", r, p)
        return [path]

    def export(self, model: nn.Module, info: DatasetInfo, path: Path, format: str, cfg: CTCConfig) -> Path:
        """ONNX on raw landmarks -> per-frame log-probabilities of the real frames (blank last); the
        character map is in the metadata. Decoding (greedy or beam + LM) stays outside the graph."""
        if cfg.decoder == "joint":
            raise ConfigError(f"a model.decoder: joint run cannot be exported to {format}: its attention decoder "
                              "runs a beam search loop, not a graph (train with decoder: greedy or beam to export)")
        if format != "onnx":
            return super().export(model, info, path, format, cfg)
        from sltdata.train.export import export_raw_onnx
        return export_raw_onnx(model, info, path, output="log_probs", trainer=self.name)

    def save_artifacts(self, info: DatasetInfo, run_dir: Path) -> None:
        """The character map as the competition ships it, beside the run (blank = the next id)."""
        import json
        (Path(run_dir) / "character_to_prediction_index.json").write_text(
            json.dumps(info.characters or {}, ensure_ascii=False, indent=1))


# --- helpers ---------------------------------------------------------------------------------------

def id_to_char(characters: dict[str, int] | None, blank: int) -> list[str]:
    table = [""] * (blank + 1)
    for c, i in (characters or {}).items():
        table[i] = c
    return table


def decode_text(ids: list[int], chars: list[str]) -> str:
    return "".join(chars[i] for i in ids)
