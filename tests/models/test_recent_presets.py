"""Presets of recent models reproduce their released parameter counts exactly, and transformers counts the
same shapes the same way (built on the meta device: no memory, no download)."""

from __future__ import annotations

import pytest
import torch

from unimask.analysis.params import count_parameters
from unimask.analysis.published import PUBLISHED
from unimask.config import preset


@pytest.mark.parametrize("name", ["glm-4-9b", "qwen3-0.6b", "gemma-3-270m", "t5gemma-2b-2b"])
def test_preset_reproduces_the_released_count_exactly(name: str) -> None:
    assert count_parameters(preset(name)).total == PUBLISHED[name].total


def test_model_card_breakdowns() -> None:
    """Qwen3-0.6B's card: 0.44B non-embedding; Gemma 3 270M's: 170M embedding + 100M in the blocks."""
    q = count_parameters(preset("qwen3-0.6b"))
    assert round(q.non_embedding / 1e9, 2) == 0.44
    g = count_parameters(preset("gemma-3-270m"))
    assert (round(g.embeddings / 1e7), round(g.non_embedding / 1e8)) == (17, 1)


def _hf_count(name: str) -> int:
    import transformers as tf

    with torch.device("meta"):
        if name == "glm-4-9b":
            return tf.GlmForCausalLM(tf.GlmConfig(
                vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
                num_attention_heads=32, num_key_value_heads=2, head_dim=128, attention_bias=True)).num_parameters()
        if name == "qwen3-0.6b":
            return tf.Qwen3ForCausalLM(tf.Qwen3Config(
                vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)).num_parameters()
        if name == "gemma-3-270m":
            return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(
                vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                num_attention_heads=4, num_key_value_heads=1, head_dim=256)).num_parameters()
        stack = dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                     num_attention_heads=8, num_key_value_heads=4, head_dim=256)
        return tf.T5GemmaForConditionalGeneration(tf.T5GemmaConfig(
            encoder=tf.T5GemmaModuleConfig(**stack), decoder=tf.T5GemmaModuleConfig(**stack),
            vocab_size=256000)).num_parameters()


@pytest.mark.parametrize("name", ["glm-4-9b", "qwen3-0.6b", "gemma-3-270m", "t5gemma-2b-2b"])
def test_transformers_counts_the_same_shapes_the_same(name: str) -> None:
    pytest.importorskip("transformers")
    assert _hf_count(name) == count_parameters(preset(name)).total
