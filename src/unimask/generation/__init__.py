"""Decoding for all three families with a KV cache: greedy and sampling."""

from unimask.generation.decode import GenerationConfig, Step, generate, generate_stream, pad_prompts
from unimask.generation.sampling import choose_next

__all__ = ["GenerationConfig", "Step", "choose_next", "generate", "generate_stream", "pad_prompts"]
