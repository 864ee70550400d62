"""Cached decoding equals the full forward pass for all three families (fp32, max abs diff <= 1e-5)."""

from __future__ import annotations

import pytest
import torch

from unimask import build_model, preset
from unimask.generation import generate_stream, pad_prompts

PROMPTS = [[5, 17, 42, 9, 33, 8, 71], [7, 8, 99], [11, 12, 13, 14, 15]]
NEW = 8

CASES = [
    ("tiny-causal", {}),
    ("tiny-causal", {"n_kv_heads": 1}),  # MQA
    ("tiny-causal", {"n_kv_heads": 4, "position": "learned"}),  # MHA, learned positions
    ("tiny-prefix", {}),  # GQA (4 heads, 2 kv heads)
    ("tiny-prefix", {"n_kv_heads": 1, "position": "t5_relative"}),
    ("tiny-glm", {}),
    ("tiny-encdec", {}),
    ("tiny-encdec", {"n_kv_heads": 1}),
    ("tiny-encdec", {"position": "learned", "learned_pos_offset": 2, "norm_position": "post", "bias": True,
                     "embedding_norm": True, "final_logits_bias": True}),  # BART-like
    ("tiny-causal", {"parallel_block": True, "norm": "layernorm", "head_dim": 32}),  # PaLM-like
]


def _full_forward_logits(model, steps) -> torch.Tensor:
    """Logits at every generated position, recomputed without a cache from the final sequences."""
    cfg = model.config
    new = torch.stack([s.tokens for s in steps], 1)  # (B, N)
    if cfg.arch == "encoder_decoder":
        src, src_mask = pad_prompts(PROMPTS, cfg.pad_token_id, left=False)
        start = torch.full((len(PROMPTS), 1), cfg.start_token_id)
        dec = torch.cat([start, new[:, :-1]], 1)
        return model(src, attention_mask=src_mask, decoder_input_ids=dec).logits
    ids, mask = pad_prompts(PROMPTS, cfg.pad_token_id, left=True)
    P = ids.shape[1]
    seq = torch.cat([ids, new[:, :-1]], 1)
    full_mask = torch.cat([mask, torch.ones_like(new[:, :-1])], 1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    block = None
    if cfg.position == "glm2d":  # generated tokens keep the last prompt position, block positions 1, 2, ...
        positions[:, P:] = positions[:, P - 1:P]
        block = torch.zeros_like(positions)
        block[:, P:] = torch.arange(1, new.shape[1])
    flags = torch.cat([mask.bool(), torch.zeros_like(new[:, :-1], dtype=torch.bool)], 1)
    out = model(seq, attention_mask=full_mask, is_prefix=flags, position_ids=positions, block_position_ids=block)
    return out.logits[:, P - 1:]


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_cached_decoding_equals_full_forward(name: str, overrides: dict) -> None:
    model = build_model(preset(name, **overrides)).eval()
    steps = list(generate_stream(model, PROMPTS, max_new_tokens=NEW, do_sample=True, seed=3, eos_token_id=-1))
    assert len(steps) == NEW
    cached = torch.stack([s.logits for s in steps], 1)  # (B, N, V)
    with torch.no_grad():
        full = _full_forward_logits(model, steps)
    assert cached.shape == full.shape
    diff = (cached - full).abs().max().item()
    assert diff <= 1e-5, f"max abs diff {diff}"


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-encdec"])
def test_cached_and_uncached_greedy_tokens_agree(name: str) -> None:
    model = build_model(name).eval()
    a = model.generate(PROMPTS, max_new_tokens=NEW, use_cache=True)
    b = model.generate(PROMPTS, max_new_tokens=NEW, use_cache=False)
    assert torch.equal(a, b)


def test_batched_generation_matches_one_prompt_at_a_time() -> None:
    model = build_model("tiny-causal").eval()
    batch = model.generate(PROMPTS, max_new_tokens=NEW)
    for i, p in enumerate(PROMPTS):
        single = model.generate([p], max_new_tokens=NEW)
        assert torch.equal(batch[i], single[0])


@pytest.mark.parametrize("use_cache", [True, False])
def test_eos_stops_and_pads(use_cache: bool) -> None:
    """A row that produced EOS is padded afterwards, with pad (not EOS: here they differ), and the other rows go on."""
    pad = 3
    model = build_model(preset("tiny-causal", pad_token_id=pad, init_std=0.2)).eval()
    free = model.generate(PROMPTS, max_new_tokens=6, eos_token_id=-1, use_cache=use_cache)
    eos = int(free[0, 1])
    assert eos != pad and pad not in free.tolist()[0]  # so that padding is visible
    out = model.generate(PROMPTS, max_new_tokens=6, eos_token_id=eos, use_cache=use_cache)
    for row, ref in zip(out.tolist(), free.tolist()):
        if eos not in ref:
            assert row == ref  # never stopped
            continue
        k = ref.index(eos)
        assert row[:k + 1] == ref[:k + 1]  # the same tokens up to and including EOS
        assert row[k + 1:] == [pad] * (len(row) - k - 1)
    assert out[0, 2:].tolist() == [pad] * 4


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k() -> None:
    model = build_model("tiny-causal").eval()
    a = model.generate(PROMPTS, max_new_tokens=6, do_sample=True, temperature=1.5, seed=7)
    b = model.generate(PROMPTS, max_new_tokens=6, do_sample=True, temperature=1.5, seed=7)
    c = model.generate(PROMPTS, max_new_tokens=6, do_sample=True, temperature=1.5, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = model.generate(PROMPTS, max_new_tokens=6)
    top1 = model.generate(PROMPTS, max_new_tokens=6, do_sample=True, top_k=1, seed=1)
    assert torch.equal(greedy, top1)


@pytest.mark.parametrize(("name", "overrides"), [("tiny-prefix", {}), ("tiny-prefix", {"position": "learned"}),
                                                 ("tiny-glm", {})])
def test_infilling_decodes_part_b_at_the_blanks_position(name: str, overrides: dict) -> None:
    """With ``mask_position`` the decoder lays Part B out as the GLM objective does in training: ``[sop]`` and
    every generated token take the blank's position (GLM 2D: block positions 1, 2, ...), causally."""
    model = build_model(preset(name, **overrides)).eval()
    prompt = [5, 17, 42, 3, 9, 33, 6]  # a "blank" at index 3, the last token opens Part B
    m = 3
    steps = list(generate_stream(model, [prompt], max_new_tokens=NEW, do_sample=True, seed=5, eos_token_id=-1,
                                 mask_position=torch.tensor([m])))
    new = torch.stack([s.tokens for s in steps], 1)  # (1, N)
    S = len(prompt) - 1  # Part A
    row = torch.cat([torch.tensor([prompt]), new[:, :-1]], 1)
    T = row.shape[1] - S  # [sop] + generated tokens fed back
    positions = torch.tensor([list(range(S)) + [m] * T])
    block = torch.tensor([[0] * S + list(range(1, T + 1))]) if model.config.position == "glm2d" else None
    flags = torch.tensor([[True] * S + [False] * T])
    with torch.no_grad():
        full = model(row, is_prefix=flags, position_ids=positions, block_position_ids=block).logits[:, S:]
    cached = torch.stack([s.logits for s in steps], 1)
    assert (cached - full).abs().max().item() <= 1e-5
    plain = model.generate([prompt], max_new_tokens=NEW, do_sample=True, seed=5, eos_token_id=-1,
                           mask_position=torch.tensor([m]), use_cache=False)
    assert torch.equal(plain, new)
