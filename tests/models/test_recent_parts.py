"""The parts of recent decoders (QK-norm, partial rotary, sandwich norms, (1 + w) RMSNorm, sliding windows per
layer with a local rotary base, soft-caps, query pre-attention scalar, scaled embeddings, a separate encoder
embedding) in all three families: cached decoding equals the full forward pass, cached and uncached greedy
tokens agree, the parameter calculator counts every part, and the window mask is what it says."""

from __future__ import annotations

import pytest
import torch
from test_kv_cache import NEW, PROMPTS, _full_forward_logits

from unimask import build_model, preset
from unimask.analysis.params import count_parameters
from unimask.errors import ConfigError
from unimask.generation import generate_stream
from unimask.models import masks

ALL_PARTS = dict(qk_norm=True, sandwich_norm=True, norm_unit_offset=True, rotary_fraction=0.5, sliding_window=3,
                 sliding_window_layers=[1], local_rope_theta=100.0, attn_softcap=2.0, final_logit_softcap=5.0,
                 query_pre_attn_scalar=8.0, scale_embedding=True, init_std=0.3)
CASES = [
    ("tiny-causal", ALL_PARTS),
    ("tiny-causal", {**ALL_PARTS, "sliding_window_layers": None, "rotary_fraction": 1.0}),  # every layer windowed
    ("tiny-prefix", ALL_PARTS),
    ("tiny-encdec", {**ALL_PARTS, "position": "rope", "encoder_embedding": True}),
    ("tiny-encdec", {**ALL_PARTS, "rotary_fraction": 1.0, "local_rope_theta": None}),  # T5 positions, windowed
]


def _model(name: str, overrides: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(preset(name, **overrides)).eval()
    with torch.no_grad():  # norms away from their initial gains, so a misplaced norm shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_cached_decoding_equals_full_forward(name: str, overrides: dict) -> None:
    model = _model(name, overrides)
    steps = list(generate_stream(model, PROMPTS, max_new_tokens=NEW, do_sample=True, seed=3, eos_token_id=-1))
    cached = torch.stack([s.logits for s in steps], 1)  # (B, N, V)
    with torch.no_grad():
        full = _full_forward_logits(model, steps)
    assert cached.shape == full.shape
    assert (cached - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_cached_and_uncached_greedy_tokens_agree(name: str, overrides: dict) -> None:
    model = _model(name, overrides)
    a = model.generate(PROMPTS, max_new_tokens=NEW, use_cache=True)
    b = model.generate(PROMPTS, max_new_tokens=NEW, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_parameter_count_knows_every_part(name: str, overrides: dict) -> None:
    config = preset(name, **overrides)
    model = build_model(config)
    assert count_parameters(config).total == sum(p.numel() for p in model.parameters())


def test_each_part_changes_the_output() -> None:
    """Turning any one part off changes the logits (so the tests above exercise every part)."""
    base = _model("tiny-prefix", ALL_PARTS)
    ids = torch.tensor([PROMPTS[0] * 2])
    lengths = torch.tensor([4])
    with torch.no_grad():
        ref = base(ids, prefix_lengths=lengths).logits
        for field, off in [("sliding_window_layers", []), ("local_rope_theta", None), ("attn_softcap", None),
                           ("final_logit_softcap", None), ("query_pre_attn_scalar", None),
                           ("rotary_fraction", 1.0), ("norm_unit_offset", False)]:
            change = {field: off} if field != "sliding_window_layers" else {"sliding_window": None,
                                                                             "sliding_window_layers": None}
            other = build_model(base.config.replace(**change)).eval()
            other.load_state_dict(base.state_dict())
            assert (other(ids, prefix_lengths=lengths).logits - ref).abs().max() > 1e-4, field


def test_window_masks() -> None:
    causal = masks.windowed(masks.decoder_self_attention(1, 6), 3).to_dense()[0]
    expected = torch.tensor([[0 <= q - k < 3 for k in range(6)] for q in range(6)])
    assert torch.equal(causal, expected)
    cached = masks.windowed(masks.decoder_self_attention(1, 2, past=4), 3).to_dense()[0]  # queries at 4, 5
    assert torch.equal(cached, expected[4:])
    enc = masks.windowed(masks.encoder_self_attention(1, 5), 2).to_dense()[0]
    assert torch.equal(enc, torch.tensor([[abs(q - k) < 2 for k in range(5)] for q in range(5)]))
    wide = masks.decoder_self_attention(1, 4)
    assert masks.windowed(wide, 4) is wide  # a window covering every key changes nothing


def test_bad_windows_are_one_clear_message() -> None:
    with pytest.raises(ConfigError, match="'sliding_window': window 300 is larger than the context"):
        preset("tiny-causal", sliding_window=300)
    with pytest.raises(ConfigError, match="'sliding_window_layers'"):
        preset("tiny-causal", sliding_window=4, sliding_window_layers=[2])
    with pytest.raises(ConfigError, match="'encoder_embedding'"):
        preset("tiny-causal", encoder_embedding=True)
