"""T5 v1.0 and v1.1 / Flan-T5 checkpoints: logits, greedy decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import TOL, check_generation, check_roundtrip, logits_diff, padded, randomize
from transformers import T5Config, T5ForConditionalGeneration

from unimask.interop import from_hf

BASE = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, decoder_start_token_id=0,
            pad_token_id=0, eos_token_id=1)
CASES = {
    "v1.0-relu-tied": {},
    "v1.0-relu-hd16-3dec": dict(d_kv=16, num_decoder_layers=3),
    "v1.1-gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "v1.1-gated-gelu-tied-unscaled": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def build(case: str) -> torch.nn.Module:
    model = T5ForConditionalGeneration(T5Config(**{**BASE, **CASES[case]}))
    if case == "v1.1-gated-gelu-untied":  # transformers 5 ties T5's head in memory; Flan-T5 checkpoints do not
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
    return randomize(model, seed=len(case))


def batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask = padded([14, 9, 4], 128, pad=0, left=False)  # right-padded encoder input
    dec = torch.randint(2, 128, (3, 7), generator=torch.Generator().manual_seed(3))
    dec[:, 0] = 0
    return ids, mask, dec


@pytest.mark.parametrize("case", sorted(CASES))
def test_t5_parity(case: str, tmp_path) -> None:
    hf = build(case)
    um = from_hf(hf)
    ids, mask, dec = batches()
    assert logits_diff(hf, um, ids, mask, dec) <= TOL
    # transformers 5.24 sizes T5's decoder cache by the encoder depth, so decoders deeper than their encoder
    # fail inside transformers' cached generate; its uncached decoding is the reference there
    check_generation(hf, um, ids, mask, hf_cache=um.config.n_layers <= um.config.encoder_layers)
    check_roundtrip(hf, um, tmp_path, ids, mask, dec)


def test_t5_fields() -> None:
    v10 = from_hf(build("v1.0-relu-tied")).config
    assert (v10.activation, v10.tie_embeddings, v10.scale_tied_output, v10.scale_attention) == (
        "relu", True, True, False)
    assert (v10.position, v10.rel_buckets, v10.rel_max_distance, v10.start_token_id) == ("t5_relative", 8, 16, 0)
    v11 = from_hf(build("v1.1-gated-gelu-untied")).config
    assert (v11.activation, v11.gelu_approximate, v11.tie_embeddings) == ("gated-gelu", "tanh", False)


def test_t5_untied_head_from_directory(tmp_path) -> None:
    """A Flan-T5-style directory (separate lm_head.weight, tie_word_embeddings false) imports untied."""
    hf = build("v1.1-gated-gelu-untied")
    hf.save_pretrained(tmp_path / "flan")
    um = from_hf(tmp_path / "flan")
    assert not um.config.tie_embeddings
    assert torch.equal(um.lm_head.weight, hf.lm_head.weight)
    ids, mask, dec = batches()
    assert logits_diff(hf, um, ids, mask, dec) <= TOL
