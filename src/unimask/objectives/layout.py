"""Family layouts and packing: ``Example`` -> the batch contract (numpy; the pipeline makes tensors).

- Causal decoder: ``source + target`` in one row; labels are aligned with the logits (position t predicts
  ``labels[t]``), so the last source position predicts ``target[0]``; loss only on the target.
  (A full causal LM has ``source = [bos]``, so every text token carries loss.)
- Prefix decoder: the same row with ``is_prefix`` over the source (bidirectional; Raffel et al. 2020,
  section 3.2.1; Dong et al. 2019).
- Encoder-decoder: ``source`` into the encoder; the decoder reads ``[start] + target[:-1]`` and predicts
  ``target`` (teacher forcing; Vaswani et al. 2017).
An example with ``target_inputs`` (GLM's Part B) feeds those tokens instead of the shifted target.

Packing puts several examples in one row (as T5's packed feature converter): ``segment_ids`` 1, 2, ...
per example (0 = padding), positions restart at 0 in each example, so with the segment mask no token
attends across examples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unimask.objectives.base import IGNORE, Example

ARCHS = ("causal", "prefix", "encoder_decoder")
Item = dict[str, np.ndarray]


def layout_decoder(ex: Example, *, prefix: bool, with_2d: bool = False) -> Item:
    """One decoder row ``(L,)`` per key: input_ids, labels, position_ids, is_prefix [, block_position_ids]."""
    S = len(ex.source)
    if ex.target_inputs is None:
        tokens = np.concatenate([ex.source, ex.target[:-1]])  # (S + T - 1,)
        labels = np.concatenate([np.full(S - 1, IGNORE, dtype=np.int64), ex.target])
    else:
        tokens = np.concatenate([ex.source, ex.target_inputs])  # (S + T,)
        labels = np.concatenate([np.full(S, IGNORE, dtype=np.int64), ex.target])
    L = len(tokens)
    item: Item = {"input_ids": tokens, "labels": labels}
    if ex.positions is not None and len(ex.positions) == L:
        item["position_ids"] = ex.positions.astype(np.int64)
    else:
        item["position_ids"] = np.arange(L, dtype=np.int64)
    if prefix:
        flags = np.zeros(L, dtype=bool)
        flags[:S] = True
        item["is_prefix"] = flags
    if with_2d:
        if ex.block_positions is not None and len(ex.block_positions) == L:
            item["block_position_ids"] = ex.block_positions.astype(np.int64)
        else:
            item["block_position_ids"] = np.zeros(L, dtype=np.int64)
    return item


def layout_encoder_decoder(ex: Example, *, start_id: int) -> Item:
    """Encoder ``input_ids (S,)``; decoder ``decoder_input_ids (T,)`` and ``labels (T,)``."""
    if ex.target_inputs is not None:
        dec_in = ex.target_inputs
    else:
        dec_in = np.concatenate([[start_id], ex.target[:-1]]).astype(np.int64)  # (T,)
    S, T = len(ex.source), len(ex.target)
    return {"input_ids": ex.source, "position_ids": np.arange(S, dtype=np.int64),
            "decoder_input_ids": dec_in, "labels": ex.target, "decoder_position_ids": np.arange(T, dtype=np.int64)}


def layout(ex: Example, arch: str, *, start_id: int = 0, with_2d: bool = False) -> Item:
    """Lay one example out for ``arch`` ("causal", "prefix" or "encoder_decoder")."""
    if arch == "encoder_decoder":
        return layout_encoder_decoder(ex, start_id=start_id)
    if arch in ("causal", "prefix"):
        return layout_decoder(ex, prefix=arch == "prefix", with_2d=with_2d)
    raise ValueError(f"unknown arch {arch!r}; use one of {', '.join(ARCHS)}")


def item_lengths(item: Item) -> tuple[int, int]:
    """``(row length, decoder length)`` an item needs (decoder length 0 for decoder-only)."""
    dec = len(item["decoder_input_ids"]) if "decoder_input_ids" in item else 0
    return len(item["input_ids"]), dec


# Keys of the encoder side (and the decoder-only row) vs. the decoder side of an encoder-decoder.
_DECODER_SIDE = ("decoder_input_ids", "labels", "decoder_position_ids")
_PAD_VALUES = {"labels": IGNORE, "is_prefix": False}


def pack_rows(items: Sequence[Item], seq_len: int, target_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Pack items into ONE row per key, padded to ``seq_len`` (decoder side: ``target_len``).

    Adds ``segment_ids`` (and ``decoder_segment_ids`` for an encoder-decoder): example k gets k + 1.
    """
    if not items:
        raise ValueError("cannot pack zero items")
    encdec = "decoder_input_ids" in items[0]
    out: dict[str, np.ndarray] = {}
    for key in items[0]:
        width = target_len if encdec and key in _DECODER_SIDE else seq_len
        parts = [it[key] for it in items]
        row = np.concatenate(parts)
        if len(row) > width:
            raise ValueError(f"packed {key} has {len(row)} tokens, more than {width}")
        fill = _PAD_VALUES.get(key, pad_id if key in ("input_ids", "decoder_input_ids") else 0)
        padded = np.full(width, fill, dtype=row.dtype)
        padded[: len(row)] = row
        out[key] = padded
    seg = np.concatenate([np.full(len(it["input_ids"]), k + 1, dtype=np.int64) for k, it in enumerate(items)])
    out["segment_ids"] = np.pad(seg, (0, seq_len - len(seg)))
    if encdec:
        dseg = np.concatenate([np.full(len(it["decoder_input_ids"]), k + 1, dtype=np.int64)
                               for k, it in enumerate(items)])
        out["decoder_segment_ids"] = np.pad(dseg, (0, target_len - len(dseg)))
    return out


def stack_rows(rows: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack rows into a batch: each key becomes ``(B, L)``."""
    return {key: np.stack([r[key] for r in rows]) for key in rows[0]}
