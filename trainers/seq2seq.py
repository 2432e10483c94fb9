"""`seq2seq`: pose-to-text translation with any HuggingFace encoder-decoder (T5, mT5, BART, mBART).

Seed 002 of this project. The pose sequence replaces the source sentence: a projector
(``trainers.common.pose_encoder``: linear, or the `islr` Conv1D stack, after frame subsampling) turns
frames into vectors of the model's width, which go to the pretrained encoder as ``inputs_embeds``
with the frame mask as ``attention_mask``; the decoder is trained with teacher forcing on the
sentence as the model's own tokenizer splits it (``text_target=``, so mBART's target-language tokens
are right) and generates with beam search at evaluation.

Config (``model`` section): ``model`` (a hub name or local directory; pretrained weights) or
``model_config`` (a config dict with ``model_type``, random weights: tests and from-scratch runs),
``tokenizer`` (default: the model's; ``byt5`` needs no files), projector options, generation options
(``num_beams``, ``max_new_tokens``, and ``generate_kwargs`` passed to ``generate``, e.g.
``forced_bos_token_id`` for mBART). Metrics: BLEU-4, chrF, ROUGE-L (``trainers.common.translation``).
``sltdata export RUN --format hf`` writes the text model and tokenizer with ``save_pretrained`` and
the projector as safetensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sltdata.loader import IGNORE_INDEX
from sltdata.train.base import DatasetInfo
from sltdata.train.loop import unwrap
from trainers.common.pose_encoder import PoseProjector
from trainers.common.target_fit import FitCounter, require_no_cut
from trainers.common.translation import (TranslationModelConfig, TranslationTrainer, embedding_scale, write_hf_export,
                                         load_hf_model, load_tokenizer)

log = logging.getLogger(__name__)


@dataclass
class Seq2SeqConfig(TranslationModelConfig):
    """The ``model:`` section: every field is shared with causal-lm (``TranslationModelConfig``)."""


class PoseSeq2Seq(nn.Module):
    """Projector + encoder-decoder. ``forward`` returns the teacher-forced loss (so DDP wraps it)."""

    def __init__(self, projector: PoseProjector, hf: nn.Module, tokenizer):
        super().__init__()
        self.projector, self.hf = projector, hf
        self.tokenizer = tokenizer                 # plain attribute: not weights
        self.fit_counter = FitCounter()           # counted, not warned: attention needs no frame per token

    def encode(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, m = self.projector(features, mask)
        m = m.clone()
        m[:, 0] = True                             # an empty sequence still has one (zero) frame to attend to
        return emb, m.long()

    def forward(self, features: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb, m = self.encode(features, mask)
        return self.hf(inputs_embeds=emb, attention_mask=m, labels=labels).loss

    @torch.no_grad()
    def generate(self, features: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        emb, m = self.encode(features, mask)
        return self.hf.generate(inputs_embeds=emb, attention_mask=m, **kwargs)


def text_labels(tokenizer, texts: list, max_length: int, device) -> torch.Tensor:
    """Token ids of the target sentences, padding -> IGNORE_INDEX (ignored by the loss)."""
    enc = tokenizer(text_target=[t or "" for t in texts], max_length=max_length, truncation=True,
                    padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
    return labels.to(device)


class Seq2SeqTrainer(TranslationTrainer):
    name = "seq2seq"
    config_class = Seq2SeqConfig

    def build(self, cfg: Seq2SeqConfig, info: DatasetInfo) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        require_no_cut(info.transform, self.name)
        self.tokenizer = load_tokenizer(cfg.tokenizer, cfg.model)
        hf = load_hf_model(AutoModelForSeq2SeqLM, cfg.model, cfg.model_config, self.tokenizer,
                           hint=" (decoder-only models: use --trainer causal-lm)")
        width = hf.get_input_embeddings().weight.shape[1]
        projector = PoseProjector(info.feature_dim, width, cfg.encoder, cfg.subsample, cfg.conv_dim,
                                  cfg.conv_layers, cfg.kernel_size, cfg.drop, embedding_scale(hf))
        return PoseSeq2Seq(projector, hf, self.tokenizer)

    def loss(self, model: nn.Module, batch: dict, cfg: Seq2SeqConfig) -> torch.Tensor:
        self.count_fit(model, batch, cfg)
        labels = text_labels(unwrap(model).tokenizer, batch["text"], cfg.max_target_length, batch["features"].device)
        return model(batch["features"], batch["mask"], labels)

    def export(self, model: nn.Module, info: DatasetInfo, path: Path, format: str, cfg: Seq2SeqConfig) -> Path:
        if format != "hf":
            return super().export(model, info, path, format, cfg)
        return write_hf_export(model.hf, model.tokenizer, model.projector, path)
