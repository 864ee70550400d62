"""Masks against hand-written arrays for each family, packed segments included."""

from __future__ import annotations

import torch

from unimask.models import masks

T, F = True, False


def test_causal_matches_hand_written() -> None:
    expected = torch.tensor([[T, F, F], [T, T, F], [T, T, T]])
    assert torch.equal(masks.causal(3), expected)


def test_causal_with_offset_for_cached_decoding() -> None:
    # two cached positions, one new query at absolute position 2 sees keys 0..2
    assert torch.equal(masks.causal(1, 3, offset=2), torch.tensor([[T, T, T]]))
    assert torch.equal(masks.causal(2, 4, offset=2), torch.tensor([[T, T, T, F], [T, T, T, T]]))


def test_prefix_matches_hand_written() -> None:
    expected = torch.tensor([
        [T, T, F, F, F],
        [T, T, F, F, F],
        [T, T, T, F, F],
        [T, T, T, T, F],
        [T, T, T, T, T],
    ])
    got = masks.prefix(torch.tensor([2]), 5)
    assert got.shape == (1, 5, 5)
    assert torch.equal(got[0], expected)


def test_prefix_per_example_lengths() -> None:
    got = masks.prefix(torch.tensor([0, 3]), 3)
    assert torch.equal(got[0], masks.causal(3))
    assert torch.equal(got[1], torch.ones(3, 3, dtype=torch.bool))


def test_bidirectional_and_cross() -> None:
    assert torch.equal(masks.bidirectional(2, 3), torch.ones(2, 3, dtype=torch.bool))
    got = masks.cross(None, None, torch.tensor([[1, 1, 0]]), 2, 3)
    assert torch.equal(got[0], torch.tensor([[T, T, F], [T, T, F]]))


def test_padding_hides_pad_keys() -> None:
    got = masks.combine(masks.causal(3)[None], masks.padding(torch.tensor([[0, 1, 1]])))
    expected = torch.tensor([[F, F, F], [F, T, F], [F, T, T]])
    assert torch.equal(got[0], expected)


def test_packed_segments_hand_written() -> None:
    seg = torch.tensor([[1, 1, 2, 2, 2, 0]])
    got = masks.combine(masks.causal(6)[None], masks.segments(seg))[0]
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
    got = masks.combine(masks.prefix_from_flags(flags), masks.segments(seg))[0]
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
    got = masks.cross(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 1, 2]]), None, 3, 3)[0]
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
