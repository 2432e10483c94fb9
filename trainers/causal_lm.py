"""`causal-lm`: pose-to-text translation with any HuggingFace decoder-only model (Qwen, Llama,
Gemma, Mistral, GPT-2), LoRA through peft.

Seed 002 of this project. The projected pose frames (``trainers.common.pose_encoder``) become a soft prefix
of the model's input: ``[BOS] pose frames, prompt tokens, target tokens, EOS``. Only the target
tokens (and EOS) are supervised; labels are -100 on the BOS, the frames and the prompt. Each
sequence is packed without holes (its real frames, then its prompt right after them), right-padded
for training and left-padded for generation, so position ids are the same in both (HF generation
derives them from the attention mask's running count, which is what right padding gives).

LoRA (``lora: true``, default): the text model is frozen and adapters of rank ``lora_r`` (scale
``lora_alpha / lora_r``) are added to ``lora_target_modules`` (default: peft's choice for the
architecture, e.g. q_proj/v_proj for Llama and Qwen, c_attn for GPT-2); the projector always trains.
``load_in: 4bit | 8bit`` loads the pretrained model quantized through bitsandbytes (QLoRA), which
needs bitsandbytes and a CUDA GPU: otherwise it is a ConfigError, never a silent full-precision load.

Checkpoints hold the whole model (frozen weights included) in the run's safetensors, as every
trainer's do; ``sltdata export RUN --format hf`` writes the merged text model with ``save_pretrained``.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import nn

from sltdata.loader import IGNORE_INDEX
from sltdata.errors import ConfigError
from sltdata.loader import IGNORE_INDEX
from sltdata.train.base import DatasetInfo
from sltdata.train.loop import unwrap
from trainers.common.pose_encoder import PoseProjector
from trainers.common.target_fit import FitCounter, require_no_cut
from trainers.common.translation import (TranslationModelConfig, TranslationTrainer, embedding_scale, write_hf_export,
                                         load_hf_model, load_tokenizer)

log = logging.getLogger(__name__)


@dataclass
class CausalLMConfig(TranslationModelConfig):
    prompt: str = " Translate the signing above into English:"
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Optional[list] = None   # None: peft's default for the architecture
    load_in: Literal["none", "4bit", "8bit"] = "none"
    num_beams: int = 1

    def validate(self) -> None:
        super().validate()
        if self.lora_r < 1:
            raise ConfigError("config model.lora_r: must be >= 1")
        if self.load_in != "none":
            if self.model_config is not None:
                raise ConfigError(f"config model.load_in={self.load_in}: quantized loading is for pretrained "
                                  "models (model.model), not model_config")
            missing = [what for what, ok in (("bitsandbytes", importlib.util.find_spec("bitsandbytes") is not None),
                                             ("a CUDA GPU", torch.cuda.is_available())) if not ok]
            if missing:
                raise ConfigError(f"config model.load_in={self.load_in} needs bitsandbytes and a CUDA GPU "
                                  f"(missing: {' and '.join(missing)}); use load_in: none")


class PoseCausalLM(nn.Module):
    """Projector + decoder-only LM (maybe LoRA-wrapped). ``forward`` returns the loss (DDP-friendly)."""

    def __init__(self, projector: PoseProjector, hf: nn.Module, tokenizer, prompt: str):
        super().__init__()
        self.projector, self.hf, self.tokenizer = projector, hf, tokenizer
        self.fit_counter = FitCounter()           # counted, not warned: attention needs no frame per token
        lead = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        self.register_buffer("lead_ids", torch.tensor(lead, dtype=torch.long), persistent=False)
        self.register_buffer("prompt_ids", torch.tensor(prompt_ids, dtype=torch.long), persistent=False)
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no end-of-sequence token; causal-lm needs one to stop generating")
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf.get_input_embeddings()(ids)

    def pack(self, features: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None,
             target_len: torch.Tensor | None, left_pad: bool):
        """Inputs embeddings (B, W, H), attention mask (B, W) and labels (B, W) of [lead, frames,
        prompt, target] per sequence, with no gaps between the pieces."""
        emb, m = self.projector(features, mask)
        b, t, h = emb.shape
        order = torch.sort((~m).to(torch.int8), dim=1, stable=True).indices   # real frames first, in order
        emb = torch.gather(emb, 1, order.unsqueeze(-1).expand(-1, -1, h))
        n = m.sum(1)
        pieces = [(self.embed(self.lead_ids).unsqueeze(0).expand(b, -1, -1), torch.full_like(n, len(self.lead_ids))),
                  (emb, n),
                  (self.embed(self.prompt_ids).unsqueeze(0).expand(b, -1, -1).to(emb.dtype),
                   torch.full_like(n, len(self.prompt_ids)))]
        if target is not None:
            pieces.append((self.embed(target.clamp_min(0)).to(emb.dtype), target_len))
        total = sum(length for _, length in pieces)
        width = int(total.max())
        start = (width - total) if left_pad else torch.zeros_like(total)
        rows, cols, vals, label_cols, label_rows, label_vals = [], [], [], [], [], []
        offset = start.clone()
        for k, (x, length) in enumerate(pieces):
            j = torch.arange(x.shape[1], device=x.device)
            valid = j.unsqueeze(0) < length.unsqueeze(1)                          # (B, L_k)
            r, c = valid.nonzero(as_tuple=True)
            rows.append(r)
            cols.append(offset[r] + c)
            vals.append(x[r, c])
            if k == 3:
                label_rows, label_cols, label_vals = r, offset[r] + c, target[r, c]
            offset = offset + length
        rows, cols = torch.cat(rows), torch.cat(cols)
        inputs = torch.zeros(b, width, h, dtype=emb.dtype, device=emb.device).index_put((rows, cols), torch.cat(vals))
        attn = torch.zeros(b, width, dtype=torch.long, device=emb.device).index_put(
            (rows, cols), torch.ones_like(rows))
        labels = None
        if target is not None:
            labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long, device=emb.device)
            labels[label_rows, label_cols] = label_vals
        return inputs, attn, labels

    def forward(self, features: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
                target_len: torch.Tensor) -> torch.Tensor:
        inputs, attn, labels = self.pack(features, mask, target, target_len, left_pad=False)
        return self.hf(inputs_embeds=inputs, attention_mask=attn, labels=labels).loss

    @torch.no_grad()
    def generate(self, features: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        inputs, attn, _ = self.pack(features, mask, None, None, left_pad=True)
        return self.hf.generate(inputs_embeds=inputs, attention_mask=attn, eos_token_id=self.eos_id,
                                pad_token_id=self.pad_id, **kwargs)


def target_ids(tokenizer, texts: list, max_length: int, eos_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of each sentence + EOS, right-padded (B, L), and their lengths."""
    seqs = [tokenizer(t or "", add_special_tokens=False)["input_ids"][:max_length - 1] + [eos_id] for t in texts]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids.to(device), torch.tensor([len(s) for s in seqs], device=device)


class CausalLMTrainer(TranslationTrainer):
    name = "causal-lm"
    config_class = CausalLMConfig

    def build(self, cfg: CausalLMConfig, info: DatasetInfo) -> nn.Module:
        from transformers import AutoModelForCausalLM

        require_no_cut(info.transform, self.name)
        self.tokenizer = load_tokenizer(cfg.tokenizer, cfg.model)
        kwargs = {}
        if cfg.load_in != "none":
            from transformers import BitsAndBytesConfig
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=cfg.load_in == "4bit", load_in_8bit=cfg.load_in == "8bit",
                bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
            kwargs["device_map"] = {"": torch.cuda.current_device()}
        hf = load_hf_model(AutoModelForCausalLM, cfg.model, cfg.model_config, self.tokenizer,
                           hint=" (encoder-decoder models: use --trainer seq2seq)", **kwargs)
        width = hf.get_input_embeddings().weight.shape[1]
        scale = embedding_scale(hf)
        if cfg.load_in != "none":
            from peft import prepare_model_for_kbit_training
            hf = prepare_model_for_kbit_training(hf)
        if cfg.lora and cfg.model_config is not None:
            log.warning("model.lora: true on a model built from model_config freezes random weights; only the "
                        "adapters and the projector learn (set model.lora: false to train the whole model)")
        if cfg.lora:
            from peft import LoraConfig, get_peft_model
            try:
                hf = get_peft_model(hf, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                   lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                                                   target_modules=cfg.lora_target_modules))
            except ValueError as e:
                raise ConfigError(f"config model.lora_target_modules: {e}") from None
        projector = PoseProjector(info.feature_dim, width, cfg.encoder, cfg.subsample, cfg.conv_dim,
                                  cfg.conv_layers, cfg.kernel_size, cfg.drop, scale)
        return PoseCausalLM(projector, hf, self.tokenizer, cfg.prompt)

    def loss(self, model: nn.Module, batch: dict, cfg: CausalLMConfig) -> torch.Tensor:
        core = unwrap(model)
        self.count_fit(model, batch, cfg)
        ids, lengths = target_ids(core.tokenizer, batch["text"], cfg.max_target_length, core.eos_id,
                                  batch["features"].device)
        return model(batch["features"], batch["mask"], ids, lengths)

    def export(self, model: nn.Module, info: DatasetInfo, path: Path, format: str, cfg: CausalLMConfig) -> Path:
        if format != "hf":
            return super().export(model, info, path, format, cfg)
        hf = model.hf.merge_and_unload() if hasattr(model.hf, "merge_and_unload") else model.hf  # LoRA folded in
        path = write_hf_export(hf, model.tokenizer, model.projector, path)
        (path / "prompt.txt").write_text(cfg.prompt)
        return path
