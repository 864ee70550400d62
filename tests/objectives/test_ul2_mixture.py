"""UL2 mixture of denoisers, UL2R and plain mixtures."""

from __future__ import annotations

import collections

import numpy as np
from objectives_helpers import SENTINELS, text_ids

from unimask.objectives import GLMBlank, build_objective
from unimask.objectives.glm import glm_example
from unimask.objectives.mixture import Component, Mixture, with_mode_token

NLU, NLG, S2S = 97, 98, 99
EOS = 2


def test_ul2_mode_tokens_match_the_denoiser(vocab):
    obj = build_objective("ul2")
    rng = np.random.default_rng(0)
    counts: collections.Counter[str] = collections.Counter()
    for i in range(1400):
        ex = obj.apply(text_ids(200, i), rng, vocab)
        counts[ex.mode] += 1
        expected = {"R": NLU, "X": NLG, "S": S2S}[ex.mode[0]]
        assert ex.source[0] == expected
        if ex.mode == "S":
            assert not set(ex.target.tolist()) & set(SENTINELS)
        else:
            assert ex.target[0] == SENTINELS[0]
    assert len(counts) == 7
    assert all(abs(c / 1400 - 1 / 7) < 0.04 for c in counts.values())  # equal weights by default


def test_extreme_denoiser_corrupts_half(vocab):
    obj = build_objective({"name": "ul2", "denoisers": [{"kind": "X", "mean": 8, "rate": 0.5}]})
    ex = obj.apply(text_ids(400), np.random.default_rng(0), vocab)
    assert ex.source[0] == NLG
    assert ex.info["noise_mask"].mean() == 0.5
    spans = sum(1 for t in ex.target.tolist() if t in SENTINELS)
    assert spans == 25  # round(200 / 8)


def test_ul2r_weights_and_no_mode_tokens(vocab):
    obj = build_objective({"name": "ul2r", "mode_tokens": False})
    rng = np.random.default_rng(1)
    modes = collections.Counter(obj.apply(text_ids(100, i), rng, vocab).mode for i in range(2000))
    assert abs(modes["S"] / 2000 - 0.5) < 0.04
    ex = obj.apply(text_ids(100), np.random.default_rng(0), vocab)
    assert ex.source[0] not in (NLU, NLG, S2S)


def test_plain_mixture_and_round_trip_of_configs(vocab):
    obj = build_objective({"mixture": {"causal_lm": 1, "glm_blank": 3}})
    assert obj.uses_2d_positions and not obj.teacher_forced
    rng = np.random.default_rng(0)
    modes = collections.Counter(obj.apply(text_ids(50, i), rng, vocab).mode for i in range(800))
    assert abs(modes["glm_blank"] / 800 - 0.75) < 0.05
    for spec in ("ul2", "ul2r", {"mixture": {"causal_lm": 1.0, "span_corruption": 2.0}}):
        config = build_objective(spec).config()
        assert build_objective(config).config() == config


def test_every_ul2_denoiser_source_ends_with_eos(vocab):
    """T5 appends EOS to every input, the prefix-LM (S) one included: R, S and X sources all end with EOS."""
    for spec in ("ul2", "ul2r"):
        obj = build_objective(spec)
        rng = np.random.default_rng(3)
        seen = set()
        for i in range(300):
            ids = text_ids(int(rng.integers(2, 120)), i)
            ex = obj.apply(ids, rng, vocab)
            seen.add(ex.mode[0])
            assert ex.source[-1] == EOS, (spec, ex.mode)
            if ex.mode == "S":  # [S2S] + prefix + [eos], then the rest of the text + [eos]
                assert ex.source[1:-1].tolist() + ex.target[:-1].tolist() == ids.tolist()
            s_max, t_max = obj.bounds(len(ids))
            assert len(ex.source) <= s_max and len(ex.target) <= t_max
            assert len(ex.source) + len(ex.target) - 1 <= obj.row_bound(len(ids))
        assert seen == {"R", "S", "X"}


def test_the_mode_token_shifts_glm_positions(vocab):
    """A mode token in front of Part A moves every token one place right: the 2D positions follow it."""
    ids = np.arange(10, 20)
    ex = glm_example(ids, [(2, 2), (6, 1)], 3, vocab, np.random.default_rng(0), "mask", order=[1, 0])
    moved = with_mode_token(ex, NLU)
    assert moved.source.tolist() == [NLU, 10, 11, 3, 14, 15, 3, 17, 18, 19]
    assert moved.positions.tolist() == list(range(10)) + [6, 6, 3, 3, 3]  # Part B: its mask's new position
    assert moved.block_positions.tolist() == [0] * 10 + [1, 2, 1, 2, 3]
    mixed = Mixture([Component(GLMBlank(), 1.0, "nlu")])
    for seed in range(30):
        out = mixed.apply(text_ids(60, seed), np.random.default_rng(seed), vocab)
        S = len(out.source)
        assert out.source[0] == NLU and out.positions[:S].tolist() == list(range(S))
        assert (out.source[out.positions[S:]] == 3).all()  # every Part B token sits at a [MASK] of Part A
