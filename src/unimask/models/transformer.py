"""One Transformer block and one stack of blocks, shared by all three families."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from unimask.config import ModelConfig
from unimask.models.attention import Attention, Mask, prepare_mask
from unimask.models.kv_cache import KVCache
from unimask.models.layers import MLP, RelativeBias, RotaryPositions, make_norm
from unimask.models.masks import AttentionMask, windowed


class Block(nn.Module):
    """Pre-norm (GPT-2, LLaMA, T5), post-norm (BART, original Transformer) or parallel (GPT-J, PaLM).

    ``sandwich_norm``: pre-norm with a second norm on each sublayer's output before the residual add
    (Ding et al. 2021, CogView's sandwich LayerNorm; Gemma 2/3's four norms per block, GLM-4)."""

    def __init__(self, config: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.post_norm = config.norm_position == "post"
        self.parallel = config.parallel_block
        self.attn_norm = make_norm(config)
        self.attn = Attention(config)
        if cross:
            self.cross_norm = make_norm(config)
            self.cross_attn = Attention(config, cross=True)
        self.has_cross = cross
        if not self.parallel:
            self.mlp_norm = make_norm(config)
        self.mlp = MLP(config)
        self.sandwich = config.sandwich_norm
        if self.sandwich:
            self.attn_post_norm = make_norm(config)
            self.mlp_post_norm = make_norm(config)
            if cross:
                self.cross_post_norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def _drop(self, x: Tensor) -> Tensor:
        """Dropout on a sublayer's output; without dropout no call at all (a decoding step makes many)."""
        return self.dropout(x) if self.training and self.dropout.p > 0 else x

    def forward(self, x: Tensor, mask: Mask | None, *, rope: tuple[Tensor, ...] | None = None,
                bias: Tensor | None = None, memory: Tensor | None = None, cross_mask: Mask | None = None,
                cache: KVCache | None = None, index: int = 0,
                return_probs: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``x (B, T, d)`` -> ``(B, T, d)``, and if asked this layer's self-attention probabilities
        ``(B, H, T, T_k)`` and cross-attention probabilities ``(B, H, T, S)`` (None without cross attention)."""
        self_cache = cache.layers[index] if cache is not None else None
        if self.parallel:  # x + attn(norm(x)) + mlp(norm(x)) (Wang & Komatsuzaki 2021; Chowdhery et al. 2022)
            h = self.attn_norm(x)
            a, probs = self.attn(h, mask, rope=rope, bias=bias, cache=self_cache, return_probs=return_probs)
            return x + self._drop(a) + self._drop(self.mlp(h)), probs, None
        if self.post_norm:
            a, probs = self.attn(x, mask, rope=rope, bias=bias, cache=self_cache, return_probs=return_probs)
            x = self.attn_norm(x + self._drop(a))
        else:
            a, probs = self.attn(self.attn_norm(x), mask, rope=rope, bias=bias, cache=self_cache,
                                 return_probs=return_probs)
            x = x + self._drop(self.attn_post_norm(a) if self.sandwich else a)
        cross_probs = None
        if self.has_cross:
            cross_cache = cache.cross[index] if cache is not None and cache.cross else None
            src = x if self.post_norm else self.cross_norm(x)
            c, cross_probs = self.cross_attn(src, cross_mask, memory=memory, cache=cross_cache,
                                             return_probs=return_probs)
            if self.sandwich:
                c = self.cross_post_norm(c)
            x = self.cross_norm(x + self._drop(c)) if self.post_norm else x + self._drop(c)
        if self.post_norm:
            return self.mlp_norm(x + self._drop(self.mlp(x))), probs, cross_probs
        m = self.mlp(self.mlp_norm(x))
        return x + self._drop(self.mlp_post_norm(m) if self.sandwich else m), probs, cross_probs


class Stack(nn.Module):
    """Embedding extras (positions, embedding norm), blocks and the final norm of one stack.

    The token embedding lives in the LM (shared by encoder, decoder and the output head).
    ``causal_relative``: T5 decoders bucket relative positions one-sidedly, encoders two-sidedly.
    ``encoder``: the encoder of an encoder-decoder, whose windowed layers see ``|q - k| <= sliding_window``
    when ``encoder_window_inclusive`` (T5Gemma; HF's bidirectional sliding window), else ``< sliding_window``.
    """

    def __init__(self, config: ModelConfig, n_layers: int, *, cross: bool = False,
                 causal_relative: bool = False, encoder: bool = False) -> None:
        super().__init__()
        self.config = config
        inclusive = encoder and config.encoder_window_inclusive and config.sliding_window is not None
        self.window = (config.sliding_window or 0) + (1 if inclusive else 0)  # window_fn keeps |q - k| < window
        if config.position == "learned":
            self.pos = nn.Embedding(config.max_seq_len + config.learned_pos_offset, config.d_model)
        if config.position in ("rope", "glm2d"):
            self.rope = RotaryPositions(config)
        # sliding-window layers (their own rotary base when local_rope_theta is set: Gemma 3)
        self.windowed = [config.windowed_layer(i) for i in range(n_layers)]
        if any(self.windowed) and config.local_rope_theta is not None and hasattr(self, "rope"):
            self.rope_local = RotaryPositions(config, local=True)
        if config.position == "t5_relative":
            self.rel_bias = RelativeBias(config, bidirectional=not causal_relative)
        if config.embedding_norm:
            self.embed_norm = make_norm(config)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Block(config, cross=cross) for _ in range(n_layers))
        self.final_norm = make_norm(config) if config.norm_position == "pre" else None

    def forward(self, tok: Tensor, mask: Mask | None, position_ids: Tensor, *,
                block_position_ids: Tensor | None = None, memory: Tensor | None = None,
                cross_mask: Mask | None = None, cache: KVCache | None = None,
                return_probs: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``tok (B, T, d)`` embedded tokens, ``position_ids (B, T)`` -> hidden states ``(B, T, d)``, and with
        ``return_probs`` each layer's self- and (decoder of an encoder-decoder) cross-attention probabilities."""
        h = tok * self.embed_scale if self.embed_scale != 1.0 else tok
        cfg = self.config
        if cfg.position == "learned":
            if int(position_ids.max()) >= cfg.max_seq_len:
                raise ValueError(f"position {int(position_ids.max())} >= max_seq_len {cfg.max_seq_len}")
            h = h + self.pos(position_ids + cfg.learned_pos_offset)
        if cfg.embedding_norm:
            h = self.embed_norm(h)
        h = self.dropout(h)
        rope = self.rope(position_ids, block_position_ids) if hasattr(self, "rope") else None
        rope_local = self.rope_local(position_ids, block_position_ids) if hasattr(self, "rope_local") else rope
        bias = None
        if cfg.position == "t5_relative":
            past = cache.length if cache is not None else 0
            T = h.shape[1]
            q_idx = torch.arange(past, past + T, device=h.device)[None]
            k_idx = torch.arange(0, past + T, device=h.device)[None]
            bias = self.rel_bias(q_idx, k_idx)  # (1, H, T, past + T)
        # the backend's form of each mask (dense (B, 1, Tq, Tk), BlockMask, or none), once per forward
        local_mask = mask
        if any(self.windowed):
            if not isinstance(mask, AttentionMask):
                raise TypeError("sliding-window layers take an AttentionMask (a mask function), not a dense tensor")
            local_mask = windowed(mask, self.window)
        if self.layers:
            first = self.layers[0]
            backend = first.attn.backend
            mask = prepare_mask(mask, backend, with_bias=bias is not None, return_probs=return_probs)
            if any(self.windowed) and local_mask is not mask:
                local_mask = prepare_mask(local_mask, backend, with_bias=bias is not None, return_probs=return_probs)
            if first.has_cross:
                cross_mask = prepare_mask(cross_mask, first.cross_attn.backend, return_probs=return_probs)
        probs: list[Tensor] = []
        cross_probs: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            local = self.windowed[i]
            h, p, c = layer(h, local_mask if local else mask, rope=rope_local if local else rope, bias=bias,
                            memory=memory, cross_mask=cross_mask, cache=cache, index=i, return_probs=return_probs)
            if p is not None:
                probs.append(p)
            if c is not None:
                cross_probs.append(c)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h, probs, cross_probs
