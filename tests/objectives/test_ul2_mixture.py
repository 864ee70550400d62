"""UL2 mixture of denoisers, UL2R and plain mixtures."""

from __future__ import annotations

import collections

import numpy as np
from objectives_helpers import SENTINELS, text_ids

from unimask.objectives import build_objective

NLU, NLG, S2S = 97, 98, 99


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
