"""LLaMA, Mistral and Qwen2 checkpoints: logits, greedy decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import check_decoder_only, padded, randomize
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from unimask.interop import from_hf

BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
CASES = {
    "llama-gqa-untied": (LlamaConfig, LlamaForCausalLM, dict(num_key_value_heads=2)),
    "llama-mqa-tied-hd16-bias-llama3": (LlamaConfig, LlamaForCausalLM, dict(
        num_key_value_heads=1, head_dim=16, tie_word_embeddings=True, attention_bias=True, rope_parameters=LLAMA3)),
    "llama-mha-mlpbias-linear": (LlamaConfig, LlamaForCausalLM, dict(
        num_key_value_heads=4, mlp_bias=True, rope_parameters={"rope_type": "linear", "rope_theta": 500.0,
                                                               "factor": 2.0})),
    "mistral-gqa": (MistralConfig, MistralForCausalLM, dict(num_key_value_heads=2, sliding_window=None)),
    "qwen2-gqa-qkvbias-tied": (Qwen2Config, Qwen2ForCausalLM, dict(num_key_value_heads=2, tie_word_embeddings=True)),
}


def build(case: str) -> torch.nn.Module:
    config_cls, model_cls, extra = CASES[case]
    return randomize(model_cls(config_cls(**{**BASE, **extra})), seed=len(case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_family_parity(case: str, tmp_path) -> None:
    check_decoder_only(build(case), tmp_path)


def test_imported_config_fields() -> None:
    """The behaviour comes from explicit fields: GQA, head_dim, biases, rope scaling and tying."""
    c = from_hf(build("llama-mqa-tied-hd16-bias-llama3")).config
    assert (c.n_kv_heads, c.head_dim, c.bias, c.use_qkv_bias, c.use_mlp_bias) == (1, 16, True, True, False)
    assert c.tie_embeddings and c.rope_scaling["rope_type"] == "llama3" and c.activation == "swiglu"
    q = from_hf(build("qwen2-gqa-qkvbias-tied")).config
    assert (q.bias, q.use_qkv_bias, q.use_mlp_bias, q.n_kv_heads) == (False, True, False, 2)


def test_rope_scaling_changes_logits() -> None:
    """The scaled rotary frequencies matter at these lengths, so the parity above really tests them."""
    hf = build("llama-mqa-tied-hd16-bias-llama3")
    um = from_hf(hf)
    plain = um.config.replace(rope_scaling=None)
    from unimask.models import build_model

    other = build_model(plain)
    other.load_state_dict(um.state_dict())
    ids, _ = padded([20], 128, pad=0, left=False)
    with torch.no_grad():
        assert (other(ids).logits - um(ids).logits).abs().max() > 1e-2
