"""Text embeddings: the mean of a model's final hidden states over the tokens of each text.

Which states: a causal decoder's (each token sees the text up to itself), a prefix decoder's with the
whole text as its prefix (every token sees all of it, as an encoder does), an encoder-decoder's encoder
(the decoder is not run). Padding never counts. Each text is embedded on its own row with its own length,
so an embedding does not depend on the batch it came in (checked by the tests to fp32 rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from unimask.errors import UnimaskError


def embed_ids(model: torch.nn.Module, rows: Sequence[Sequence[int]], *, batch_size: int = 16,
              normalize: bool = False) -> Tensor:
    """``(N, d)`` fp32 embeddings of token-id rows (none empty)."""
    for i, row in enumerate(rows):
        if len(row) == 0:
            raise UnimaskError(f"input {i} is empty: there is nothing to embed")
    cfg = model.config
    if any(len(r) > cfg.max_seq_len for r in rows) and cfg.position == "learned":
        longest = max(len(r) for r in rows)
        raise UnimaskError(f"an input has {longest} tokens; the model's context is {cfg.max_seq_len}")
    device = next(model.parameters()).device
    out: list[Tensor] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                lengths = torch.tensor([len(r) for r in chunk], device=device)
                width = int(lengths.max())
                ids = torch.full((len(chunk), width), cfg.pad_token_id, dtype=torch.long, device=device)
                for i, r in enumerate(chunk):
                    ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
                keep = torch.arange(width, device=device)[None] < lengths[:, None]  # right padding
                h = _states(model, ids, keep.long(), lengths)
                w = keep.to(h.dtype)[..., None]
                out.append(((h * w).sum(1) / w.sum(1)).float())
    finally:
        model.train(was_training)
    emb = torch.cat(out)
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb


def _states(model: Any, ids: Tensor, attention_mask: Tensor, lengths: Tensor) -> Tensor:
    arch = model.config.arch
    if arch == "encoder_decoder":
        return model.encode(ids, attention_mask=attention_mask)[0]
    if arch == "prefix":
        return model(ids, attention_mask=attention_mask, prefix_lengths=lengths).hidden
    return model(ids, attention_mask=attention_mask).hidden


def embed_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
                normalize: bool = False) -> Tensor:
    """``(N, d)`` embeddings of ``texts`` (tokenized as they are, no special tokens added)."""
    if isinstance(texts, str):
        texts = [texts]
    rows = tokenizer.encode_batch(list(texts))
    for i, (text, row) in enumerate(zip(texts, rows)):
        if not row:
            raise UnimaskError(f"input {i} ({text!r}) has no tokens: there is nothing to embed")
    return embed_ids(model, rows, batch_size=batch_size, normalize=normalize)
