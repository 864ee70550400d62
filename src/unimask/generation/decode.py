"""KV-cache decoding for the three families.

* causal decoder: one prefill over the (left-padded) prompts, then one token at a time;
* prefix decoder: the prompt is the prefix, encoded bidirectionally in the one prefill, then the answer is
  decoded causally (GLM, U-PaLM);
* encoder-decoder: the encoder runs once, the cross-attention keys and values are cached once, and the
  decoder runs one token at a time from its start token (T5, BART).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from unimask.generation.sampling import apply_presence_frequency, choose_next


@dataclass
class GenerationConfig:
    """How to pick tokens; ``temperature == 0`` or ``do_sample=False`` is greedy."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0  # OpenAI's, over generated tokens (sampling.apply_presence_frequency)
    frequency_penalty: float = 0.0
    eos_token_id: int | None = None
    seed: int | None = None
    use_cache: bool = True


class LogitsProcessor(Protocol):
    """Edits the logits ``(B, V)`` of each step before the choice; ``commit`` gets the chosen tokens ``(B,)``
    (-1 for a row that had already finished)."""

    def __call__(self, logits: Tensor) -> Tensor: ...

    def commit(self, tokens: Tensor) -> None: ...


@dataclass
class Step:
    """One decoding step: the chosen ``tokens (B,)``, the ``logits (B, V)`` they came from, and which rows
    had already finished before this step (their token is padding)."""

    tokens: Tensor
    logits: Tensor
    finished: Tensor


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, *, left: bool,
                device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Lists of token ids -> ``ids (B, P)`` and ``attention_mask (B, P)``, padded on the left or right."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        sl = slice(width - len(p), width) if left else slice(0, len(p))
        ids[i, sl] = torch.tensor(list(p), dtype=torch.long)
        mask[i, sl] = 1
    return ids.to(device), mask.to(device)


def _as_batch(model, input_ids, attention_mask, left: bool) -> tuple[Tensor, Tensor]:
    device = next(model.parameters()).device
    if isinstance(input_ids, Tensor):
        ids = input_ids.to(device)
        if ids.dim() == 1:
            ids = ids[None]
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(device)
        return ids, mask
    return pad_prompts(input_ids, model.config.pad_token_id, left=left, device=device)


def generate_stream(model, input_ids: Tensor | Sequence[Sequence[int]], attention_mask: Tensor | None = None, *,
                    config: GenerationConfig | None = None, mask_position: Tensor | None = None,
                    generator: torch.Generator | None = None, logits_processor: LogitsProcessor | None = None,
                    **kwargs: object) -> Iterator[Step]:
    """Yield one ``Step`` per new token until every row has produced EOS or ``max_new_tokens``.

    ``logits_processor`` (e.g. ``unimask.structured.GrammarConstraint``) edits each step's logits before the
    token is chosen and is told the chosen tokens (``commit``); ``Step.logits`` stay the model's own.

    Decoder-only prompts are left-padded; encoder-decoder sources are right-padded. ``mask_position (B,)``
    asks for GLM blank infilling (Du et al. 2022, section 2.2), laid out as the GLM objective lays out
    Part B in training (``objectives.glm``, ``objectives.layout``): the last prompt token is
    ``<|startofpiece|>``, the first token of Part B, so it is causal and takes position ``mask_position``, as
    does every generated token; with GLM 2D positions their block positions are 1, 2, 3, ... Without it,
    generated tokens continue the prompt's positions (GLM 2D: keep the last prompt position, block
    positions 1, 2, ...).
    """
    for key in kwargs:
        if not hasattr(GenerationConfig, key):
            raise TypeError(f"unknown generation argument '{key}'")
    cfg = replace(config or GenerationConfig(), **kwargs)  # never mutate the caller's config
    mc = model.config
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else mc.eos_token_id
    if generator is None and cfg.seed is not None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(cfg.seed)
    enc_dec = mc.arch == "encoder_decoder"
    ids, mask = _as_batch(model, input_ids, attention_mask, left=not enc_dec)
    # Steps may run on different threads (a server takes turns token by token) and an abandoned stream may be
    # finalized on any thread: so no context manager spans a ``yield`` (grad mode is per thread; ``_select``
    # enters no_grad around each step) and closing touches the model only if this call changed its mode.
    was_training = model.training
    if was_training:
        model.eval()
    try:
        steps = _encdec_steps(model, ids, mask, cfg) if enc_dec else _decoder_steps(model, ids, mask, cfg,
                                                                                   mask_position)
        yield from _select(steps, ids, cfg, eos, mc.pad_token_id, generator, logits_processor)
    finally:
        if was_training:
            model.train(True)


def _select(steps, ids: Tensor, cfg: GenerationConfig, eos: int | None, pad: int,
            generator: torch.Generator | None, processor: LogitsProcessor | None = None) -> Iterator[Step]:
    """Drive a step function: it yields logits, receives the chosen tokens."""
    B = ids.shape[0]
    finished = torch.zeros(B, dtype=torch.bool, device=ids.device)
    previous = ids.clone()
    penalised = cfg.presence_penalty != 0 or cfg.frequency_penalty != 0
    with torch.no_grad():
        logits = next(steps)
    for i in range(cfg.max_new_tokens):
        with torch.no_grad():
            scores = logits if processor is None else processor(logits)
            if penalised:
                scores = apply_presence_frequency(scores, previous[:, ids.shape[1]:].masked_fill(
                    previous[:, ids.shape[1]:] == pad, -1), cfg.presence_penalty, cfg.frequency_penalty)
            token = choose_next(scores, previous=previous,
                                do_sample=cfg.do_sample, temperature=cfg.temperature, top_k=cfg.top_k,
                                top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty, generator=generator)
            token = token.masked_fill(finished, pad)
        if processor is not None:
            processor.commit(token.masked_fill(finished, -1))  # -1: the row had already finished
        yield Step(tokens=token, logits=logits, finished=finished.clone())
        if eos is not None:
            finished = finished | (token == eos)
        previous = torch.cat([previous, token[:, None]], dim=1)
        if bool(finished.all()) or i == cfg.max_new_tokens - 1:
            break
        with torch.no_grad():
            logits = steps.send(token)
    steps.close()


def _decoder_steps(model, ids: Tensor, mask: Tensor, cfg: GenerationConfig,
                   mask_position: Tensor | None):
    mc = model.config
    B, P = ids.shape
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    is_prefix = mask.bool() if mc.arch == "prefix" else None
    glm = mc.position == "glm2d"
    infill = mask_position is not None  # Part B at the blank's position, as the GLM objective trains it
    block = torch.zeros_like(positions) if glm else None
    gen_pos = positions[:, -1] if not infill else mask_position.to(ids.device)  # type: ignore[union-attr]
    first_block = 1
    if infill:  # the last prompt token is <|startofpiece|>: Part B, not prefix
        positions = positions.clone()
        positions[:, -1] = gen_pos
        if block is not None:
            block = block.clone()
            block[:, -1] = 1
        if is_prefix is not None:
            is_prefix = is_prefix.clone()
            is_prefix[:, -1] = False
        first_block = 2
    fixed_pos = glm or infill  # generated tokens keep one position (GLM 2D: the block position counts)
    if P + cfg.max_new_tokens > mc.max_seq_len and mc.position == "learned":
        raise ValueError(f"prompt ({P}) + max_new_tokens ({cfg.max_new_tokens}) exceeds max_seq_len {mc.max_seq_len}")
    if cfg.use_cache:
        cache = model.make_cache(B, P + cfg.max_new_tokens)
        out = model(ids, attention_mask=mask, is_prefix=is_prefix, position_ids=positions,
                    block_position_ids=block, cache=cache)
        step = 0
        last_pos = positions[:, -1]
        while True:
            token = yield out.logits[:, -1].float()
            step += 1
            if fixed_pos:
                pos = gen_pos[:, None]
                blk = torch.full_like(gen_pos[:, None], step + first_block - 1) if glm else None
            else:
                last_pos = last_pos + 1
                pos, blk = last_pos[:, None], None
            out = model(token[:, None], position_ids=pos, block_position_ids=blk, cache=cache)
    else:  # recompute everything each step: the reference the cache must match
        seq, m = ids, mask
        pos_all, blk_all, flags = positions, block, is_prefix
        step = 0
        while True:
            out = model(seq, attention_mask=m, is_prefix=flags, position_ids=pos_all, block_position_ids=blk_all)
            token = yield out.logits[:, -1].float()
            step += 1
            seq = torch.cat([seq, token[:, None]], 1)
            m = torch.cat([m, torch.ones_like(token[:, None])], 1)
            if flags is not None:
                flags = torch.cat([flags, torch.zeros_like(token[:, None], dtype=torch.bool)], 1)
            if fixed_pos:
                pos_all = torch.cat([pos_all, gen_pos[:, None]], 1)
                if glm:
                    blk_all = torch.cat([blk_all, torch.full_like(gen_pos[:, None], step + first_block - 1)], 1)
            else:
                pos_all = torch.cat([pos_all, pos_all[:, -1:] + 1], 1)


def _encdec_steps(model, ids: Tensor, mask: Tensor, cfg: GenerationConfig):
    mc = model.config
    B, S = ids.shape
    memory, _ = model.encode(ids, attention_mask=mask)
    dec = torch.full((B, 1), mc.start_token_id, dtype=torch.long, device=ids.device)
    if cfg.use_cache:
        cache = model.make_cache(B, cfg.max_new_tokens + 1, S)
        out = model(attention_mask=mask, encoder_out=memory, decoder_input_ids=dec, cache=cache)
        while True:
            token = yield out.logits[:, -1].float()
            out = model(attention_mask=mask, encoder_out=memory, decoder_input_ids=token[:, None], cache=cache)
    else:
        while True:
            out = model(attention_mask=mask, encoder_out=memory, decoder_input_ids=dec)
            token = yield out.logits[:, -1].float()
            dec = torch.cat([dec, token[:, None]], 1)


def generate(model, input_ids: Tensor | Sequence[Sequence[int]], attention_mask: Tensor | None = None,
             **kwargs: object) -> Tensor:
    """New tokens ``(B, N)`` for a batch of prompts; rows that stopped early are padded with pad_token_id.

    Keyword arguments are the fields of ``GenerationConfig`` (max_new_tokens, do_sample, temperature,
    top_k, top_p, repetition_penalty, eos_token_id, seed, use_cache) plus ``mask_position`` and
    ``generator``.
    """
    tokens = [s.tokens for s in generate_stream(model, input_ids, attention_mask, **kwargs)]  # type: ignore[arg-type]
    if not tokens:
        B = len(input_ids) if not isinstance(input_ids, Tensor) else (input_ids.shape[0] if input_ids.dim() > 1 else 1)
        return torch.zeros((B, 0), dtype=torch.long)
    return torch.stack(tokens, dim=1)
