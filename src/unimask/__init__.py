"""unimask: the three mainstream LLM families (causal decoder, prefix decoder, encoder-decoder), chosen by
their attention mask, in one PyTorch codebase."""

from __future__ import annotations

from unimask.checkpoint import load_model
from unimask.config import PRESETS, ModelConfig, preset
from unimask.errors import UnimaskError
from unimask.models import build_model

__version__ = "0.1.0"

__all__ = ["PRESETS", "ModelConfig", "TextModel", "UnimaskError", "__version__", "build_model", "from_hf", "load",
           "load_model", "preset", "to_hf"]


def __getattr__(name: str):  # lazy: the Hugging Face converters and the text API load only when used
    if name in ("from_hf", "to_hf"):
        from unimask import interop

        return getattr(interop, name)
    if name in ("load", "TextModel"):
        from unimask import api

        return getattr(api, name)
    raise AttributeError(f"module 'unimask' has no attribute '{name}'")
