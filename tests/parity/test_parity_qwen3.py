"""Qwen3 checkpoints (QK-norm, attention_bias, sliding windows per layer): logits, greedy decoding and export
match transformers; Mistral/Qwen2 windows are honoured."""

from __future__ import annotations

import pytest
import torch
from hf_parity import check_decoder_only, padded, randomize
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from unimask.errors import ConfigError
from unimask.interop import from_hf, to_hf

BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CASES = {
    "qwen3-gqa-tied": (Qwen3Config, Qwen3ForCausalLM, dict(num_key_value_heads=2, head_dim=16,
                                                           tie_word_embeddings=True)),
    "qwen3-bias-window-layer1": (Qwen3Config, Qwen3ForCausalLM, dict(
        num_key_value_heads=1, attention_bias=True, use_sliding_window=True, sliding_window=4, max_window_layers=1)),
    "qwen2-window-all": (Qwen2Config, Qwen2ForCausalLM, dict(num_key_value_heads=2, use_sliding_window=True,
                                                             sliding_window=5, max_window_layers=0)),
    "mistral-window": (MistralConfig, MistralForCausalLM, dict(num_key_value_heads=2, sliding_window=3)),
}


def build(case: str) -> torch.nn.Module:
    config_cls, model_cls, extra = CASES[case]
    return randomize(model_cls(config_cls(**{**BASE, **extra})), seed=len(case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_qwen3_and_windowed_parity(case: str, tmp_path) -> None:
    check_decoder_only(build(case), tmp_path)


def test_qwen3_fields() -> None:
    c = from_hf(build("qwen3-bias-window-layer1")).config
    assert (c.qk_norm, c.bias, c.use_qkv_bias, c.use_mlp_bias) == (True, True, True, False)
    assert (c.sliding_window, c.sliding_window_layers) == (4, [1])
    m = from_hf(build("mistral-window")).config
    assert (m.sliding_window, m.sliding_window_layers) == (3, None)
    plain = from_hf(build("qwen3-gqa-tied")).config
    assert plain.sliding_window is None and plain.tie_embeddings


def test_window_changes_logits() -> None:
    """The window matters at these lengths, so the parity above really tests it."""
    um = from_hf(build("qwen3-bias-window-layer1"))
    from unimask.models import build_model

    other = build_model(um.config.replace(sliding_window=None, sliding_window_layers=None))
    other.load_state_dict(um.state_dict())
    ids, _ = padded([12], 128, pad=0, left=False)
    with torch.no_grad():
        assert (other(ids).logits - um(ids).logits).abs().max() > 1e-2


def test_window_larger_than_context_is_refused(tmp_path) -> None:
    hf = Qwen3ForCausalLM(Qwen3Config(**{**BASE, "use_sliding_window": True, "sliding_window": 256,
                                         "max_window_layers": 0}))
    hf.save_pretrained(tmp_path / "q")
    with pytest.raises(ConfigError, match="'sliding_window': window 256 is larger than the context"):
        from_hf(tmp_path / "q")


def test_llama_export_refuses_a_window(tmp_path) -> None:
    um = from_hf(build("qwen3-bias-window-layer1"))
    with pytest.raises(ConfigError, match="sliding_window"):
        to_hf(um, tmp_path / "out", model_type="llama")
    assert not (tmp_path / "out").exists()
