"""Language-model objectives and the family layouts: where the loss goes, by hand and by property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_helpers import make_vocab, text_ids

from unimask.errors import ConfigError, DataError
from unimask.objectives import OBJECTIVES, CausalLM, PrefixLM, build_objective
from unimask.objectives.base import IGNORE, Example
from unimask.objectives.layout import layout, pack_rows, stack_rows

BOS, EOS, START = 1, 2, 0


def test_full_causal_lm_puts_loss_on_every_token(vocab):
    ids = np.array([11, 12, 13])
    ex = CausalLM().apply(ids, np.random.default_rng(0), vocab)
    row = layout(ex, "causal")
    assert row["input_ids"].tolist() == [BOS, 11, 12, 13]
    assert row["labels"].tolist() == [11, 12, 13, EOS]  # labels[t] = the token after position t
    assert "is_prefix" not in row


def test_decoder_layouts_by_hand():
    ex = Example(source=[5, 6], target=[7, 8, EOS])
    causal = layout(ex, "causal")
    assert causal["input_ids"].tolist() == [5, 6, 7, 8]
    assert causal["labels"].tolist() == [IGNORE, 7, 8, EOS]
    prefix = layout(ex, "prefix")
    assert prefix["input_ids"].tolist() == [5, 6, 7, 8] and prefix["labels"].tolist() == [IGNORE, 7, 8, EOS]
    assert prefix["is_prefix"].tolist() == [True, True, False, False]
    encdec = layout(ex, "encoder_decoder", start_id=START)
    assert encdec["input_ids"].tolist() == [5, 6]
    assert encdec["decoder_input_ids"].tolist() == [START, 7, 8]
    assert encdec["labels"].tolist() == [7, 8, EOS]


def test_packing_by_hand():
    a = layout(Example(source=[5, 6], target=[7, EOS]), "prefix")
    b = layout(Example(source=[9], target=[10, 11, EOS]), "prefix")
    row = pack_rows([a, b], seq_len=8, target_len=8, pad_id=0)
    assert row["input_ids"].tolist() == [5, 6, 7, 9, 10, 11, 0, 0]
    assert row["labels"].tolist() == [IGNORE, 7, EOS, 10, 11, EOS, IGNORE, IGNORE]
    assert row["segment_ids"].tolist() == [1, 1, 1, 2, 2, 2, 0, 0]
    assert row["position_ids"].tolist() == [0, 1, 2, 0, 1, 2, 0, 0]
    assert row["is_prefix"].tolist() == [True, True, False, True, False, False, False, False]
    e1 = layout(Example(source=[5, 6], target=[7, EOS]), "encoder_decoder", start_id=START)
    e2 = layout(Example(source=[9], target=[10, EOS]), "encoder_decoder", start_id=START)
    row = pack_rows([e1, e2], seq_len=4, target_len=5, pad_id=0)
    assert row["input_ids"].tolist() == [5, 6, 9, 0] and row["segment_ids"].tolist() == [1, 1, 2, 0]
    assert row["decoder_input_ids"].tolist() == [START, 7, START, 10, 0]
    assert row["labels"].tolist() == [7, EOS, 10, EOS, IGNORE]
    assert row["decoder_segment_ids"].tolist() == [1, 1, 2, 2, 0]
    assert row["decoder_position_ids"].tolist() == [0, 1, 0, 1, 0]
    batch = stack_rows([row, row])
    assert batch["input_ids"].shape == (2, 4) and batch["labels"].shape == (2, 5)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 120), seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(OBJECTIVES)),
       arch=st.sampled_from(["causal", "prefix", "encoder_decoder"]))
def test_labels_carry_loss_exactly_on_the_target(n, seed, name, arch):
    obj = build_objective(name)
    ex = obj.apply(text_ids(n, seed), np.random.default_rng(seed), make_vocab())
    row = layout(ex, arch, start_id=START, with_2d=obj.uses_2d_positions)
    labels = row["labels"]
    assert (labels != IGNORE).sum() == len(ex.target)
    assert labels[labels != IGNORE].tolist() == ex.target.tolist()
    if arch == "encoder_decoder":
        assert row["input_ids"].tolist() == ex.source.tolist()
        return
    S = len(ex.source)
    first_loss = S - 1 if ex.target_inputs is None else S
    assert (labels[:first_loss] == IGNORE).all() and (labels[first_loss:] != IGNORE).all()
    if ex.target_inputs is None:  # teacher forcing: each label is the next input token
        assert row["input_ids"][first_loss + 1:].tolist() == ex.target[:-1].tolist()
    if arch == "prefix":
        assert row["is_prefix"].tolist() == [True] * S + [False] * (len(labels) - S)
    bound = obj.row_bound(n)
    assert len(row["input_ids"]) <= bound


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 200), seed=st.integers(0, 2**31 - 1))
def test_prefix_lm_split_rebuilds_the_text(n, seed):
    ids = text_ids(n, seed)
    ex = PrefixLM().apply(ids, np.random.default_rng(seed), make_vocab())
    assert ex.source.tolist() + ex.target[:-1].tolist() == ids.tolist()
    assert 1 <= len(ex.source) <= n - 1 and ex.target[-1] == EOS


@pytest.mark.parametrize("source_eos", [False, True])
def test_prefix_lm_source_eos_and_its_bounds(vocab, source_eos):
    """``source_eos`` ends the source with EOS (UL2's S-denoiser, as T5); the bounds are reached, never passed."""
    obj = PrefixLM(source_eos=source_eos)
    for n in (2, 3, 17, 64):
        rows, sources, targets = [], [], []
        for seed in range(200):
            ex = obj.apply(text_ids(n, seed), np.random.default_rng(seed), vocab)
            assert (ex.source[-1] == EOS) == source_eos
            body = ex.source[:-1] if source_eos else ex.source
            assert body.tolist() + ex.target[:-1].tolist() == text_ids(n, seed).tolist()
            rows.append(len(layout(ex, "causal")["input_ids"]))
            sources.append(len(ex.source))
            targets.append(len(ex.target))
        assert (max(sources), max(targets)) == obj.bounds(n)
        assert max(rows) == min(rows) == obj.row_bound(n) == n + source_eos
    assert obj.config() == {"name": "prefix_lm", "min_prefix": 1, "source_eos": source_eos}


# The loss switch (T5's loss_on_targets_only) ---------------------------------------------------------------

I = IGNORE  # noqa: E741


def test_causal_prefix_lm_loss_on_targets_only_or_on_every_token(vocab):
    ids = np.array([11, 12, 13, 14, 15])
    ex = PrefixLM().apply(ids, np.random.default_rng(0), vocab)
    k = ex.info["split"]
    targets = layout(ex, "causal")
    every = layout(ex, "causal", targets_only=False)
    assert targets["input_ids"].tolist() == every["input_ids"].tolist() == [11, 12, 13, 14, 15]
    assert targets["labels"].tolist() == [I] * (k - 1) + ids[k:].tolist() + [EOS]
    assert every["labels"].tolist() == [12, 13, 14, 15, EOS]  # a full language model over the text
    by_hand = Example(source=[11, 12, 13], target=[14, 15, EOS])
    assert layout(by_hand, "causal")["labels"].tolist() == [I, I, 14, 15, EOS]
    assert layout(by_hand, "causal", targets_only=False)["labels"].tolist() == [12, 13, 14, 15, EOS]


def test_causal_span_corruption_loss_on_targets_only_or_on_every_token(vocab):
    from unimask.objectives.denoise import span_corrupt

    source, target = span_corrupt(np.arange(10, 16), np.array([0, 1, 1, 0, 0, 1], dtype=bool), vocab)
    ex = Example(source=source, target=target)  # [10, 999, 13, 14, 998, eos] -> [999, 11, 12, 998, 15, eos]
    row = [10, 999, 13, 14, 998, EOS, 999, 11, 12, 998, 15]
    targets = layout(ex, "causal")
    every = layout(ex, "causal", targets_only=False)
    assert targets["input_ids"].tolist() == every["input_ids"].tolist() == row
    assert targets["labels"].tolist() == [I] * 5 + [999, 11, 12, 998, 15, EOS]
    assert every["labels"].tolist() == [999, 13, 14, 998, EOS] + [999, 11, 12, 998, 15, EOS]


def test_glm_part_b_layout_with_loss_on_every_token(vocab):
    from unimask.objectives.glm import glm_example

    ex = glm_example(np.arange(10, 20), [(2, 2), (6, 1)], 3, vocab, np.random.default_rng(0), "mask", order=[1, 0])
    every = layout(ex, "causal", with_2d=True, targets_only=False)
    assert every["input_ids"].tolist() == [10, 11, 3, 14, 15, 3, 17, 18, 19, 6, 16, 6, 12, 13]
    # Part A predicts its next token; its last position is followed by [sop] (no loss); then Part B's targets
    assert every["labels"].tolist() == [11, 3, 14, 15, 3, 17, 18, 19, I, 16, 7, 12, 13, 7]
    assert layout(ex, "causal", with_2d=True)["labels"].tolist() == [I] * 9 + [16, 7, 12, 13, 7]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 120), seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(OBJECTIVES)))
def test_loss_on_every_token_predicts_each_next_source_token(n, seed, name):
    obj = build_objective(name)
    ex = obj.apply(text_ids(n, seed), np.random.default_rng(seed), make_vocab())
    both = [layout(ex, "causal", with_2d=obj.uses_2d_positions, targets_only=t) for t in (True, False)]
    assert both[0]["input_ids"].tolist() == both[1]["input_ids"].tolist()
    S = len(ex.source)
    assert both[1]["labels"][:S - 1].tolist() == ex.source[1:].tolist()
    assert both[1]["labels"][S - 1:].tolist() == both[0]["labels"][S - 1:].tolist()  # the target part is the same
    assert (both[0]["labels"][:S - 1] == IGNORE).all()


def test_loss_on_the_source_is_refused_where_it_cannot_work(vocab):
    ex = Example(source=[5, 6], target=[7, EOS])
    with pytest.raises(ValueError, match="bidirectional prefix"):
        layout(ex, "prefix", targets_only=False)
    with pytest.raises(ValueError, match="never decoded"):
        layout(ex, "encoder_decoder", targets_only=False)


def test_build_objective_rejects_bad_specs():
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        build_objective("nope")
    with pytest.raises(ConfigError, match="unknown setting"):
        build_objective({"name": "span_corruption", "density": 0.2})
    with pytest.raises(ConfigError, match="noise_density"):
        build_objective({"name": "span_corruption", "noise_density": 1.5})
    with pytest.raises(ConfigError, match="JSON"):
        build_objective("{not json")
    assert build_objective('{"name": "prefix_lm", "min_prefix": 2}').config()["min_prefix"] == 2


def test_objectives_need_their_special_tokens():
    vocab = make_vocab()
    bare = vocab.special.__class__(mask=None, smask=None, gmask=None, sop=None, eop=None, nlu=None, nlg=None,
                                   s2s=None, sentinels=())
    poor = vocab.__class__(size=1000, pad=0, bos=1, eos=2, special=bare)
    for name, token in [("span_corruption", "sentinel"), ("bart_infilling", r"\[MASK\]"),
                        ("glm_blank", "startofpiece"), ("ul2", "sentinel")]:
        with pytest.raises(DataError, match=token):
            build_objective(name).check(poor)
    build_objective("causal_lm").check(poor)  # needs nothing special
