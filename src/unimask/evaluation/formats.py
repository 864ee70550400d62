"""How a trained model reads a ``(source, continuation)`` pair: the layout its pretraining objective taught.

Scoring "the continuation given the source" must use the same layout for training and scoring, or a
family is judged on a format it never saw. Each objective implies one:

=====================  =========================================  ===================================
objective              input (decoder row / encoder)              target side before the continuation
=====================  =========================================  ===================================
``causal_lm``          ``[bos] + source``                          (nothing)
``prefix_lm``          ``source`` (the prefix, bidirectional)      (nothing)
``span_corruption``    ``source + [<extra_id_0>, eos]``             ``<extra_id_0>``: the continuation
                                                                   is the masked span that ends the
                                                                   text (T5 scores zero-shot this way)
``ul2`` / ``ul2r``     ``[S2S] + source + [eos]`` (UL2's S mode)   (nothing)
``bart_infilling``     ``source + [<mask>, eos]``                  ``source``: BART's target repeats the
                                                                   whole text
``supervised``         causal: ``[bos] + source``; prefix:         (nothing)
                       ``source``; encoder: ``source + [eos]``
                       (``unimask.finetune``'s layout)
=====================  =========================================  ===================================

A decoder-only model reads ``input + given + continuation`` as one row (a prefix decoder sees ``input``
bidirectionally); an encoder-decoder reads ``input`` in the encoder and ``[start] + given +
continuation`` in the decoder. Only continuation tokens are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unimask.errors import ConfigError

OBJECTIVE_FORMATS = ("causal_lm", "prefix_lm", "span_corruption", "ul2", "ul2r", "bart_infilling", "supervised")


@dataclass(frozen=True)
class ReadingFormat:
    """Token ids wrapped around a pair. ``lead`` goes before the source, ``trail`` after it (together:
    the input), ``given`` starts the target side unscored; ``echo_source`` puts the source tokens in
    ``given`` too (BART). ``start_id`` is an encoder-decoder's first decoder token."""

    arch: str
    lead: tuple[int, ...] = ()
    trail: tuple[int, ...] = ()
    given: tuple[int, ...] = ()
    echo_source: bool = False
    start_id: int = 0
    objective: str = ""

    def input_ids(self, source: list[int]) -> list[int]:
        return [*self.lead, *source, *self.trail]

    def given_ids(self, source: list[int]) -> list[int]:
        return [*(source if self.echo_source else ()), *self.given]


def objective_name(objective: str | dict[str, Any] | Any) -> str:
    """The name of a run config's objective (``"causal_lm"``, ``{"name": "ul2"}``, an Objective)."""
    if isinstance(objective, str):
        return objective
    if isinstance(objective, dict):
        if "mixture" in objective:
            return "mixture"
        return str(objective.get("name", ""))
    return str(getattr(objective, "name", ""))


def reading_format(objective: str | dict[str, Any] | Any, arch: str, tokenizer: Any, start_id: int = 0,
                   ) -> ReadingFormat:
    """The ``ReadingFormat`` that ``objective`` taught a model of family ``arch`` (see the module table)."""
    name = objective_name(objective)
    special = tokenizer.special
    if name == "causal_lm":
        return ReadingFormat(arch, lead=(tokenizer.bos_id,), start_id=start_id, objective=name)
    if name == "prefix_lm":
        return ReadingFormat(arch, start_id=start_id, objective=name)
    if name == "span_corruption":
        s0 = special.require_sentinels(1, "scoring a span-corruption model")[0]
        return ReadingFormat(arch, trail=(s0, tokenizer.eos_id), given=(s0,), start_id=start_id, objective=name)
    if name in ("ul2", "ul2r"):
        s2s = special.require("s2s", "scoring a UL2 model in its S (prefix-LM) mode")
        return ReadingFormat(arch, lead=(s2s,), trail=(tokenizer.eos_id,), start_id=start_id, objective=name)
    if name == "supervised":
        if arch == "causal":
            return ReadingFormat(arch, lead=(tokenizer.bos_id,), start_id=start_id, objective=name)
        trail = (tokenizer.eos_id,) if arch == "encoder_decoder" else ()
        return ReadingFormat(arch, trail=trail, start_id=start_id, objective=name)
    if name == "bart_infilling":
        if arch != "encoder_decoder":
            raise ConfigError("scoring bart_infilling is defined for encoder-decoders only")
        mask = special.require("mask", "scoring a BART model")
        return ReadingFormat(arch, trail=(mask, tokenizer.eos_id), echo_source=True, start_id=start_id,
                             objective=name)
    raise ConfigError(f"no scoring format for objective '{name or objective}'; formats exist for "
                      f"{', '.join(OBJECTIVE_FORMATS)}")


__all__ = ["OBJECTIVE_FORMATS", "ReadingFormat", "objective_name", "reading_format"]
