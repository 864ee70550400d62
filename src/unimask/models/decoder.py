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
                   is_prefix: Tensor | None, prefix_lengths: Tensor | None = None, cache: KVCache | None = None,
                   device: torch.device) -> masks.AttentionMask:
        """Self-attention mask over ``(B, T, past + T)`` for this chunk of ``length`` tokens (one per forward,
        shared by every layer); the prefix counts only for ``arch="prefix"``. With a cache, the chunk's
        ``attention_mask`` is recorded in ``cache.key_valid`` and every cached pad key stays hidden."""
        past = cache.length if cache is not None else 0
        key_valid = attention_mask
        if cache is not None:
            if attention_mask is not None:
                valid = attention_mask.bool()
                cache.key_valid[:, past:past + length] = valid
                cache.padded = cache.padded or not bool(valid.all())  # one check per prompt, not per step
            # (B, past + T); without padding none is needed, and a decoded token's mask stays plain
            key_valid = cache.key_valid[:, : past + length] if cache.padded else None
        prefix = self.config.arch == "prefix"
        return masks.decoder_self_attention(batch, length, past=past, is_prefix=is_prefix if prefix else None,
                                            prefix_lengths=prefix_lengths if prefix else None,
                                            segment_ids=segment_ids, key_valid=key_valid, device=device)

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
        if prefix_lengths is not None:
            prefix_lengths = prefix_lengths.to(input_ids.device)
        if position_ids is None:
            past = cache.length if cache is not None else 0
            position_ids = positions_from(attention_mask, segment_ids, B, T, input_ids.device, offset=past)
        mask = self.build_mask(B, T, attention_mask=attention_mask, segment_ids=segment_ids, is_prefix=is_prefix,
                               prefix_lengths=prefix_lengths, cache=cache, device=input_ids.device)
        h, probs, _ = self.decoder(self.embed(input_ids), mask, position_ids, block_position_ids=block_position_ids,
                                cache=cache, return_probs=return_attentions)
        return self._output(h, labels, probs)
