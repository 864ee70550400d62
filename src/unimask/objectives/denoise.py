"""Denoising objectives of the encoder-decoder papers: T5 span corruption and BART text infilling.

- T5 span corruption (Raffel et al. 2020, section 3.1.4): noise density 0.15, mean span length 3;
  each noise span becomes one sentinel in the input; the target lists sentinel, dropped span, ..., EOS.
- BART text infilling (Lewis et al. 2020, section 2.2; fairseq's ``denoising_dataset``): span lengths from
  Poisson(3) until 30% of the tokens (or words) are covered; each span, including a 0-length one (an
  insertion), becomes a single mask token (or, optionally, a random token); the target is the whole
  original text. Sentence permutation shuffles the sentences first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from unimask.errors import DataError
from unimask.objectives.base import Example, Objective, Vocab, as_ids
from unimask.objectives.noise import (
    noise_span_to_sentinels,
    poisson_lengths,
    random_spans_noise_mask,
    sentence_spans,
    spans_of,
    t5_span_counts,
)


def span_corrupt(ids: np.ndarray, noise_mask: np.ndarray, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """T5 inputs and targets for ANY noise mask ``(L,)`` bool: ``(source, target)``, each ending with EOS.

    As T5's ``span_corruption`` (``t5.data.preprocessors``): the inputs are
    ``noise_span_to_unique_sentinel(tokens, mask)`` (each run of noise tokens becomes one sentinel) and the
    targets ``nonnoise_span_to_unique_sentinel(tokens, mask)``, the same function on ``~mask`` (each run
    of non-noise tokens becomes one sentinel); both count from ``<extra_id_0>``, so this needs
    ``max(#noise spans, #non-noise spans)`` sentinels. With T5's masks (``random_spans_noise_mask``
    starts with non-noise) sentinel k of the target opens noise span k, lining up with the input's
    sentinel k. Other masks behave as in T5: one ending in non-noise adds a final sentinel to the target,
    one starting with noise shifts the target's sentinels by one, the all-clear mask gives
    ``ids + [eos]`` -> ``[<extra_id_0>, eos]`` and the all-noise mask ``[<extra_id_0>, eos]`` -> ``ids + [eos]``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    mask = np.asarray(noise_mask, dtype=bool)
    if mask.shape != ids.shape:
        raise ValueError(f"noise mask of shape {mask.shape} for {ids.shape} tokens")
    n_noise, n_clear = len(spans_of(mask)), len(spans_of(~mask))
    sentinels = vocab.special.require_sentinels(
        max(n_noise, n_clear), f"span corruption with {n_noise} noise and {n_clear} non-noise spans")
    source = as_ids(noise_span_to_sentinels(ids, mask, sentinels), vocab.eos)
    target = as_ids(noise_span_to_sentinels(ids, ~mask, sentinels), vocab.eos)
    return source, target


class SpanCorruption(Objective):
    """T5 span corruption with T5's exact counting (``noise.t5_span_counts``)."""

    name = "span_corruption"
    min_length = 2

    def __init__(self, noise_density: float = 0.15, mean_noise_span_length: float = 3.0) -> None:
        if not 0.0 < noise_density < 1.0:
            raise ValueError(f"span_corruption: noise_density must be in (0, 1), got {noise_density}")
        if mean_noise_span_length < 1.0:
            raise ValueError(f"span_corruption: mean_noise_span_length must be >= 1, got {mean_noise_span_length}")
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        mask = random_spans_noise_mask(len(ids), self.noise_density, self.mean_noise_span_length, rng)
        source, target = span_corrupt(ids, mask, vocab)
        return Example(source=source, target=target, mode=self.name, info={"noise_mask": mask})

    def bounds(self, n: int) -> tuple[int, int]:
        if n < 2:
            return 2, 2
        noise, spans = t5_span_counts(n, self.noise_density, self.mean_noise_span_length)
        return n - noise + spans + 1, noise + spans + 1

    def sentinels_needed(self, n: int) -> int:
        return t5_span_counts(n, self.noise_density, self.mean_noise_span_length)[1] if n >= 2 else 1

    def check(self, vocab: Vocab) -> None:
        vocab.special.require_sentinels(1, "span corruption")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "noise_density": self.noise_density,
                "mean_noise_span_length": self.mean_noise_span_length}


def place_spans(n: int, lengths: list[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """Random non-overlapping positions for spans of ``lengths`` in ``n`` tokens: ``(start, length)`` sorted.

    The unmasked tokens and the spans are interleaved uniformly at random (stars and bars); spans may
    touch, and a 0-length span is an insertion point.
    """
    k = len(lengths)
    unmasked = n - sum(lengths)
    slots = np.sort(rng.choice(unmasked + k, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    order = rng.permutation(k)
    out: list[tuple[int, int]] = []
    pos = 0
    prev_slot = -1
    for j, slot in enumerate(slots.tolist()):
        pos += slot - prev_slot - 1  # unmasked tokens between the previous span and this one
        length = lengths[int(order[j])]
        out.append((pos, length))
        pos += length
        prev_slot = slot
    return out


def infill(ids: np.ndarray, spans: list[tuple[int, int]], mask_id: int,
           fills: Sequence[int] | None = None) -> np.ndarray:
    """Replace each ``(start, length)`` span (sorted) by one token; a 0-length span inserts one.

    The token is ``mask_id``, or ``fills[k]`` for span k when ``fills`` is given (BART's random tokens).
    """
    parts: list[np.ndarray] = []
    pos = 0
    for k, (start, length) in enumerate(spans):
        parts.append(ids[pos:start])
        parts.append(np.array([mask_id if fills is None else fills[k]], dtype=np.int64))
        pos = start + length
    parts.append(ids[pos:])
    return np.concatenate(parts) if parts else ids.copy()


def word_start_positions(ids: np.ndarray, word_starts: frozenset[int]) -> np.ndarray:
    """``(W,)`` positions where a word begins: 0, and every token in ``word_starts`` after it."""
    flags = np.isin(ids, np.fromiter(word_starts, dtype=np.int64, count=len(word_starts)))
    if len(flags):
        flags[0] = True
    return np.flatnonzero(flags)


def ceil_budget(units: int, ratio: float) -> int:
    """``ceil(units * ratio)`` (fairseq's ``math.ceil(num_words * p)``), robust to float error: 10 x 0.3 is
    3.0000000000000004 in floating point, which must give 3, not 4."""
    return math.ceil(units * ratio - 1e-9)


class BartInfilling(Objective):
    """BART text infilling (Lewis et al. 2020, section 2.2) with fairseq's options.

    ``source = corrupted + [eos]``, ``target = original + [eos]``. Span lengths are drawn from
    Poisson(``poisson_lambda``) until they cover the budget (the last one cut to fit), spans are placed
    without overlap, and each span, a 0-length one included (an insertion), becomes ONE token
    (fairseq's ``replace_length=1``): the mask token, or with probability ``mask_random`` a uniformly
    random ordinary (non-special) token (fairseq's ``mask_random``; fairseq draws any id but 0).
    ``whole_words``: the budget and the span lengths count whole words, and spans start at word starts
    (``Vocab.word_starts``) and cover whole words (fairseq's ``mask_length="span-poisson"`` with its
    whole-word mask); otherwise they count tokens. ``permute_sentences`` shuffles the sentences first.

    Budget: ``ceil(units * mask_ratio)`` units are masked, as fairseq's ``add_whole_word_mask``
    (``math.ceil(is_word_start.sum() * p)``); unimask chose ceil on purpose (it used ``round`` before), so a
    short text still gets a span.

    fairseq's defaults: the ``denoising`` task's arguments default to no noise (``mask=0``,
    ``mask_random=0``, ``poisson_lambda=3.0``, ``mask_length="subword"``, ``replace_length=-1``,
    ``rotate=0.5``); BART's pretraining recipe sets ``mask=0.3``, ``mask_random=0.1``,
    ``poisson_lambda=3.5``, ``mask_length="span-poisson"`` (whole words), ``replace_length=1``,
    ``permute_sentences=1.0``, ``rotate=0``, ``insert=0``. unimask's defaults keep its earlier behaviour
    (30%, Poisson(3) as in the paper, tokens, no random tokens, no permutation).
    """

    name = "bart_infilling"
    min_length = 1

    def __init__(self, mask_ratio: float = 0.3, poisson_lambda: float = 3.0, permute_sentences: bool = False,
                 mask_random: float = 0.0, whole_words: bool = False) -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"bart_infilling: mask_ratio must be in [0, 1), got {mask_ratio}")
        if poisson_lambda <= 0:
            raise ValueError(f"bart_infilling: poisson_lambda must be positive, got {poisson_lambda}")
        if not 0.0 <= mask_random <= 1.0:
            raise ValueError(f"bart_infilling: mask_random must be in [0, 1], got {mask_random}")
        self.mask_ratio = mask_ratio
        self.poisson_lambda = poisson_lambda
        self.permute_sentences = permute_sentences
        self.mask_random = float(mask_random)
        self.whole_words = bool(whole_words)

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        mask_id = vocab.special.require("mask", "BART text infilling")
        original = ids
        if self.permute_sentences:
            sents = sentence_spans(ids, vocab.sentence_ends)
            order = rng.permutation(len(sents))
            ids = np.concatenate([ids[sents[i][0]:sents[i][0] + sents[i][1]] for i in order.tolist()])
        spans = self._spans(ids, rng, vocab)
        fills = self._fills(len(spans), mask_id, rng, vocab)
        source = as_ids(infill(ids, spans, mask_id, fills), vocab.eos)
        return Example(source=source, target=as_ids(original, vocab.eos), mode=self.name,
                       info={"spans": spans, "permuted": ids,
                             "fills": [mask_id] * len(spans) if fills is None else fills})

    def _spans(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> list[tuple[int, int]]:
        """Token spans ``(start, length)``, sorted; placed in units of tokens or whole words."""
        n = len(ids)
        if not self.whole_words:
            total = ceil_budget(n, self.mask_ratio)
            lengths = poisson_lengths(total, self.poisson_lambda, rng, allow_zero=True, max_spans=max(total, 1))
            return place_spans(n, lengths, rng)
        self._check_word_starts(vocab)
        starts = word_start_positions(ids, vocab.word_starts)  # (W,)
        edges = np.append(starts, n)  # word w covers tokens edges[w]:edges[w + 1]
        total = ceil_budget(len(starts), self.mask_ratio)
        lengths = poisson_lengths(total, self.poisson_lambda, rng, allow_zero=True, max_spans=max(total, 1))
        return [(int(edges[w]), int(edges[w + k] - edges[w])) for w, k in place_spans(len(starts), lengths, rng)]

    def _fills(self, k: int, mask_id: int, rng: np.random.Generator, vocab: Vocab) -> list[int] | None:
        """The token of each of ``k`` spans, or None (all masks; no random draw, so outputs stay as before)."""
        if self.mask_random <= 0 or k == 0:
            return None
        random = rng.random(k) < self.mask_random  # (k,)
        tokens = rng.choice(vocab.ordinary, size=k)
        return [int(t) if r else mask_id for t, r in zip(tokens.tolist(), random.tolist())]

    def _check_word_starts(self, vocab: Vocab) -> None:
        if not vocab.word_starts:
            raise DataError("bart_infilling with whole_words needs a tokenizer that marks word starts (tokens "
                            "whose text starts with a space); this one marks none: set whole_words to false")

    def bounds(self, n: int) -> tuple[int, int]:
        # at most `total` spans (in units of at least one token each), so the source never outgrows n + eos
        return n + 1, n + 1

    def check(self, vocab: Vocab) -> None:
        vocab.special.require("mask", "BART text infilling")
        if self.whole_words:
            self._check_word_starts(vocab)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "mask_ratio": self.mask_ratio, "poisson_lambda": self.poisson_lambda,
                "permute_sentences": self.permute_sentences, "mask_random": self.mask_random,
                "whole_words": self.whole_words}
