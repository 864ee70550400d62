"""Self- and cross-attention (MHA, GQA, MQA) with one signature for every backend.

Backends: ``sdpa`` (torch's scaled_dot_product_attention with a bool mask; the default), ``eager`` (plain
matmul/softmax that can return the attention probabilities, for analysis) and ``flex`` (FlexAttention,
CUDA only, since it has no backward on CPU: asking for it elsewhere raises ``ConfigError`` rather than
silently running SDPA).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.models.kv_cache import LayerCache
from unimask.models.layers import rotate_qk
from unimask.models.masks import to_attention_mask

Backend = Literal["sdpa", "eager", "flex"]


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, bias: Tensor | None = None,
           scale: float, dropout_p: float = 0.0, backend: Backend = "sdpa",
           return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
    """Attention for ``q (B, H, Tq, D)``, ``k, v (B, Hkv, Tk, D)``; Hkv divides H (GQA/MQA).

    ``mask``: bool, True = may attend, broadcastable to ``(B, H, Tq, Tk)``. ``bias``: additive
    ``(B or 1, H, Tq, Tk)`` (T5 relative positions). Returns ``(out (B, H, Tq, D), probs or None)``.
    """
    if backend == "flex":
        why = flex_unavailable(q.device)
        if why:
            raise ConfigError(why)
    if mask is not None:
        mask = to_attention_mask(mask) if mask.dim() < 4 else mask
    if backend == "eager" or return_probs:
        return _eager(q, k, v, mask, bias, scale, dropout_p, return_probs)
    if backend == "flex":
        return _flex(q, k, v, mask, bias, scale), None
    attn_mask: Tensor | None = mask
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    gqa = k.shape[1] != q.shape[1]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale,
                                         enable_gqa=gqa)
    return out, None


def flex_unavailable(device: torch.device) -> str:
    """Why FlexAttention cannot run on ``device`` (one line), or ``""`` when it can (CUDA only)."""
    if device.type == "cuda":
        return ""
    return (f"attention backend 'flex' (FlexAttention) runs on CUDA only, and this runs on {device.type}; move "
            "the model to a GPU first, or use 'sdpa' (the default) or 'eager'")


def _repeat_kv(x: Tensor, n_heads: int) -> Tensor:
    reps = n_heads // x.shape[1]
    return x if reps == 1 else x.repeat_interleave(reps, dim=1)


def _eager(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, scale: float,
           dropout_p: float, return_probs: bool) -> tuple[Tensor, Tensor | None]:
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias.float()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1).to(q.dtype)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return torch.matmul(dropped, v), (probs if return_probs else None)


def _flex(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, scale: float) -> Tensor:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    block_mask = None
    if mask is not None:
        full = mask.expand(q.shape[0], 1, q.shape[2], k.shape[2])

        def mask_mod(b, h, qi, ki):
            return full[b, 0, qi, ki]

        block_mask = create_block_mask(mask_mod, q.shape[0], None, q.shape[2], k.shape[2], device=q.device)
    score_mod = None
    if bias is not None:
        def score_mod(score, b, h, qi, ki):
            return score + bias[b if bias.shape[0] > 1 else 0, h, qi, ki]
    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale,
                          enable_gqa=k.shape[1] != q.shape[1])


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections; self or cross attention."""

    def __init__(self, config: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim_
        self.cross = cross
        d, hd, qkv_b = config.d_model, config.head_dim_, config.use_qkv_bias
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=qkv_b)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=qkv_b)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=qkv_b)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=config.bias)
        self.scale = 1.0 / math.sqrt(hd) if config.scale_attention else 1.0
        self.dropout = config.dropout
        self.backend: Backend = "sdpa"

    def forward(self, x: Tensor, mask: Tensor | None, *, rope: tuple[Tensor, ...] | None = None,
                bias: Tensor | None = None, memory: Tensor | None = None, cache: LayerCache | None = None,
                return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, d)`` -> ``(B, T, d)``. ``memory (B, S, d)``: encoder states for cross attention."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        if self.cross and cache is not None and cache.length > 0:
            k, v = cache.keys(), cache.values()  # encoder keys/values, computed once
        else:
            src = memory if self.cross else x
            S = src.shape[1]
            k = self.k_proj(src).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, S, hd)
            v = self.v_proj(src).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)
            if rope is not None:
                q, k = rotate_qk(q, k, rope)
            if cache is not None:
                k, v = cache.append(k, v)
        out, probs = attend(q, k, v, mask, bias=bias, scale=self.scale,
                            dropout_p=self.dropout if self.training else 0.0, backend=self.backend,
                            return_probs=return_probs)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*hd)
        return self.o_proj(out), probs
