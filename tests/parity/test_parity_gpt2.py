"""GPT-2 checkpoints: logits, greedy decoding and export match transformers (Conv1D weights transposed)."""

from __future__ import annotations

import pytest
import torch
from hf_parity import check_decoder_only, logits_diff, padded, randomize
from transformers import GPT2Config, GPT2LMHeadModel

from unimask.interop import from_hf

BASE = dict(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=2, eos_token_id=2,
            pad_token_id=0)
CASES = {
    "gelu_new-tied": {},
    "gelu-untied-ninner": dict(activation_function="gelu", tie_word_embeddings=False, n_inner=48),
    "relu-unscaled-attn": dict(activation_function="relu", scale_attn_weights=False, layer_norm_epsilon=1e-6),
}


def build(case: str) -> torch.nn.Module:
    return randomize(GPT2LMHeadModel(GPT2Config(**{**BASE, **CASES[case]})), seed=len(case))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gpt2_parity(case: str, tmp_path) -> None:
    check_decoder_only(build(case), tmp_path)


def test_gpt2_fields() -> None:
    c = from_hf(build("gelu_new-tied")).config
    assert (c.position, c.activation, c.gelu_approximate, c.bias, c.tie_embeddings) == (
        "learned", "gelu", "tanh", True, True)
    u = from_hf(build("gelu-untied-ninner")).config
    assert (u.gelu_approximate, u.tie_embeddings, u.d_ff) == ("none", False, 48)


def test_conv1d_transpose_is_needed() -> None:
    """Loading c_attn without the transpose gives different logits (the rule is not a no-op on square blocks)."""
    hf = build("gelu_new-tied")
    um = from_hf(hf)
    w = um.decoder.layers[0].attn.q_proj.weight
    with torch.no_grad():
        w.copy_(w.t().clone())
    ids, mask = padded([8], 128, pad=0, left=False)
    assert logits_diff(hf, um, ids, mask) > 1e-2
