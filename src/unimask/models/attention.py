"""Self- and cross-attention (MHA, GQA, MQA) with one signature for every backend.

Backends: ``sdpa`` (torch's scaled_dot_product_attention with a bool mask; the default), ``eager`` (plain
matmul/softmax that can return the attention probabilities, for analysis) and ``flex`` (FlexAttention,
CUDA only, since it has no backward on CPU: asking for it elsewhere raises ``ConfigError`` rather than
silently running SDPA).

Every backend takes the same mask: an ``AttentionMask`` (a mask function, ``unimask.models.masks``) or a
dense bool tensor. Only here does it take its backend's form (design note 3): a dense bool mask for SDPA
and eager, one FlexAttention ``BlockMask`` built from the mask function for ``flex`` (PyTorch's
FlexAttention, He et al. 2024), or nothing at all for SDPA when the mask is plainly causal
(``is_causal=True``) or plainly bidirectional. ``prepare_mask`` builds that form once per forward, before the
layers, so every layer reads the same tensor or BlockMask.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.models.kv_cache import LayerCache
from unimask.models.layers import linear, make_norm, rotate_qk
from unimask.models.masks import AttentionMask, to_attention_mask

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

Backend = Literal["sdpa", "eager", "flex"]
Mask = AttentionMask | Tensor


def prepare_mask(mask: Mask | None, backend: Backend, *, with_bias: bool = False,
                 return_probs: bool = False) -> Mask | None:
    """Build, once, the form of ``mask`` that ``attend`` will read for this backend.

    Called once per forward before the layers, so the layers share one dense mask or one BlockMask: an
    ``AttentionMask`` caches what it built and is returned as is; a bool tensor comes back as the
    ``(B, 1, Tq, Tk)`` dense mask. ``with_bias``: an additive bias comes too (T5), so SDPA needs the dense
    mask even where the mask is plain.
    """
    if not isinstance(mask, AttentionMask):
        return _dense(mask)
    if backend == "eager" or return_probs:
        mask.attention_dense()
    elif backend == "flex":
        mask.block_mask()
    elif mask.plain is None or with_bias:
        mask.attention_dense()
    return mask


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Mask | None, *, bias: Tensor | None = None,
           scale: float, dropout_p: float = 0.0, backend: Backend = "sdpa",
           return_probs: bool = False, softcap: float | None = None) -> tuple[Tensor, Tensor | None]:
    """Attention for ``q (B, H, Tq, D)``, ``k, v (B, Hkv, Tk, D)``; Hkv divides H (GQA/MQA).

    ``mask``: an ``AttentionMask`` covering ``(B, Tq, Tk)``, or a bool tensor (True = may attend)
    broadcastable to ``(B, H, Tq, Tk)`` (not for ``flex``: a BlockMask is built from a mask function, never
    from a dense tensor). ``bias``: additive ``(B or 1, H, Tq, Tk)`` (T5 relative positions).
    ``softcap``: scaled scores become ``c * tanh(scores / c)`` before the mask (Gemma 2; SDPA has no such
    hook, so ``sdpa`` computes it eagerly). Returns ``(out (B, H, Tq, D), probs or None)``.
    """
    if backend == "flex":
        why = flex_unavailable(q.device)
        if why:
            raise ConfigError(why)
    if backend == "eager" or return_probs or (softcap is not None and backend != "flex"):
        return _eager(q, k, v, _dense(mask), bias, scale, dropout_p, return_probs, softcap)
    if backend == "flex":
        if isinstance(mask, Tensor):
            raise TypeError("attention backend 'flex' takes an AttentionMask (a mask function, "
                            "unimask.models.masks), not a dense tensor")
        return _flex(q, k, v, mask.block_mask() if mask is not None else None, bias, scale, softcap), None
    return _sdpa(q, k, v, mask, bias, scale, dropout_p), None


def flex_unavailable(device: torch.device) -> str:
    """Why FlexAttention cannot run on ``device`` (one line), or ``""`` when it can (CUDA only)."""
    if device.type == "cuda":
        return ""
    return (f"attention backend 'flex' (FlexAttention) runs on CUDA only, and this runs on {device.type}; move "
            "the model to a GPU first, or use 'sdpa' (the default) or 'eager'")


def _dense(mask: Mask | None) -> Tensor | None:
    """``(B or 1, 1, Tq, Tk)`` bool (an empty row sees every key), or None for no mask."""
    if mask is None:
        return None
    if isinstance(mask, AttentionMask):
        return mask.attention_dense()
    return to_attention_mask(mask) if mask.dim() < 4 else mask


def _repeat_kv(x: Tensor, n_heads: int) -> Tensor:
    reps = n_heads // x.shape[1]
    return x if reps == 1 else x.repeat_interleave(reps, dim=1)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Mask | None, bias: Tensor | None, scale: float,
          dropout_p: float) -> Tensor:
    gqa = k.shape[1] != q.shape[1]
    plain = mask.plain if isinstance(mask, AttentionMask) and bias is None else None
    if plain is not None:  # exactly causal (Tq == Tk) or exactly bidirectional: no mask tensor at all
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale,
                                              is_causal=plain == "causal", enable_gqa=gqa)
    dense = _dense(mask)
    attn_mask: Tensor | None = dense
    if bias is not None:
        attn_mask = bias.to(q.dtype)
        if dense is not None:
            attn_mask = attn_mask.masked_fill(~dense, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale,
                                          enable_gqa=gqa)


def _eager(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, scale: float,
           dropout_p: float, return_probs: bool, softcap: float | None = None) -> tuple[Tensor, Tensor | None]:
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # (B, H, Tq, Tk)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if bias is not None:
        scores = scores + bias.float()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1).to(q.dtype)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return torch.matmul(dropped, v), (probs if return_probs else None)


@functools.cache
def _compiled_flex() -> Callable[..., Tensor]:
    """``flex_attention`` under ``torch.compile``: the fused kernel that skips the blocks a BlockMask hides
    (uncompiled, FlexAttention materialises the full score matrix). Built on first use, not at import."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def _flex(q: Tensor, k: Tensor, v: Tensor, block_mask: BlockMask | None, bias: Tensor | None, scale: float,
          softcap: float | None = None) -> Tensor:
    """FlexAttention with ``block_mask`` (a ``BlockMask`` or None) and the bias as a ``score_mod``; compiled
    on CUDA, the unfused reference elsewhere (CPU tests of the BlockMask path)."""
    from torch.nn.attention.flex_attention import flex_attention

    score_mod = None
    if bias is not None or softcap is not None:
        def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            if softcap is not None:
                score = torch.tanh(score / softcap) * softcap
            if bias is not None:
                score = score + bias[b if bias.shape[0] > 1 else 0, h, qi, ki]
            return score
    run = _compiled_flex() if q.device.type == "cuda" else flex_attention
    return run(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale,
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
        # Gemma scales by query_pre_attn_scalar ** -0.5 instead of head_dim ** -0.5
        scalar = config.query_pre_attn_scalar if config.query_pre_attn_scalar is not None else hd
        self.scale = 1.0 / math.sqrt(scalar) if config.scale_attention else 1.0
        self.softcap = config.attn_softcap
        if config.qk_norm:  # per-head norms of queries and keys (Dehghani et al. 2023; Qwen3, Gemma 3)
            self.q_norm = make_norm(config, hd)
            self.k_norm = make_norm(config, hd)
        self.qk_norm = config.qk_norm
        self.dropout = config.dropout
        self.backend: Backend = "sdpa"

    def forward(self, x: Tensor, mask: Mask | None, *, rope: tuple[Tensor, ...] | None = None,
                bias: Tensor | None = None, memory: Tensor | None = None, cache: LayerCache | None = None,
                return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        """``x (B, T, d)`` -> ``(B, T, d)``. ``memory (B, S, d)``: encoder states for cross attention."""
        B, T, _ = x.shape
        q = linear(self.q_proj, x).view(B, T, self.n_heads, self.head_dim)
        q = (self.q_norm(q) if self.qk_norm else q).transpose(1, 2)  # (B, H, T, hd)
        if self.cross and cache is not None and cache.length > 0:
            k, v = cache.keys(), cache.values()  # encoder keys/values, computed once
        else:
            src = memory if self.cross else x
            S = src.shape[1]
            k = linear(self.k_proj, src).view(B, S, self.n_kv_heads, self.head_dim)
            k = (self.k_norm(k) if self.qk_norm else k).transpose(1, 2)  # (B, Hkv, S, hd)
            v = linear(self.v_proj, src).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)
            if rope is not None:
                q, k = rotate_qk(q, k, rope)
            if cache is not None:
                k, v = cache.append(k, v)
        out, probs = attend(q, k, v, mask, bias=bias, scale=self.scale,
                            dropout_p=self.dropout if self.training else 0.0, backend=self.backend,
                            return_probs=return_probs, softcap=self.softcap)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*hd)
        return linear(self.o_proj, out), probs
