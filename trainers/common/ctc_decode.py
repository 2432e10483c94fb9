"""CTC decoding for the `ctc` trainer: greedy, and prefix beam search with a character n-gram LM.

Why in-repo and not a library: torchaudio's ``ctc_decoder`` (flashlight) is gone from current
torchaudio and its wheels pin an older torch than the project's; pyctcdecode scores *words* with a
KenLM model, and KenLM ships no ``lmplz`` in its pip package to train one, while the Fingerspelling
phrases (addresses, URLs, phone numbers) call for a *character* model trained from the training
phrases. A character n-gram with add-k smoothing plus the CTC prefix beam search of Hannun et al.,
"First-Pass Large Vocabulary Continuous Speech Recognition using Bi-Directional Recurrent DNNs"
(2014), with shallow fusion (score = log P_ctc + alpha * log P_lm + beta * length), is a page of code.

The LM learns from the phrases the model trains on: :class:`CharNgramLM` is a module of the model that
collects the distinct training phrases during the first epoch (``observe``; the shared loop's
``set_train_progress`` hook closes collection) and stores them as its ``extra_state`` (a uint8 tensor of
UTF-8 text), so the LM is checkpointed, resumed and reloaded with the weights and never sees
validation phrases.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import torch
from torch import nn

NEG_INF = float("-inf")
_STATE_VERSION = 1


def greedy_decode(ids: np.ndarray, length: int, blank: int) -> list[int]:
    """Best path: argmax ids (T,) of the first ``length`` frames, repeats merged, blanks removed."""
    ids = ids[:length]
    if not len(ids):
        return []
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return [int(i) for i in ids[keep & (ids != blank)]]


class CharNgramLM(nn.Module):
    """A character n-gram language model with add-k smoothing and backoff to shorter contexts.

    Outcomes are the characters of the run's map plus end-of-phrase; contexts are padded with a
    start symbol. P(c | h) = (n(h, c) + k) / (n(h) + k * |outcomes|) for the longest suffix h of the
    history (at most ``order - 1`` characters) seen in training; an unseen history backs off to a
    shorter one (down to the unigram), so the model never gives an unseen context a flat distribution.
    """

    def __init__(self, characters: dict[str, int], order: int, add_k: float = 0.1):
        super().__init__()
        self.characters, self.order, self.add_k = dict(characters), int(order), float(add_k)
        self.vocab = max(characters.values()) + 1 if characters else 0
        self.eos, self.bos = self.vocab, self.vocab + 1
        self.phrases: dict[str, None] = {}       # distinct training phrases, in first-seen order
        self.collecting = True
        self._counts: dict[tuple, np.ndarray] | None = None
        self._cache: dict[tuple, np.ndarray] = {}

    # --- collection (training) --------------------------------------------------------------
    def observe(self, texts) -> None:
        if not self.collecting:
            return
        before = len(self.phrases)
        for t in texts:
            if t:
                self.phrases.setdefault(str(t).replace("\n", " "), None)
        if len(self.phrases) != before:
            self._counts, self._cache = None, {}

    def set_train_progress(self, epoch: int) -> None:
        """Called by the shared loop before each epoch: phrases are collected in epoch 0 only. Under
        torchrun each rank saw its own shards, so the ranks pool their phrases when collection ends."""
        if epoch < 1 or not self.collecting:
            return
        self.collecting = False
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, list(self.phrases))
            self.phrases = {p: None for part in gathered for p in part}
            self._counts, self._cache = None, {}

    def get_extra_state(self) -> torch.Tensor:
        text = "\n".join(self.phrases).encode("utf-8")
        head = bytes([_STATE_VERSION, int(self.collecting)])
        return torch.frombuffer(bytearray(head + text), dtype=torch.uint8).clone()

    def set_extra_state(self, state: torch.Tensor) -> None:
        raw = bytes(state.cpu().numpy().tobytes())
        if not raw or raw[0] != _STATE_VERSION:
            raise ValueError("character LM state of an unknown version")
        self.collecting = bool(raw[1])
        text = raw[2:].decode("utf-8")
        self.phrases = {p: None for p in text.split("\n")} if text else {}
        self._counts, self._cache = None, {}

    # --- the model --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return [self.characters[c] for c in text if c in self.characters]

    def _fit(self) -> dict[tuple, np.ndarray]:
        counts: dict[tuple, Counter] = defaultdict(Counter)
        for p in self.phrases:
            ids = [self.bos] * (self.order - 1) + self.encode(p) + [self.eos]
            for i in range(self.order - 1, len(ids)):
                for n in range(self.order):          # history lengths 0 .. order-1
                    counts[tuple(ids[i - n:i])][ids[i]] += 1
        out = {}
        for h, c in counts.items():
            v = np.zeros(self.vocab + 1, dtype=np.float64)
            v[list(c)] = list(c.values())
            out[h] = v
        return out

    def log_probs(self, history: tuple[int, ...]) -> np.ndarray:
        """log P(outcome | history) over all characters and end-of-phrase (index ``eos``)."""
        n = self.order - 1
        h = ((self.bos,) * n + tuple(history))[-n:] if n else ()
        if h in self._cache:
            return self._cache[h]
        if self._counts is None:
            self._counts = self._fit()
        ctx = h
        while ctx and ctx not in self._counts:       # back off to the longest seen suffix
            ctx = ctx[1:]
        c = self._counts.get(ctx, np.zeros(self.vocab + 1))
        lp = np.log((c + self.add_k) / (c.sum() + self.add_k * (self.vocab + 1)))
        self._cache[h] = lp
        return lp

    def score(self, text: str) -> float:
        """log P(text, end) under the model (for tests and diagnostics)."""
        ids, total = self.encode(text), 0.0
        for i, c in enumerate(ids + [self.eos]):
            total += float(self.log_probs(tuple(ids[:i]))[c])
        return total


def prefix_beam_search(logp: np.ndarray, blank: int, beam_width: int = 10, lm: CharNgramLM | None = None,
                       lm_weight: float = 0.5, length_bonus: float = 0.0, prune: float = 1e-3) -> list[int]:
    """CTC prefix beam search over log-probabilities (T, V) of one sequence's real frames.

    Each prefix keeps the probability of ending in blank and in non-blank (so "aa" needs a blank
    between the two a's); with an LM, extending a prefix by c adds ``lm_weight * log P_lm(c | prefix)
    + length_bonus``, and the end-of-phrase probability is added before the final choice. Characters
    with per-frame probability under ``prune`` are not tried (CTC output is peaky; this keeps the
    search to a handful of candidates per frame).
    """
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, NEG_INF)}
    fused: dict[tuple, float] = {(): 0.0}        # LM + length part of each prefix's score
    log_prune = math.log(prune)

    def extension(prefix: tuple, c: int) -> float:
        if lm is None:
            return length_bonus
        return lm_weight * float(lm.log_probs(prefix)[c]) + length_bonus

    for t in range(logp.shape[0]):
        row = logp[t]
        cands = [int(c) for c in np.flatnonzero(row > log_prune) if c != blank]
        if not cands:
            cands = [int(c) for c in np.argsort(-row)[:2] if c != blank][:1]
        nxt: dict[tuple, list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        pblank = float(row[blank])
        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            n = nxt[prefix]
            n[0] = np.logaddexp(n[0], total + pblank)
            last = prefix[-1] if prefix else None
            for c in cands:
                p = float(row[c])
                new = prefix + (c,)
                if new not in fused:
                    fused[new] = fused[prefix] + extension(prefix, c)
                m = nxt[new]
                if c == last:                       # "a" + "a" without a blank stays "a"
                    n[1] = np.logaddexp(n[1], pnb + p)
                    m[1] = np.logaddexp(m[1], pb + p)
                else:
                    m[1] = np.logaddexp(m[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: -(np.logaddexp(*kv[1]) + fused[kv[0]]))[:beam_width]
        beams = {k: (v[0], v[1]) for k, v in ranked}

    def final(prefix: tuple) -> float:
        s = np.logaddexp(*beams[prefix]) + fused[prefix]
        if lm is not None:
            s += lm_weight * float(lm.log_probs(prefix)[lm.eos])
        return s

    return list(max(beams, key=final))
