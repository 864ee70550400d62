"""A seeded suite of small synthetic tasks for zero-shot and emergence studies.

Each task yields ``(prompt, answer)`` text pairs; the prompt ends with ``=`` and the answer follows it
directly. Train and test splits are disjoint by construction: an instance belongs to the test split when
a hash of its prompt falls in the held-out fraction, so the same prompt can never appear in both.
Tasks (as used in studies of emergent abilities, Wei et al. 2022; algorithmic probes after
Nogueira et al. 2021 and Anil et al. 2022):

- ``addition``: ``"123+456="`` -> ``"579"`` (``digits``, default 3)
- ``copy``: ``"copy:abcde="`` -> ``"abcde"`` (``length``, default 6)
- ``reverse``: ``"reverse:abcde="`` -> ``"edcba"`` (``length``)
- ``sort``: ``"sort:3 9 1="`` -> ``"1 3 9"`` (``length``)
- ``lookup``: ``"lookup:a=3 b=7 c=1;b="`` -> ``"7"`` (``pairs``, default 4)
- ``brackets``: ``"brackets:(()[])="`` -> ``"yes"`` / ``"no"`` (``length``, default 8, even)
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable

import numpy as np

from unimask.errors import DataError

TEST_FRACTION = 0.2
SPLITS = ("train", "test")
_LETTERS = string.ascii_lowercase


def _addition(rng: np.random.Generator, digits: int = 3) -> tuple[str, str]:
    if digits < 1:
        raise DataError(f"task 'addition': digits must be >= 1, got {digits}")
    # digit by digit, so any number of digits works (int64 stops at 18)
    a, b = (int("".join(str(d) for d in rng.integers(0, 10, size=digits))) for _ in range(2))
    return f"{a}+{b}=", str(a + b)


def _word(rng: np.random.Generator, length: int) -> str:
    if length < 1:
        raise DataError(f"synthetic task length must be >= 1, got {length}")
    return "".join(_LETTERS[i] for i in rng.integers(0, len(_LETTERS), size=length))


def _copy(rng: np.random.Generator, length: int = 6) -> tuple[str, str]:
    w = _word(rng, length)
    return f"copy:{w}=", w


def _reverse(rng: np.random.Generator, length: int = 6) -> tuple[str, str]:
    w = _word(rng, length)
    return f"reverse:{w}=", w[::-1]


def _sort(rng: np.random.Generator, length: int = 6) -> tuple[str, str]:
    if length < 1:
        raise DataError(f"task 'sort': length must be >= 1, got {length}")
    xs = [int(x) for x in rng.integers(0, 10, size=length)]
    return "sort:" + " ".join(map(str, xs)) + "=", " ".join(map(str, sorted(xs)))


def _lookup(rng: np.random.Generator, pairs: int = 4) -> tuple[str, str]:
    if not 1 <= pairs <= len(_LETTERS):
        raise DataError(f"task 'lookup': pairs must be in 1..26, got {pairs}")
    keys = [_LETTERS[i] for i in rng.choice(len(_LETTERS), size=pairs, replace=False)]
    values = [int(v) for v in rng.integers(0, 10, size=pairs)]
    q = int(rng.integers(0, pairs))
    body = " ".join(f"{k}={v}" for k, v in zip(keys, values))
    return f"lookup:{body};{keys[q]}=", str(values[q])


def _balanced(rng: np.random.Generator, n_pairs: int) -> str:
    out: list[str] = []
    stack: list[str] = []
    opened = 0
    while len(out) < 2 * n_pairs:
        can_open = opened < n_pairs
        if can_open and (not stack or rng.random() < 0.5):
            ch = "([{"[int(rng.integers(0, 3))]
            stack.append(ch)
            out.append(ch)
            opened += 1
        else:
            out.append({"(": ")", "[": "]", "{": "}"}[stack.pop()])
    return "".join(out)


def _is_balanced(s: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif not stack or stack.pop() != pairs[ch]:
            return False
    return not stack


def _brackets(rng: np.random.Generator, length: int = 8) -> tuple[str, str]:
    if length < 2 or length % 2:
        raise DataError(f"task 'brackets': length must be even and >= 2, got {length}")
    s = _balanced(rng, length // 2)
    if rng.random() < 0.5:  # corrupt one position: usually unbalanced (checked, not assumed)
        i = int(rng.integers(0, length))
        s = s[:i] + "()[]{}"[int(rng.integers(0, 6))] + s[i + 1:]
    return f"brackets:{s}=", "yes" if _is_balanced(s) else "no"


TASKS: dict[str, Callable[..., tuple[str, str]]] = {
    "addition": _addition, "copy": _copy, "reverse": _reverse, "sort": _sort, "lookup": _lookup,
    "brackets": _brackets,
}


def split_of(task: str, prompt: str) -> str:
    """``"test"`` for the held-out fraction of prompts (by a stable hash), else ``"train"``."""
    h = int.from_bytes(hashlib.blake2b(f"{task}|{prompt}".encode(), digest_size=8).digest(), "big")
    return "test" if h / 2 ** 64 < TEST_FRACTION else "train"


def make_examples(task: str, n: int, *, seed: int, split: str = "train", **kw: int) -> list[tuple[str, str]]:
    """``n`` seeded ``(prompt, answer)`` pairs of ``task`` from ``split`` ("train" or "test").

    The same arguments give the same pairs; the two splits never share a prompt.
    """
    if task not in TASKS:
        raise DataError(f"unknown synthetic task '{task}'; known tasks: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use 'train' or 'test'")
    if n < 0:
        raise DataError(f"number of examples must be >= 0, got {n}")
    fn = TASKS[task]
    salt = sorted(TASKS).index(task) * 1_000_003 + (0 if split == "train" else 1)
    rng = np.random.default_rng([seed, salt])
    out: list[tuple[str, str]] = []
    tries = 0
    limit = 200 * n + 1000
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise DataError(f"task '{task}' with {kw or 'default settings'} has too few distinct '{split}' "
                            f"instances for {n} examples; make the task bigger (more digits or a longer length)")
        try:
            prompt, answer = fn(rng, **kw)
        except TypeError:
            raise DataError(f"task '{task}' does not take options {sorted(kw)}") from None
        if split_of(task, prompt) == split:
            out.append((prompt, answer))
    return out
