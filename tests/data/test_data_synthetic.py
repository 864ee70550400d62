"""The seeded synthetic task suite."""

from __future__ import annotations

import pytest

from unimask.data.synthetic import TASKS, make_examples
from unimask.errors import DataError


@pytest.mark.parametrize("task", sorted(TASKS))
def test_tasks_are_seeded_correct_and_splits_disjoint(task):
    train = make_examples(task, 300, seed=0)
    assert train == make_examples(task, 300, seed=0)
    assert train != make_examples(task, 300, seed=1)
    test = make_examples(task, 100, seed=0, split="test")
    assert not {p for p, _ in train} & {p for p, _ in test}
    for prompt, answer in train[:50]:
        assert prompt.endswith("=") and answer
        body = prompt.split(":", 1)[-1][:-1]
        if task == "addition":
            a, b = body.split("+")
            assert int(answer) == int(a) + int(b)
        elif task == "copy":
            assert answer == body
        elif task == "reverse":
            assert answer == body[::-1]
        elif task == "sort":
            assert answer.split() == sorted(body.split())
        elif task == "lookup":
            pairs, key = body.split(";")
            assert dict(p.split("=") for p in pairs.split())[key] == answer
        elif task == "brackets":
            assert answer == ("yes" if _balanced(body) else "no")


def _balanced(text: str) -> bool:
    """An independent check: repeatedly delete adjacent matching pairs."""
    while any(pair in text for pair in ("()", "[]", "{}")):
        for pair in ("()", "[]", "{}"):
            text = text.replace(pair, "")
    return text == ""


def test_options_and_errors():
    pairs = make_examples("addition", 200, seed=0, digits=2)
    assert all(int(x) < 100 for p, _ in pairs for x in p[:-1].split("+"))
    assert max(len(a) for _, a in pairs) <= 3
    answers = [a for _, a in make_examples("brackets", 400, seed=0)]
    assert 0.3 < answers.count("yes") / 400 < 0.8
    with pytest.raises(DataError, match="unknown synthetic task"):
        make_examples("nope", 1, seed=0)
    # a small task repeats prompts within a split but never shares one across splits
    small_test = {p for p, _ in make_examples("addition", 300, seed=0, split="test", digits=1)}
    small_train = {p for p, _ in make_examples("addition", 300, seed=0, digits=1)}
    assert 5 < len(small_test) < 40 and not small_test & small_train
    with pytest.raises(DataError, match="does not take"):
        make_examples("copy", 1, seed=0, digits=3)


def test_addition_with_more_digits_than_int64_holds() -> None:
    from unimask.data.synthetic import make_examples

    for prompt, answer in make_examples("addition", 5, seed=0, digits=25):
        a, b = prompt.rstrip("=").split("+")
        assert len(a) <= 25 and int(a) + int(b) == int(answer)
