"""The loss from hidden states equals F.cross_entropy on the full logits, in value and in gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unimask.models.loss as loss_mod
from unimask import build_model
from unimask.models.loss import linear_cross_entropy


def _reference(h, weight, bias, labels):
    logits = F.linear(h, weight, bias)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [2**22, 400])  # one chunk, and many (400 // 50 -> 8 rows each)
def test_value_and_gradients_match_full_logits(monkeypatch, with_bias, chunk):
    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(loss_mod, "MIN_ROWS", 1)
    torch.manual_seed(0)
    h = torch.randn(3, 37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, dtype=torch.float64) if with_bias else None
    labels = torch.randint(0, 50, (3, 37))
    labels[0, :10] = -100  # a prefix
    labels[2, -5:] = -100  # padding
    got, n = linear_cross_entropy(h, weight, bias, labels)
    assert int(n) == int((labels != -100).sum())
    (2.5 * got).backward()
    gh, gw = h.grad.clone(), weight.grad.clone()
    h.grad = weight.grad = None
    want = _reference(h, weight, bias, labels)
    (2.5 * want).backward()
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gh, h.grad, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gw, weight.grad, rtol=1e-6, atol=1e-9)
    assert gh[0, :10].abs().max() == 0 and gh[2, -5:].abs().max() == 0  # ignored rows get no gradient


def test_without_grad_and_without_any_loss_token():
    torch.manual_seed(1)
    h, weight = torch.randn(2, 9, 8), torch.randn(30, 8)
    labels = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        got, _ = linear_cross_entropy(h, weight, None, labels)
    torch.testing.assert_close(got, _reference(h, weight, None, labels), rtol=1e-5, atol=1e-5)
    none, n = linear_cross_entropy(h.requires_grad_(), weight, None, torch.full((2, 9), -100))
    assert float(none.detach()) == 0.0 and int(n) == 0


SMALL = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "vocab_size": 96, "max_seq_len": 64}
MODELS = {
    "causal": "tiny-causal", "prefix": "tiny-prefix", "encdec": "tiny-encdec", "glm": "tiny-glm",
    # tied head + final logits bias (BART); tied head rescaled by d**-0.5 (T5 v1.0)
    "bart": {"preset": "bart-base", **SMALL, "n_encoder_layers": 2},
    "t5": {"preset": "t5-small", **SMALL, "n_encoder_layers": 2},
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_train_the_same_as_with_full_logits(name):
    """Model loss and every parameter gradient equal those of F.cross_entropy on the model's own logits."""
    torch.manual_seed(0)
    model = build_model(MODELS[name]).double()
    if name == "bart":
        assert model.config.final_logits_bias and model.config.tie_embeddings
        with torch.no_grad():
            model.final_logits_bias.normal_()
    if name == "t5":
        assert model.config.scale_tied_output and model.config.tie_embeddings
    V = model.config.vocab_size
    ids = torch.randint(4, V, (2, 12))
    labels = ids.clone()
    labels[:, :3] = -100
    kw = {"labels": labels}
    if model.config.arch == "encoder_decoder":
        kw["decoder_input_ids"] = ids
    elif model.config.arch == "prefix":
        kw["prefix_lengths"] = torch.tensor([3, 5])
    out = model(ids, **kw)
    out.loss.backward()
    fused = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    out2 = model(ids, **kw)
    ref = F.cross_entropy(out2.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)  # logits on demand
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-9, atol=1e-9)
    assert fused.keys() == {k for k, p in model.named_parameters() if p.grad is not None}
    for k, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(fused[k], p.grad, rtol=1e-7, atol=1e-10, msg=k)
