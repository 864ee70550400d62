"""BART text infilling: hand-computed arrays (including a 0-length span), rebuild, rates, permutation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_helpers import PERIOD, make_vocab, text_ids

from unimask.errors import DataError
from unimask.objectives import BartInfilling, build_objective
from unimask.objectives.base import Vocab
from unimask.objectives.denoise import infill, place_spans

MASK, EOS = 3, 2


def test_infill_by_hand_with_a_zero_length_span():
    ids = np.arange(10, 20)
    # spans (start, length): tokens 11-12 masked, an insertion before 15, tokens 17-19 masked
    out = infill(ids, [(1, 2), (5, 0), (7, 3)], MASK)
    assert out.tolist() == [10, MASK, 13, 14, MASK, 15, 16, MASK]


def test_place_spans_never_overlaps():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = [int(x) for x in rng.poisson(3, size=4)]
        n = sum(lengths) + int(rng.integers(0, 10))
        spans = place_spans(n, lengths, rng)
        assert sorted(length for _, length in spans) == sorted(lengths)
        ends = [s + length for s, length in spans]
        assert all(ends[i] <= spans[i + 1][0] for i in range(len(spans) - 1))
        assert spans[0][0] >= 0 and ends[-1] <= n


def rebuild(source: np.ndarray, ids: np.ndarray, spans: list[tuple[int, int]]) -> list[int]:
    """Replace the k-th mask of the source by the k-th span of the original."""
    out: list[int] = []
    k = 0
    for t in source[:-1].tolist():
        if t == MASK:
            start, length = spans[k]
            out.extend(ids[start:start + length].tolist())
            k += 1
        else:
            out.append(t)
    assert k == len(spans)
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_without_permutation_source_and_spans_rebuild_the_original(n, seed):
    ids = text_ids(n, seed)
    obj = BartInfilling()
    ex = obj.apply(ids, np.random.default_rng(seed), make_vocab())
    assert ex.target.tolist() == ids.tolist() + [EOS]
    assert rebuild(ex.source, ids, ex.info["spans"]) == ids.tolist()
    spans = ex.info["spans"]
    budget = math.ceil(n * 0.3 - 1e-9)  # fairseq's ceil (10 x 0.3 = 3.0000000000000004 still gives 3)
    assert sum(length for _, length in spans) == budget
    assert len(ex.source) == n - budget + len(spans) + 1  # one mask per span, 0-length ones included
    s_max, t_max = obj.bounds(n)
    assert len(ex.source) <= s_max and len(ex.target) == t_max


def test_mask_rate_and_poisson_span_length_over_many_samples(vocab):
    rng = np.random.default_rng(0)
    obj = BartInfilling()
    lengths: list[int] = []
    masked = total = 0
    for i in range(400):
        ids = text_ids(200, i)
        ex = obj.apply(ids, rng, vocab)
        lengths.extend(length for _, length in ex.info["spans"])
        masked += sum(length for _, length in ex.info["spans"])
        total += 200
    assert abs(masked / total - 0.3) < 0.005
    # Poisson(3) lengths (the last span of each example is cut to hit 30% exactly, so a little under 3)
    assert 2.7 < np.mean(lengths) < 3.1
    zero = np.mean(np.array(lengths) == 0)
    assert 0.02 < zero < 0.09  # P(Poisson(3) = 0) = e^-3 = 0.05: insertions happen


def test_sentence_permutation_shuffles_sentences_and_keeps_the_target(vocab):
    sentences = [[101, 102, PERIOD], [201, 202, 203, PERIOD], [301, PERIOD], [401, 402, PERIOD]]
    ids = np.concatenate(sentences)
    obj = BartInfilling(mask_ratio=0.0, permute_sentences=True)
    seen = set()
    for seed in range(30):
        ex = obj.apply(ids, np.random.default_rng(seed), vocab)
        assert ex.target.tolist() == ids.tolist() + [EOS]
        body = ex.source[:-1].tolist()
        assert sorted(body) == sorted(ids.tolist())  # nothing masked at ratio 0: a pure permutation
        # the source is the sentences in some order
        parts, cur = [], []
        for t in body:
            cur.append(t)
            if t == PERIOD:
                parts.append(cur)
                cur = []
        assert sorted(map(tuple, parts)) == sorted(map(tuple, sentences))
        seen.add(tuple(body))
    assert len(seen) > 5


def test_same_seed_same_output(vocab):
    ids = text_ids(150)
    a = BartInfilling(permute_sentences=True).apply(ids, np.random.default_rng(3), vocab)
    b = BartInfilling(permute_sentences=True).apply(ids, np.random.default_rng(3), vocab)
    assert a.source.tolist() == b.source.tolist()


# fairseq's options: the ceil budget, random replacement tokens, whole-word masking --------------------------

def word_vocab() -> Vocab:
    """The test vocabulary where ids 100..499 begin a word (" x") and 500..899 continue one ("x")."""
    v = make_vocab()
    return Vocab(size=v.size, pad=v.pad, bos=v.bos, eos=v.eos, special=v.special, sentence_ends=v.sentence_ends,
                 word_starts=frozenset(range(100, 500)))


def replaced(ex) -> list[int]:
    """The token that stands for each span in the source (mask or random), found by walking the spans."""
    out, removed = [], 0
    for k, (start, length) in enumerate(ex.info["spans"]):
        out.append(int(ex.source[start - removed + k]))
        removed += length
    return out


@pytest.mark.parametrize(("n", "budget"), [(1, 1), (4, 2), (5, 2), (10, 3), (11, 4), (20, 6)])
def test_budget_is_the_ceil_of_the_ratio(vocab, n, budget):
    """ceil(n * 0.3) tokens (fairseq), where round would give 0, 1, 2, 3, 3, 6: 1 and 4 and 11 tell them apart."""
    for seed in range(20):
        ex = BartInfilling().apply(text_ids(n, seed), np.random.default_rng(seed), vocab)
        assert sum(length for _, length in ex.info["spans"]) == budget


def test_whole_word_budget_counts_words_by_hand():
    # 7 words (starts at 0, 2, 3, 6, 7, 9, 10) in 12 tokens: ceil(7 * 0.3) = 3 words masked (round: 2)
    ids = np.array([600, 601, 102, 103, 602, 603, 104, 105, 604, 106, 107, 605])
    starts = {0, 2, 3, 6, 7, 9, 10}
    ends = {2, 3, 6, 7, 9, 10, 12}
    for seed in range(50):
        ex = BartInfilling(whole_words=True).apply(ids, np.random.default_rng(seed), word_vocab())
        words = 0
        for start, length in ex.info["spans"]:
            assert start in starts | {12}  # a span (or an insertion) starts at a word start, or at the end
            if length:
                assert start + length in ends  # and covers whole words
                words += sum(1 for s in starts if start <= s < start + length)
        assert words == 3


def test_whole_word_spans_follow_poisson_in_words():
    rng = np.random.default_rng(0)
    vocab = word_vocab()
    obj = BartInfilling(whole_words=True)
    word_lengths, masked_words, total_words = [], 0, 0
    for i in range(300):
        ids = text_ids(200, i)
        starts = set(np.flatnonzero((ids >= 100) & (ids < 500)).tolist()) | {0}
        ex = obj.apply(ids, rng, vocab)
        for start, length in ex.info["spans"]:
            assert start in starts or start == len(ids)
            assert start + length == len(ids) or start + length in starts or length == 0
            k = sum(1 for s in starts if start <= s < start + length)
            word_lengths.append(k)
            masked_words += k
        total_words += len(starts)
        assert rebuild(ex.source, ids, ex.info["spans"]) == ids.tolist()
    assert abs(masked_words / total_words - 0.3) < 0.01
    assert 2.7 < np.mean(word_lengths) < 3.1  # Poisson(3) in words, the last span of each example cut


def test_mask_random_replaces_that_fraction_of_spans_by_ordinary_tokens(vocab):
    rng = np.random.default_rng(0)
    obj = BartInfilling(mask_random=0.1)
    special = {0, 1, 2, 3, 4, 5, 6, 7, 97, 98, 99, *range(900, 1000)}
    fills: list[int] = []
    for i in range(400):
        ids = text_ids(200, i)
        ex = obj.apply(ids, rng, vocab)
        assert replaced(ex) == ex.info["fills"]
        fills += ex.info["fills"]
        assert ex.target.tolist() == ids.tolist() + [EOS]
    random = [t for t in fills if t != MASK]
    assert abs(len(random) / len(fills) - 0.1) < 0.015  # about 20000 spans: standard error 0.002
    assert not special & set(random)  # never a special token, a sentinel or pad/bos/eos
    assert min(random) < 20 and max(random) > 850  # drawn from the whole ordinary range (8..96, 100..899)
    assert BartInfilling(mask_random=1.0).apply(text_ids(50), np.random.default_rng(1), vocab).source.tolist().count(
        MASK) == 0


def test_options_are_deterministic_and_the_defaults_draw_nothing_more(vocab):
    ids = text_ids(150)
    ids[::11] = PERIOD
    wv = word_vocab()
    spec = {"name": "bart_infilling", "mask_random": 0.3, "whole_words": True, "permute_sentences": True}
    a = build_objective(spec).apply(ids, np.random.default_rng(4), wv)
    b = build_objective(spec).apply(ids, np.random.default_rng(4), wv)
    assert a.source.tolist() == b.source.tolist() and a.info["fills"] == b.info["fills"]
    assert a.source.tolist() != build_objective(spec).apply(ids, np.random.default_rng(5), wv).source.tolist()
    assert build_objective(spec).config() == {**spec, "mask_ratio": 0.3, "poisson_lambda": 3.0}
    # mask_random 0 takes no random numbers: the same spans as with the option absent
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    plain = BartInfilling().apply(ids, rng1, vocab)
    zero = BartInfilling(mask_random=0.0).apply(ids, rng2, vocab)
    assert plain.source.tolist() == zero.source.tolist() and rng1.random() == rng2.random()


def test_whole_words_need_word_starts_and_mask_random_a_fraction(vocab):
    with pytest.raises(DataError, match="word starts"):
        BartInfilling(whole_words=True).check(vocab)  # the hand-made vocabulary marks none
    with pytest.raises(DataError, match="word starts"):
        BartInfilling(whole_words=True).apply(text_ids(20), np.random.default_rng(0), vocab)
    with pytest.raises(ValueError, match="mask_random"):
        BartInfilling(mask_random=1.5)
