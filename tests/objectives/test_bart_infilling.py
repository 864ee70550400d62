"""BART text infilling: hand-computed arrays (including a 0-length span), rebuild, rates, permutation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_helpers import PERIOD, make_vocab, text_ids

from unimask.objectives import BartInfilling
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
    assert sum(length for _, length in spans) == round(n * 0.3)
    assert len(ex.source) == n - round(n * 0.3) + len(spans) + 1  # one mask per span, 0-length ones included
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
