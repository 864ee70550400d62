"""Denoising objectives of the encoder-decoder papers: T5 span corruption and BART text infilling.

- T5 span corruption (Raffel et al. 2020, section 3.1.4): noise density 0.15, mean span length 3;
  each noise span becomes one sentinel in the input; the target lists sentinel, dropped span, ..., EOS.
- BART text infilling (Lewis et al. 2020, section 2.2): span lengths from Poisson(3) until 30% of the
  tokens are covered; each span, including a 0-length one (an insertion), becomes a single mask
  token; the target is the whole original text. Sentence permutation shuffles the sentences first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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


def infill(ids: np.ndarray, spans: list[tuple[int, int]], mask_id: int) -> np.ndarray:
    """Replace each ``(start, length)`` span (sorted) by one ``mask_id``; a 0-length span inserts one."""
    parts: list[np.ndarray] = []
    pos = 0
    for start, length in spans:
        parts.append(ids[pos:start])
        parts.append(np.array([mask_id], dtype=np.int64))
        pos = start + length
    parts.append(ids[pos:])
    return np.concatenate(parts) if parts else ids.copy()


class BartInfilling(Objective):
    """BART text infilling (Poisson(3) spans over 30% of tokens, one mask each) with optional sentence
    permutation. ``source = corrupted + [eos]``, ``target = original + [eos]``."""

    name = "bart_infilling"
    min_length = 1

    def __init__(self, mask_ratio: float = 0.3, poisson_lambda: float = 3.0, permute_sentences: bool = False) -> None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"bart_infilling: mask_ratio must be in [0, 1), got {mask_ratio}")
        if poisson_lambda <= 0:
            raise ValueError(f"bart_infilling: poisson_lambda must be positive, got {poisson_lambda}")
        self.mask_ratio = mask_ratio
        self.poisson_lambda = poisson_lambda
        self.permute_sentences = permute_sentences

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        mask_id = vocab.special.require("mask", "BART text infilling")
        original = ids
        if self.permute_sentences:
            sents = sentence_spans(ids, vocab.sentence_ends)
            order = rng.permutation(len(sents))
            ids = np.concatenate([ids[sents[i][0]:sents[i][0] + sents[i][1]] for i in order.tolist()])
        n = len(ids)
        total = round(n * self.mask_ratio)
        lengths = poisson_lengths(total, self.poisson_lambda, rng, allow_zero=True, max_spans=max(total, 1))
        spans = place_spans(n, lengths, rng)
        source = as_ids(infill(ids, spans, mask_id), vocab.eos)
        return Example(source=source, target=as_ids(original, vocab.eos), mode=self.name,
                       info={"spans": spans, "permuted": ids})

    def bounds(self, n: int) -> tuple[int, int]:
        return n + 1, n + 1  # at most `total` spans, so the source never grows beyond n + eos

    def check(self, vocab: Vocab) -> None:
        vocab.special.require("mask", "BART text infilling")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "mask_ratio": self.mask_ratio, "poisson_lambda": self.poisson_lambda,
                "permute_sentences": self.permute_sentences}

