"""Family-aware scoring (``unimask.evaluation``): every score equals a hand-written forward pass in the
layout the training objective taught, batching and padding change nothing, ranking picks the likeliest
choice, and answers are cut out of generated tokens the way the docstrings say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unimask
from unimask.config import ModelConfig
from unimask.data.tokenizer import Tokenizer, train_tokenizer
from unimask.errors import ConfigError
from unimask.evaluation import ReadingFormat, reading_format
from unimask.evaluation.formats import OBJECTIVE_FORMATS, objective_name
from unimask.evaluation.scoring import (
    PairScore,
    extract_answer,
    greedy_answers,
    rank_choices,
    score_pairs,
    special_token_ids,
)
from unimask.models.base import UnimaskLM
from unimask.objectives import build_objective
from unimask.objectives.base import IGNORE, Example, Vocab
from unimask.objectives.denoise import infill, span_corrupt
from unimask.objectives.layout import layout
from unimask.objectives.lm import CausalLM, PrefixLM
from unimask.objectives.mixture import Mixture, denoiser, ul2

ARCHS = ("causal", "prefix", "encoder_decoder")
# every (objective, family) with a reading format; BART's is defined for encoder-decoders only
CASES = [(o, a) for o in ("causal_lm", "prefix_lm", "span_corruption", "ul2") for a in ARCHS]
CASES.append(("bart_infilling", "encoder_decoder"))
SENTENCE = ("the model reads a text and writes its answer one token at a time while every family sees the input "
            "through its own mask so a prefix decoder looks both ways and a causal decoder never looks ahead")
WORDS = SENTENCE.split()


def english(n: int, seed: int = 0) -> list[str]:
    """``n`` short seeded sentences over a small word list."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))).capitalize() + "." for _ in range(n)]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(english(300) + ["max: 3 9 1 = 9", "7 + 8 = 15\n2 + 2 = 4"] * 20, vocab_size=360,
                           n_sentinels=8)


def tiny(arch: str, tok: Tokenizer, **overrides: object) -> UnimaskLM:
    """A random 2-layer model of family ``arch`` over the tokenizer's vocabulary. The decoder start token
    (eos) is not pad, so a scorer that feeds pad instead of the model's start token is caught; init_std
    0.2 makes the output depend clearly on every token it may see."""
    torch.manual_seed(1)
    fields: dict[str, object] = dict(arch=arch, vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                     d_ff=64, pad_token_id=tok.pad_id, bos_token_id=tok.bos_id,
                                     eos_token_id=tok.eos_id, decoder_start_token_id=tok.eos_id, init_std=0.2)
    fields.update(overrides)
    return unimask.build_model(ModelConfig(**fields)).eval()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def models(tok: Tokenizer) -> dict[str, UnimaskLM]:
    return {a: tiny(a, tok) for a in ARCHS}


def fmt_for(objective: str, model: UnimaskLM, tok: Tokenizer) -> ReadingFormat:
    return reading_format(objective, model.config.arch, tok, model.config.start_token_id)


def table_layout(objective: str, tok: Tokenizer, source: list[int]) -> tuple[list[int], list[int]]:
    """``(input, given)`` of the formats module's table, written out by hand."""
    s0, eos = tok.special.sentinels[0], tok.eos_id
    return {
        "causal_lm": ([tok.bos_id, *source], []),
        "prefix_lm": (list(source), []),
        "span_corruption": ([*source, s0, eos], [s0]),
        "ul2": ([tok.special.s2s, *source, eos], []),
        "bart_infilling": ([*source, tok.special.mask, eos], list(source)),
    }[objective]


@torch.no_grad()
def reference(model: UnimaskLM, tok: Tokenizer, objective: str, source: list[int],
              continuation: list[int]) -> tuple[float, int, int]:
    """One unpadded forward pass of the pair alone, log_softmax gathered at the continuation positions:
    ``(summed log-prob, tokens, argmax-correct tokens)``."""
    inp, given = table_layout(objective, tok, source)
    cont = torch.tensor(continuation)
    if model.config.arch == "encoder_decoder":
        dec = [model.config.start_token_id, *given, *continuation][:-1]
        logits = model(input_ids=torch.tensor([inp]), decoder_input_ids=torch.tensor([dec])).logits[0].float()
        at = torch.arange(len(given), len(given) + len(continuation))  # decoder position j predicts dec[j + 1]
    else:
        row = [*inp, *given, *continuation][:-1]
        kw = {"prefix_lengths": torch.tensor([len(inp)])} if model.config.arch == "prefix" else {}
        logits = model(torch.tensor([row]), **kw).logits[0].float()
        head = len(inp) + len(given)
        at = torch.arange(head - 1, head - 1 + len(continuation))  # position t predicts row[t + 1]
    logp = logits.log_softmax(-1)[at]  # (C, V)
    total = float(logp.gather(-1, cont[:, None]).sum())
    right = int((logits[at].argmax(-1) == cont).sum())
    return total, len(continuation), right


@torch.no_grad()
def greedy_continuation(model: UnimaskLM, tok: Tokenizer, objective: str, source: list[int], n: int) -> list[int]:
    """The model's own argmax continuation (teacher-forced scoring must count every token correct)."""
    cont: list[int] = []
    for _ in range(n):
        inp, given = table_layout(objective, tok, source)
        if model.config.arch == "encoder_decoder":
            dec = [model.config.start_token_id, *given, *cont]
            logits = model(input_ids=torch.tensor([inp]), decoder_input_ids=torch.tensor([dec])).logits
        else:
            kw = {"prefix_lengths": torch.tensor([len(inp)])} if model.config.arch == "prefix" else {}
            logits = model(torch.tensor([[*inp, *given, *cont]]), **kw).logits
        cont.append(int(logits[0, -1].argmax()))
    return cont


def pairs_for(tok: Tokenizer) -> list[tuple[list[int], list[int]]]:
    """Pairs of mixed source (1..~15) and continuation (1..~6) lengths, in no particular order."""
    texts = english(9, seed=5)
    out = []
    for k, t in enumerate(texts):
        ids = tok.encode(t)
        s = 1 + (7 * k) % min(14, len(ids) - 2)
        c = 1 + (5 * k) % 6
        out.append((ids[:s], ids[s:s + c]))
    return out


@pytest.mark.parametrize(("objective", "arch"), CASES)
def test_format_is_the_table_of_the_formats_module(tok: Tokenizer, objective: str, arch: str) -> None:
    fmt = reading_format(objective, arch, tok, start_id=7)
    src = tok.encode("a prefix decoder")
    inp, given = table_layout(objective, tok, src)
    assert fmt.input_ids(src) == inp
    assert fmt.given_ids(src) == given
    assert (fmt.arch, fmt.start_id, fmt.objective) == (arch, 7, objective)
    assert reading_format({"name": objective}, arch, tok, 7) == fmt  # a run config's objective mapping
    assert reading_format(build_objective(objective), arch, tok, 7) == fmt  # an Objective


@pytest.mark.parametrize("arch", ["causal", "prefix"])
def test_bart_format_is_refused_for_decoders(tok: Tokenizer, arch: str) -> None:
    with pytest.raises(ConfigError, match="encoder-decoders only"):
        reading_format("bart_infilling", arch, tok)


def test_unknown_objective_names_the_formats(tok: Tokenizer) -> None:
    with pytest.raises(ConfigError, match="glm_blank.*" + ", ".join(OBJECTIVE_FORMATS)):
        reading_format("glm_blank", "prefix", tok)
    with pytest.raises(ConfigError, match="no scoring format for objective 'mixture'"):
        reading_format({"mixture": {"causal_lm": 1, "span_corruption": 1}}, "causal", tok)
    assert objective_name(ul2()) == "ul2" and objective_name({"name": "ul2r"}) == "ul2r"
    assert reading_format("ul2r", "prefix", tok).input_ids([5]) == [tok.special.s2s, 5, tok.eos_id]


@pytest.mark.parametrize(("objective", "arch"), CASES)
def test_scores_equal_a_hand_written_forward_alone_and_in_a_padded_batch(
        models: dict[str, UnimaskLM], tok: Tokenizer, objective: str, arch: str) -> None:
    model = models[arch]
    fmt = fmt_for(objective, model, tok)
    pairs = pairs_for(tok)
    src = pairs[3][0]
    pairs.append((src, greedy_continuation(model, tok, objective, src, 4)))  # every token the argmax
    expected = [reference(model, tok, objective, s, c) for s, c in pairs]
    batched = score_pairs(model, fmt, pairs)  # one batch of mixed lengths: padding in every row but one
    small = score_pairs(model, fmt, pairs, batch_size=3)  # several batches, regrouped by length
    alone = [score_pairs(model, fmt, [p])[0] for p in pairs]
    for (lp, n, right), b, s, a in zip(expected, batched, small, alone):
        for got in (b, s, a):
            assert isinstance(got, PairScore)
            assert got.logprob == pytest.approx(lp, abs=1e-5)
            assert (got.n_tokens, got.n_correct) == (n, right)
    assert batched[-1].all_correct and batched[-1].n_tokens == 4
    assert sum(r for _, _, r in expected[:-1]) < sum(n for _, n, _ in expected[:-1])  # not all correct


def test_scoring_runs_in_eval_mode_and_restores_training_mode(tok: Tokenizer) -> None:
    model = tiny("prefix", tok, dropout=0.5)
    pairs = pairs_for(tok)[:4]
    fmt = fmt_for("prefix_lm", model, tok)
    model.train()
    first, second = score_pairs(model, fmt, pairs), score_pairs(model, fmt, pairs)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = [reference(model, tok, "prefix_lm", s, c)[0] for s, c in pairs]
    assert [s.logprob for s in first] == [s.logprob for s in second]
    assert [s.logprob for s in first] == pytest.approx(expected, abs=1e-5)


def test_empty_continuation_or_empty_input_is_refused(models: dict[str, UnimaskLM], tok: Tokenizer) -> None:
    for arch in ARCHS:
        model = models[arch]
        with pytest.raises(ValueError, match="continuation needs at least one token"):
            score_pairs(model, fmt_for("prefix_lm", model, tok), [([5, 6], [7]), ([5], [])])
        # prefix_lm reads the source as it is: an empty source leaves nothing to read before the continuation
        with pytest.raises(ValueError, match="non-empty input"):
            score_pairs(model, fmt_for("prefix_lm", model, tok), [([5, 6, 7, 8], [9]), ([], [5, 6, 7])])
    # causal_lm reads [bos] first, so an empty source is fine: the continuation is scored from bos
    got = score_pairs(models["causal"], fmt_for("causal_lm", models["causal"], tok), [([], [5, 6, 7])])[0]
    assert got.logprob == pytest.approx(reference(models["causal"], tok, "causal_lm", [], [5, 6, 7])[0], abs=1e-5)


# Training and scoring agree on the layout --------------------------------------------------------------
def split_example(objective: str, source: list[int], continuation: list[int], vocab: Vocab) -> Example:
    """The training example the objective makes of ``source + continuation`` when its noise (or split)
    falls exactly on the trailing continuation."""
    ids = np.array([*source, *continuation])
    if objective == "span_corruption":
        mask = np.array([False] * len(source) + [True] * len(continuation))
        src, tgt = span_corrupt(ids, mask, vocab)
        return Example(source=src, target=tgt)
    if objective == "bart_infilling":  # BART's own infill: one mask token for the trailing span
        src = infill(ids, [(len(source), len(continuation))], vocab.special.mask)  # type: ignore[arg-type]
        return Example(source=np.append(src, vocab.eos), target=np.append(ids, vocab.eos))
    if objective == "causal_lm":
        return CausalLM()(ids, np.random.default_rng(0), vocab)
    obj = PrefixLM() if objective == "prefix_lm" else Mixture([denoiser("S", mode_tokens=True)], name="ul2")
    for seed in range(2000):  # the seed whose random split point is len(source)
        ex = obj(ids, np.random.default_rng(seed), vocab)
        if ex.info["split"] == len(source):
            return ex
    raise AssertionError("no seed splits at len(source)")


@pytest.mark.parametrize("objective", ["causal_lm", "prefix_lm", "span_corruption", "ul2", "bart_infilling"])
def test_the_format_is_the_training_examples_layout(tok: Tokenizer, objective: str) -> None:
    vocab = Vocab.from_tokenizer(tok)
    source, continuation = tok.encode("a causal decoder never"), tok.encode(" looks ahead")
    ex = split_example(objective, source, continuation, vocab)
    arch = "encoder_decoder" if objective == "bart_infilling" else "prefix"
    fmt = reading_format(objective, arch, tok)
    if objective == "causal_lm":  # one row: [bos] + text
        assert [*fmt.input_ids(source), *fmt.given_ids(source), *continuation] == [tok.bos_id, *source,
                                                                                   *continuation]
        assert [*ex.source, *ex.target[:-1]] == [tok.bos_id, *source, *continuation]
    else:
        assert fmt.input_ids(source) == ex.source.tolist()
        assert [*fmt.given_ids(source), *continuation] == ex.target[:-1].tolist()
    assert ex.target[-1] == tok.eos_id
    if objective == "ul2":  # UL2's S-denoiser, with its mode token: [S2S] + source + [eos]
        assert ex.source.tolist() == [tok.special.s2s, *source, tok.eos_id]


@pytest.mark.parametrize(("objective", "arch"), [c for c in CASES if c[0] != "causal_lm" or c[1] == "causal"])
def test_the_score_is_the_training_loss_on_the_continuation(
        models: dict[str, UnimaskLM], tok: Tokenizer, objective: str, arch: str) -> None:
    """The training layout (``objectives.layout``) of the example, through the model: its per-token loss
    on the continuation labels (the final EOS aside) is minus the score. causal_lm is exact for the causal
    decoder only: trained with it, a prefix decoder's prefix and an encoder-decoder's encoder hold just
    [bos], while its reading format puts [bos] + source there (no ReadingFormat can say otherwise)."""
    model = models[arch]
    vocab = Vocab.from_tokenizer(tok)
    source, continuation = tok.encode("every family sees"), tok.encode(" the input")
    ex = split_example(objective, source, continuation, vocab)
    item = {k: torch.as_tensor(v)[None] for k, v in layout(ex, arch, start_id=model.config.start_token_id).items()}
    labels = item.pop("labels")
    item.pop("position_ids", None)
    item.pop("decoder_position_ids", None)
    with torch.no_grad():
        logp = model(**item).logits.float().log_softmax(-1)[0]  # (T, V)
    at = (labels[0] != IGNORE).nonzero()[:, 0][-len(continuation) - 1:-1]  # the continuation, before EOS
    assert labels[0, at].tolist() == continuation
    expected = float(logp[at, labels[0, at]].sum())
    got = score_pairs(model, fmt_for(objective, model, tok), [(source, continuation)])[0]
    assert got.logprob == pytest.approx(expected, abs=1e-5)


# Ranking -------------------------------------------------------------------------------------------------
def test_rank_choices_is_the_argmax_of_summed_log_likelihoods(models: dict[str, UnimaskLM], tok: Tokenizer) -> None:
    texts = english(8, seed=11)
    items = []
    for k, t in enumerate(texts):  # 2, 3, 4, 5, 2, 3, ... choices; choices of 1-3 tokens
        ids = tok.encode(t)
        items.append((ids[:5], [ids[5 + j:7 + j + (k % 2)] for j in range(2 + k % 4)]))
    for arch, objective in (("causal", "causal_lm"), ("prefix", "span_corruption"), ("encoder_decoder", "ul2")):
        model = models[arch]
        fmt = fmt_for(objective, model, tok)
        picks = rank_choices(model, fmt, items, batch_size=5)
        expected = []
        for src, choices in items:
            values = [s.logprob for s in score_pairs(model, fmt, [(src, c) for c in choices])]
            expected.append(int(np.argmax(values)))
        assert picks == expected
        assert len(set(expected)) > 1  # not a constant pick


# Answers ------------------------------------------------------------------------------------------------
def test_extract_answer_skips_leading_specials_and_stops_at_the_next(tok: Tokenizer) -> None:
    special = special_token_ids(tok)
    s = tok.special
    assert special >= {tok.pad_id, tok.bos_id, tok.eos_id, s.mask, s.s2s, s.sop, *s.sentinels}
    assert tok.encode(" 7")[0] not in special
    seven, junk = tok.encode(" 7 3"), tok.encode(" max")
    cases = [
        ([s.sentinels[0], *seven, tok.eos_id, *junk], "7 3"),  # leading sentinel skipped, stops at EOS
        ([tok.bos_id, s.sop, *seven, s.sentinels[1], *junk], "7 3"),  # several leading specials
        ([*seven, tok.pad_id, *junk], "7 3"),  # stops at padding
        ([*tok.encode(" 15\nmax: 1"), tok.eos_id], "15"),  # stops at the newline
        ([*tok.encode("  9  "), tok.eos_id], "9"),  # spaces stripped
        ([s.sentinels[0], tok.eos_id], ""),
        ([], ""),
    ]
    for ids, text in cases:
        assert extract_answer(tok, ids, special) == text
    assert extract_answer(tok, tok.encode(" 1 = 2"), special, stop="=") == "1"


@pytest.mark.parametrize(("arch", "objective"), [("causal", "causal_lm"), ("prefix", "prefix_lm"),
                                                 ("encoder_decoder", "span_corruption")])
def test_greedy_answers_are_the_generated_tokens_cut_by_extract_answer(
        models: dict[str, UnimaskLM], tok: Tokenizer, arch: str, objective: str) -> None:
    model = models[arch]
    fmt = fmt_for(objective, model, tok)
    sources = [tok.encode(t)[:n] for t, n in zip(english(6, seed=3), (9, 2, 6, 4, 11, 3))]  # unsorted lengths
    answers = greedy_answers(model, fmt, tok, sources, max_new_tokens=6, batch_size=4)
    special = special_token_ids(tok)
    expected = []
    for src in sources:  # one prompt at a time: no padding
        new = model.generate([table_layout(objective, tok, src)[0]], max_new_tokens=6, eos_token_id=tok.eos_id)
        expected.append(extract_answer(tok, new[0].tolist(), special))
    assert answers == expected
    assert sum(bool(a) for a in answers) >= 3
