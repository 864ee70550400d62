"""unimask: the three mainstream LLM families (causal decoder, prefix decoder, encoder-decoder), chosen by
their attention mask, in one PyTorch codebase."""

from __future__ import annotations

from unimask.checkpoint import load_model
from unimask.config import PRESETS, ModelConfig, preset
from unimask.errors import UnimaskError
from unimask.models import build_model

__version__ = "0.1.0"

__all__ = ["PRESETS", "ModelConfig", "UnimaskError", "__version__", "build_model", "load_model", "preset"]
