"""Helpers: a hand-made vocabulary so that expected arrays can be written by hand."""

from __future__ import annotations

import numpy as np

from unimask.data.tokenizer import SpecialTokens
from unimask.objectives.base import Vocab

SENTINELS = tuple(range(999, 899, -1))  # <extra_id_0> = 999 (top of a 1000-token vocabulary), counting down
PERIOD = 20  # the token that ends a sentence


def make_vocab() -> Vocab:
    special = SpecialTokens(mask=3, smask=4, gmask=5, sop=6, eop=7, nlu=97, nlg=98, s2s=99, sentinels=SENTINELS)
    return Vocab(size=1000, pad=0, bos=1, eos=2, special=special, sentence_ends=frozenset({PERIOD}))


def text_ids(n: int, seed: int = 0) -> np.ndarray:
    """``n`` ordinary token ids (100..899: never a special, a sentinel or a sentence end)."""
    return np.random.default_rng(seed).integers(100, 900, size=n)
