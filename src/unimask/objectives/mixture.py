"""Mixtures of objectives: UL2's mixture of denoisers and UL2R.

- UL2 (Tay et al. 2022, "UL2: Unifying Language Learning Paradigms", section 3.1): R-denoisers (regular
  span corruption: mean span 3 or 8 at rate 0.15), the S-denoiser (prefix LM) and X-denoisers (extreme:
  mean 3 or 8 at rate 0.5, mean 64 at rate 0.15 or 0.5), sampled per example; every source ends with EOS
  (the S-denoiser's too, ``PrefixLM(source_eos=True)``, as T5 appends EOS to inputs); a mode token ``[NLU]``
  (R), ``[S2S]`` (S) or ``[NLG]`` (X) is put in front of the input (mode switching, section 3.1.3). The
  default weighs the seven denoisers equally.
- UL2R (Tay et al. 2022b, U-PaLM): continue training a causal LM on a small UL2 mixture; the default is
  50% S-denoiser, 25% R (mean 3, rate 0.15) and 25% X (mean 32, rate 0.5), with mode tokens.
- ``{"mixture": {objective: weight}}``: any objectives, no mode tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unimask.objectives.base import Example, Objective, Vocab, as_ids

MODE_TOKENS = {"R": "nlu", "S": "s2s", "X": "nlg"}


@dataclass
class Component:
    """One member of a mixture: the objective, its weight and the mode token field (``nlu``/``nlg``/``s2s``)."""

    objective: Objective
    weight: float
    mode: str | None = None
    label: str = ""
    kind: str | None = None  # "R", "S" or "X" for a UL2 denoiser


def with_mode_token(ex: Example, token: int) -> Example:
    """Put ``token`` in front of the source (shifting GLM positions by one)."""
    positions = None if ex.positions is None else as_ids(0, ex.positions + 1)
    block = None if ex.block_positions is None else as_ids(0, ex.block_positions)
    return Example(source=as_ids(token, ex.source), target=ex.target, target_inputs=ex.target_inputs,
                   positions=positions, block_positions=block, mode=ex.mode, info=ex.info)


class Mixture(Objective):
    """Pick one component per example (by weight) and apply it; prepend its mode token if it has one."""

    def __init__(self, components: list[Component], name: str = "mixture") -> None:
        if not components:
            raise ValueError(f"{name}: a mixture needs at least one objective")
        if any(c.weight < 0 for c in components) or sum(c.weight for c in components) <= 0:
            raise ValueError(f"{name}: weights must be non-negative with a positive sum")
        for c in components:
            if c.mode is not None and c.mode not in MODE_TOKENS.values():
                raise ValueError(f"{name}: mode token must be one of nlu, nlg, s2s, got {c.mode!r}")
        self.components = components
        self.name = name
        self.min_length = max(c.objective.min_length for c in components)
        self.uses_2d_positions = any(c.objective.uses_2d_positions for c in components)
        self.teacher_forced = all(c.objective.teacher_forced for c in components)
        w = np.array([c.weight for c in components], dtype=np.float64)
        self.probs = w / w.sum()

    def __call__(self, ids: np.ndarray, rng: np.random.Generator, vocab: Vocab) -> Example:
        c = self.components[int(rng.choice(len(self.components), p=self.probs))]
        ex = c.objective(ids, rng, vocab)
        if c.label:
            ex.mode = c.label
        if c.mode is not None:
            ex = with_mode_token(ex, vocab.special.require(c.mode, f"objective '{self.name}' (mode tokens)"))
        return ex

    def bounds(self, n: int) -> tuple[int, int]:
        s = t = 0
        for c in self.components:
            cs, ct = c.objective.bounds(n)
            s, t = max(s, cs + (c.mode is not None)), max(t, ct)
        return s, t

    def row_bound(self, n: int) -> int:
        return max(c.objective.row_bound(n) + (c.mode is not None) for c in self.components)

    def sentinels_needed(self, n: int) -> int:
        return max((getattr(c.objective, "sentinels_needed", lambda _: 0)(n) for c in self.components), default=0)

    def check(self, vocab: Vocab) -> None:
        for c in self.components:
            c.objective.check(vocab)
            if c.mode is not None:
                vocab.special.require(c.mode, f"objective '{self.name}' (mode tokens)")

    def config(self) -> dict[str, Any]:
        if all(c.kind is not None for c in self.components):
            denoisers = []
            for c in self.components:
                d: dict[str, Any] = {"kind": c.kind, "weight": c.weight}
                if c.kind != "S":
                    d.update(mean=c.objective.mean_noise_span_length, rate=c.objective.noise_density)  # type: ignore[attr-defined]
                denoisers.append(d)
            return {"name": self.name, "denoisers": denoisers,
                    "mode_tokens": any(c.mode is not None for c in self.components)}
        return {"mixture": {c.label or c.objective.name: c.weight for c in self.components}}


# (kind, mean span, rate) of UL2's seven denoisers; S has no span settings.
UL2_DENOISERS: tuple[tuple[str, float, float], ...] = (
    ("R", 3, 0.15), ("R", 8, 0.15), ("S", 0, 0), ("X", 3, 0.5), ("X", 8, 0.5), ("X", 64, 0.15), ("X", 64, 0.5),
)
UL2R_DENOISERS: tuple[tuple[str, float, float, float], ...] = (("S", 0, 0, 0.5), ("R", 3, 0.15, 0.25),
                                                               ("X", 32, 0.5, 0.25))


def denoiser(kind: str, mean: float = 3.0, rate: float = 0.15, weight: float = 1.0,
             mode_tokens: bool = True) -> Component:
    """An R/S/X denoiser as a mixture component (R and X: T5 span corruption; S: prefix LM whose source
    ends with EOS)."""
    from unimask.objectives.denoise import SpanCorruption
    from unimask.objectives.lm import PrefixLM

    kind = kind.upper()
    if kind not in MODE_TOKENS:
        raise ValueError(f"unknown denoiser kind {kind!r}; use R, S or X")
    # S: T5 appends EOS to prefix-LM inputs too, so every UL2 denoiser's source ends with EOS
    obj: Objective = PrefixLM(source_eos=True) if kind == "S" else SpanCorruption(float(rate), float(mean))
    label = "S" if kind == "S" else f"{kind}(mean={mean:g},rate={rate:g})"
    return Component(obj, float(weight), MODE_TOKENS[kind] if mode_tokens else None, label, kind)


def ul2(denoisers: list[dict[str, Any]] | None = None, mode_tokens: bool = True) -> Mixture:
    """UL2's mixture of denoisers; ``denoisers`` = ``[{"kind": "R", "mean": 3, "rate": 0.15, "weight": 1}, ...]``."""
    if denoisers is None:
        comps = [denoiser(k, m, r, 1.0, mode_tokens) for k, m, r in UL2_DENOISERS]
    else:
        comps = [_denoiser_from_dict(d, mode_tokens) for d in denoisers]
    return Mixture(comps, name="ul2")


def ul2r(denoisers: list[dict[str, Any]] | None = None, mode_tokens: bool = True) -> Mixture:
    """UL2R (U-PaLM): 50% S, 25% R, 25% X by default, with mode tokens."""
    if denoisers is None:
        comps = [denoiser(k, m, r, w, mode_tokens) for k, m, r, w in UL2R_DENOISERS]
    else:
        comps = [_denoiser_from_dict(d, mode_tokens) for d in denoisers]
    return Mixture(comps, name="ul2r")


def _denoiser_from_dict(d: dict[str, Any], mode_tokens: bool) -> Component:
    d = dict(d)
    unknown = set(d) - {"kind", "mean", "rate", "weight"}
    if unknown:
        raise ValueError(f"denoiser: unknown fields {sorted(unknown)}; use kind, mean, rate, weight")
    if "kind" not in d:
        raise ValueError("denoiser: each entry needs a 'kind' (R, S or X)")
    return denoiser(str(d["kind"]), float(d.get("mean", 3.0)), float(d.get("rate", 0.15)),
                    float(d.get("weight", 1.0)), mode_tokens)
