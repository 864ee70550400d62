"""Text on top of token-level decoding: streaming detokenisation, stop strings and infilling.

* ``TextStream`` turns a growing list of token ids into pieces of text that are safe to show at once: no
  half UTF-8 character (byte-level BPE splits characters across tokens) and nothing that may still turn
  out to be the start of a stop string. Streaming and non-streaming generation both go through it, so
  both give the same text.
* ``encode_with_specials`` lets a prompt name special tokens (``[MASK]``, ``<extra_id_0>``): the
  tokenizer treats such strings in user text as plain text, so they are split out here, on purpose.
* GLM blank infilling (Du et al. 2022, "GLM: General Language Model Pretraining with Autoregressive Blank
  Infilling"): the corrupted text is Part A, the model writes each blank after a start-of-piece token with
  2D positions (the blank's position, then 1, 2, ... inside the span) until end-of-piece.
* T5 span infilling (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
  Text-to-Text Transformer"): the encoder reads text with sentinels, the decoder writes
  ``<extra_id_0> span <extra_id_1> span ...``; the spans go back in place of their sentinels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from unimask.errors import UnimaskError
from unimask.generation.decode import GenerationConfig, generate

if TYPE_CHECKING:  # pragma: no cover
    from unimask.data.tokenizer import Tokenizer

REPLACEMENT = "\ufffd"  # what a decoder writes for an incomplete UTF-8 sequence
GLM_MASKS = ("[MASK]", "[sMASK]", "[gMASK]")
_SENTINEL = re.compile(r"<extra_id_(\d+)>")


# Stop strings ---------------------------------------------------------------------------------------------
def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index where the earliest stop string starts in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else -1


def partial_stop_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the first stop string, and whether one was found (OpenAI semantics)."""
    i = find_stop(text, stops)
    return (text, False) if i < 0 else (text[:i], True)


# Streaming detokenisation ---------------------------------------------------------------------------------
class TextStream:
    """Incremental detokeniser with stop strings for one sequence.

    ``push(token)`` returns the text that became final with this token ("" while a character or a possible
    stop string is incomplete); ``finish()`` returns what is still held back. After a stop string appeared,
    ``stopped`` is True and the text ends right before it. Decoding looks at a short window of recent
    tokens (the previous piece for context, then the new ones), so each push is O(1) in the length so far.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Iterable[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""  # everything released so far
        self.stopped = False
        self._prefix = 0  # window start (context tokens, already released)
        self._read = 0  # tokens before this index are released
        self._held = ""  # decoded text kept back because it may start a stop string

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special=True)

    def push(self, token: int) -> str:
        """Add one generated token; return newly released text."""
        if self.stopped:
            return ""
        self.ids.append(int(token))
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        if len(now) <= len(before) or now.endswith(REPLACEMENT):
            return ""  # nothing new yet, or a character is cut in the middle
        self._prefix, self._read = self._read, len(self.ids)
        return self._release(now[len(before):], final=False)

    def finish(self) -> str:
        """End of generation: release the rest (an incomplete character shows as U+FFFD)."""
        if self.stopped:
            return ""
        before = self._decode(self.ids[self._prefix:self._read])
        now = self._decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return self._release(now[len(before):], final=True)

    def _release(self, piece: str, final: bool) -> str:
        pending = self._held + piece
        cut = find_stop(pending, self.stops)
        if cut >= 0:
            self.stopped = True
            out, self._held = pending[:cut], ""
        else:
            keep = 0 if final else partial_stop_length(pending, self.stops)
            out, self._held = pending[: len(pending) - keep], pending[len(pending) - keep:]
        self.text += out
        return out


# Prompts that name special tokens -------------------------------------------------------------------------
def encode_with_specials(tokenizer: Tokenizer, text: str, names: Iterable[str]) -> list[int]:
    """Encode ``text``, turning each occurrence of a name in ``names`` (e.g. ``[MASK]``) into its token id.

    The tokenizer itself keeps special-token strings as plain text (so data cannot inject them); a prompt
    meant for infilling uses this instead. A name the tokenizer lacks raises ``UnimaskError``.
    """
    names = sorted(set(names), key=len, reverse=True)
    if not names:
        return tokenizer.encode(text)
    ids: list[int] = []
    pattern = re.compile("|".join(re.escape(n) for n in names))
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            ids += tokenizer.encode(text[pos:m.start()])
        tid = tokenizer.token_to_id(m.group())
        if tid is None:
            raise UnimaskError(f"the prompt uses {m.group()} but the tokenizer has no such token; "
                               "use a tokenizer trained by `unimask tokenizer train`")
        ids.append(tid)
        pos = m.end()
    if pos < len(text):
        ids += tokenizer.encode(text[pos:])
    return ids


def has_glm_blank(text: str) -> bool:
    """Whether a prompt asks for GLM blank infilling (holds ``[MASK]``, ``[sMASK]`` or ``[gMASK]``)."""
    return any(m in text for m in GLM_MASKS)


def has_sentinel(text: str) -> bool:
    """Whether a prompt asks for T5 span infilling (holds ``<extra_id_N>``)."""
    return _SENTINEL.search(text) is not None


@dataclass
class Infilled:
    """An infilled text: the whole ``text`` and the ``spans`` written into the blanks, in prompt order."""

    text: str
    spans: list[str]


# GLM blank infilling --------------------------------------------------------------------------------------
def glm_infill(model: torch.nn.Module, tokenizer: Tokenizer, text: str, config: GenerationConfig) -> Infilled:
    """Fill every ``[MASK]``/``[sMASK]``/``[gMASK]`` of ``text`` with a prefix decoder (GLM, Du et al. 2022).

    For each blank, left to right: the current ids (Part A, bidirectional) plus ``<|startofpiece|>`` go in;
    the start token and every generated token take the blank's position as first position id and 1, 2, ...
    as second (block) position id (``generate(..., mask_position=...)``); decoding stops at
    ``<|endofpiece|>`` (or EOS). The span replaces its mask token and the next blank sees it as text, which
    is exactly GLM for one blank and a close approximation for several.
    """
    if getattr(model.config, "arch", None) != "prefix":
        raise UnimaskError("GLM blank infilling ([MASK], [gMASK]) needs a prefix decoder (arch 'prefix'); "
                           "this model is '" + str(getattr(model.config, "arch", "?")) + "'")
    special = tokenizer.special
    sop = special.require("sop", "GLM blank infilling")
    eop = special.require("eop", "GLM blank infilling")
    mask_ids = {i for i in (special.mask, special.smask, special.gmask) if i is not None}
    ids = encode_with_specials(tokenizer, text, GLM_MASKS)
    spans: list[str] = []
    while True:
        where = next((i for i, t in enumerate(ids) if t in mask_ids), None)
        if where is None:
            break
        _check_room(model, len(ids) + 1, config.max_new_tokens)
        cfg = GenerationConfig(**{**config.__dict__, "eos_token_id": eop})
        out = generate(model, [ids + [sop]], config=cfg, mask_position=torch.tensor([where]))[0].tolist()
        span = _until(out, {eop, tokenizer.eos_id, model.config.pad_token_id})
        spans.append(tokenizer.decode(span))
        ids = ids[:where] + span + ids[where + 1:]
    return Infilled(text=tokenizer.decode(ids), spans=spans)


# T5 span infilling ----------------------------------------------------------------------------------------
def parse_sentinel_output(ids: Sequence[int], sentinels: Sequence[int],
                          stop: Iterable[int] = ()) -> dict[int, list[int]]:
    """Split decoder output ``<extra_id_0> a b <extra_id_1> c ...`` into ``{0: [a, b], 1: [c], ...}``.

    Tokens before the first sentinel are dropped; a sentinel seen twice keeps its first span; output stops
    at any id in ``stop`` (EOS, padding).
    """
    index = {s: i for i, s in enumerate(sentinels)}
    stops = set(stop)
    spans: dict[int, list[int]] = {}
    current: int | None = None
    for t in ids:
        if t in stops:
            break
        if t in index:
            current = index[t] if index[t] not in spans else None
            if current is not None:
                spans[current] = []
        elif current is not None:
            spans[current].append(t)
    return spans


def t5_infill(model: torch.nn.Module, tokenizer: Tokenizer, text: str, config: GenerationConfig, *,
              append_eos: bool = True) -> Infilled:
    """Fill the sentinels ``<extra_id_N>`` of ``text`` with an encoder-decoder (T5, Raffel et al. 2020).

    The source is the text with sentinel ids (plus EOS when ``append_eos``, as T5's inputs end); the
    decoder output is parsed by ``parse_sentinel_output`` and each span replaces its sentinel (a sentinel
    the model did not answer becomes empty).
    """
    if getattr(model.config, "arch", None) != "encoder_decoder":
        raise UnimaskError("T5 span infilling (<extra_id_N>) needs an encoder-decoder (arch 'encoder_decoder')")
    sentinels = tokenizer.special.sentinels
    names = {m.group() for m in _SENTINEL.finditer(text)}
    bad = sorted(n for n in names if int(_SENTINEL.fullmatch(n).group(1)) >= len(sentinels))  # type: ignore[union-attr]
    if bad:
        raise UnimaskError(f"the prompt uses {bad[0]} but the tokenizer has {len(sentinels)} sentinels")
    ids = encode_with_specials(tokenizer, text, names)
    source = ids + ([tokenizer.eos_id] if append_eos else [])
    _check_room(model, len(source), 0)
    cfg = GenerationConfig(**{**config.__dict__, "eos_token_id": tokenizer.eos_id})
    out = generate(model, [source], config=cfg)[0].tolist()
    spans = parse_sentinel_output(out, sentinels, stop={tokenizer.eos_id})
    where = {s: i for i, s in enumerate(sentinels)}
    filled: list[int] = []
    texts: list[str] = []
    for t in ids:
        if t in where:
            span = spans.get(where[t], [])
            texts.append(tokenizer.decode(span))
            filled += span
        else:
            filled.append(t)
    return Infilled(text=tokenizer.decode(filled), spans=texts)


def _until(ids: Sequence[int], stops: set[int | None]) -> list[int]:
    out = []
    for t in ids:
        if t in stops:
            break
        out.append(t)
    return out


def _check_room(model: torch.nn.Module, prompt_len: int, new_tokens: int) -> None:
    limit = model.config.max_seq_len
    if prompt_len + new_tokens > limit:
        raise UnimaskError(f"prompt ({prompt_len} tokens) + max new tokens ({new_tokens}) exceed the model's "
                           f"context of {limit}; shorten the prompt or lower --max-new-tokens")


__all__ = [
    "Infilled",
    "TextStream",
    "encode_with_specials",
    "find_stop",
    "glm_infill",
    "has_glm_blank",
    "has_sentinel",
    "parse_sentinel_output",
    "partial_stop_length",
    "t5_infill",
    "truncate_at_stop",
]
