"""Pretraining objectives as pure functions on token ids (no model imports).

``build_objective(spec)`` accepts a name (``causal_lm``, ``prefix_lm``, ``span_corruption``,
``bart_infilling``, ``glm_blank``, ``ul2``, ``ul2r``), a JSON string, a dict ``{"name": ..., **settings}``
or ``{"mixture": {name: weight}}``. ``layout`` turns examples into the batch contract of each family.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from unimask.errors import ConfigError
from unimask.objectives.base import IGNORE, Example, Objective, Vocab
from unimask.objectives.denoise import BartInfilling, SpanCorruption
from unimask.objectives.glm import GLMBlank
from unimask.objectives.lm import CausalLM, PrefixLM
from unimask.objectives.mixture import Component, Mixture, ul2, ul2r

OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "causal_lm": CausalLM, "prefix_lm": PrefixLM, "span_corruption": SpanCorruption,
    "bart_infilling": BartInfilling, "glm_blank": GLMBlank, "ul2": ul2, "ul2r": ul2r,
}


def _build_named(name: str, settings: dict[str, Any]) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{name}'; known objectives: {', '.join(OBJECTIVES)}")
    factory = OBJECTIVES[name]
    allowed = set(inspect.signature(factory).parameters)
    unknown = set(settings) - allowed
    if unknown:
        raise ConfigError(f"objective '{name}': unknown setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(allowed)) or 'none'}")
    try:
        return factory(**settings)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"objective '{name}': {exc}") from None


def build_objective(spec: str | dict[str, Any] | Objective) -> Objective:
    """An ``Objective`` from a name, a JSON string, a settings dict or a ``{"mixture": {...}}`` dict."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"objective: not valid JSON ({exc.msg} at column {exc.colno})") from None
        else:
            return _build_named(text, {})
    if not isinstance(spec, dict):
        raise ConfigError(f"objective: expected a name or a mapping, got {type(spec).__name__}")
    if "mixture" in spec:
        if set(spec) - {"mixture", "name"}:
            raise ConfigError("objective: a mixture takes only {'mixture': {objective: weight}}")
        members = spec["mixture"]
        if not isinstance(members, dict) or not members:
            raise ConfigError("objective 'mixture': give a non-empty mapping {objective: weight}")
        comps = []
        for key, weight in members.items():
            if not isinstance(weight, (int, float)) or weight < 0:
                raise ConfigError(f"objective 'mixture': weight of '{key}' must be a non-negative number")
            comps.append(Component(build_objective(key), float(weight), None, key))
        try:
            return Mixture(comps, name=str(spec.get("name", "mixture")))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    settings = dict(spec)
    name = settings.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("objective: a settings mapping needs a 'name' (e.g. {'name': 'span_corruption'})")
    return _build_named(name, settings)


__all__ = ["IGNORE", "OBJECTIVES", "BartInfilling", "CausalLM", "Component", "Example", "GLMBlank", "Mixture",
           "Objective", "PrefixLM", "SpanCorruption", "Vocab", "build_objective"]
