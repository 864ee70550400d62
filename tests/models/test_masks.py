"""Masks against hand-written arrays for each family, packed segments included (mask functions and the family
builders, materialised as dense bool masks)."""

from __future__ import annotations

import torch

from unimask.models import masks

T, F = True, False


def test_causal_matches_hand_written() -> None:
    expected = torch.tensor([[T, F, F], [T, T, F], [T, T, T]])
    assert torch.equal(masks.materialise(masks.causal_fn(), 1, 3, 3)[0], expected)


def test_causal_with_offset_for_cached_decoding() -> None:
    # two cached positions, one new query at absolute position 2 sees keys 0..2
    assert torch.equal(masks.materialise(masks.causal_fn(2), 1, 1, 3)[0], torch.tensor([[T, T, T]]))
    assert torch.equal(masks.materialise(masks.causal_fn(2), 1, 2, 4)[0], torch.tensor([[T, T, T, F], [T, T, T, T]]))
    got = masks.decoder_self_attention(1, 2, past=2).to_dense()[0]
    assert torch.equal(got, torch.tensor([[T, T, T, F], [T, T, T, T]]))


def test_prefix_matches_hand_written() -> None:
    expected = torch.tensor([
        [T, T, F, F, F],
        [T, T, F, F, F],
        [T, T, T, F, F],
        [T, T, T, T, F],
        [T, T, T, T, T],
    ])
    got = masks.decoder_self_attention(1, 5, prefix_lengths=torch.tensor([2])).to_dense()
    assert got.shape == (1, 5, 5)
    assert torch.equal(got[0], expected)


def test_prefix_per_example_lengths() -> None:
    got = masks.decoder_self_attention(2, 3, prefix_lengths=torch.tensor([0, 3])).to_dense()
    assert torch.equal(got[0], torch.tensor([[T, F, F], [T, T, F], [T, T, T]]))
    assert torch.equal(got[1], torch.ones(3, 3, dtype=torch.bool))


def test_bidirectional_and_cross() -> None:
    assert torch.equal(masks.materialise(masks.bidirectional_fn(), 1, 2, 3)[0], torch.ones(2, 3, dtype=torch.bool))
    got = masks.cross_attention(1, 2, 3, enc_attention_mask=torch.tensor([[1, 1, 0]])).to_dense()
    assert torch.equal(got[0], torch.tensor([[T, T, F], [T, T, F]]))


def test_padding_hides_pad_keys() -> None:
    got = masks.decoder_self_attention(1, 3, key_valid=torch.tensor([[0, 1, 1]])).to_dense()
    expected = torch.tensor([[F, F, F], [F, T, F], [F, T, T]])
    assert torch.equal(got[0], expected)


def test_packed_segments_hand_written() -> None:
    seg = torch.tensor([[1, 1, 2, 2, 2, 0]])
    got = masks.decoder_self_attention(1, 6, segment_ids=seg).to_dense()[0]
    expected = torch.tensor([
        [T, F, F, F, F, F],
        [T, T, F, F, F, F],
        [F, F, T, F, F, F],
        [F, F, T, T, F, F],
        [F, F, T, T, T, F],
        [F, F, F, F, F, F],
    ])
    assert torch.equal(got, expected)


def test_packed_prefix_flags_stay_inside_their_example() -> None:
    seg = torch.tensor([[1, 1, 1, 2, 2, 2]])
    flags = torch.tensor([[T, T, F, T, T, F]])
    got = masks.decoder_self_attention(1, 6, is_prefix=flags, segment_ids=seg).to_dense()[0]
    expected = torch.tensor([
        [T, T, F, F, F, F],
        [T, T, F, F, F, F],
        [T, T, T, F, F, F],
        [F, F, F, T, T, F],
        [F, F, F, T, T, F],
        [F, F, F, T, T, T],
    ])
    assert torch.equal(got, expected)


def test_packed_cross_attention_by_segment() -> None:
    got = masks.cross_attention(1, 3, 3, dec_segment_ids=torch.tensor([[1, 2, 0]]),
                                enc_segment_ids=torch.tensor([[1, 1, 2]])).to_dense()[0]
    expected = torch.tensor([[T, T, F], [F, F, T], [F, F, F]])
    assert torch.equal(got, expected)


def test_empty_rows_become_visible_only_for_attention() -> None:
    m = torch.tensor([[[F, F], [T, F]]])
    out = masks.to_attention_mask(m)
    assert out.shape == (1, 1, 2, 2)
    assert torch.equal(out[0, 0], torch.tensor([[T, T], [T, F]]))


def test_family_masks_shapes() -> None:
    assert next(iter(masks.family_masks("causal", 3, 2).values())).shape == (5, 5)
    prefix = next(iter(masks.family_masks("prefix", 3, 2).values()))
    assert prefix[0, 2] and not prefix[3, 4] and prefix[4, 3]
    enc_dec = masks.family_masks("encoder_decoder", 3, 2)
    assert [m.shape for m in enc_dec.values()] == [(3, 3), (2, 2), (2, 3)]


def test_family_masks_content_by_hand() -> None:
    """Every mask of every family, entry by entry (source of 3 tokens, target of 2)."""
    lower = torch.tensor([[T, F, F, F, F], [T, T, F, F, F], [T, T, T, F, F], [T, T, T, T, F], [T, T, T, T, T]])
    (causal,) = masks.family_masks("causal", 3, 2).values()
    assert torch.equal(causal, lower)
    (prefix,) = masks.family_masks("prefix", 3, 2).values()
    assert torch.equal(prefix, torch.tensor([[T, T, T, F, F], [T, T, T, F, F], [T, T, T, F, F],
                                             [T, T, T, T, F], [T, T, T, T, T]]))
    enc, dec, cross = masks.family_masks("encoder_decoder", 3, 2).values()
    assert torch.equal(enc, torch.ones(3, 3, dtype=torch.bool))
    assert torch.equal(dec, torch.tensor([[T, F], [T, T]]))
    assert torch.equal(cross, torch.ones(2, 3, dtype=torch.bool))
