"""The objective interface: token ids in, one ``Example`` (source, target, extras) out.

An objective is a pure function of the token ids, a seeded ``numpy.random.Generator`` and the ids of the
special tokens (``Vocab``). It never sees a model: the family-specific layout (one row for a decoder,
encoder and decoder sequences for an encoder-decoder) is done afterwards by ``unimask.objectives.layout``,
so any objective feeds any family (Tay et al. 2022, UL2, section 2: objective and architecture are
separate choices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from unimask.errors import DataError

if TYPE_CHECKING:
    from unimask.data.tokenizer import SpecialTokens, Tokenizer

IGNORE = -100
_SENTENCE_END_CHARS = (".", "!", "?", "。", "！", "？", "\n")


@dataclass
class Example:
    """One training example, before any family layout.

    - ``source (S,)``: what the model reads (encoder input / prefix).
    - ``target (T,)``: the tokens that carry loss, in order.
    - ``target_inputs (T,) | None``: the tokens fed while predicting ``target`` (GLM: the start token and
      the span; teacher forcing when ``None``: the last source token / start token, then ``target[:-1]``).
    - ``positions``, ``block_positions`` ``(S + T,) | None``: GLM 2D position ids over
      ``source + target_inputs`` (Du et al. 2022, section 2.2).
    - ``mode``: which denoiser made it (UL2 mixtures); ``info``: objective details for tests and display
      (noise masks, spans).
    """

    source: np.ndarray
    target: np.ndarray
    target_inputs: np.ndarray | None = None
    positions: np.ndarray | None = None
    block_positions: np.ndarray | None = None
    mode: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source = np.asarray(self.source, dtype=np.int64)
        self.target = np.asarray(self.target, dtype=np.int64)
        if self.target_inputs is not None:
            self.target_inputs = np.asarray(self.target_inputs, dtype=np.int64)
            if self.target_inputs.shape != self.target.shape:
                raise ValueError("target_inputs must have the shape of target")
        if len(self.source) == 0 or len(self.target) == 0:
            raise ValueError("an example needs a non-empty source and target")


@dataclass(frozen=True)
class Vocab:
    """The ids an objective needs: pad/bos/eos, the special tokens, the tokens that end a sentence and the
    tokens that begin a word.

    ``word_starts``: tokens whose text starts with whitespace, as fairseq's GPT-2 BPE marks them
    (``is_beginning_of_word``: the decoded token starts with a space), for whole-word masking; the first
    token of a text always begins a word, whatever its id.
    """

    size: int
    pad: int
    bos: int
    eos: int
    special: SpecialTokens
    sentence_ends: frozenset[int] = frozenset()
    word_starts: frozenset[int] = frozenset()

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> Vocab:
        """Read the ids off a tokenizer: sentence ends are tokens whose text ends in . ! ? or a newline, word
        starts tokens whose text starts with whitespace (or, for SentencePiece vocabularies, whose piece
        starts with its word marker ``▁``, which decoding a single piece drops)."""
        ends, starts = set(), set()
        specials = set(tok.special.sentinels) | {
            v for v in (tok.special.mask, tok.special.smask, tok.special.gmask, tok.special.sop, tok.special.eop,
                        tok.special.nlu, tok.special.nlg, tok.special.s2s) if v is not None}
        for i in range(tok.vocab_size):
            if i in specials:
                continue
            text = tok.decode([i], skip_special=True)
            if text and text.rstrip(" ").endswith(_SENTENCE_END_CHARS):
                ends.add(i)
            if text[:1].isspace() or (tok.id_to_token(i) or "").startswith("\u2581"):
                starts.add(i)
        return cls(size=tok.vocab_size, pad=tok.pad_id, bos=tok.bos_id, eos=tok.eos_id, special=tok.special,
                   sentence_ends=frozenset(ends), word_starts=frozenset(starts))

    @cached_property
    def ordinary(self) -> np.ndarray:
        """``(K,)`` ids of the ordinary tokens: every id but pad/bos/eos and the objectives' special tokens."""
        s = self.special
        taken = {self.pad, self.bos, self.eos, *s.sentinels} | {
            v for v in (s.mask, s.smask, s.gmask, s.sop, s.eop, s.nlu, s.nlg, s.s2s) if v is not None}
        keep = np.ones(self.size, dtype=bool)
        keep[[t for t in taken if 0 <= t < self.size]] = False
        return np.flatnonzero(keep).astype(np.int64)


class Objective:
    """Base class. Subclasses set ``name`` and ``min_length`` and implement ``__call__`` and ``bounds``."""

    name: str = "objective"
    min_length: int = 1
    uses_2d_positions: bool = False
    teacher_forced: bool = True  # False when examples carry their own ``target_inputs`` (GLM)

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        raise NotImplementedError

    def bounds(self, n: int) -> tuple[int, int]:
        """Upper bounds ``(len(source), len(target))`` for ``n`` input tokens (usual case; see pipeline)."""
        raise NotImplementedError

    def row_bound(self, n: int) -> int:
        """Upper bound of a decoder row (``source + target``, teacher forcing drops the last target token)."""
        s, t = self.bounds(n)
        return s + t - (1 if self.teacher_forced else 0)

    def check(self, vocab: Vocab) -> None:
        """Raise ``DataError`` when the tokenizer lacks a token this objective needs."""

    def config(self) -> dict[str, Any]:
        """The objective's settings as a JSON-able dict (``build_objective`` accepts it back)."""
        return {"name": self.name}

    def apply(self, ids: Sequence[int] | np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        """``__call__`` with the input checked: ``DataError`` when the text is shorter than needed."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError("an objective takes a 1-D sequence of token ids")
        if len(arr) < self.min_length:
            raise DataError(f"objective '{self.name}' needs at least {self.min_length} tokens, got {len(arr)}; "
                            "give it a longer text")
        return self(arr, rng, vocab)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def as_ids(*parts: Sequence[int] | np.ndarray | int) -> np.ndarray:
    """Concatenate ints and id sequences into one int64 array."""
    arrays = [np.atleast_1d(np.asarray(p, dtype=np.int64)) for p in parts]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
