"""Attention masks: the single source of truth for what may attend to what.

Every mask is a bool tensor, True = the query may attend to the key, shaped ``(Tq, Tk)`` or
``(B, Tq, Tk)``. Masks are composed with ``combine`` (logical AND with broadcasting) and only become
additive masks inside the attention backend (``to_attention_mask``).

The three families (Raffel et al. 2020, section 3.2.1; Wang et al. 2022 "What language model architecture
and pretraining objective work best for zero-shot generalization?"):

* causal decoder: ``causal``;
* prefix (non-causal) decoder: ``prefix`` -- bidirectional over the input, causal over the output;
* encoder-decoder: ``bidirectional`` encoder, ``causal`` decoder and ``cross`` attention to the encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor


def causal(q_len: int, k_len: int | None = None, *, offset: int = 0, device: torch.device | None = None) -> Tensor:
    """``(Tq, Tk)``: query i (absolute position i + offset) sees keys 0..i + offset."""
    k_len = q_len + offset if k_len is None else k_len
    q = torch.arange(q_len, device=device)[:, None] + offset
    k = torch.arange(k_len, device=device)[None, :]
    return k <= q


def bidirectional(q_len: int, k_len: int | None = None, *, device: torch.device | None = None) -> Tensor:
    """``(Tq, Tk)``: every query sees every key."""
    return torch.ones(q_len, q_len if k_len is None else k_len, dtype=torch.bool, device=device)


def prefix_from_flags(is_prefix: Tensor) -> Tensor:
    """``(B, T, T)`` prefix-LM mask from per-token flags ``is_prefix (B, T)``.

    Causal everywhere, plus: a prefix token sees every other prefix token (bidirectional input).
    Works for packed rows too (each example's prefix is flagged; ``segments`` keeps examples apart).
    """
    t = is_prefix.shape[-1]
    return causal(t, device=is_prefix.device)[None] | (is_prefix[:, :, None] & is_prefix[:, None, :])


def prefix(prefix_lengths: Tensor, length: int) -> Tensor:
    """``(B, T, T)`` prefix-LM mask: the first ``prefix_lengths[b]`` tokens of row b are bidirectional."""
    return prefix_from_flags(prefix_flags(prefix_lengths, length))


def prefix_flags(prefix_lengths: Tensor, length: int) -> Tensor:
    """``(B, T)`` bool: position t of row b belongs to the prefix."""
    return torch.arange(length, device=prefix_lengths.device)[None, :] < prefix_lengths[:, None]


def padding(attention_mask: Tensor) -> Tensor:
    """``(B, 1, Tk)`` from an HF-style ``attention_mask (B, Tk)`` (1 = real token): pad keys are hidden."""
    return attention_mask.bool()[:, None, :]


def segments(q_segment_ids: Tensor, k_segment_ids: Tensor | None = None) -> Tensor:
    """``(B, Tq, Tk)``: packed examples never see each other. Segment 0 is padding and sees nothing."""
    k_segment_ids = q_segment_ids if k_segment_ids is None else k_segment_ids
    same = q_segment_ids[:, :, None] == k_segment_ids[:, None, :]
    return same & (k_segment_ids[:, None, :] > 0)


def cross(dec_segment_ids: Tensor | None, enc_segment_ids: Tensor | None, enc_attention_mask: Tensor | None,
          q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """Decoder-to-encoder mask ``(B or 1, Tq, Tk)``: all real encoder tokens of the same example."""
    mask = bidirectional(q_len, k_len, device=device)[None]
    if dec_segment_ids is not None and enc_segment_ids is not None:
        mask = mask & segments(dec_segment_ids, enc_segment_ids)
    if enc_attention_mask is not None:
        mask = mask & padding(enc_attention_mask)
    return mask


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of the given masks (None entries are skipped), broadcast to a common shape."""
    out: Tensor | None = None
    for m in masks:
        if m is None:
            continue
        out = m if out is None else out & m
    return out


def to_attention_mask(mask: Tensor) -> Tensor:
    """``(B, 1, Tq, Tk)`` bool ready for attention; rows with no visible key may see every key.

    A query that sees nothing (a padding position) would give NaN in softmax; such rows never carry
    loss or feed a real token, so letting them see everything keeps the numbers finite without
    changing any real output.
    """
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() == 3:
        mask = mask[:, None]
    empty = ~mask.any(dim=-1, keepdim=True)
    return mask | empty


def family_masks(arch: str, source_len: int, target_len: int) -> dict[str, Tensor]:
    """The masks a family uses for a source (input) of ``source_len`` and a target of ``target_len``.

    Decoder-only families see one sequence ``source + target``; the encoder-decoder has three masks.
    """
    total = source_len + target_len
    if arch == "causal":
        return {"self-attention (source + target)": causal(total)}
    if arch == "prefix":
        flags = torch.arange(total) < source_len
        return {"self-attention (source + target)": prefix_from_flags(flags[None])[0]}
    if arch == "encoder_decoder":
        return {
            "encoder self-attention (source)": bidirectional(source_len),
            "decoder self-attention (target)": causal(target_len),
            "decoder cross-attention (target -> source)": bidirectional(target_len, source_len),
        }
    raise ValueError(f"unknown arch '{arch}'")


def render_text(mask: Tensor, row_labels: list[str] | None = None, col_labels: list[str] | None = None) -> str:
    """A terminal picture of a 2-D mask: '■' may attend, '·' may not."""
    rows = []
    width = max((len(x) for x in row_labels), default=0) if row_labels else 0
    if col_labels:
        rows.append(" " * (width + 1) + " ".join(c[:1] for c in col_labels))
    for i, row in enumerate(mask.tolist()):
        label = (row_labels[i].rjust(width) + " ") if row_labels else ""
        rows.append(label + " ".join("■" if v else "·" for v in row))
    return "\n".join(rows)
