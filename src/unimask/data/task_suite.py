"""The comparison study's task suite: small synthetic tasks written one symbol per token.

Every symbol (a digit or a letter) is written with a leading space, so a byte-level BPE tokenizer gives
it one token that is the same in the input and in the answer; the answer starts after `` =``, a token of
its own. That keeps scoring exact: the tokens of ``prompt + answer`` are the tokens of the prompt
followed by the tokens of the answer (no merge across the boundary).

A task has a trained format, ``max: 3 9 1 = 9`` (what the pretraining corpus holds), and a novel format,
``largest of 3 9 1 is 9`` (never in the corpus: the zero-shot probe of "a prompt format never trained
on", after Wang et al. 2022's held-out prompts). Train and test instances are disjoint by a stable hash
of the symbols (``unimask.data.synthetic.split_of``), so a test instance is never seen in training in any
format.

Multiple choice: every instance comes with three wrong answers drawn from its own input (the other
digits for ``max``, ``min``, ``mode`` and ``lookup``; other orders of the same digits for ``sort``;
other pairs for ``maxmin``), so a model that only learned the answer's format or the digits' frequencies
stays at chance (1/4), and scoring by likelihood ranking (Brown et al. 2020, section 2.4) measures
whether it reads the input.

Composite tasks (``maxmin`` = ``max`` then ``min``; ``sort`` = one digit per place) are the notes'
"complex task made of subtasks": their exact match is compared with the product of the per-token
accuracies (Schaeffer et al. 2023; Wei et al. 2022).
"""

from __future__ import annotations

import hashlib
import itertools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from unimask.data.synthetic import split_of
from unimask.errors import DataError

N_CHOICES = 4
_LETTERS = string.ascii_lowercase
_DIGITS = tuple(str(d) for d in range(10))

Symbols = list[str]


def spaced(symbols: Sequence[object]) -> str:
    """``[3, 9, 1]`` -> ``" 3 9 1"``: one leading space per symbol (one BPE token each)."""
    return "".join(f" {s}" for s in symbols)


@dataclass(frozen=True)
class Instance:
    """One task instance: the prompt and answer in a given format, and the multiple-choice options
    (``choices[0]`` is not necessarily the answer: ``label`` is its index)."""

    task: str
    prompt: str
    answer: str
    choices: tuple[str, ...]
    label: int


def _digits(rng: np.random.Generator, lo: int = 3, hi: int = 5) -> Symbols:
    return [str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(lo, hi + 1)))]


def _max(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    x = _digits(rng)
    return x, [max(x)]


def _min(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    x = _digits(rng)
    return x, [min(x)]


def _mode(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    """4-6 digits where one digit occurs strictly more often than any other."""
    n = int(rng.integers(4, 7))
    top = str(int(rng.integers(0, 10)))
    count = int(rng.integers(2, n // 2 + 2))
    others = [d for d in _DIGITS if d != top]
    rest: list[str] = []
    while len(rest) < n - count:  # every other digit occurs fewer than `count` times
        d = others[int(rng.integers(0, len(others)))]
        if rest.count(d) + 1 < count:
            rest.append(d)
    x = [top] * count + rest
    rng.shuffle(x)
    return x, [top]


def _lookup(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    """Three key/value pairs, then a key: ``a 3 b 7 c 1 ; b`` -> ``7``."""
    keys = [_LETTERS[int(i)] for i in rng.choice(len(_LETTERS), size=3, replace=False)]
    values = [str(int(v)) for v in rng.integers(0, 10, size=3)]
    q = int(rng.integers(0, 3))
    return [s for kv in zip(keys, values) for s in kv] + [";", keys[q]], [values[q]]


def _sort(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    x = [str(int(d)) for d in rng.choice(10, size=3, replace=False)]
    return x, sorted(x)


def _median(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    """Three different digits -> the middle one (held out of the study's pretraining: the fine-tuning task)."""
    x = [str(int(d)) for d in rng.choice(10, size=3, replace=False)]
    return x, [sorted(x)[1]]


def _maxmin(rng: np.random.Generator) -> tuple[Symbols, Symbols]:
    x = _digits(rng)
    return x, [max(x), min(x)]


def _digit_choices(x: Symbols, answer: Symbols, rng: np.random.Generator) -> list[Symbols]:
    """Three other single digits, from the input first (the ones a careless reader would pick)."""
    pool = [d for d in dict.fromkeys(s for s in x if s in _DIGITS) if d != answer[0]]
    rng.shuffle(pool)
    rest = [d for d in _DIGITS if d != answer[0] and d not in pool]
    rng.shuffle(rest)
    return [[d] for d in (pool + rest)[: N_CHOICES - 1]]


def _order_choices(x: Symbols, answer: Symbols, rng: np.random.Generator) -> list[Symbols]:
    """Three other orders of the same symbols."""
    perms = [list(p) for p in itertools.permutations(answer) if list(p) != answer]
    idx = rng.choice(len(perms), size=N_CHOICES - 1, replace=False)
    return [perms[int(i)] for i in idx]


def _pair_choices(x: Symbols, answer: Symbols, rng: np.random.Generator) -> list[Symbols]:
    """Three other ordered pairs of digits of the input (then any digits)."""
    digits = list(dict.fromkeys(x)) + [d for d in _DIGITS if d not in x]
    pairs = [[a, b] for a in digits for b in digits if [a, b] != answer]
    near = [p for p in pairs if p[0] in x and p[1] in x]
    far = [p for p in pairs if p not in near]
    out: list[Symbols] = []
    for group in (near, far):
        order = rng.permutation(len(group))
        out.extend(group[int(i)] for i in order[: N_CHOICES - 1 - len(out)])
    return out


@dataclass(frozen=True)
class Task:
    """A task: how instances are drawn, its trained keyword, its novel (never trained) phrase, and how
    wrong choices are drawn. ``subtasks`` names the tasks a composite task chains."""

    name: str
    make: Callable[[np.random.Generator], tuple[Symbols, Symbols]]
    novel: str
    wrong: Callable[[Symbols, Symbols, np.random.Generator], list[Symbols]]
    subtasks: tuple[str, ...] = ()

    def prompt(self, x: Symbols, novel: bool = False) -> str:
        if novel:
            return f"{self.novel} of{spaced(x)} is"
        return f"{self.name}:{spaced(x)} ="


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("max", _max, "largest", _digit_choices),
    Task("min", _min, "smallest", _digit_choices),
    Task("mode", _mode, "most common", _digit_choices),
    Task("lookup", _lookup, "value", _digit_choices),
    Task("sort", _sort, "in order", _order_choices),
    Task("maxmin", _maxmin, "largest and smallest", _pair_choices, subtasks=("max", "min")),
    Task("median", _median, "middle", _digit_choices),
)}


def _task_salt(name: str) -> int:
    """A stable number per task name (so adding a task never changes another task's instances)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest(), "big")


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise DataError(f"unknown task '{name}'; the suite has: {', '.join(TASKS)}")
    return TASKS[name]


def instances(name: str, n: int, *, seed: int, split: str = "test", novel: bool = False) -> list[Instance]:
    """``n`` seeded instances of task ``name`` from ``split`` ("train" or "test"), in the trained format
    or the ``novel`` one. The same arguments give the same instances; the splits never share an input."""
    task = get_task(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}'; use 'train' or 'test'")
    if n < 0:
        raise DataError(f"number of instances must be >= 0, got {n}")
    rng = np.random.default_rng([seed, _task_salt(name), 0 if split == "train" else 1])
    out: list[Instance] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise DataError(f"task '{name}' has too few distinct '{split}' instances for {n}")
        x, answer = task.make(rng)
        if split_of(name, " ".join(x)) != split:
            continue
        wrong = task.wrong(x, answer, rng)
        options = [answer, *wrong]
        order = rng.permutation(len(options))
        choices = tuple(spaced(options[int(i)]) for i in order)
        out.append(Instance(name, task.prompt(x, novel), spaced(answer), choices, int(np.argmax(order == 0))))
    return out


def documents(names: Sequence[str], n_per_task: int, *, seed: int, lines_per_document: int = 10) -> list[str]:
    """Pretraining documents in the trained format: ``lines_per_document`` train-split instances of one
    task per document, one per line (``max: 3 9 1 = 9``)."""
    docs: list[str] = []
    for name in names:
        lines = [i.prompt + i.answer for i in instances(name, n_per_task, seed=seed, split="train")]
        docs.extend("\n".join(lines[k:k + lines_per_document]) for k in range(0, len(lines), lines_per_document))
    return docs


def few_shot_prefix(name: str, k: int, *, seed: int, novel: bool = False) -> str:
    """``k`` solved train-split instances, one per line, to put before a query (few-shot prompting)."""
    return "".join(i.prompt + i.answer + "\n" for i in instances(name, k, seed=seed + 7919, split="train",
                                                                  novel=novel))


__all__ = ["N_CHOICES", "TASKS", "Instance", "Task", "documents", "few_shot_prefix", "get_task", "instances",
           "spaced"]
