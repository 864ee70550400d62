"""What each family's mask means for the model: which logits can change when one token changes."""

from __future__ import annotations

import pytest
import torch

from unimask import build_model, preset


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per position: did any logit change?  a, b: (1, T, V) -> (T,)"""
    return (a - b).abs().amax(-1)[0] > 1e-6


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-glm"])
def test_causal_decoder_never_sees_the_future(name: str) -> None:
    model = build_model(preset(name, arch="causal")).eval()
    ids = torch.randint(3, 500, (1, 10))
    j = 6
    other = ids.clone()
    other[0, j] = (ids[0, j] + 1) % 500
    with torch.no_grad():
        changed = _changed(model(ids).logits, model(other).logits)
    assert not changed[:j].any()
    assert changed[j:].all()


@pytest.mark.parametrize("name", ["tiny-prefix", "tiny-glm"])
def test_prefix_decoder_prefix_is_bidirectional_answer_is_causal(name: str) -> None:
    model = build_model(name).eval()
    ids = torch.randint(3, 500, (1, 10))
    plen = torch.tensor([6])
    prefix_token, answer_token = 4, 8
    with torch.no_grad():
        base = model(ids, prefix_lengths=plen).logits
        a = ids.clone()
        a[0, prefix_token] += 1
        changed_prefix = _changed(base, model(a, prefix_lengths=plen).logits)
        b = ids.clone()
        b[0, answer_token] += 1
        changed_answer = _changed(base, model(b, prefix_lengths=plen).logits)
    assert changed_prefix[:prefix_token].all(), "earlier prefix positions must see a later prefix token"
    assert changed_prefix.all()
    assert not changed_answer[:answer_token].any(), "an answer token must never change earlier logits"
    assert changed_answer[answer_token:].all()


def test_encoder_decoder_every_decoder_position_sees_every_encoder_token() -> None:
    model = build_model("tiny-encdec").eval()
    src = torch.randint(3, 500, (1, 7))
    dec = torch.randint(3, 500, (1, 5))
    other = src.clone()
    other[0, 6] += 1  # the last encoder token
    with torch.no_grad():
        changed = _changed(model(src, decoder_input_ids=dec).logits, model(other, decoder_input_ids=dec).logits)
        d2 = dec.clone()
        d2[0, 3] += 1
        changed_dec = _changed(model(src, decoder_input_ids=dec).logits, model(src, decoder_input_ids=d2).logits)
    assert changed.all()
    assert not changed_dec[:3].any() and changed_dec[3:].all()


def test_packed_examples_never_influence_each_other() -> None:
    model = build_model("tiny-prefix").eval()
    ids = torch.randint(3, 500, (1, 9))
    seg = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2, 2]])
    flags = torch.tensor([[1, 1, 0, 0, 1, 1, 1, 0, 0]]).bool()
    other = ids.clone()
    other[0, 1] += 1  # a prefix token of example 1
    with torch.no_grad():
        a = model(ids, segment_ids=seg, is_prefix=flags).logits
        b = model(other, segment_ids=seg, is_prefix=flags).logits
        # example 2 alone, in a row of its own, gives the same logits as packed
        alone = model(ids[:, 4:], is_prefix=flags[:, 4:]).logits
    changed = _changed(a, b)
    assert changed[:4].all() and not changed[4:].any()
    torch.testing.assert_close(a[:, 4:], alone, atol=1e-5, rtol=0)


def test_loss_counts_only_labelled_tokens() -> None:
    model = build_model("tiny-causal").eval()
    ids = torch.randint(3, 500, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[0, 2:5] = ids[0, 3:6]
    out = model(ids, labels=labels)
    assert int(out.n_loss_tokens) == 3
    manual = torch.nn.functional.cross_entropy(out.logits[0, 2:5], ids[0, 3:6])
    torch.testing.assert_close(out.loss, manual)
