"""GLM autoregressive blank infilling (Du et al. 2022, "GLM: General Language Model Pretraining with
Autoregressive Blank Infilling"; Zeng et al. 2023, GLM-130B).

Spans are cut out of the text and each replaced by one mask token; the corrupted text is Part A
(bidirectional), and Part B lists the spans in a random order, each fed as ``[sop] + span`` and predicted
as ``span + [eop]`` (causal, sees all of Part A). Two position ids per token (section 2.2): the first is
the position in Part A (a Part B token takes its mask's position), the second the position inside the
span, starting at 1 (0 for Part A).

Masks: ``[MASK]`` short spans with Poisson(3) lengths covering 15% of the tokens (the GLM objective);
``[sMASK]`` whole sentences covering at least 15%; ``[gMASK]`` one suffix span of 50-100% of the text
(GLM's document-level objective; GLM-130B mixes [MASK] and [gMASK], e.g. ``modes={"mask": 0.3,
"gmask": 0.7}``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from unimask.objectives.base import Example, Objective, Vocab, as_ids
from unimask.objectives.denoise import infill
from unimask.objectives.noise import poisson_lengths, sentence_spans

MODES = ("mask", "smask", "gmask")


def glm_place_spans(n: int, lengths: list[int], rng: np.random.Generator) -> list[tuple[int, int]]:
    """Place spans of ``lengths`` in ``n`` tokens with at least one kept token between two spans (as GLM's
    ``sample_spans``): ``(start, length)`` sorted by start."""
    k = len(lengths)
    free = n - sum(lengths) - (k - 1)  # kept tokens not needed as separators
    if free < 0:
        raise ValueError("spans do not fit with separators")
    places = np.sort(rng.integers(0, free + 1, size=k))
    out: list[tuple[int, int]] = []
    offset = 0
    for place, length in zip(places.tolist(), lengths):
        out.append((offset + place, length))
        offset += length + 1
    return out


def glm_example(ids: np.ndarray, spans: list[tuple[int, int]], mask_id: int, vocab: Vocab,
                rng: np.random.Generator, mode: str, order: Sequence[int] | None = None) -> Example:
    """Part A / Part B example for given sorted spans (``(start, length)``, length >= 1); Part B lists the
    spans in ``order`` (default: a random permutation, as GLM shuffles them)."""
    sop = vocab.special.require("sop", "GLM blank infilling")
    eop = vocab.special.require("eop", "GLM blank infilling")
    part_a = infill(ids, spans, mask_id)  # (S,)
    mask_pos: list[int] = []
    removed = 0
    for start, length in spans:
        mask_pos.append(start - removed)
        removed += length - 1
    order = rng.permutation(len(spans)) if order is None else np.asarray(order, dtype=np.int64)
    inputs, targets, pos, block = [], [], [], []
    for j in order.tolist():
        start, length = spans[j]
        piece = ids[start:start + length]
        inputs.append(as_ids(sop, piece))
        targets.append(as_ids(piece, eop))
        pos.append(np.full(length + 1, mask_pos[j], dtype=np.int64))
        block.append(np.arange(1, length + 2, dtype=np.int64))
    S = len(part_a)
    positions = np.concatenate([np.arange(S, dtype=np.int64)] + pos)  # (S + T,)
    block_positions = np.concatenate([np.zeros(S, dtype=np.int64)] + block)
    noise = np.zeros(len(ids), dtype=bool)
    for start, length in spans:
        noise[start:start + length] = True
    return Example(source=part_a, target=np.concatenate(targets), target_inputs=np.concatenate(inputs),
                   positions=positions, block_positions=block_positions, mode=f"glm_{mode}",
                   info={"spans": spans, "order": order.tolist(), "noise_mask": noise, "mask_positions": mask_pos})


class GLMBlank(Objective):
    """GLM blank infilling; ``modes`` weighs [MASK] / [sMASK] / [gMASK] examples."""

    name = "glm_blank"
    min_length = 2
    uses_2d_positions = True
    teacher_forced = False

    def __init__(self, mask_ratio: float = 0.15, poisson_lambda: float = 3.0,
                 modes: dict[str, float] | None = None, gmask_range: tuple[float, float] = (0.5, 1.0)) -> None:
        modes = dict(modes) if modes is not None else {"mask": 1.0}
        unknown = set(modes) - set(MODES)
        if unknown:
            raise ValueError(f"glm_blank: unknown modes {sorted(unknown)}; use {', '.join(MODES)}")
        if not modes or any(w < 0 for w in modes.values()) or sum(modes.values()) <= 0:
            raise ValueError("glm_blank: modes needs non-negative weights with a positive sum")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"glm_blank: mask_ratio must be in (0, 1), got {mask_ratio}")
        lo, hi = gmask_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"glm_blank: gmask_range must satisfy 0 < lo <= hi <= 1, got {gmask_range}")
        self.mask_ratio = mask_ratio
        self.poisson_lambda = poisson_lambda
        self.modes = modes
        self.gmask_range = (float(lo), float(hi))

    def _pick_mode(self, rng: np.random.Generator) -> str:
        names = [m for m in MODES if self.modes.get(m, 0) > 0]
        if len(names) == 1:
            return names[0]
        w = np.array([self.modes[m] for m in names], dtype=np.float64)
        return names[int(rng.choice(len(names), p=w / w.sum()))]

    def _mask_spans(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Poisson span lengths covering ``round(n * mask_ratio)`` tokens, shuffled, then placed left to right.

        The lengths are drawn until they cover the budget, so the last one drawn is cut to fit; placing
        them in draw order would always make the rightmost span that shorter remainder. GLM shuffles the
        lengths before placing them (THUDM GLM, ``blocklm_utils.ConstructBlockStrategy``:
        ``generate_blank_data`` and ``sample_span_in_document`` call ``rng.shuffle(masked_lengths)``
        before ``sample_spans``), so span length does not depend on position.
        """
        total = min(max(round(n * self.mask_ratio), 1), n - 1)
        lengths = poisson_lengths(total, self.poisson_lambda, rng, allow_zero=False)
        while len(lengths) - 1 > n - total:  # too many spans to keep one token between each: merge two
            lengths[-2] += lengths.pop()
        shuffled = [lengths[i] for i in rng.permutation(len(lengths)).tolist()]
        return glm_place_spans(n, shuffled, rng)

    def _sentence_spans(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> list[tuple[int, int]]:
        sents = sentence_spans(ids, vocab.sentence_ends)
        want = max(round(len(ids) * self.mask_ratio), 1)
        chosen: list[tuple[int, int]] = []
        covered = 0
        for i in rng.permutation(len(sents)).tolist():
            if covered >= want or (len(chosen) == len(sents) - 1 and chosen):
                break  # keep at least one sentence of Part A when there are several
            chosen.append(sents[i])
            covered += sents[i][1]
        return sorted(chosen)

    def _gmask_span(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        lo = max(1, math.ceil(self.gmask_range[0] * n))
        hi = max(lo, min(n - 1, math.floor(self.gmask_range[1] * n)))
        length = int(rng.integers(min(lo, n - 1), hi + 1))
        return [(n - length, length)]

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        mode = self._pick_mode(rng)
        n = len(ids)
        if mode == "mask":
            spans = self._mask_spans(n, rng)
            mask_id = vocab.special.require("mask", "GLM blank infilling ([MASK])")
        elif mode == "smask":
            spans = self._sentence_spans(ids, rng, vocab)
            mask_id = vocab.special.require("smask", "GLM sentence infilling ([sMASK])")
        else:
            spans = self._gmask_span(n, rng)
            mask_id = vocab.special.require("gmask", "GLM generation infilling ([gMASK])")
        return glm_example(ids, spans, mask_id, vocab, rng, mode)

    def bounds(self, n: int) -> tuple[int, int]:
        total = max(round(n * self.mask_ratio), 1)
        target = 0
        if self.modes.get("mask", 0) > 0 or self.modes.get("smask", 0) > 0:
            target = 2 * total  # each span adds one start/end token; spans <= masked tokens
        if self.modes.get("gmask", 0) > 0:
            target = max(target, n)
        return n, max(target, 2)

    def check(self, vocab: Vocab) -> None:
        vocab.special.require("sop", "GLM blank infilling")
        vocab.special.require("eop", "GLM blank infilling")
        for mode in MODES:
            if self.modes.get(mode, 0) > 0:
                vocab.special.require(mode, f"GLM blank infilling ({mode})")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "mask_ratio": self.mask_ratio, "poisson_lambda": self.poisson_lambda,
                "modes": dict(self.modes), "gmask_range": list(self.gmask_range)}
