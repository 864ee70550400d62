"""Family layouts and packing: ``Example`` -> the batch contract (numpy; the pipeline makes tensors).

- Causal decoder: ``source + target`` in one row; labels are aligned with the logits (position t predicts
  ``labels[t]``), so the last source position predicts ``target[0]``; loss only on the target, or on every
  token when asked (``targets_only=False``: T5's ``loss_on_targets_only``).
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


def layout_decoder(ex: Example, *, prefix: bool, with_2d: bool = False, targets_only: bool = True) -> Item:
    """One decoder row ``(L,)`` per key: input_ids, labels, position_ids, is_prefix [, block_position_ids].

    ``targets_only=False`` (a causal decoder only; T5's ``loss_on_targets_only``, seqio's decoder feature
    converters) also puts loss on the source: positions ``0 .. S-2`` predict ``source[1:]``; with GLM's
    ``target_inputs`` the last source position, followed by Part B's start token, has none. A prefix
    decoder refuses it: its bidirectional prefix sees the very tokens it would predict.
    """
    S = len(ex.source)
    if prefix and not targets_only:
        raise ValueError("a prefix decoder takes loss on the target only: its bidirectional prefix sees the "
                         "source tokens a source loss would ask it to predict")
    if targets_only:
        source_labels = np.full(S - 1, IGNORE, dtype=np.int64)  # (S - 1,)
    else:
        source_labels = ex.source[1:].astype(np.int64)  # (S - 1,): position t predicts source[t + 1]
    if ex.target_inputs is None:
        tokens = np.concatenate([ex.source, ex.target[:-1]])  # (S + T - 1,)
        labels = np.concatenate([source_labels, ex.target])
    else:
        tokens = np.concatenate([ex.source, ex.target_inputs])  # (S + T,)
        labels = np.concatenate([source_labels, [IGNORE], ex.target]).astype(np.int64)
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


def layout(ex: Example, arch: str, *, start_id: int = 0, with_2d: bool = False, targets_only: bool = True) -> Item:
    """Lay one example out for ``arch`` ("causal", "prefix" or "encoder_decoder").

    ``start_id``: the encoder-decoder's first decoder token (the model's ``start_token_id``);
    ``targets_only=False``: loss on the source too (causal only, see ``layout_decoder``).
    """
    if arch == "encoder_decoder":
        if not targets_only:
            raise ValueError("an encoder-decoder takes loss on the target only: its source is the encoder's "
                             "input and is never decoded")
        return layout_encoder_decoder(ex, start_id=start_id)
    if arch in ("causal", "prefix"):
        return layout_decoder(ex, prefix=arch == "prefix", with_2d=with_2d, targets_only=targets_only)
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
