"""Hugging Face interop: import and export LLaMA-family (Mistral, Qwen2, Qwen3), Gemma 3, GLM / GLM-4, GPT-2,
T5 / Flan-T5, T5Gemma and BART checkpoints.

``from_hf(path_or_model)`` reads a transformers model directory (``config.json`` and safetensors weights,
sharded or not) or an in-memory transformers model and returns the equivalent unimask model;
``to_hf(model, directory)`` writes a directory that ``transformers``' ``from_pretrained`` loads with no
missing or unexpected keys. transformers itself is never needed for either direction.

Each family module (``llama``, ``gpt2``, ``t5``, ``bart``, ...) maps the HF config onto explicit ``ModelConfig``
fields and lists its tensors as invertible ``Rule`` objects; the behaviour of the imported model comes only
from those fields; where the tensors decide a field (T5Gemma: one embedding or two), the family also has
``config_from_tensors`` and names the field in ``TENSOR_FIELDS``. Export picks the first family whose config
round-trips to the same behaviour.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from unimask.checkpoint import load_state_into, model_state
from unimask.config import ModelConfig
from unimask.errors import CheckpointError, ConfigError, UnimaskError
from unimask.interop import bart, gemma, glm, gpt2, llama, t5, t5gemma
from unimask.interop.common import (
    DEFAULT_MAX_SHARD_BYTES,
    TensorSource,
    copy_side_files,
    differences,
    dtype_name,
    export_state,
    import_state,
    read_hf_dir,
    staged_directory,
    write_tokenizer_config,
    write_weights,
)
from unimask.models import build_model
from unimask.models.base import UnimaskLM

log = logging.getLogger(__name__)

FAMILIES: dict[str, ModuleType] = {mt: fam for fam in (llama, gemma, glm, gpt2, t5, t5gemma, bart)
                                   for mt in fam.MODEL_TYPES}
EXPORT_ORDER = ("llama", "qwen2", "qwen3", "gemma3_text", "glm", "glm4", "gpt2", "t5", "t5gemma", "bart", "mistral")
BASE_PREFIX = {"llama": "model.", "qwen2": "model.", "mistral": "model.", "qwen3": "model.", "gemma3_text": "model.",
               "glm": "model.", "glm4": "model.", "gpt2": "transformer.", "t5": "", "t5gemma": "model.",
               "bart": "model."}


def supported() -> str:
    """``model_type (HF class)`` of every supported family, for messages."""
    return ", ".join(f"{mt} ({fam.MODEL_TYPES[mt]})" for mt, fam in sorted(FAMILIES.items()))


def _family(hf: dict[str, Any], where: str) -> ModuleType:
    model_type = hf.get("model_type")
    if model_type is None and "arch" in hf:
        raise ConfigError(f"{where}: a unimask checkpoint, not a Hugging Face model directory; to write it as "
                          f"one, run: unimask convert --to-hf {where} --out DIR")
    if model_type not in FAMILIES:
        raise ConfigError(f"{where}: model_type {model_type!r} is not supported; supported: {supported()}")
    return FAMILIES[model_type]


def _head_tied(family: ModuleType, hf: dict[str, Any], tensors: dict[str, Tensor]) -> bool:
    """Tied as transformers loads it: the config asks for it and no different ``lm_head`` is stored."""
    if not family.hf_ties(hf):
        return False
    head = tensors.get(family.HEAD)
    if head is None:
        return True
    embed_names = (family.EMBED, *getattr(family, "ALIASES", ()))
    embed = next((tensors[n] for n in embed_names if n in tensors), None)
    return embed is not None and embed.shape == head.shape and torch.equal(embed, head)


def _read(source: str | Path | Any) -> tuple[dict[str, Any], dict[str, Tensor], str]:
    if isinstance(source, (str, Path)):
        hf, tensors = read_hf_dir(source)
        return hf, tensors, str(source)
    if hasattr(source, "config") and hasattr(source, "state_dict") and hasattr(source.config, "to_dict"):
        return source.config.to_dict(), dict(source.state_dict()), f"<{type(source).__name__}>"
    raise UnimaskError(f"from_hf: expected a model directory or a transformers model, got {type(source).__name__}")


def from_hf(source: str | Path | Any, *, dtype: torch.dtype | str = torch.float32) -> UnimaskLM:
    """The unimask model equivalent to a Hugging Face checkpoint directory or transformers model.

    ``dtype``: of the returned model (default fp32, for further training); ``"auto"`` keeps the
    checkpoint's. Raises ``UnimaskError`` naming the unsupported architecture or the offending tensor.
    """
    hf, tensors, where = _read(source)
    family = _family(hf, where)
    prefix = BASE_PREFIX[hf["model_type"]]
    if prefix and tensors and not any(k.startswith(prefix) for k in tensors):  # saved from the bare base model
        tensors = {prefix + k: v for k, v in tensors.items()}
    try:
        config = family.config_from_hf(hf, _head_tied(family, hf, tensors), where)
    except KeyError as exc:
        raise CheckpointError(f"{where}: config.json lacks the field '{exc.args[0]}'") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, UnimaskError) and str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from None
    if hasattr(family, "config_from_tensors"):
        config = family.config_from_tensors(config, tensors)
    model = build_model(config)
    state = import_state(family.rules(config), TensorSource(tensors, where), model_state(model), family.IGNORED)
    load_state_into(model, state, source=where)
    if dtype == "auto":
        dtype = state["embed.weight"].dtype
    return model.to(dtype=dtype).eval()  # type: ignore[arg-type]


def config_from_hf_config(hf: dict[str, Any], where: str = "config.json") -> ModelConfig:
    """The unimask ``ModelConfig`` of a Hugging Face ``config.json`` alone (no weights: e.g. to count a
    model's parameters). The head counts as tied when the config says so (for T5: ``tie_word_embeddings``,
    true for v1.0 and false for v1.1 / Flan-T5 checkpoints)."""
    family = _family(hf, where)
    tied = bool(hf.get("tie_word_embeddings", True)) if family is t5 else family.hf_ties(hf)
    try:
        return family.config_from_hf(hf, tied, where)
    except KeyError as exc:
        raise ConfigError(f"{where}: lacks the field '{exc.args[0]}'") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, UnimaskError):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def _convert(model: UnimaskLM, model_type: str, as_causal: bool) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """HF config and tensors for ``model`` as ``model_type``; ConfigError says why it cannot be expressed."""
    config: ModelConfig = model.config
    family = FAMILIES[model_type]
    arch = "causal" if as_causal and config.arch == "prefix" else config.arch
    if arch != family.ARCH:
        raise ConfigError(f"the model is {arch}, {model_type} is {family.ARCH}")
    hf = family.config_to_hf(config, model_type)
    back = family.config_from_hf(json.loads(json.dumps(hf)), config.tie_embeddings, model_type)
    decided = {k: getattr(config, k) for k in getattr(family, "TENSOR_FIELDS", ())}  # the tensors carry these
    back = back.replace(**decided) if decided else back
    diff = differences(config, back, as_causal=as_causal)
    if diff:
        raise ConfigError(f"differs in {', '.join(diff)}")
    try:
        tensors = export_state(family.rules(config), model_state(model))
    except RuntimeError as exc:  # the rules do not cover this model's tensors
        raise ConfigError(str(exc)) from None
    if _head_tied(family, hf, tensors) != config.tie_embeddings:
        raise ConfigError("the tying of the output head cannot be expressed")
    hf["dtype"] = hf["torch_dtype"] = dtype_name(next(model.parameters()).dtype)
    return hf, tensors


def export_hf(model: UnimaskLM, *, model_type: str | None = None,
              as_causal: bool = False) -> tuple[str, dict[str, Any], dict[str, Tensor]]:
    """``(model_type, config dict, tensors)`` of the HF checkpoint for ``model``, without writing files."""
    if model.config.arch == "prefix" and not as_causal:
        raise ConfigError("a prefix decoder has no Hugging Face counterpart (transformers runs decoders causally); "
                          "pass as_causal=True (CLI: --as-causal) to export it as a causal model")
    if model_type is not None and model_type not in FAMILIES:
        raise ConfigError(f"model_type {model_type!r} is not supported; supported: {supported()}")
    reasons = []
    for candidate in [model_type] if model_type else EXPORT_ORDER:
        try:
            hf, tensors = _convert(model, candidate, as_causal)
        except ConfigError as exc:
            reasons.append(f"{candidate}: {exc}")
            continue
        return candidate, hf, tensors
    raise ConfigError(f"this model cannot be written as a supported Hugging Face model ({'; '.join(reasons)})")


def to_hf(model: UnimaskLM, directory: str | Path, *, model_type: str | None = None,
          tokenizer_dir: str | Path | None = None, as_causal: bool = False,
          max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write ``model`` as a Hugging Face checkpoint: ``config.json``, ``model.safetensors`` (sharded with
    ``model.safetensors.index.json`` above ``max_shard_bytes``), and the tokenizer / special-token /
    generation files found in ``tokenizer_dir``.

    ``directory`` must be new or empty; it appears only when everything was written. ``model_type``
    defaults to the first supported family that expresses the model exactly.
    """
    chosen, hf, tensors = export_hf(model, model_type=model_type, as_causal=as_causal)
    with staged_directory(directory) as tmp:
        write_weights(tensors, tmp, max_shard_bytes)
        (tmp / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        copy_side_files(tokenizer_dir, tmp)
        write_tokenizer_config(tmp, model.config)
    log.info("wrote %s as a Hugging Face '%s' checkpoint", directory, chosen)
    return Path(directory)


__all__ = ["FAMILIES", "config_from_hf_config", "export_hf", "from_hf", "supported", "to_hf"]
