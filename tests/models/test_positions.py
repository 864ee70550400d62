"""Positions by hand: GLM's 2D rotary embedding, and default positions that continue after a KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from unimask import ModelConfig, build_model, preset
from unimask.models.layers import RotaryPositions, rotate_qk


def test_glm_2d_rotary_rotates_each_half_by_its_own_position() -> None:
    """A 4-dim head (ChatGLM's 2D RoPE, Du et al. 2022 section 2.2): dims 0-1 turn by the position p, dims 2-3
    by the block position b; with 2 dims per half the only frequency is theta^0 = 1, so the angles are p and b."""
    cfg = ModelConfig(arch="prefix", position="glm2d", d_model=8, n_heads=2)  # head_dim 4
    rope = RotaryPositions(cfg)(torch.tensor([[2]]), torch.tensor([[3]]))
    q = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)  # (B, H, T, hd)
    k = torch.tensor([0.5, -1.0, 2.0, 0.0]).view(1, 1, 1, 4)
    rq, rk = rotate_qk(q, k, rope)
    c2, s2, c3, s3 = math.cos(2), math.sin(2), math.cos(3), math.sin(3)
    # rotate-half within each half: (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)
    assert rq.flatten().tolist() == pytest.approx([1 * c2 - 2 * s2, 2 * c2 + 1 * s2, 3 * c3 - 4 * s3, 4 * c3 + 3 * s3])
    assert rk.flatten().tolist() == pytest.approx([0.5 * c2 + 1 * s2, -1 * c2 + 0.5 * s2, 2 * c3, 2 * s3])
    # block position 0 (Part A) leaves the second half as it is
    rq0, _ = rotate_qk(q, k, RotaryPositions(cfg)(torch.tensor([[2]]), torch.tensor([[0]])))
    assert rq0.flatten()[2:].tolist() == pytest.approx([3.0, 4.0])


def test_part_b_block_positions_change_part_b_logits_only() -> None:
    torch.manual_seed(0)
    model = build_model(preset("tiny-glm", init_std=0.2)).eval()
    ids = torch.tensor([[11, 12, 3, 14, 15, 6, 40, 41]])  # Part A (5 tokens, a [MASK] at 2), Part B [sop] + 2
    flags = torch.tensor([[True] * 5 + [False] * 3])
    pos = torch.tensor([[0, 1, 2, 3, 4, 2, 2, 2]])
    with torch.no_grad():
        right = model(ids, is_prefix=flags, position_ids=pos, block_position_ids=torch.tensor([[0] * 5 + [1, 2, 3]]))
        other = model(ids, is_prefix=flags, position_ids=pos, block_position_ids=torch.tensor([[0] * 5 + [1, 1, 1]]))
    assert torch.equal(right.logits[:, :6], other.logits[:, :6])  # Part A and [sop] (block 1 in both) unchanged
    assert (right.logits[:, 6:] - other.logits[:, 6:]).abs().max() > 1e-3  # the block position is used


CASES = [
    ("tiny-causal", {}),  # RoPE
    ("tiny-causal", {"position": "learned"}),
    ("tiny-prefix", {}),
    ("tiny-glm", {}),
    ("tiny-encdec", {"position": "rope"}),
    ("tiny-encdec", {"position": "learned", "learned_pos_offset": 2}),
]


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_default_positions_continue_after_the_cache(name: str, overrides: dict) -> None:
    """Without position_ids, ``model(ids[:, :k], cache)`` then ``model(ids[:, k:], cache)`` equals ``model(ids)``:
    the second chunk's positions start at the cache length, not at 0 (decoder, and encoder-decoder decoder)."""
    torch.manual_seed(0)
    model = build_model(preset(name, init_std=0.2, **overrides)).eval()
    ids = torch.randint(12, 500, (2, 9))
    k = 4
    with torch.no_grad():
        if model.config.arch == "encoder_decoder":
            src = torch.randint(12, 500, (2, 6))
            full = model(src, decoder_input_ids=ids).logits
            cache = model.make_cache(2, 9, 6)
            first = model(src, decoder_input_ids=ids[:, :k], cache=cache).logits
            second = model(src, decoder_input_ids=ids[:, k:], cache=cache).logits
        else:
            full = model(ids).logits
            cache = model.make_cache(2, 9)
            first = model(ids[:, :k], cache=cache).logits
            second = model(ids[:, k:], cache=cache).logits
    assert (torch.cat([first, second], 1) - full).abs().max() <= 1e-5
