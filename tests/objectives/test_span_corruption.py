"""T5 span corruption: hand-computed arrays, T5's exact counting, and properties over random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from objectives_helpers import SENTINELS, make_vocab, text_ids

from unimask.errors import DataError
from unimask.objectives import SpanCorruption, build_objective
from unimask.objectives.denoise import span_corrupt
from unimask.objectives.noise import noise_span_to_sentinels, random_spans_noise_mask, spans_of, t5_span_counts

EOS = 2


def test_fixed_noise_mask_over_tokens_10_to_15(vocab):
    ids = np.arange(10, 16)
    mask = np.array([0, 1, 1, 0, 0, 1], dtype=bool)
    source, target = span_corrupt(ids, mask, vocab)
    assert source.tolist() == [10, 999, 13, 14, 998, EOS]
    assert target.tolist() == [999, 11, 12, 998, 15, EOS]


# T5's span_corruption on any mask: inputs = noise_span_to_unique_sentinel(tokens, mask), targets =
# nonnoise_span_to_unique_sentinel(tokens, mask) (the same on ~mask); sentinels 999, 998, ... by hand.
@pytest.mark.parametrize(("mask", "source", "target"), [
    # ends in non-noise: 1 noise span, 2 non-noise spans, so the target has a second sentinel
    ([0, 1, 1, 0, 0, 0], [10, 999, 13, 14, 15, EOS], [999, 11, 12, 998, EOS]),
    # starts with noise: the target keeps the leading noise tokens, then one sentinel per non-noise run
    ([1, 1, 0, 0, 1, 0], [999, 12, 13, 998, 15, EOS], [10, 11, 999, 14, 998, EOS]),
    # all clear: nothing dropped, the target is one sentinel
    ([0, 0, 0, 0, 0, 0], [10, 11, 12, 13, 14, 15, EOS], [999, EOS]),
    # all noise: the input is one sentinel, the target the whole text
    ([1, 1, 1, 1, 1, 1], [999, EOS], [10, 11, 12, 13, 14, 15, EOS]),
])
def test_any_noise_mask_follows_t5(vocab, mask, source, target):
    src, tgt = span_corrupt(np.arange(10, 16), np.array(mask, dtype=bool), vocab)
    assert src.tolist() == source
    assert tgt.tolist() == target


def test_too_few_sentinels_names_both_span_counts(vocab):
    few = make_vocab()
    object.__setattr__(few.special, "sentinels", SENTINELS[:2])
    mask = np.array([0, 1, 0, 1, 0], dtype=bool)  # 2 noise spans, 3 non-noise spans: 3 sentinels
    with pytest.raises(DataError, match="2 noise and 3 non-noise spans needs 3 sentinel tokens"):
        span_corrupt(np.arange(10, 15), mask, few)
    src, tgt = span_corrupt(np.arange(10, 15), mask, vocab)
    assert (src.tolist(), tgt.tolist()) == ([10, 999, 12, 998, 14, EOS], [999, 11, 998, 13, 997, EOS])


def test_sentinels_replace_runs_in_order():
    tokens = np.array([5, 6, 7, 8, 9, 10, 11])
    mask = np.array([1, 1, 0, 1, 0, 1, 1], dtype=bool)
    assert noise_span_to_sentinels(tokens, mask, [50, 49, 48]).tolist() == [50, 7, 49, 9, 48]
    assert noise_span_to_sentinels(tokens, ~mask, [50, 49, 48]).tolist() == [5, 6, 50, 8, 49, 10, 11]


def test_t5_counts_match_the_paper_setup():
    # T5's default: 568 raw tokens give 512 inputs and 114 targets (85 noise tokens in 28 spans).
    assert t5_span_counts(568, 0.15, 3.0) == (85, 28)
    assert SpanCorruption().bounds(568) == (512, 114)


def test_t5_rounds_in_float32_half_to_even():
    # float32(190) * float32(0.15) = 28.500002 -> 29 noise tokens (float64: round(28.5) = 28), 10 spans
    assert t5_span_counts(190, 0.15, 3.0) == (29, 10)
    assert t5_span_counts(30, 0.15, 3.0) == (4, 1)  # 4.5 exactly: half to even
    assert t5_span_counts(2, 0.15, 3.0) == (1, 1)  # at least one noise token, at most length - 1
    assert t5_span_counts(10, 0.9, 3.0) == (9, 1)


def test_mask_alternates_starting_with_non_noise():
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = random_spans_noise_mask(100, 0.15, 3.0, rng)
        assert not mask[0]
        assert mask[-1]  # the interleaving ends with a noise span
        assert len(spans_of(mask)) == 5 and mask.sum() == 15


def rebuild(source: np.ndarray, target: np.ndarray) -> list[int]:
    """Put each sentinel's span from the target back into the source."""
    assert source[-1] == EOS and target[-1] == EOS
    pieces: dict[int, list[int]] = {}
    current = None
    for t in target[:-1].tolist():
        if t in SENTINELS:
            current = t
            pieces[t] = []
        else:
            pieces[current].append(t)
    out: list[int] = []
    for t in source[:-1].tolist():
        out.extend(pieces[t] if t in SENTINELS else [t])
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), seed=st.integers(0, 2**31 - 1),
       density=st.sampled_from([0.15, 0.3, 0.5]), mean=st.sampled_from([1.0, 3.0, 8.0]))
def test_source_and_target_rebuild_the_original(n, seed, density, mean):
    assume(t5_span_counts(n, density, mean)[1] <= len(SENTINELS))
    ids = text_ids(n, seed)
    obj = SpanCorruption(density, mean)
    ex = obj.apply(ids, np.random.default_rng(seed), make_vocab())
    assert rebuild(ex.source, ex.target) == ids.tolist()
    noise, spans = t5_span_counts(n, density, mean)
    assert ex.info["noise_mask"].sum() == noise
    assert len(spans_of(ex.info["noise_mask"])) == spans
    assert (len(ex.source), len(ex.target)) == obj.bounds(n)
    # sentinels in the target count down from the top: extra_id_0 first
    sentinels = [t for t in ex.target.tolist() if t in SENTINELS]
    assert sentinels == list(SENTINELS[:spans])


def test_noise_fraction_and_mean_span_length_over_many_samples():
    rng = np.random.default_rng(1)
    noise = spans = total = 0
    lengths = []
    for n in rng.integers(50, 400, size=300):
        mask = random_spans_noise_mask(int(n), 0.15, 3.0, rng)
        runs = spans_of(mask)
        noise += int(mask.sum())
        total += int(n)
        spans += len(runs)
        lengths.extend(length for _, length in runs)
    assert abs(noise / total - 0.15) < 0.005
    assert abs(np.mean(lengths) - 3.0) < 0.1


def test_same_seed_same_output_and_other_seed_differs(vocab):
    ids = text_ids(200)
    obj = build_objective("span_corruption")
    a = obj.apply(ids, np.random.default_rng(7), vocab)
    b = obj.apply(ids, np.random.default_rng(7), vocab)
    c = obj.apply(ids, np.random.default_rng(8), vocab)
    assert a.source.tolist() == b.source.tolist() and a.target.tolist() == b.target.tolist()
    assert a.source.tolist() != c.source.tolist()


def test_too_short_text_and_too_few_sentinels_are_clear_errors(vocab):
    with pytest.raises(DataError, match="at least 2 tokens"):
        SpanCorruption().apply([5], np.random.default_rng(0), vocab)
    few = make_vocab()
    object.__setattr__(few.special, "sentinels", SENTINELS[:2])
    with pytest.raises(DataError, match="sentinel"):
        SpanCorruption(0.5, 1.0).apply(text_ids(40), np.random.default_rng(0), few)
