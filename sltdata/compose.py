"""Signs -> sentence: the glosses an isolated-sign model predicts for consecutive clips (or for a
sliding window over one long sequence) turned into a sentence by an instruction-tuned language model.

Seed 001 ends this way with FLAN-T5; any local seq2seq or causal LM works (``AutoModelForSeq2SeqLM``
when the model's config is encoder-decoder, else ``AutoModelForCausalLM``). Nothing downloads: the
model is a local path or already in the Hugging Face cache (``local_files_only=True``), and a name
that is neither is one ``ConfigError`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sltdata.errors import ConfigError

PROMPT = ("Translate these sign language glosses into one fluent English sentence.\n"
          "Glosses: {glosses}\nSentence:")
DEFAULT_MAX_NEW_TOKENS = 40


def make_prompt(glosses: list[str], template: str = PROMPT) -> str:
    """The instruction the LM sees; glosses upper-cased and space-separated, as glosses are written."""
    return template.format(glosses=" ".join(g.upper() for g in glosses))


def collapse_repeats(signs: Iterable[str]) -> list[str]:
    """Consecutive identical signs are one sign held across clips or windows: keep one of each run."""
    out: list[str] = []
    for s in signs:
        if not out or out[-1] != s:
            out.append(s)
    return out


def record_sign(record: dict) -> str:
    """The sign a predict record stands for: its top-1 label, or a text trainer's decoded text."""
    return record["predictions"][0]["label"] if "predictions" in record else record.get("text", "")


@dataclass
class Composer:
    """A loaded LM and its tokenizer; ``compose(glosses)`` -> sentence (greedy, deterministic)."""

    name: str
    model: object
    tokenizer: object
    encoder_decoder: bool
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    def compose(self, glosses: list[str]) -> str:
        import torch

        if not glosses:
            return ""
        enc = self.tokenizer(make_prompt(glosses), return_tensors="pt")
        enc.pop("token_type_ids", None)
        with torch.no_grad():
            ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id)
        if not self.encoder_decoder:  # a causal LM returns the prompt first
            ids = ids[:, enc["input_ids"].shape[1]:]
        return self.tokenizer.decode(ids[0], skip_special_tokens=True).strip()


def load_composer(name_or_path: str | Path, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Composer:
    """A local model directory or a hub name already in the cache; never a download."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    name = str(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--compose {name}: not available locally (not a model directory, nor in the Hugging "
                          f"Face cache; nothing is downloaded): {first}") from None
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_pretrained(name, local_files_only=True).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Composer(name, model, tokenizer, bool(config.is_encoder_decoder), max_new_tokens)


def compose_records(records: list[dict], composer: Composer, by_key: bool = False) -> list[dict]:
    """Sentences for predict records: one for all records in order (consecutive clips), or with
    ``by_key`` one per sequence (its ``--window`` records, in frame order)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        gk = (r["input"], r["key"]) if by_key else ("", "")
        groups.setdefault(gk, []).append(r)
    out = []
    for (inp, key), rs in groups.items():
        glosses = collapse_repeats(record_sign(r) for r in rs)
        out.append({"input": inp if by_key else [r["input"] for r in rs],
                    "key": key if by_key else [r["key"] for r in rs],
                    "glosses": glosses, "sentence": composer.compose(glosses)})
    return out
