"""Single-device model code: masks, attention, the three families."""

from __future__ import annotations

from unimask.config import ModelConfig, resolve_model_config
from unimask.models.base import LMOutput, UnimaskLM
from unimask.models.decoder import DecoderLM
from unimask.models.encoder_decoder import EncoderDecoderLM


def build_model(config: ModelConfig | str | dict) -> UnimaskLM:
    """A randomly initialised model of the family named by ``config.arch`` (a preset name works too)."""
    config = resolve_model_config(config)
    if config.arch == "encoder_decoder":
        return EncoderDecoderLM(config)
    return DecoderLM(config)


__all__ = ["DecoderLM", "EncoderDecoderLM", "LMOutput", "UnimaskLM", "build_model"]
