"""LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through the ``peft``
library, on any unimask model.

unimask's linear layers have the names peft's LLaMA recipes use (``q_proj``, ``k_proj``, ``v_proj``,
``o_proj`` in self- and cross-attention; ``gate_proj``, ``up_proj``, ``down_proj`` in the MLP), so
``target_modules`` picks them by name in all three families. A trained adapter is kept two ways: merged
into the base weights (an ordinary unimask model directory) and on its own in peft's format
(``adapter_config.json`` + ``adapter_model.safetensors``), which ``peft.PeftModel.from_pretrained``
loads onto the base model.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from unimask.errors import ConfigError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class LoraSpec:
    """Rank ``r``, scale ``alpha / r``, dropout on the adapter input, and the module names to adapt."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoraSpec:
        if not isinstance(data, dict):
            raise ConfigError("config field 'lora': expected a mapping such as {r: 8, alpha: 16}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ConfigError(f"lora: unknown key '{unknown[0]}'; known keys: {', '.join(known)}")
        values = dict(data)
        if "target_modules" in values:
            targets = values["target_modules"]
            if isinstance(targets, str):
                targets = [t for t in targets.split(",") if t]
            if not isinstance(targets, (list, tuple)) or not targets or not all(isinstance(t, str) for t in targets):
                raise ConfigError("lora.target_modules: give module names, e.g. [q_proj, v_proj]")
            values["target_modules"] = tuple(targets)
        spec = cls(**values)
        if not isinstance(spec.r, int) or isinstance(spec.r, bool) or spec.r < 1:
            raise ConfigError(f"lora.r must be a positive integer, got {spec.r!r}")
        if not isinstance(spec.alpha, (int, float)) or spec.alpha <= 0:
            raise ConfigError(f"lora.alpha must be positive, got {spec.alpha!r}")
        if not isinstance(spec.dropout, (int, float)) or not 0.0 <= spec.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {spec.dropout!r}")
        return spec


def linear_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers (what ``target_modules`` can name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)
                   and name.rsplit(".", 1)[-1] != "lm_head"})


def apply_lora(model: nn.Module, spec: LoraSpec) -> nn.Module:
    """``model`` wrapped by peft with LoRA on ``spec.target_modules``; only the adapters train.
    A target that matches no linear layer is one clear error."""
    from peft import LoraConfig, get_peft_model

    names = linear_names(model)
    missing = [t for t in spec.target_modules if t not in names]
    if missing:
        raise ConfigError(f"lora.target_modules: {', '.join(missing)} match(es) no linear layer of this model; its "
                          f"linear layers are named {', '.join(names)}")
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=list(spec.target_modules), bias="none")
    return get_peft_model(model, config)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def base_of(model: nn.Module) -> nn.Module:
    """The unimask model inside a peft wrapper (the model itself otherwise)."""
    return model.get_base_model() if is_lora(model) else model


def merged_state(model: nn.Module) -> dict[str, Tensor]:
    """The base weights with every adapter merged in (W + alpha/r * B A), under the unimask names; the
    training model is left as it is."""
    if not is_lora(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    merged = copy.deepcopy(model).merge_and_unload()
    return {k: v.detach().cpu() for k, v in merged.state_dict().items()}


def adapter_state(model: nn.Module) -> dict[str, Tensor]:
    """The adapter weights alone, under peft's names."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ConfigError(f"adapter weights do not fit this model (unexpected: {unexpected[0]})")


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """peft's own adapter format in ``directory`` (loadable with ``PeftModel.from_pretrained``)."""
    out = Path(directory)
    model.save_pretrained(str(out))
    readme = out / "README.md"
    if readme.exists():  # peft writes a model-card template; keep the folder to the two files peft reads
        readme.unlink()
    return out


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters; a tied tensor counts once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


__all__ = ["DEFAULT_TARGETS", "LoraSpec", "adapter_state", "apply_lora", "base_of", "is_lora", "linear_names",
           "load_adapter_state", "merged_state", "save_adapter", "trainable_parameters"]
