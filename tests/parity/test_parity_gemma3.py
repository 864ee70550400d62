"""Gemma 3 text checkpoints ((1 + w) RMSNorm, four norms per block, QK-norm, scaled embeddings, query
pre-attention scalar, local/global layers with their own rotary bases, final-logit soft-cap): logits, greedy
decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import check_decoder_only, padded, randomize
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from unimask.errors import ConfigError
from unimask.interop import from_hf
from unimask.models import build_model

BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=128, sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"], query_pre_attn_scalar=24,
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10.0}})
CASES = {
    "gemma3-local-global-tied": {},
    "gemma3-softcap-untied-mqa-linear": dict(
        num_key_value_heads=1, tie_word_embeddings=False, final_logit_softcapping=3.0,
        rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10.0}}),
    "gemma3-all-global": dict(layer_types=["full_attention"] * 3, attention_bias=True),
}


def build(case: str) -> torch.nn.Module:
    model = randomize(Gemma3ForCausalLM(Gemma3TextConfig(**{**BASE, **CASES[case]})), seed=len(case))
    scale = model.model.embed_tokens.embed_scale  # a buffer that randomize redraws: back to sqrt(d)
    scale.fill_(model.config.hidden_size ** 0.5)
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_gemma3_parity(case: str, tmp_path) -> None:
    check_decoder_only(build(case), tmp_path)


def test_gemma3_fields() -> None:
    c = from_hf(build("gemma3-softcap-untied-mqa-linear")).config
    assert (c.norm_unit_offset, c.sandwich_norm, c.qk_norm, c.scale_embedding) == (True, True, True, True)
    assert (c.sliding_window, c.sliding_window_layers, c.local_rope_theta, c.rope_theta) == (4, [0, 2], 10.0, 1000.0)
    assert (c.query_pre_attn_scalar, c.final_logit_softcap, c.activation, c.gelu_approximate) == (
        24.0, 3.0, "gated-gelu", "tanh")
    assert c.rope_scaling == {"rope_type": "linear", "factor": 2.0} and not c.tie_embeddings


@pytest.mark.parametrize("change", [dict(local_rope_theta=1000.0), dict(final_logit_softcap=None),
                                    dict(query_pre_attn_scalar=None), dict(norm_unit_offset=False)])
def test_each_gemma_part_changes_logits(change) -> None:
    """Each part matters at these sizes, so the parity above really tests it."""
    um = from_hf(build("gemma3-softcap-untied-mqa-linear"))
    other = build_model(um.config.replace(**change))
    other.load_state_dict(um.state_dict())
    ids, _ = padded([12], 128, pad=0, left=False)
    with torch.no_grad():
        assert (other(ids).logits - um(ids).logits).abs().max() > 1e-3


def test_bidirectional_gemma_is_refused(tmp_path) -> None:
    hf = Gemma3ForCausalLM(Gemma3TextConfig(**{**BASE, "use_bidirectional_attention": True}))
    hf.save_pretrained(tmp_path / "g")
    with pytest.raises(ConfigError, match="use_bidirectional_attention = true"):
        from_hf(tmp_path / "g")
