"""A joint CTC + attention head for the `ctc` trainer: a small autoregressive character decoder on top
of the CTC encoder, trained with a weighted sum of both losses and decoded jointly.

Hybrid CTC/attention (Watanabe et al., "Hybrid CTC/Attention Architecture for End-to-End Speech
Recognition", IEEE JSTSP 2017; ESPnet's ``CTCPrefixScore``): the attention decoder models the phrase as
a language does, CTC keeps its alignment monotonic. The Kaggle Fingerspelling 2nd place trained this
with loss 0.25 x CTC + 0.75 x cross-entropy and decoded jointly.

Decoding is attention beam search in which every hypothesis is scored
``λ · log p_ctc(prefix) + (1 - λ) · log p_att(prefix)``: ``log p_ctc(prefix)`` is the CTC *prefix*
probability (the probability that the frames' label sequence starts with the prefix), computed
exactly by the prefix-score recursion, and, once a hypothesis ends, the CTC probability of the whole
label sequence. Both scores only fall as a prefix grows, so the search stops as soon as no live
hypothesis can beat the best finished one. Only the decoder's ``ceil(1.5 · beam)`` best characters per
hypothesis get a CTC score (as ESPnet does), which keeps the per-frame recursion cheap.

Token ids: the characters keep their CTC ids ``0..C-1``; the decoder's input vocabulary adds
``C`` = start-of-sequence, its output vocabulary adds ``C`` = end-of-sequence (the CTC blank's id is
also ``C`` but never reaches the decoder).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # padding of text targets (the loader's)
NEG_INF = float("-inf")


def sinusoidal_positions(t: int, dim: int, device=None) -> torch.Tensor:
    """The fixed sin/cos position encoding (Vaswani et al. 2017) of positions 0..t-1, (t, dim) float32."""
    half = dim // 2
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / half))
    angle = pos * freq
    return F.pad(torch.cat([angle.sin(), angle.cos()], -1), (0, dim - 2 * half))


class CharDecoder(nn.Module):
    """tokens (B, L) [start, c1, c2, ...], encoder states (B, T, D), mask (B, T) -> (B, L, C + 1) logits
    of the next character or end-of-sequence at every position (causal: position i sees tokens <= i)."""

    def __init__(self, num_chars: int, dim: int, layers: int, heads: int, mlp_expand: int, drop: float):
        super().__init__()
        self.num_chars = num_chars
        self.embed = nn.Embedding(num_chars + 1, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, dim * mlp_expand, drop, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.out = nn.Linear(dim, num_chars + 1)

    @property
    def start(self) -> int:
        return self.num_chars

    @property
    def end(self) -> int:
        return self.num_chars

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keys = mask.bool().clone()
        keys[:, 0] = True                              # an empty sequence attends to frame 0, not NaN
        length = tokens.shape[1]
        x = self.embed(tokens) * math.sqrt(self.embed.embedding_dim)
        x = x + sinusoidal_positions(length, x.shape[-1], x.device).to(x.dtype)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
        y = self.layers(x, memory, tgt_mask=causal, memory_key_padding_mask=~keys)
        return self.out(y)


def teacher_forcing(target: torch.Tensor, lengths: torch.Tensor, start: int, end: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs [start, c1..cn] (padding: ``start``, never attended by a real position) and
    outputs [c1..cn, end] (padding ``IGNORE_INDEX``) from CTC targets (B, L) padded with IGNORE_INDEX."""
    b, n = target.shape
    inputs = torch.cat([torch.full((b, 1), start, dtype=target.dtype, device=target.device),
                        target.clamp_min(0)], 1)
    outputs = torch.cat([target, torch.full((b, 1), IGNORE_INDEX, dtype=target.dtype, device=target.device)], 1)
    outputs = outputs.masked_fill(torch.arange(n + 1, device=target.device)[None, :] >= lengths[:, None], IGNORE_INDEX)
    outputs[torch.arange(b, device=target.device), lengths] = end
    return inputs, outputs


def attention_loss(logits: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every real output token (characters and each phrase's end)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), outputs.reshape(-1),
                           ignore_index=IGNORE_INDEX)


# --- CTC prefix scores ---------------------------------------------------------------------------

def ctc_initial_state(logp: np.ndarray, blank: int) -> np.ndarray:
    """(T, 2) log [r_n, r_b] of the empty prefix: no label yet, blanks only."""
    r = np.full((len(logp), 2), NEG_INF)
    r[:, 1] = np.cumsum(logp[:, blank])
    return r


def ctc_prefix_scores(logp: np.ndarray, blank: int, state: np.ndarray, last: np.ndarray | int | None,
                      chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log CTC prefix probabilities of ``prefix + c`` for each candidate c, and their states.

    ``logp`` (T, V) frame log-probabilities; ``state`` (T, 2), the prefix's log [r_n, r_b] (the
    probability that frames 0..t spell the prefix with frame t a label (n) or a blank (b)); ``last``
    the prefix's last character (None or -1 when empty); ``chars`` (K,) the candidates. Several
    prefixes at once: ``state`` (N, T, 2), ``last`` (N,), ``chars`` (N, K) -> (N, K) and (N, K, T, 2),
    one loop over frames for all of them. A repeated character must follow a blank.
    """
    single = state.ndim == 2
    if single:
        state, chars = state[None], np.asarray(chars)[None]
        last = np.array([-1 if last is None else last])
    last = np.asarray(last)
    n, k = chars.shape
    t_len = len(logp)
    xs = logp[:, chars.reshape(-1)].reshape(t_len, n, k)             # (T, N, K)
    total = np.logaddexp(state[..., 0], state[..., 1]).T              # (T, N)
    phi = np.where((chars == last[:, None])[None], state[..., 1].T[:, :, None], total[:, :, None])
    rn = np.full((t_len, n, k), NEG_INF)
    rb = np.full((t_len, n, k), NEG_INF)
    rn[0] = np.where((last < 0)[:, None], xs[0], NEG_INF)
    psi = rn[0].copy()
    for t in range(1, t_len):
        rn[t] = np.logaddexp(rn[t - 1], phi[t - 1]) + xs[t]
        rb[t] = np.logaddexp(rn[t - 1], rb[t - 1]) + logp[t, blank]
        psi = np.logaddexp(psi, phi[t - 1] + xs[t])
    states = np.stack([rn, rb], -1).transpose(1, 2, 0, 3)              # (N, K, T, 2)
    return (psi[0], states[0]) if single else (psi, states)


def ctc_sequence_score(state: np.ndarray) -> float:
    """Log CTC probability that the frames spell exactly the prefix (it ends here)."""
    return float(np.logaddexp(state[-1, 0], state[-1, 1])) if len(state) else 0.0


@torch.no_grad()
def joint_beam_search(decoder: CharDecoder, memory: torch.Tensor, mask: torch.Tensor, logp: np.ndarray,
                      blank: int, beam: int, ctc_weight: float) -> list[int]:
    """Character ids of the best phrase for one sequence: ``memory`` (1, T, D) and ``mask`` (1, T) the
    encoder's, ``logp`` (T', V) the CTC log-probabilities of its T' real frames."""
    end = decoder.end
    if len(logp) == 0:
        return []
    live = [((), 0.0, ctc_initial_state(logp, blank), 0.0)]      # (ids, log p_att, ctc state, log p_ctc)
    best_ids, best = (), NEG_INF
    width = min(decoder.num_chars + 1, max(beam, math.ceil(1.5 * beam)))
    for _ in range(len(logp) + 1):                               # CTC spells at most T' characters
        tokens = torch.tensor([[decoder.start, *ids] for ids, *_ in live], device=memory.device)
        out = decoder(tokens, memory.expand(len(live), -1, -1), mask.expand(len(live), -1))
        att = out[:, -1].float().log_softmax(-1).cpu().numpy()
        grown = []
        top = np.argsort(-att, axis=1)[:, :width]                    # the decoder's best per hypothesis
        letters = np.argsort(-np.where(np.arange(end + 1) == end, NEG_INF, att), axis=1)[:, :min(width, end)]
        psi, states = ctc_prefix_scores(logp, blank, np.stack([h[2] for h in live]),
                                        np.array([h[0][-1] if h[0] else -1 for h in live]), letters)
        for i, (ids, att_score, state, _) in enumerate(live):
            for j, c in enumerate(letters[i].tolist()):
                a = att_score + float(att[i, c])
                grown.append(((*ids, c), a, states[i, j], float(psi[i, j]),
                              ctc_weight * float(psi[i, j]) + (1 - ctc_weight) * a))
            if end in top[i]:
                a = att_score + float(att[i, end])
                score = ctc_weight * ctc_sequence_score(state) + (1 - ctc_weight) * a
                if score > best:
                    best_ids, best = ids, score
        grown.sort(key=lambda h: -h[4])
        live = [h[:4] for h in grown[:beam] if h[4] > best]      # scores only fall as a prefix grows
        if not live:
            break
    if best == NEG_INF and live:                                 # nothing ended: the best unfinished
        return list(live[0][0])
    return list(best_ids)
