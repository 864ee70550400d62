"""Encoder-decoder LM (T5, BART): bidirectional encoder, causal decoder with cross-attention, shared embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unimask.config import ModelConfig
from unimask.models import masks
from unimask.models.base import LMOutput, UnimaskLM, positions_from
from unimask.models.kv_cache import KVCache
from unimask.models.transformer import Stack


def shift_right(labels: Tensor, start_token_id: int, pad_token_id: int) -> Tensor:
    """Decoder inputs from targets ``(B, T)``: start token, then targets[:-1]; -100 becomes pad."""
    out = labels.new_full(labels.shape, pad_token_id)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = start_token_id
    return out.masked_fill(out == -100, pad_token_id)


class EncoderDecoderLM(UnimaskLM):
    """``encoder`` and ``decoder`` stacks; ``embed`` is shared by both and (when tied) by the head."""

    def __init__(self, config: ModelConfig) -> None:
        if config.arch != "encoder_decoder":
            raise ValueError("EncoderDecoderLM needs arch 'encoder_decoder'")
        super().__init__(config)
        if config.encoder_embedding:  # T5Gemma: the encoder reads its own token embedding
            self.encoder_embed = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = Stack(config, config.encoder_layers, encoder=True)
        self.decoder = Stack(config, config.n_layers, cross=True, causal_relative=True)
        self.init_weights()
        self.tie_weights()

    def make_cache(self, batch: int, max_len: int, source_len: int, dtype: torch.dtype | None = None) -> KVCache:
        c = self.config
        p = next(self.parameters())
        return KVCache(c.n_layers, batch, c.kv_heads, max_len, c.head_dim_, dtype=dtype or p.dtype, device=p.device,
                       cross_len=source_len)

    def encode(self, input_ids: Tensor, *, attention_mask: Tensor | None = None, segment_ids: Tensor | None = None,
               position_ids: Tensor | None = None, return_attentions: bool = False) -> tuple[Tensor, list[Tensor]]:
        """``input_ids (B, S)`` -> encoder states ``(B, S, d)``; every token sees the whole (own) input."""
        B, S = input_ids.shape
        mask = masks.encoder_self_attention(B, S, segment_ids=segment_ids, attention_mask=attention_mask,
                                            device=input_ids.device)
        if position_ids is None:
            position_ids = positions_from(None, segment_ids, B, S, input_ids.device)
        embed = self.encoder_embed if self.config.encoder_embedding else self.embed
        h, probs, _ = self.encoder(embed(input_ids), mask, position_ids, return_probs=return_attentions)
        return h, probs

    def forward(self, input_ids: Tensor | None = None, labels: Tensor | None = None, *,
                decoder_input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                segment_ids: Tensor | None = None, decoder_segment_ids: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                decoder_position_ids: Tensor | None = None, encoder_out: Tensor | None = None,
                cache: KVCache | None = None, return_attentions: bool = False) -> LMOutput:
        """Source ``input_ids (B, S)``, decoder inputs ``(B, T)`` (default: labels shifted right).

        ``return_attentions``: ``attentions`` holds the encoder's then the decoder's self-attention
        probabilities per layer, ``cross_attentions`` the decoder's cross-attention ones ``(B, H, T, S)``.
        """
        c = self.config
        probs: list[Tensor] = []
        if encoder_out is None:
            if input_ids is None:
                raise ValueError("give input_ids or encoder_out")
            encoder_out, probs = self.encode(input_ids, attention_mask=attention_mask, segment_ids=segment_ids,
                                             position_ids=position_ids, return_attentions=return_attentions)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("give decoder_input_ids or labels")
            decoder_input_ids = shift_right(labels, c.start_token_id, c.pad_token_id)
        B, T = decoder_input_ids.shape
        S = encoder_out.shape[1]
        dev = decoder_input_ids.device
        past = cache.length if cache is not None else 0
        self_mask = masks.decoder_self_attention(B, T, past=past, segment_ids=decoder_segment_ids,
                                                 key_valid=decoder_attention_mask, device=dev)
        cross_mask = masks.cross_attention(B, T, S, dec_segment_ids=decoder_segment_ids, enc_segment_ids=segment_ids,
                                           enc_attention_mask=attention_mask, device=dev)
        if decoder_position_ids is None:
            decoder_position_ids = positions_from(None, decoder_segment_ids, B, T, dev, offset=past)
        h, dec_probs, cross_probs = self.decoder(self.embed(decoder_input_ids), self_mask, decoder_position_ids,
                                                 memory=encoder_out, cross_mask=cross_mask, cache=cache,
                                                 return_probs=return_attentions)
        return self._output(h, labels, probs + dec_probs, encoder_out=encoder_out, cross_probs=cross_probs)
