"""What the `seq2seq` and `causal-lm` trainers share: loading a HuggingFace model and tokenizer
(from a name, a local directory, or a config for tests and from-scratch runs), translation metrics
and the predictions report.

Models: ``model: NAME_OR_PATH`` loads pretrained weights with ``from_pretrained`` (a local directory
works offline; a hub name needs the hub). ``model_config: {model_type: t5, d_model: 64, ...}`` builds a
randomly initialised model with ``AutoConfig.for_model`` instead — how the tests run, never touching
the network. Tokenizers: ``tokenizer: NAME_OR_PATH`` (default: the model's), or ``byt5`` for
transformers' byte-level ``ByT5Tokenizer``, which needs no files (vocabulary 384: 256 bytes, 3 special
tokens, 125 sentinels), so a config-built model has a tokenizer offline. The tokenizer is saved in the
run directory (``RUN_DIR/tokenizer``) beside the weights.

Metrics: corpus BLEU-4 and chrF with sacrebleu (its default 13a tokenization, exponential smoothing),
ROUGE-L F1 with Google's rouge-score (x100, like the other two).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from torch import nn

from sltdata.errors import ConfigError
from sltdata.train.base import DatasetInfo, Trainer
from sltdata.train.loop import unwrap
from trainers.common import CONFIGS_DIR
from trainers.common.target_fit import pose_vector_counts, target_token_counts

log = logging.getLogger(__name__)

BUILTIN_TOKENIZERS = ("byt5",)


def load_tokenizer(name: str | None, model: str | None):
    from transformers import AutoTokenizer, ByT5Tokenizer

    name = name or model
    if name is None:
        raise ConfigError("config model.tokenizer: a model built from model_config needs a tokenizer "
                          f"(a name or directory, or one of: {', '.join(BUILTIN_TOKENIZERS)})")
    if name == "byt5":
        return ByT5Tokenizer()
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config model.tokenizer: cannot load {name!r} ({str(e).splitlines()[0]})") from None


def special_token_defaults(tokenizer) -> dict:
    """Config values a from-scratch model needs to agree with its tokenizer."""
    out = {"vocab_size": len(tokenizer)}
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        out[key] = getattr(tokenizer, key, None)    # None too: a config's own default may be off-vocabulary
    return out


def load_hf_model(auto_class, model: str | None, model_config: dict | None, tokenizer, hint: str = "", **kwargs):
    """``auto_class.from_pretrained(model)`` or ``auto_class.from_config(AutoConfig.for_model(...))``;
    ``hint`` ends the error when the architecture is not one ``auto_class`` builds."""
    from transformers import AutoConfig

    if (model is None) == (model_config is None):
        raise ConfigError("config model: give exactly one of model (a name or directory) and model_config")
    if model_config is not None:
        d = dict(model_config)
        kind = d.pop("model_type", None)
        if not kind:
            raise ConfigError("config model.model_config: needs model_type (e.g. t5, bart, llama, gpt2)")
        for k, v in special_token_defaults(tokenizer).items():
            d.setdefault(k, v)
        try:
            cfg = AutoConfig.for_model(kind, **d)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"config model.model_config: {str(e).splitlines()[0]}") from None
        if type(cfg) not in auto_class._model_mapping:
            raise ConfigError(f"config model.model_config: {kind} is not an {auto_class.__name__} architecture{hint}")
        return auto_class.from_config(cfg)
    try:
        return auto_class.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0]
        if "Unrecognized configuration class" in msg:
            raise ConfigError(f"config model.model: {model!r} is not an {auto_class.__name__} architecture{hint}") from None
        raise ConfigError(f"config model.model: cannot load {model!r} ({msg})") from None


def embedding_scale(hf_model) -> float:
    """Typical size of one coordinate of the model's token embeddings (the projector starts there)."""
    import torch

    w = hf_model.get_input_embeddings().weight
    with torch.no_grad():
        return float(w.float().std()) or 1.0


def translation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU-4 and chrF (sacrebleu) and mean ROUGE-L F1 (rouge-score), all on a 0-100 scale."""
    import sacrebleu
    from rouge_score import rouge_scorer

    refs = [r or "" for r in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, refs)]
    return {"bleu": float(sacrebleu.corpus_bleu(predictions, [refs]).score),
            "chrf": float(sacrebleu.corpus_chrf(predictions, [refs]).score),
            "rougeL": float(100 * np.mean(rouge)) if rouge else 0.0}


def write_translation_report(outputs: dict[str, Any], out_dir: Path, examples: int = 10) -> list[Path]:
    """``predictions.csv`` (key, reference, prediction, sentence BLEU) and a few examples in the log."""
    import sacrebleu

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "predictions.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "reference", "prediction", "sentence_bleu"])
        for k, r, p in zip(outputs["key"], outputs["reference"], outputs["prediction"]):
            w.writerow([k, r, p, f"{sacrebleu.sentence_bleu(p, [r or '']).score:.2f}"])
    for r, p in list(zip(outputs["reference"], outputs["prediction"]))[:examples]:
        log.info("ref %-40r pred %r", r, p)
    return [path]


def write_hf_export(hf: nn.Module, tokenizer, projector: nn.Module, path: Path) -> Path:
    """``save_pretrained`` of the text model and tokenizer into ``path/`` (a ``.hf`` suffix dropped),
    the pose projector beside them as ``pose_projector.safetensors``."""
    from safetensors.torch import save_model

    path = Path(path).with_suffix("") if Path(path).suffix == ".hf" else Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    save_model(projector, str(path / "pose_projector.safetensors"))
    return path


@dataclass
class TranslationModelConfig:
    """The ``model:`` fields ``seq2seq`` and ``causal-lm`` share: which HF model, the pose projector,
    and generation."""

    model: Optional[str] = None            # hub name or local directory (pretrained weights)
    model_config: Optional[dict] = None    # or: build from this config (needs model_type)
    tokenizer: Optional[str] = None        # default: the model's; "byt5": byte-level, no files
    encoder: Literal["linear", "conv"] = "linear"
    subsample: int = 2                     # mean of every N frames before the projector
    conv_dim: int = 192
    conv_layers: int = 3
    kernel_size: int = 17
    drop: float = 0.1
    max_target_length: int = 128           # tokens of the reference kept for training
    num_beams: int = 4
    max_new_tokens: int = 64
    generate_kwargs: dict = field(default_factory=dict)

    def validate(self) -> None:
        if (self.model is None) == (self.model_config is None):
            raise ConfigError("config model: give exactly one of model.model (a name or directory) "
                              "and model.model_config")
        if min(self.subsample, self.num_beams, self.max_new_tokens, self.max_target_length, self.conv_layers) < 1:
            raise ConfigError("config model: subsample, num_beams, max_new_tokens, max_target_length and "
                              "conv_layers must be >= 1")
        if not 0 <= self.drop < 1:
            raise ConfigError("config model.drop: must be in [0, 1)")


class TranslationTrainer(Trainer):
    """Generation, metrics, reports and the tokenizer artifact, shared by ``seq2seq`` and ``causal-lm``.

    Subclasses build a model whose bare module has ``tokenizer`` and
    ``generate(features, mask, **kwargs) -> token ids``.
    """

    target = "text"
    monitor = "bleu"
    monitor_mode = "max"
    export_formats = ("hf",)
    configs_dir = CONFIGS_DIR

    def count_fit(self, model: nn.Module, batch: dict, cfg: Any):
        """Per-sample flags: fewer pose vectors (after subsampling) than target tokens. Counted over
        training epochs by the model's ``fit_counter`` (``trainers.common.target_fit``)."""
        core = unwrap(model)
        frames = pose_vector_counts(batch["mask"], cfg.subsample)
        needed = target_token_counts(core.tokenizer, batch["text"], cfg.max_target_length).to(frames.device)
        return core.fit_counter.observe(frames, needed, source=batch["features"])

    def predict(self, model: nn.Module, batch: dict, cfg: Any) -> dict[str, Any]:
        core = unwrap(model)
        ids = core.generate(batch["features"], batch["mask"], num_beams=cfg.num_beams,
                            max_new_tokens=cfg.max_new_tokens, **{"do_sample": False, **cfg.generate_kwargs})
        text = core.tokenizer.batch_decode(ids, skip_special_tokens=True)
        out = {"key": list(batch["key"]), "reference": [t or "" for t in batch["text"]],
               "prediction": [t.strip() for t in text]}
        if any(batch.get("text") or []):
            out["too_short"] = self.count_fit(model, batch, cfg).tolist()
        return out

    def metrics(self, outputs: dict[str, Any], info: DatasetInfo) -> dict[str, float]:
        out = translation_metrics(outputs["prediction"], outputs["reference"])
        if "too_short" in outputs:
            out["too_short"] = float(sum(outputs["too_short"]))   # fewer pose vectors than target tokens
        return out

    def write_report(self, outputs: dict[str, Any], info: DatasetInfo, out_dir: Path) -> list[Path]:
        return write_translation_report(outputs, out_dir)

    def save_artifacts(self, info: DatasetInfo, run_dir: Path) -> None:
        self.tokenizer.save_pretrained(str(Path(run_dir) / "tokenizer"))

