"""Choosing the next token: repetition penalty, temperature, top-k, top-p (nucleus), greedy."""

from __future__ import annotations

import torch
from torch import Tensor


def apply_repetition_penalty(logits: Tensor, previous: Tensor, penalty: float) -> Tensor:
    """CTRL-style penalty (Keskar et al. 2019): tokens already present lose probability.

    ``logits (B, V)``, ``previous (B, t)`` token ids (negative ids are ignored).
    """
    if penalty == 1.0 or previous.numel() == 0:
        return logits
    prev = previous.clamp(min=0)
    picked = logits.gather(1, prev)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    out = logits.clone()
    out.scatter_(1, prev, picked)
    return out


def top_k_top_p(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set logits outside the top-k and outside the smallest set with probability >= top_p to -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def scale_by_temperature(logits: Tensor, temperature: float) -> Tensor:
    """``logits (B, V) / temperature`` without overflow, so any ``temperature > 0`` samples correctly.

    Below 1 the row maximum is subtracted first (softmax is unchanged by a shift): every value is then <= 0,
    so a tiny temperature sends the others to -inf instead of the top ones to +inf (whose softmax is NaN).
    A temperature that is 0 in the logits' precision (e.g. 1e-300 in float32) gives the limit itself: the
    top tokens (ties included) keep 0, every other one -inf, i.e. greedy, ties drawn uniformly.
    """
    if temperature >= 1.0:
        return logits / temperature
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    if torch.tensor(temperature, dtype=logits.dtype) == 0:
        return shifted.masked_fill(shifted < 0, float("-inf"))
    return shifted / temperature


def apply_presence_frequency(logits: Tensor, generated: Tensor, presence: float, frequency: float) -> Tensor:
    """OpenAI's presence and frequency penalties over the tokens generated so far (the prompt does not
    count, as in vLLM): ``logits[j] -= frequency * count[j] + presence * (count[j] > 0)``.

    ``logits (B, V)``, ``generated (B, t)`` (negative ids, e.g. padding of finished rows, are ignored).
    """
    if (presence == 0 and frequency == 0) or generated.numel() == 0:
        return logits
    valid = generated >= 0
    counts = torch.zeros_like(logits)
    counts.scatter_add_(1, generated.clamp(min=0), valid.to(logits.dtype))
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def choose_next(logits: Tensor, *, previous: Tensor | None = None, do_sample: bool = False,
                temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """``logits (B, V)`` -> next token ids ``(B,)``."""
    logits = logits.float()
    if previous is not None:
        logits = apply_repetition_penalty(logits, previous, repetition_penalty)
    if not do_sample or temperature <= 0:
        return logits.argmax(dim=-1)
    logits = top_k_top_p(scale_by_temperature(logits, temperature), top_k, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
