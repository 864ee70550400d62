"""Noise masks and span helpers shared by the denoising objectives (pure numpy).

``random_spans_noise_mask`` and ``noise_span_to_sentinels`` follow T5's preprocessors (Raffel et al.
2020, appendix; ``t5.data.preprocessors.random_spans_noise_mask``): round(L * density) noise tokens in
round(noise / mean) spans, spans alternating non-noise/noise starting with non-noise, each noise span
replaced by one sentinel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def t5_span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """``(num_noise_tokens, num_noise_spans)`` for ``length`` tokens, with T5's rounding.

    T5 rounds ``float32(length) * density`` half to even (``tf.round``) and clamps the noise to
    ``1 .. length - 1``; the spans are ``max(round(noise / mean), 1)``. unimask also caps the spans at
    the number of noise and non-noise tokens so that every span is non-empty for short inputs (T5 leaves
    that case undefined).
    """
    if length < 2:
        raise ValueError("span corruption needs at least 2 tokens")
    noise = int(np.round(np.float32(length) * np.float32(noise_density)))
    noise = min(max(noise, 1), length - 1)
    spans = int(np.round(np.float32(noise) / np.float32(mean_noise_span_length)))
    spans = max(spans, 1)
    spans = min(spans, noise, length - noise)
    return noise, spans


def random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``num_items`` into ``num_segments`` non-empty parts uniformly at random: lengths ``(num_segments,)``."""
    if not 1 <= num_segments <= num_items:
        raise ValueError(f"cannot split {num_items} items into {num_segments} non-empty segments")
    cuts = np.sort(rng.choice(np.arange(1, num_items), size=num_segments - 1, replace=False))
    edges = np.concatenate([[0], cuts, [num_items]])
    return np.diff(edges)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """T5's noise mask ``(length,)`` bool: alternating non-noise/noise spans, starting with non-noise."""
    noise, spans = t5_span_counts(length, noise_density, mean_noise_span_length)
    noise_lengths = random_segmentation(noise, spans, rng)
    nonnoise_lengths = random_segmentation(length - noise, spans, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)  # (2 * spans,)
    span_id = np.repeat(np.arange(2 * spans), interleaved)  # (length,)
    return span_id % 2 == 1


def noise_span_to_sentinels(tokens: np.ndarray, noise_mask: np.ndarray, sentinels: Sequence[int]) -> np.ndarray:
    """Replace each run of noise tokens by one sentinel (``sentinels[0]``, ``sentinels[1]``, ...), in order.

    T5's inputs are ``noise_span_to_sentinels(tokens, mask)`` and its targets
    ``noise_span_to_sentinels(tokens, ~mask)``: with spans starting with non-noise the target begins with
    sentinel 0 and the sentinels line up with the input's.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    prev = np.concatenate([[False], noise_mask[:-1]])
    first = noise_mask & ~prev
    subsequent = noise_mask & prev
    n_spans = int(first.sum())
    if n_spans > len(sentinels):
        raise ValueError(f"{n_spans} runs of masked tokens to replace but only {len(sentinels)} sentinels")
    out = tokens.copy()
    span_index = np.cumsum(first) - 1  # (L,)
    out[first] = np.asarray(sentinels, dtype=np.int64)[span_index[first]]
    return out[~subsequent]


def spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of True in a bool mask."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    diff = np.diff(padded)
    starts = np.flatnonzero(diff == 1)
    ends = np.flatnonzero(diff == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


def poisson_lengths(total: int, lam: float, rng: np.random.Generator, *, allow_zero: bool,
                    max_spans: int | None = None) -> list[int]:
    """Span lengths drawn from Poisson(``lam``) until they cover ``total`` tokens; the last one is cut so
    they sum to exactly ``total``. Zero lengths are kept (BART: an inserted mask) or redrawn (GLM).
    At most ``max_spans`` spans: past that the remainder goes to the last span."""
    lengths: list[int] = []
    covered = 0
    while covered < total:
        if max_spans is not None and len(lengths) >= max_spans:
            # Rare (many zero-length draws): give what is left to the last non-empty span.
            idx = max((i for i, v in enumerate(lengths) if v > 0), default=len(lengths) - 1)
            lengths[idx] += total - covered
            covered = total
            break
        n = int(rng.poisson(lam))
        if n == 0 and not allow_zero:
            continue
        n = min(n, total - covered)
        lengths.append(n)
        covered += n
    return lengths


def sentence_spans(ids: np.ndarray, sentence_ends: frozenset[int]) -> list[tuple[int, int]]:
    """``(start, length)`` of each sentence: a sentence ends after a token in ``sentence_ends`` (or at the end)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i, t in enumerate(np.asarray(ids).tolist()):
        if t in sentence_ends:
            spans.append((start, i + 1 - start))
            start = i + 1
    if start < len(ids):
        spans.append((start, len(ids) - start))
    return spans
