"""GLM and GLM-4 checkpoints (partial interleaved rotary, fused gate/up, q/k/v biases; GLM-4's sandwich norms):
logits, greedy decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import check_decoder_only, padded, randomize
from transformers import Glm4Config, Glm4ForCausalLM, GlmConfig, GlmForCausalLM

from unimask.interop import from_hf
from unimask.models import build_model

BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)
CASES = {
    "glm-gqa-half-rotary": (GlmConfig, GlmForCausalLM, {}),
    "glm4-gqa-half-rotary": (Glm4Config, Glm4ForCausalLM, {}),
    "glm4-mqa-quarter-rotary-tied-nobias": (Glm4Config, Glm4ForCausalLM, dict(
        num_key_value_heads=1, tie_word_embeddings=True, attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25})),
}


def build(case: str) -> torch.nn.Module:
    config_cls, model_cls, extra = CASES[case]
    return randomize(model_cls(config_cls(**{**BASE, **extra})), seed=len(case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_glm_parity(case: str, tmp_path) -> None:
    check_decoder_only(build(case), tmp_path)


def test_glm_fields() -> None:
    c = from_hf(build("glm4-gqa-half-rotary")).config
    assert (c.rotary_fraction, c.rotary_dim, c.sandwich_norm, c.use_qkv_bias, c.bias) == (0.5, 8, True, True, False)
    g = from_hf(build("glm-gqa-half-rotary")).config
    assert not g.sandwich_norm and not g.tie_embeddings
    q = from_hf(build("glm4-mqa-quarter-rotary-tied-nobias")).config
    assert (q.rotary_dim, q.rope_theta, q.use_qkv_bias, q.tie_embeddings) == (4, 500.0, False, True)


def test_partial_rotary_changes_logits() -> None:
    um = from_hf(build("glm4-gqa-half-rotary"))
    other = build_model(um.config.replace(rotary_fraction=1.0))
    other.load_state_dict(um.state_dict())
    ids, _ = padded([12], 128, pad=0, left=False)
    with torch.no_grad():
        assert (other(ids).logits - um(ids).logits).abs().max() > 1e-2
