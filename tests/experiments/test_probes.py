"""The study's held-out probes (``experiments.probes``) and the information-flow score
(``experiments.evaluate.information_flow``): lengths, labels and answers checked against the documents
and the task suite they come from, determinism, and the unigram baseline by hand."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch

import unimask
from unimask.config import ModelConfig
from unimask.data.synthetic import split_of
from unimask.data.task_suite import TASKS, documents, instances
from unimask.data.tokenizer import Tokenizer, train_tokenizer
from unimask.evaluation import reading_format
from unimask.experiments.evaluate import information_flow
from unimask.experiments.probes import (
    ENDING_TOKENS,
    SETTINGS,
    build_probes,
    cloze_items,
    ending_items,
    task_items,
    text_pairs,
    unigram_loss,
)
from unimask.experiments.study import StudySpec, load_study
from unimask.models.base import UnimaskLM

SENTENCE = ("the model reads a text and writes its answer one token at a time while every family sees the input "
            "through its own mask so a prefix decoder looks both ways and a causal decoder never looks ahead")
WORDS = SENTENCE.split()
NOVEL = {"max": "largest", "maxmin": "largest and smallest", "sort": "in order", "lookup": "value"}


def english(n: int, seed: int, words: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(words // 2, words)))).capitalize() + "."
            for _ in range(n)]


@pytest.fixture(scope="module")
def spec() -> StudySpec:
    return load_study("smoke", {"tasks": ["max", "maxmin", "sort", "lookup"], "eval_instances": 6, "few_shot": 2,
                                "text_pairs": 8, "source_tokens": 12, "continuation_tokens": 5, "rank_length": 10})


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(documents(list(TASKS), 100, seed=0) + english(200, seed=1), vocab_size=500,
                           n_sentinels=8)


@pytest.fixture(scope="module")
def heldout() -> list[str]:
    return english(10, seed=2, words=60) + [""]  # an empty document is dropped


@pytest.fixture(scope="module")
def docs(tok: Tokenizer, heldout: list[str]) -> list[list[int]]:
    return [ids for ids in tok.encode_batch(heldout) if ids]


def occurrences(docs: list[list[int]], window: list[int]) -> list[tuple[int, int]]:
    """``(doc, start)`` of every place ``window`` occurs."""
    n = len(window)
    return [(d, s) for d, ids in enumerate(docs) for s in range(len(ids) - n + 1) if ids[s:s + n] == window]


def test_unigram_loss_by_hand() -> None:
    counts = np.array([3, 0, 1])  # add-one smoothing: p = (4, 1, 2) / 7
    got = unigram_loss(counts, [[0, 2], [], [1]])
    assert got == pytest.approx(-(math.log(4 / 7) + math.log(2 / 7) + math.log(1 / 7)) / 3, rel=1e-12)
    assert unigram_loss(counts, [[0, 0, 0, 0]]) == pytest.approx(-math.log(4 / 7), rel=1e-12)


def test_text_pairs_are_windows_of_the_asked_lengths(docs: list[list[int]], spec: StudySpec) -> None:
    spec = dataclasses.replace(spec, text_pairs=20)  # more windows than documents
    pairs = text_pairs(docs, spec)
    assert len(pairs) == spec.text_pairs
    places = set()
    for p in pairs:
        assert len(p["source"]) == spec.source_tokens and len(p["continuation"]) == spec.continuation_tokens
        where = occurrences(docs, p["source"] + p["continuation"])  # the continuation follows its source
        assert where
        places.add(where[0])
    assert len({d for d, _ in places}) > 1  # spread over the documents
    for (d, s), (e, t) in itertools.combinations(sorted(places), 2):  # windows never overlap
        assert d != e or t >= s + spec.source_tokens + spec.continuation_tokens


def test_cloze_items_choose_the_true_next_word(docs: list[list[int]], tok: Tokenizer, spec: StudySpec) -> None:
    spec = dataclasses.replace(spec, text_pairs=40)  # many items: a repeated distractor would show
    items = cloze_items(docs, tok, spec, np.random.default_rng(0))
    assert len(items) == spec.text_pairs
    words = {i for ids in docs for i in ids[spec.source_tokens:]}
    for it in items:
        choices = it["choices"]
        assert len(choices) == 4 and all(len(c) == 1 for c in choices)
        assert len({c[0] for c in choices}) == 4
        assert all(c[0] in words for c in choices)  # words of the held-out text
        for (c,) in choices:  # one-token words
            text = tok.decode([c])
            assert text[0] == " " and text[1:].isalpha() and len(text) > 2
        assert len(it["source"]) == spec.source_tokens
        answer = choices[it["label"]][0]
        assert any(docs[d][s + spec.source_tokens] == answer
                   for d, s in occurrences(docs, it["source"]) if s + spec.source_tokens < len(docs[d]))
    assert len({it["label"] for it in items}) > 1


def test_ending_items_hold_the_true_ending_at_label(docs: list[list[int]], spec: StudySpec) -> None:
    spec = dataclasses.replace(spec, text_pairs=40)  # more windows than documents
    items = ending_items(docs, spec, np.random.default_rng(0))
    assert len(docs) < len(items) <= spec.text_pairs
    S = spec.source_tokens
    for it in items:
        assert len(it["source"]) == S
        assert len(it["choices"]) == 4 and all(len(c) == ENDING_TOKENS for c in it["choices"])
        true = it["choices"][it["label"]]
        where = occurrences(docs, it["source"] + true)
        assert where
        d = where[0][0]
        for k, c in enumerate(it["choices"]):
            if k != it["label"]:  # a span of another held-out document
                assert c != true and any(o != d for o, _ in occurrences(docs, c))
    assert len({it["label"] for it in items}) > 1


def test_too_little_text_gives_no_multiple_choice(tok: Tokenizer, spec: StudySpec) -> None:
    few = [tok.encode(t) for t in english(3, seed=4)]  # three documents: no 3 distractors from other ones
    assert ending_items(few, spec, np.random.default_rng(0)) == []
    assert cloze_items([tok.encode("The model")], tok, spec, np.random.default_rng(0)) == []


def solved(name: str, line: str) -> bool:
    """Is ``line`` (``largest of 3 9 1 is 9``) a correctly solved train-split instance in the novel format?"""
    head = f"{NOVEL[name]} of "
    prompt, answer = line.rsplit(" is", 1)
    assert prompt.startswith(head), line
    x, got = prompt[len(head):].split(), answer.split()
    digits = sorted(int(s) for s in x if s.isdigit())
    expected = {"max": [digits[-1]], "maxmin": [digits[-1], digits[0]], "sort": digits,
                "lookup": [dict(zip(x[0:6:2], x[1:6:2])).get(x[-1])]}[name]
    return [str(e) for e in expected] == got and split_of(name, " ".join(x)) == "train"


def test_task_items_in_their_three_settings(tok: Tokenizer, spec: StudySpec) -> None:
    items = task_items(spec, tok)
    assert tuple(items) == SETTINGS == ("in_distribution", "zero_shot", "few_shot")
    for setting, per_task in items.items():
        assert list(per_task) == spec.tasks
        for name, got in per_task.items():
            novel = setting != "in_distribution"
            inst = instances(name, spec.eval_instances, seed=1, novel=novel)  # the test split
            assert len(got) == spec.eval_instances
            for it, i in zip(got, inst):
                text = tok.decode(it["source"])
                if setting == "few_shot":  # k solved lines, then the query
                    *shots, query = text.split("\n")
                    assert len(shots) == spec.few_shot and all(solved(name, s) for s in shots)
                else:
                    query = text
                assert query == i.prompt
                assert query.startswith(f"{name}:" if not novel else f"{NOVEL[name]} of ")
                assert it["choices"] == [tok.encode(c) for c in i.choices]
                assert tok.decode(it["choices"][it["label"]]) == i.answer and it["answer"] == i.answer.strip()


def test_build_probes_is_deterministic_and_json_able(spec: StudySpec, heldout: list[str], tok: Tokenizer,
                                                     docs: list[list[int]]) -> None:
    probes = build_probes(spec, heldout, tok)
    assert build_probes(spec, list(heldout), tok) == probes
    assert json.loads(json.dumps(probes)) == probes  # plain ids and numbers: workers receive them as they are
    assert probes["text"] == text_pairs(docs, spec)
    assert probes["tasks"] == task_items(spec, tok)
    assert len(probes["cloze"]) == len(probes["ending"]) == spec.text_pairs
    assert len(probes["rank_inputs"]) == spec.rank_sequences
    assert all(r == p["source"][:spec.rank_length] for r, p in zip(probes["rank_inputs"], probes["text"]))
    other = build_probes(spec, english(10, seed=3), tok)
    assert other["text"] != probes["text"] and other["cloze"] != probes["cloze"]


# Information flow ------------------------------------------------------------------------------------------
def tiny(arch: str, tok: Tokenizer) -> UnimaskLM:
    torch.manual_seed(0)
    return unimask.build_model(ModelConfig(arch=arch, vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                           d_ff=64, pad_token_id=tok.pad_id, decoder_start_token_id=tok.eos_id,
                                           init_std=0.2)).eval()


@pytest.mark.parametrize(("arch", "objective", "flows"), [
    ("causal", "causal_lm", False), ("prefix", "prefix_lm", True), ("prefix", "ul2", True),
    ("encoder_decoder", "span_corruption", True), ("encoder_decoder", "prefix_lm", True)])
def test_information_flow_is_zero_only_for_a_causal_decoder(tok: Tokenizer, arch: str, objective: str,
                                                            flows: bool) -> None:
    model = tiny(arch, tok)
    fmt = reading_format(objective, arch, tok, model.config.start_token_id)
    source = tok.encode("every family sees the input through its own mask")
    value = information_flow(model, fmt, source)
    assert isinstance(value, float)
    if flows:
        assert value > 1e-3
    else:
        assert value == 0.0
