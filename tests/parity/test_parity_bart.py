"""BART checkpoints: logits, greedy decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import TOL, check_generation, check_roundtrip, logits_diff, padded, randomize
from transformers import BartConfig, BartForConditionalGeneration

from unimask.interop import from_hf

BASE = dict(vocab_size=128, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
CASES = {
    "base-tied": {},
    "scaled-embedding-untied-3dec": dict(scale_embedding=True, tie_word_embeddings=False, decoder_layers=3),
}


def build(case: str) -> torch.nn.Module:
    model = BartForConditionalGeneration(BartConfig(**{**BASE, **CASES[case]}))
    # BART checkpoints share one embedding between the stacks even with an untied head (transformers 4 built
    # it so); transformers 5 unties all three when tie_word_embeddings is false, so share them here
    model.model.encoder.embed_tokens.weight = model.model.shared.weight
    model.model.decoder.embed_tokens.weight = model.model.shared.weight
    return randomize(model, seed=len(case))


def batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask = padded([14, 9, 4], 128, pad=1, left=False)
    dec = torch.randint(3, 128, (3, 7), generator=torch.Generator().manual_seed(3))
    dec[:, 0] = 2
    return ids, mask, dec


@pytest.mark.parametrize("case", sorted(CASES))
def test_bart_parity(case: str, tmp_path) -> None:
    hf = build(case)
    um = from_hf(hf)
    ids, mask, dec = batches()
    assert logits_diff(hf, um, ids, mask, dec) <= TOL
    check_generation(hf, um, ids, mask)
    check_roundtrip(hf, um, tmp_path, ids, mask, dec)


def test_bart_fields() -> None:
    c = from_hf(build("base-tied")).config
    assert (c.position, c.learned_pos_offset, c.embedding_norm, c.norm_position) == ("learned", 2, True, "post")
    assert (c.final_logits_bias, c.start_token_id, c.tie_embeddings) == (True, 2, True)
    u = from_hf(build("scaled-embedding-untied-3dec")).config
    assert (u.scale_embedding, u.tie_embeddings, u.n_layers, u.encoder_layers) == (True, False, 3, 2)


def test_final_logits_bias_is_used() -> None:
    hf = build("base-tied")
    um = from_hf(hf)
    assert um.final_logits_bias.abs().max() > 0
    assert torch.equal(um.final_logits_bias, hf.final_logits_bias[0])
