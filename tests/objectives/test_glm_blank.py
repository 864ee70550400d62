"""GLM blank infilling: hand-computed Part A / Part B / 2D positions, rebuild, rates, [sMASK], [gMASK]."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_helpers import PERIOD, make_vocab, text_ids

from unimask.objectives import GLMBlank, build_objective
from unimask.objectives.base import IGNORE, Example
from unimask.objectives.glm import glm_example, glm_place_spans
from unimask.objectives.layout import layout

MASK, SMASK, GMASK, SOP, EOP = 3, 4, 5, 6, 7


def test_hand_computed_example(vocab):
    ids = np.arange(10, 20)
    ex = glm_example(ids, [(2, 2), (6, 1)], MASK, vocab, np.random.default_rng(0), "mask", order=[1, 0])
    assert ex.source.tolist() == [10, 11, MASK, 14, 15, MASK, 17, 18, 19]
    assert ex.target_inputs.tolist() == [SOP, 16, SOP, 12, 13]
    assert ex.target.tolist() == [16, EOP, 12, 13, EOP]
    assert ex.positions.tolist() == list(range(9)) + [5, 5, 2, 2, 2]
    assert ex.block_positions.tolist() == [0] * 9 + [1, 2, 1, 2, 3]
    row = layout(ex, "prefix", with_2d=True)
    assert row["input_ids"].tolist() == ex.source.tolist() + [SOP, 16, SOP, 12, 13]
    assert row["labels"].tolist() == [IGNORE] * 9 + [16, EOP, 12, 13, EOP]
    assert row["is_prefix"].tolist() == [True] * 9 + [False] * 5
    assert row["position_ids"].tolist() == ex.positions.tolist()
    assert row["block_position_ids"].tolist() == ex.block_positions.tolist()


def test_place_spans_keeps_a_token_between_spans():
    rng = np.random.default_rng(0)
    for _ in range(200):
        spans = glm_place_spans(30, [3, 1, 4, 2], rng)
        for (s0, l0), (s1, _) in itertools.pairwise(spans):
            assert s0 + l0 < s1
        assert spans[-1][0] + spans[-1][1] <= 30


def rebuild(ex: Example) -> list[int]:
    """Fill each mask of Part A with the Part B span that carries its position."""
    S = len(ex.source)
    fills: dict[int, list[int]] = {}
    pos_b = ex.positions[S:]
    for j, (tok, inp) in enumerate(zip(ex.target.tolist(), ex.target_inputs.tolist())):
        if inp == SOP:
            current = int(pos_b[j])
            fills[current] = []
        if tok != EOP:
            fills[current].append(tok)
    out: list[int] = []
    for i, t in enumerate(ex.source.tolist()):
        out.extend(fills.get(i, [t]))
    assert all(ex.source[p] in (MASK, SMASK, GMASK) for p in fills)
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["mask", "smask", "gmask"]))
def test_part_a_and_part_b_rebuild_the_original(n, seed, mode):
    ids = text_ids(n, seed)
    ids[::7] = PERIOD  # some sentences
    obj = GLMBlank(modes={mode: 1.0})
    ex = obj.apply(ids, np.random.default_rng(seed), make_vocab())
    assert rebuild(ex) == ids.tolist()
    S, T = len(ex.source), len(ex.target)
    # 2D positions: Part A (i, 0); Part B (its mask's position, 1..len+1)
    assert ex.positions[:S].tolist() == list(range(S)) and not ex.block_positions[:S].any()
    starts = np.flatnonzero(ex.target_inputs == SOP)
    for a, b in zip(starts, list(starts[1:]) + [T]):
        assert ex.block_positions[S + a:S + b].tolist() == list(range(1, b - a + 1))
        assert len(set(ex.positions[S + a:S + b].tolist())) == 1
    assert ex.target[starts[1:] - 1].tolist() == [EOP] * (len(starts) - 1) and ex.target[-1] == EOP
    if mode == "gmask":
        assert ex.source[-1] == GMASK and len(starts) == 1
        assert np.ceil(n / 2) <= T - 1 <= max(n - 1, 1)


def test_mask_rate_and_span_length_over_many_samples(vocab):
    rng = np.random.default_rng(0)
    obj = GLMBlank()
    lengths: list[int] = []
    masked = 0
    for i in range(300):
        ex = obj.apply(text_ids(400, i), rng, vocab)
        lengths.extend(length for _, length in ex.info["spans"])
        masked += int(ex.info["noise_mask"].sum())
    assert abs(masked / (300 * 400) - 0.15) < 0.002
    # Poisson(3) without zeros has mean 3 / (1 - e^-3) = 3.16; cutting the last span lowers it a little
    assert 2.85 < np.mean(lengths) < 3.25


def test_sentence_mode_masks_whole_sentences(vocab):
    sentences = [[101, 102, PERIOD], [201, 202, 203, PERIOD], [301, PERIOD], [401, 402, 403, 404, PERIOD]]
    ids = np.concatenate(sentences)
    starts = {0, 3, 7, 9}
    obj = GLMBlank(modes={"smask": 1.0})
    for seed in range(20):
        ex = obj.apply(ids, np.random.default_rng(seed), vocab)
        assert SMASK in ex.source.tolist() and MASK not in ex.source.tolist()
        for start, length in ex.info["spans"]:
            assert start in starts and ids[start + length - 1] == PERIOD
        assert ex.info["noise_mask"].sum() >= round(len(ids) * 0.15)
        assert len(ex.info["spans"]) < len(sentences)  # Part A keeps a sentence


def test_modes_follow_weights_and_same_seed_same_output(vocab):
    obj = build_objective({"name": "glm_blank", "modes": {"mask": 0.3, "gmask": 0.7}})
    rng = np.random.default_rng(0)
    modes = [obj.apply(text_ids(50, i), rng, vocab).mode for i in range(1000)]
    assert abs(modes.count("glm_gmask") / 1000 - 0.7) < 0.05
    a = obj.apply(text_ids(60), np.random.default_rng(5), vocab)
    b = obj.apply(text_ids(60), np.random.default_rng(5), vocab)
    assert a.source.tolist() == b.source.tolist() and a.positions.tolist() == b.positions.tolist()


def test_span_length_does_not_depend_on_position(vocab):
    """GLM shuffles the Poisson lengths before placing them (THUDM GLM, ``blocklm_utils``), so the rightmost
    span is not the length cut to fit the budget: at 200 tokens, placing the lengths in draw order made it
    2.52 tokens long on average against 3.16 for the other spans of the same example."""
    obj = GLMBlank()
    rng = np.random.default_rng(0)
    rightmost, others = [], []
    for i in range(2000):
        lengths = [length for _, length in obj.apply(text_ids(200, i), rng, vocab).info["spans"]]
        rightmost.append(lengths[-1])
        others.append(np.mean(lengths[:-1]))  # per example: each example weighs the same on both sides
    gap = np.array(rightmost) - np.array(others)
    assert abs(gap.mean()) < 0.15, gap.mean()  # standard error about 0.04; draw order gives -0.63
