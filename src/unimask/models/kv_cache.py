"""Key/value caches for decoding: preallocated buffers that grow by writing, never by concatenation."""

from __future__ import annotations

import torch
from torch import Tensor


class LayerCache:
    """Keys and values of one attention layer, ``(B, Hkv, max_len, hd)`` each, filled up to ``length``."""

    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, *, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.k = torch.empty(batch, n_kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``k, v (B, Hkv, T, hd)`` after the cached ones; return all keys and values so far."""
        t = k.shape[2]
        end = self.length + t
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache overflow: {end} positions > capacity {self.k.shape[2]}")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.keys(), self.values()

    def keys(self) -> Tensor:
        return self.k[:, :, : self.length]

    def values(self) -> Tensor:
        return self.v[:, :, : self.length]

    def reorder(self, index: Tensor) -> None:
        """Keep only rows ``index`` of the batch (e.g. to drop finished sequences)."""
        self.k, self.v = self.k[index], self.v[index]


class KVCache:
    """Caches for a whole model: one ``LayerCache`` per self-attention layer (and per cross-attention
    layer of an encoder-decoder, filled once from the encoder), plus which key positions are real
    tokens (``key_valid (B, max_len)``; left padding of a batch of prompts is False) and whether any is not
    (``padded``)."""

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype, device: torch.device, cross_len: int = 0) -> None:
        def make(length: int) -> LayerCache:
            return LayerCache(batch, n_kv_heads, length, head_dim, dtype=dtype, device=device)

        self.layers = [make(max_len) for _ in range(n_layers)]
        self.cross = [make(cross_len) for _ in range(n_layers)] if cross_len else []
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.padded = False  # whether any written key is padding (else the mask needs no key_valid)
        self.max_len = max_len

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0

    def reorder(self, index: Tensor) -> None:
        for c in self.layers + self.cross:
            c.reorder(index)
        self.key_valid = self.key_valid[index]
