"""The comparison study's task suite: answers checked by an independent solver, well-formed multiple
choice, disjoint seeded splits, novel prompts free of the trained keywords, and exact token boundaries
under a byte-level BPE tokenizer trained on the suite's own documents."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from unimask.data.synthetic import split_of
from unimask.data.task_suite import (
    N_CHOICES,
    TASKS,
    Instance,
    documents,
    few_shot_prefix,
    get_task,
    instances,
    spaced,
)
from unimask.data.tokenizer import Tokenizer, train_tokenizer
from unimask.errors import DataError

NOVEL = {"max": "largest", "min": "smallest", "mode": "most common", "lookup": "value", "sort": "in order",
         "maxmin": "largest and smallest", "median": "middle"}
DIGITS = [str(d) for d in range(10)]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def parse(name: str, prompt: str, novel: bool) -> list[str]:
    """The symbols of a prompt, read back from its text (``max: 3 9 1 =`` / ``largest of 3 9 1 is``)."""
    head, tail = (f"{NOVEL[name]} of ", " is") if novel else (f"{name}: ", " =")
    assert prompt.startswith(head) and prompt.endswith(tail), prompt
    return prompt[len(head):-len(tail)].split(" ")


def solve(name: str, x: list[str]) -> list[str]:
    """The answer computed from the symbols alone."""
    digits = [int(s) for s in x if s.isdigit()]
    if name == "max":
        return [str(max(digits))]
    if name == "min":
        return [str(min(digits))]
    if name == "maxmin":
        return [str(max(digits)), str(min(digits))]
    if name == "median":
        assert len(set(digits)) == 3, x
        return [str(sorted(digits)[1])]
    if name == "sort":
        return [str(d) for d in sorted(digits)]
    if name == "mode":
        (top, n), *rest = Counter(digits).most_common()
        assert all(m < n for _, m in rest), f"no unique mode in {x}"
        return [str(top)]
    if name == "lookup":
        assert x[-2] == ";" and len(x) == 8, x
        table = dict(zip(x[0:6:2], x[1:6:2]))
        assert len(table) == 3 and x[-1] in table, x
        return [table[x[-1]]]
    raise AssertionError(name)


def symbols(text: str) -> list[str]:
    """``" 3 9"`` -> ``["3", "9"]`` (and the text must be written one spaced symbol at a time)."""
    assert text.startswith(" ") and spaced(text.split()) == text, repr(text)
    return text.split()


@pytest.mark.parametrize("novel", [False, True])
@pytest.mark.parametrize("name", list(TASKS))
def test_answers_and_choices_are_right(name: str, novel: bool) -> None:
    for inst in instances(name, 150, seed=3, novel=novel):
        assert isinstance(inst, Instance) and inst.task == name
        x = parse(name, inst.prompt, novel)
        answer = symbols(inst.answer)
        assert answer == solve(name, x)
        assert len(inst.choices) == N_CHOICES == len(set(inst.choices)) == 4
        assert inst.choices[inst.label] == inst.answer
        options = [symbols(c) for c in inst.choices]
        assert {len(o) for o in options} == {len(answer)}  # the same number of symbols in every choice
        wrong = [o for o in options if o != answer]
        if name == "sort":  # other orders of the same digits
            assert all(sorted(o) == answer for o in wrong)
        elif name == "maxmin":  # other pairs of the input's digits, when it has two distinct ones
            if len(set(x)) >= 2:
                assert all(a in x and b in x for a, b in wrong)
        else:  # other single digits, from the input first
            distinct = {s for s in x if s in DIGITS} - {answer[0]}
            assert sum(o[0] in distinct for o in wrong) == min(3, len(distinct))


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_never_share_an_input_and_seeds_decide_the_instances(name: str) -> None:
    train = instances(name, 300, seed=0, split="train")
    test = instances(name, 100, seed=0, split="test")
    inputs = {split: {tuple(parse(name, i.prompt, False)) for i in group}
              for split, group in (("train", train), ("test", test))}
    assert not inputs["train"] & inputs["test"]
    assert all(split_of(name, " ".join(x)) == s for s, xs in inputs.items() for x in xs)
    assert instances(name, 100, seed=0, split="test") == test  # the same seed: the same instances
    assert instances(name, 100, seed=1, split="test") != test  # another seed: others
    assert instances(name, 40, seed=0, split="test") == test[:40]  # a prefix of the longer draw
    # the novel format writes the very same instances another way
    novel = instances(name, 100, seed=0, split="test", novel=True)
    assert [(parse(name, i.prompt, False), i.answer, i.choices, i.label) for i in test] == \
        [(parse(name, i.prompt, True), i.answer, i.choices, i.label) for i in novel]


def test_novel_prompts_never_hold_a_trained_keyword() -> None:
    for name, task in TASKS.items():
        assert task.novel == NOVEL[name] and get_task(name) is task
        for inst in instances(name, 100, seed=0, novel=True):
            words = inst.prompt.split()
            assert not any(other in words or f"{other}:" in inst.prompt for other in TASKS), inst.prompt
            assert "=" not in inst.prompt and inst.prompt.startswith(f"{task.novel} of ")
        for inst in instances(name, 10, seed=0):
            assert inst.prompt.startswith(f"{name}:") and task.novel not in inst.prompt


@pytest.mark.parametrize("name", list(TASKS))
def test_choice_order_is_shuffled(name: str) -> None:
    labels = Counter(i.label for i in instances(name, 200, seed=2))
    assert set(labels) == set(range(N_CHOICES))
    assert min(labels.values()) >= 25  # about 50 each


def test_documents_are_solved_train_instances_in_the_trained_format() -> None:
    names = ["max", "lookup", "sort"]
    docs = documents(names, 25, seed=4, lines_per_document=10)
    assert len(docs) == 3 * 3  # 25 lines per task: documents of 10, 10 and 5 lines
    lines = [line for d in docs for line in d.split("\n")]
    assert len(lines) == 75 and all(len(d.split("\n")) <= 10 for d in docs)
    seen = Counter()
    for line in lines:
        name = line.split(":")[0]
        prompt, answer = line.split(" =")
        x = parse(name, prompt + " =", False)
        assert symbols(answer) == solve(name, x)
        assert split_of(name, " ".join(x)) == "train"
        seen[name] += 1
    assert seen == {n: 25 for n in names}
    assert documents(names, 25, seed=4) == docs


@pytest.mark.parametrize("novel", [False, True])
def test_few_shot_prefix_holds_k_solved_lines(novel: bool) -> None:
    for name in TASKS:
        text = few_shot_prefix(name, 3, seed=1, novel=novel)
        assert text.endswith("\n")
        lines = text.split("\n")[:-1]
        assert len(lines) == 3
        tail = " is" if novel else " ="
        for line in lines:
            prompt, answer = line.rsplit(tail, 1)
            x = parse(name, prompt + tail, novel)
            assert symbols(answer) == solve(name, x)
            assert split_of(name, " ".join(x)) == "train"  # never a test instance
        assert few_shot_prefix(name, 3, seed=1, novel=novel) == text
    assert few_shot_prefix("max", 0, seed=1) == ""


def test_bad_arguments_are_one_clear_error() -> None:
    with pytest.raises(DataError, match="unknown task 'mean'; the suite has: max, min"):
        instances("mean", 3, seed=0)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        instances("max", 3, seed=0, split="dev")
    with pytest.raises(DataError, match="must be >= 0"):
        instances("max", -1, seed=0)
    assert instances("max", 0, seed=0) == []


# Token boundaries ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """Byte-level BPE trained on the suite's documents plus some English, as the study's corpus is."""
    rng = np.random.default_rng(0)
    sentence = "the model reads a text and writes its answer one token at a time"
    words = sentence.split()
    english = [" ".join(rng.choice(words, size=10)).capitalize() + "." for _ in range(200)]
    return train_tokenizer(documents(list(TASKS), 200, seed=0) + english, vocab_size=500, n_sentinels=8)


def test_every_spaced_symbol_is_one_token(tok: Tokenizer) -> None:
    for s in [*DIGITS, *LETTERS, ";"]:
        assert len(tok.encode(f" {s}")) == 1, s


@pytest.mark.parametrize("novel", [False, True])
def test_prompt_and_answer_tokens_never_merge(tok: Tokenizer, novel: bool) -> None:
    for name in TASKS:
        context = few_shot_prefix(name, 2, seed=1, novel=novel)
        for inst in instances(name, 40, seed=5, novel=novel):
            for prompt in (inst.prompt, context + inst.prompt):
                assert tok.encode(prompt + inst.answer) == tok.encode(prompt) + tok.encode(inst.answer)
                for c in inst.choices:
                    assert tok.encode(prompt + c) == tok.encode(prompt) + tok.encode(c)
            for c in inst.choices:  # one token per symbol
                assert len(tok.encode(c)) == len(c.split())
