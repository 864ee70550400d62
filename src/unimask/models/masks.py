"""Attention masks as small composable mask functions: the single source of truth for what may attend to what.

A mask function ``fn(b, h, q, kv) -> bool`` says whether query ``q`` of row ``b``, head ``h`` may attend to
key ``kv`` (True = may attend). The index arguments are integer tensors that broadcast against each other:
scalars when FlexAttention's ``create_block_mask`` vmaps the function (PyTorch's FlexAttention ``mask_mod``,
He et al. 2024, "FlexAttention: The Flexibility of PyTorch with the Performance of FlashAttention"), or
``b (B, 1, 1, 1)``, ``h (1, 1, 1, 1)``, ``q (1, 1, Tq, 1)``, ``kv (1, 1, 1, Tk)`` when a dense mask is
materialised by broadcasting (Hugging Face ``transformers.masking_utils``' non-vmap expansion). Masks are
combined with ``and_`` / ``or_`` (HF's ``and_masks`` / ``or_masks``, torchtitan's ``and_masks``).

``q`` counts the queries of this forward from 0; ``kv`` counts every key, cached ones included, so with
a KV cache of ``past`` positions query ``q`` sits at absolute position ``q + past`` (``causal_fn(offset)``).

One builder per family returns an ``AttentionMask`` (a mask function and the sizes it covers) for a batch,
and serves the models and the mask pictures alike (Raffel et al. 2020, section 3.2.1; Wang et al. 2022
"What language model architecture and pretraining objective work best for zero-shot generalization?"):

* causal and prefix (non-causal) decoders, and the decoder of an encoder-decoder: ``decoder_self_attention``;
* encoder of an encoder-decoder: ``encoder_self_attention``;
* decoder-to-encoder attention: ``cross_attention``.

An ``AttentionMask`` becomes a dense bool mask (SDPA, eager; ``attention_dense``) or one FlexAttention
``BlockMask`` (``block_mask``, built by ``create_block_mask`` from the mask function itself, so fully masked
blocks are skipped), each materialised once per forward and shared by every layer; which one is decided
inside the attention backend (``unimask.models.attention``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask

MaskFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
"""``(b, h, q, kv) -> bool`` index tensors in (broadcastable), bool tensor out; True = may attend."""

Plain = Literal["causal", "bidirectional"]


# --- mask functions -------------------------------------------------------------------------------------

def and_(*fns: MaskFn) -> MaskFn:
    """Intersection: a key is visible when every ``fns`` lets it through (HF ``and_masks``)."""
    if not fns:
        raise ValueError("and_ needs at least one mask function")

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = fns[0](b, h, q, kv)
        for f in fns[1:]:
            out = out & f(b, h, q, kv)
        return out

    return fn


def or_(*fns: MaskFn) -> MaskFn:
    """Union: a key is visible when any of ``fns`` lets it through (HF ``or_masks``)."""
    if not fns:
        raise ValueError("or_ needs at least one mask function")

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        out = fns[0](b, h, q, kv)
        for f in fns[1:]:
            out = out | f(b, h, q, kv)
        return out

    return fn


def causal_fn(offset: int = 0) -> MaskFn:
    """Query ``q`` (absolute position ``q + offset``, ``offset`` = cached positions) sees keys ``0..q + offset``."""

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return kv <= q + offset

    return fn


def window_fn(window: int, offset: int = 0) -> MaskFn:
    """Keys less than ``window`` positions from the query (absolute position ``q + offset``), on either side:
    with ``causal_fn`` the query and the ``window - 1`` keys before it (sliding-window attention: Child et
    al. 2019, Beltagy et al. 2020; Mistral, Qwen2, Gemma 2/3; HF ``sliding_window_overlay``), in an encoder
    or a prefix the keys within ``window - 1`` on both sides. transformers' T5Gemma encoder keeps keys up to
    ``window`` away (inclusive); ``ModelConfig.encoder_window_inclusive`` selects that for imported models."""

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        distance = q + offset - kv
        return (distance < window) & (distance > -window)

    return fn


def bidirectional_fn() -> MaskFn:
    """Every query sees every key (HF ``bidirectional_mask_function``: an index expression, so it broadcasts)."""

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (q >= 0) & (kv >= 0)

    return fn


def prefix_lengths_fn(lengths: Tensor) -> MaskFn:
    """``lengths (B,)``: the first ``lengths[b]`` tokens of row b see each other (the bidirectional input of a
    prefix LM; Raffel et al. 2020, fig. 3; Liu et al. 2018). OR it with ``causal_fn`` for the prefix decoder."""

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        n = lengths[b]
        return (q < n) & (kv < n)

    return fn


def prefix_flags_fn(is_prefix: Tensor) -> MaskFn:
    """``is_prefix (B, T)`` per-token flags: prefix tokens see each other (GLM's Part A, packed prefix rows;
    ``segments_fn`` keeps packed examples apart)."""

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return is_prefix[b, q] & is_prefix[b, kv]

    return fn


def segments_fn(q_segment_ids: Tensor, kv_segment_ids: Tensor | None = None) -> MaskFn:
    """Packed examples never see each other: ``q_segment_ids (B, Tq)``, ``kv_segment_ids (B, Tk)`` (default:
    the same). Segment 0 is padding: its keys are hidden from everyone (HF ``packed_sequence_mask_function``,
    torchtitan's document mask)."""
    kv_ids = q_segment_ids if kv_segment_ids is None else kv_segment_ids

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        k = kv_ids[b, kv]
        return (q_segment_ids[b, q] == k) & (k > 0)

    return fn


def padding_fn(key_valid: Tensor) -> MaskFn:
    """``key_valid (B, Tk)`` (an HF ``attention_mask``, 1 = real token): pad keys are hidden
    (HF ``padding_mask_function``)."""
    valid = key_valid.bool()

    def fn(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return valid[b, kv]

    return fn


def cross_fn(dec_segment_ids: Tensor | None, enc_segment_ids: Tensor | None,
             enc_attention_mask: Tensor | None) -> MaskFn:
    """Decoder-to-encoder: every real encoder token of the same packed example (segments only when both
    ``dec_segment_ids (B, T)`` and ``enc_segment_ids (B, S)`` are given; ``enc_attention_mask (B, S)`` hides pads)."""
    parts: list[MaskFn] = [bidirectional_fn()]
    if dec_segment_ids is not None and enc_segment_ids is not None:
        parts.append(segments_fn(dec_segment_ids, enc_segment_ids))
    if enc_attention_mask is not None:
        parts.append(padding_fn(enc_attention_mask))
    return and_(*parts)


# --- a mask function with its sizes, and its two materialised forms ------------------------------------

def materialise(fn: MaskFn, batch: int, q_len: int, kv_len: int, device: torch.device | None = None) -> Tensor:
    """``(batch, Tq, Tk)`` bool: ``fn`` evaluated on broadcast index tensors (HF masking_utils' non-vmap
    expansion; one vectorised expression, no Python loop over positions)."""
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)  # (B, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)  # (1, 1, 1, 1)
    q = torch.arange(q_len, device=device).view(1, 1, q_len, 1)  # (1, 1, Tq, 1)
    kv = torch.arange(kv_len, device=device).view(1, 1, 1, kv_len)  # (1, 1, 1, Tk)
    return fn(b, h, q, kv).expand(batch, 1, q_len, kv_len)[:, 0]  # (B, Tq, Tk)


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


class AttentionMask:
    """What may attend to what in one attention call: ``fn`` over ``batch x q_len x kv_len``.

    ``batch`` is None when ``fn`` is the same for every row (it then broadcasts; FlexAttention's ``B=None``).
    ``plain`` marks a mask that is exactly causal (``q_len == kv_len``, no padding, packing, prefix or cache
    offset) or exactly bidirectional (nothing hidden): SDPA may then take ``is_causal=True`` or no mask at
    all instead of a tensor. The dense form and the BlockMask are built on first use and cached, so one
    ``AttentionMask`` per forward, handed to every layer, is materialised once.
    """

    def __init__(self, fn: MaskFn, *, batch: int | None, q_len: int, kv_len: int,
                 device: torch.device | None = None, plain: Plain | None = None) -> None:
        if plain == "causal" and q_len != kv_len:
            raise ValueError(f"a plain causal mask needs q_len == kv_len, got {q_len} and {kv_len}")
        self.fn, self.batch, self.q_len, self.kv_len = fn, batch, q_len, kv_len
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.plain = plain
        self._dense: Tensor | None = None
        self._block: BlockMask | None = None

    def to_dense(self) -> Tensor:
        """``(B or 1, Tq, Tk)`` bool, True = may attend, exactly as ``fn`` says (no empty-row rule)."""
        return materialise(self.fn, self.batch or 1, self.q_len, self.kv_len, self.device)

    def attention_dense(self) -> Tensor:
        """``(B or 1, 1, Tq, Tk)`` bool for SDPA and eager (``to_attention_mask``: an empty row sees every key);
        built once, then cached."""
        if self._dense is None:
            self._dense = to_attention_mask(self.to_dense())
        return self._dense

    def block_mask(self) -> BlockMask:
        """FlexAttention ``BlockMask`` built by ``create_block_mask`` from ``fn`` itself (never from a dense
        tensor), so blocks that ``fn`` hides entirely are skipped; built once, then cached. A row that sees
        no key gives zeros under FlexAttention (such rows never carry loss or feed a real token)."""
        if self._block is None:
            from torch.nn.attention.flex_attention import create_block_mask

            self._block = create_block_mask(self.fn, self.batch, None, self.q_len, self.kv_len, device=self.device)
        return self._block


def windowed(mask: AttentionMask, window: int) -> AttentionMask:
    """``mask`` restricted to a sliding window of ``window`` positions (``window_fn``); the queries are the
    last ``q_len`` of the ``kv_len`` positions (a KV cache's past comes first). A window that covers every
    key changes nothing, and ``mask`` comes back as is (keeping its plain form for SDPA)."""
    if window >= mask.kv_len and window >= mask.q_len:
        return mask
    offset = mask.kv_len - mask.q_len
    return AttentionMask(and_(mask.fn, window_fn(window, offset)), batch=mask.batch, q_len=mask.q_len,
                         kv_len=mask.kv_len, device=mask.device)


# --- one builder per family ------------------------------------------------------------------------------

def decoder_self_attention(batch: int, q_len: int, *, past: int = 0, is_prefix: Tensor | None = None,
                           prefix_lengths: Tensor | None = None, segment_ids: Tensor | None = None,
                           key_valid: Tensor | None = None,
                           device: torch.device | None = None) -> AttentionMask:
    """Self-attention of a decoder over ``q_len`` new tokens after ``past`` cached ones: ``(B, Tq, past + Tq)``.

    Causal (GPT, LLaMA; the decoder of T5/BART); with ``is_prefix (B, T)`` flags or ``prefix_lengths (B,)`` the
    prefix is bidirectional (prefix LM: GLM, U-PaLM; flags win when both are given). The prefix applies
    to the chunk that holds it (``past == 0``); tokens decoded after it are causal, which is exact since
    they come after the prefix. ``segment_ids (B, T)`` keep packed examples apart (no KV cache then);
    ``key_valid (B, past + T)`` hides pad keys (an HF ``attention_mask`` or a KV cache's ``key_valid``).
    """
    if segment_ids is not None and past:
        raise ValueError("packed segments cannot be combined with a KV cache")
    fn = causal_fn(past)
    prefix = None
    if past == 0:
        if is_prefix is not None:
            prefix = prefix_flags_fn(is_prefix)
        elif prefix_lengths is not None:
            prefix = prefix_lengths_fn(prefix_lengths)
    if prefix is not None:
        fn = or_(fn, prefix)
    if segment_ids is not None:
        fn = and_(fn, segments_fn(segment_ids))
    if key_valid is not None:
        fn = and_(fn, padding_fn(key_valid))
    per_row = prefix is not None or segment_ids is not None or key_valid is not None
    plain: Plain | None = None
    if not per_row:  # causal from the start; one decoded query after the past sees every key
        plain = "causal" if past == 0 else "bidirectional" if q_len == 1 else None
    return AttentionMask(fn, batch=batch if per_row else None, q_len=q_len, kv_len=past + q_len, device=device,
                         plain=plain)


def encoder_self_attention(batch: int, length: int, *, segment_ids: Tensor | None = None,
                           attention_mask: Tensor | None = None,
                           device: torch.device | None = None) -> AttentionMask:
    """Self-attention of an encoder ``(B, S, S)``: bidirectional, within each packed example
    (``segment_ids (B, S)``), real keys only (``attention_mask (B, S)``)."""
    parts: list[MaskFn] = [bidirectional_fn()]
    if segment_ids is not None:
        parts.append(segments_fn(segment_ids))
    if attention_mask is not None:
        parts.append(padding_fn(attention_mask))
    per_row = len(parts) > 1
    return AttentionMask(and_(*parts), batch=batch if per_row else None, q_len=length, kv_len=length,
                         device=device, plain=None if per_row else "bidirectional")


def cross_attention(batch: int, q_len: int, kv_len: int, *, dec_segment_ids: Tensor | None = None,
                    enc_segment_ids: Tensor | None = None, enc_attention_mask: Tensor | None = None,
                    device: torch.device | None = None) -> AttentionMask:
    """Decoder-to-encoder attention ``(B, T, S)``: each target token sees every real source token of its own
    example (``cross_fn``)."""
    packed = dec_segment_ids is not None and enc_segment_ids is not None
    per_row = packed or enc_attention_mask is not None
    return AttentionMask(cross_fn(dec_segment_ids, enc_segment_ids, enc_attention_mask),
                         batch=batch if per_row else None, q_len=q_len, kv_len=kv_len, device=device,
                         plain=None if per_row else "bidirectional")


# --- pictures -------------------------------------------------------------------------------------------

def family_masks(arch: str, source_len: int, target_len: int) -> dict[str, Tensor]:
    """The masks a family uses for a source (input) of ``source_len`` and a target of ``target_len``, as
    ``(Tq, Tk)`` bool pictures drawn from the same builders the models use.

    Decoder-only families see one sequence ``source + target``; the encoder-decoder has three masks.
    """
    total = source_len + target_len
    if arch == "causal":
        return {"self-attention (source + target)": decoder_self_attention(1, total).to_dense()[0]}
    if arch == "prefix":
        mask = decoder_self_attention(1, total, prefix_lengths=torch.tensor([source_len]))
        return {"self-attention (source + target)": mask.to_dense()[0]}
    if arch == "encoder_decoder":
        return {
            "encoder self-attention (source)": encoder_self_attention(1, source_len).to_dense()[0],
            "decoder self-attention (target)": decoder_self_attention(1, target_len).to_dense()[0],
            "decoder cross-attention (target -> source)": cross_attention(1, target_len, source_len).to_dense()[0],
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
