"""One attention signature, several backends: eager and SDPA agree; eager returns the probabilities."""

from __future__ import annotations

import pytest
import torch

from unimask import build_model, preset
from unimask.models.attention import attend
from unimask.models.masks import decoder_self_attention


@pytest.mark.parametrize(("name", "overrides"), [("tiny-causal", {}), ("tiny-prefix", {"n_kv_heads": 1}),
                                                 ("tiny-encdec", {}), ("tiny-glm", {})])
def test_eager_and_sdpa_agree(name: str, overrides: dict) -> None:
    model = build_model(preset(name, **overrides)).eval()
    ids = torch.randint(3, 500, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    kwargs = {"decoder_input_ids": ids[:, :4]} if model.config.arch == "encoder_decoder" else {
        "prefix_lengths": torch.tensor([3, 2])}
    with torch.no_grad():
        a = model(ids, attention_mask=mask, **kwargs).logits
        model.set_attention_backend("eager")
        b = model(ids, attention_mask=mask, **kwargs).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_eager_probabilities_respect_the_mask() -> None:
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    mask = decoder_self_attention(1, 5)
    out, probs = attend(q, k, v, mask, scale=8 ** -0.5, return_probs=True)
    assert probs is not None and probs.shape == (1, 4, 5, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 4, 5))
    assert (probs.masked_select(~mask.to_dense()[0]) == 0).all()
    ref, _ = attend(q, k, v, mask, scale=8 ** -0.5, backend="sdpa")
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_model_returns_attentions_per_layer() -> None:
    model = build_model("tiny-prefix").eval()
    out = model(torch.randint(3, 500, (1, 6)), prefix_lengths=torch.tensor([6]), return_attentions=True)
    assert out.attentions is not None and len(out.attentions) == model.config.n_layers
    assert out.attentions[0].shape == (1, model.config.n_heads, 6, 6)
    assert (out.attentions[0] > 0).all()  # fully bidirectional: every entry positive
