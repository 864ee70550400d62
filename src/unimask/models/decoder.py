"""Decoder-only LM: the causal decoder and the prefix decoder share one stack and differ only in the mask."""

from __future__ import annotations

import torch
from torch import Tensor

from unimask.config import ModelConfig
from unimask.models import masks
from unimask.models.base import LMOutput, UnimaskLM, positions_from
from unimask.models.kv_cache import KVCache
from unimask.models.transformer import Stack


class DecoderLM(UnimaskLM):
    """GPT/LLaMA (``arch="causal"``) or GLM/U-PaLM style (``arch="prefix"``) language model."""

    def __init__(self, config: ModelConfig) -> None:
        if config.arch == "encoder_decoder":
            raise ValueError("DecoderLM needs arch 'causal' or 'prefix'")
        super().__init__(config)
        self.decoder = Stack(config, config.n_layers)
        self.init_weights()
        self.tie_weights()

    def make_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        c = self.config
        p = next(self.parameters())
        return KVCache(c.n_layers, batch, c.kv_heads, max_len, c.head_dim_, dtype=dtype or p.dtype, device=p.device)

    def build_mask(self, batch: int, length: int, *, attention_mask: Tensor | None, segment_ids: Tensor | None,
                   is_prefix: Tensor | None, cache: KVCache | None, device: torch.device) -> Tensor:
        """Self-attention mask ``(B or 1, T, past + T)`` for this chunk of ``length`` tokens."""
        past = cache.length if cache is not None else 0
        mask = masks.causal(length, past + length, offset=past, device=device)[None]  # (1, T, past+T)
        if is_prefix is not None and self.config.arch == "prefix" and past == 0:
            mask = mask | (is_prefix[:, :, None] & is_prefix[:, None, :])
        if segment_ids is not None:
            if past:
                raise ValueError("packed segments cannot be combined with a KV cache")
            mask = mask & masks.segments(segment_ids)
        if cache is not None:
            if attention_mask is not None:
                cache.key_valid[:, past:past + length] = attention_mask.bool()
            mask = mask & cache.key_valid[:, None, : past + length]
        elif attention_mask is not None:
            mask = mask & masks.padding(attention_mask)
        return mask

    def forward(self, input_ids: Tensor, labels: Tensor | None = None, *, attention_mask: Tensor | None = None,
                segment_ids: Tensor | None = None, is_prefix: Tensor | None = None,
                prefix_lengths: Tensor | None = None, position_ids: Tensor | None = None,
                block_position_ids: Tensor | None = None, cache: KVCache | None = None,
                return_attentions: bool = False) -> LMOutput:
        """``input_ids (B, T)`` -> logits ``(B, T, V)``; loss on ``labels (B, T)`` (aligned, -100 = none).

        A prefix decoder sees its prefix bidirectionally: give ``prefix_lengths (B,)`` or per-token
        ``is_prefix (B, T)`` (packed rows). Without either, every token is causal.
        """
        B, T = input_ids.shape
        if prefix_lengths is not None and is_prefix is None:
            is_prefix = masks.prefix_flags(prefix_lengths.to(input_ids.device), T)
        if position_ids is None:
            past = cache.length if cache is not None else 0
            position_ids = positions_from(attention_mask, segment_ids, B, T, input_ids.device, offset=past)
        mask = self.build_mask(B, T, attention_mask=attention_mask, segment_ids=segment_ids, is_prefix=is_prefix,
                               cache=cache, device=input_ids.device)
        h, probs, _ = self.decoder(self.embed(input_ids), mask, position_ids, block_position_ids=block_position_ids,
                                cache=cache, return_probs=return_attentions)
        return self._output(h, labels, probs)
