"""Masks as functions (issue 13, item 3): each mask function on hand-written cases; the family builders give
the same dense masks as the tensor formulas they replaced (with and without a KV-cache offset); the mask
pictures and the models use those builders, once per forward; SDPA's is_causal fast path equals the dense
mask; FlexAttention's BlockMask is built from the mask function (fewer non-empty blocks for packed and
prefix batches) and, on a GPU, flex == SDPA == eager."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from unimask import build_model, preset
from unimask.analysis import mask_plots
from unimask.models import attention, masks
from unimask.models.attention import attend, prepare_mask

T, F_ = True, False
CUDA = torch.cuda.is_available()


def _dense(fn: masks.MaskFn, batch: int, q_len: int, kv_len: int) -> Tensor:
    return masks.materialise(fn, batch, q_len, kv_len)


# --- each mask function, by hand ---------------------------------------------------------------------------

def test_causal_fn_by_hand_with_and_without_offset() -> None:
    assert torch.equal(_dense(masks.causal_fn(), 1, 3, 3)[0], torch.tensor([[T, F_, F_], [T, T, F_], [T, T, T]]))
    # three cached positions: the two new queries sit at absolute positions 3 and 4
    assert torch.equal(_dense(masks.causal_fn(3), 1, 2, 5)[0],
                       torch.tensor([[T, T, T, T, F_], [T, T, T, T, T]]))


def test_bidirectional_fn_by_hand() -> None:
    got = _dense(masks.bidirectional_fn(), 2, 2, 3)
    assert got.shape == (2, 2, 3) and bool(got.all())


def test_prefix_lengths_fn_by_hand() -> None:
    got = _dense(masks.prefix_lengths_fn(torch.tensor([2, 0, 3])), 3, 3, 3)
    assert torch.equal(got[0], torch.tensor([[T, T, F_], [T, T, F_], [F_, F_, F_]]))
    assert not bool(got[1].any())  # no prefix: nothing bidirectional
    assert bool(got[2].all())


def test_prefix_flags_fn_by_hand() -> None:
    got = _dense(masks.prefix_flags_fn(torch.tensor([[T, F_, T]])), 1, 3, 3)[0]
    assert torch.equal(got, torch.tensor([[T, F_, T], [F_, F_, F_], [T, F_, T]]))


def test_segments_fn_by_hand() -> None:
    got = _dense(masks.segments_fn(torch.tensor([[1, 1, 2, 0]])), 1, 4, 4)[0]
    assert torch.equal(got, torch.tensor([[T, T, F_, F_], [T, T, F_, F_], [F_, F_, T, F_], [F_, F_, F_, F_]]))
    cross = _dense(masks.segments_fn(torch.tensor([[2, 1]]), torch.tensor([[1, 2, 2]])), 1, 2, 3)[0]
    assert torch.equal(cross, torch.tensor([[F_, T, T], [T, F_, F_]]))


def test_padding_fn_by_hand() -> None:
    got = _dense(masks.padding_fn(torch.tensor([[1, 0, 1], [0, 1, 1]])), 2, 2, 3)
    assert torch.equal(got[0], torch.tensor([[T, F_, T], [T, F_, T]]))
    assert torch.equal(got[1], torch.tensor([[F_, T, T], [F_, T, T]]))


def test_cross_fn_by_hand() -> None:
    assert bool(_dense(masks.cross_fn(None, None, None), 1, 2, 3).all())
    fn = masks.cross_fn(torch.tensor([[1, 2]]), torch.tensor([[1, 1, 2]]), torch.tensor([[1, 0, 1]]))
    assert torch.equal(_dense(fn, 1, 2, 3)[0], torch.tensor([[T, F_, F_], [F_, F_, T]]))
    only_pad = masks.cross_fn(torch.tensor([[1, 2]]), None, torch.tensor([[0, 1, 1]]))  # segments need both
    assert torch.equal(_dense(only_pad, 1, 2, 3)[0], torch.tensor([[F_, T, T], [F_, T, T]]))


def test_and_or_by_hand() -> None:
    pad = masks.padding_fn(torch.tensor([[0, 1, 1]]))
    assert torch.equal(_dense(masks.and_(masks.causal_fn(), pad), 1, 3, 3)[0],
                       torch.tensor([[F_, F_, F_], [F_, T, F_], [F_, T, T]]))
    prefix = masks.prefix_lengths_fn(torch.tensor([2]))
    assert torch.equal(_dense(masks.or_(masks.causal_fn(), prefix), 1, 3, 3)[0],
                       torch.tensor([[T, T, F_], [T, T, F_], [T, T, T]]))
    assert torch.equal(_dense(masks.or_(pad, prefix), 1, 3, 3)[0],
                       torch.tensor([[T, T, T], [T, T, T], [F_, T, T]]))
    with pytest.raises(ValueError, match="at least one"):
        masks.and_()
    with pytest.raises(ValueError, match="at least one"):
        masks.or_()


def test_mask_functions_are_index_expressions() -> None:
    """Scalar indices (FlexAttention's vmap form) give exactly the entries of the broadcast (dense) form."""
    seg = torch.tensor([[1, 1, 2, 2], [1, 2, 2, 0]])
    flags = torch.tensor([[T, F_, T, T], [T, T, F_, F_]])
    fn = masks.and_(masks.or_(masks.causal_fn(1), masks.prefix_flags_fn(flags),
                              masks.prefix_lengths_fn(torch.tensor([1, 3]))),
                    masks.segments_fn(seg), masks.padding_fn(torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])))
    dense = _dense(fn, 2, 4, 4)
    for b in range(2):
        for q in range(4):
            for kv in range(4):
                one = fn(torch.tensor(b), torch.tensor(0), torch.tensor(q), torch.tensor(kv))
                assert one.shape == () and bool(one) == bool(dense[b, q, kv]), (b, q, kv)


# --- the builders against the tensor formulas they replaced -----------------------------------------------

def _old_causal(q_len: int, k_len: int, offset: int) -> Tensor:
    return torch.arange(k_len)[None, :] <= torch.arange(q_len)[:, None] + offset


def _old_segments(q_ids: Tensor, k_ids: Tensor) -> Tensor:
    return (q_ids[:, :, None] == k_ids[:, None, :]) & (k_ids[:, None, :] > 0)


def _old_decoder(q_len: int, past: int, is_prefix: Tensor | None, segment_ids: Tensor | None,
                 key_valid: Tensor | None) -> Tensor:
    """DecoderLM.build_mask before mask functions (prefix flags only without a cache)."""
    mask = _old_causal(q_len, past + q_len, past)[None]
    if is_prefix is not None and past == 0:
        mask = mask | (is_prefix[:, :, None] & is_prefix[:, None, :])
    if segment_ids is not None:
        mask = mask & _old_segments(segment_ids, segment_ids)
    if key_valid is not None:
        mask = mask & key_valid.bool()[:, None, :]
    return mask


def _old_cross(dec: Tensor | None, enc: Tensor | None, pad: Tensor | None, q_len: int, k_len: int) -> Tensor:
    mask = torch.ones(1, q_len, k_len, dtype=torch.bool)
    if dec is not None and enc is not None:
        mask = mask & _old_segments(dec, enc)
    if pad is not None:
        mask = mask & pad.bool()[:, None, :]
    return mask


def _batch(seed: int, B: int = 3, L: int = 9) -> dict[str, Tensor]:
    """Random packed rows (segment 0 = padding at the end), prefix lengths and flags, padding."""
    g = torch.Generator().manual_seed(seed)
    cut = torch.randint(1, L, (B,), generator=g)
    pad = torch.randint(0, 3, (B,), generator=g)
    pos = torch.arange(L)[None]
    seg = torch.where(pos < cut[:, None], 1, 2) * (pos < L - pad[:, None])
    lengths = torch.randint(0, L + 1, (B,), generator=g)
    return {"seg": seg, "lengths": lengths, "flags": torch.rand(B, L, generator=g) < 0.5,
            "valid": torch.rand(B, L, generator=g) < 0.8, "lflags": pos < lengths[:, None]}


@pytest.mark.parametrize("seed", range(4))
def test_decoder_builder_equals_old_dense_masks(seed: int) -> None:
    x = _batch(seed)
    B, L = x["seg"].shape
    cases: list[tuple[dict, Tensor]] = [
        ({}, _old_decoder(L, 0, None, None, None)),
        ({"prefix_lengths": x["lengths"]}, _old_decoder(L, 0, x["lflags"], None, None)),
        ({"is_prefix": x["flags"]}, _old_decoder(L, 0, x["flags"], None, None)),
        ({"is_prefix": x["flags"], "prefix_lengths": x["lengths"]}, _old_decoder(L, 0, x["flags"], None, None)),
        ({"segment_ids": x["seg"]}, _old_decoder(L, 0, None, x["seg"], None)),
        ({"segment_ids": x["seg"], "is_prefix": x["flags"]}, _old_decoder(L, 0, x["flags"], x["seg"], None)),
        ({"key_valid": x["valid"]}, _old_decoder(L, 0, None, None, x["valid"])),
        ({"key_valid": x["valid"], "prefix_lengths": x["lengths"]},
         _old_decoder(L, 0, x["lflags"], None, x["valid"])),
    ]
    for kwargs, old in cases:
        got = masks.decoder_self_attention(B, L, **kwargs).to_dense()
        assert torch.equal(got.expand_as(old), old.expand_as(got)), sorted(kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_decoder_builder_with_cache_offset_equals_old(seed: int) -> None:
    x = _batch(seed)
    B, L = x["seg"].shape
    for past, q_len in ((L - 1, 1), (L - 3, 3)):
        valid = x["valid"][:, : past + q_len]
        for kwargs, old in (({}, _old_decoder(q_len, past, None, None, None)),
                            ({"key_valid": valid}, _old_decoder(q_len, past, None, None, valid)),
                            ({"key_valid": valid, "is_prefix": x["flags"][:, :q_len]},  # ignored after the prefill
                             _old_decoder(q_len, past, x["flags"][:, :q_len], None, valid))):
            got = masks.decoder_self_attention(B, q_len, past=past, **kwargs).to_dense()
            assert got.shape[1:] == (q_len, past + q_len)
            assert torch.equal(got.expand_as(old), old.expand_as(got)), (past, sorted(kwargs))


def test_cache_offset_with_padding_by_hand() -> None:
    """Two cached keys (the first a left pad), two new queries at positions 2 and 3."""
    got = masks.decoder_self_attention(1, 2, past=2, key_valid=torch.tensor([[0, 1, 1, 1]])).to_dense()[0]
    assert torch.equal(got, torch.tensor([[F_, T, T, F_], [F_, T, T, T]]))
    with pytest.raises(ValueError, match="packed segments cannot be combined with a KV cache"):
        masks.decoder_self_attention(1, 1, past=2, segment_ids=torch.tensor([[1]]))


@pytest.mark.parametrize("seed", range(4))
def test_encoder_and_cross_builders_equal_old_dense_masks(seed: int) -> None:
    x, y = _batch(seed), _batch(seed + 100, L=6)
    B, S = x["seg"].shape
    Tt = y["seg"].shape[1]
    enc = masks.encoder_self_attention(B, S, segment_ids=x["seg"], attention_mask=x["valid"]).to_dense()
    old = torch.ones(1, S, S, dtype=torch.bool) & _old_segments(x["seg"], x["seg"]) & x["valid"][:, None, :]
    assert torch.equal(enc, old)
    assert bool(masks.encoder_self_attention(B, S).to_dense().all())
    for dec, enc_seg, pad in ((y["seg"], x["seg"], x["valid"]), (None, None, x["valid"]), (y["seg"], x["seg"], None),
                              (None, None, None), (y["seg"], None, x["valid"])):
        got = masks.cross_attention(B, Tt, S, dec_segment_ids=dec, enc_segment_ids=enc_seg,
                                    enc_attention_mask=pad).to_dense()
        ref = _old_cross(dec, enc_seg, pad, Tt, S)
        assert torch.equal(got.expand_as(ref), ref.expand_as(got)), (dec is None, enc_seg is None, pad is None)


def test_attention_dense_keeps_the_empty_row_rule() -> None:
    """A query that sees no key (a pad of a packed row) may see every key on the dense path."""
    mask = masks.decoder_self_attention(1, 3, segment_ids=torch.tensor([[1, 1, 0]]))
    assert torch.equal(mask.to_dense()[0], torch.tensor([[T, F_, F_], [T, T, F_], [F_, F_, F_]]))
    dense = mask.attention_dense()
    assert dense.shape == (1, 1, 3, 3)
    assert torch.equal(dense[0, 0], torch.tensor([[T, F_, F_], [T, T, F_], [T, T, T]]))
    assert mask.attention_dense() is dense  # built once, then shared


def test_plain_only_where_nothing_else_is_masked() -> None:
    seg, valid = torch.tensor([[1, 1, 2]]), torch.tensor([[1, 1, 0]])
    assert masks.decoder_self_attention(1, 3).plain == "causal"
    assert masks.decoder_self_attention(1, 3).batch is None  # the same for every row: broadcast
    for kwargs in ({"past": 2}, {"segment_ids": seg}, {"key_valid": valid}, {"prefix_lengths": torch.tensor([1])},
                   {"is_prefix": torch.tensor([[T, F_, F_]])}):
        assert masks.decoder_self_attention(1, 3, **kwargs).plain is None, kwargs
    step = masks.decoder_self_attention(2, 1, past=4)  # one decoded token after a cache without padding
    assert step.plain == "bidirectional" and step.to_dense().all()  # it sees every key: SDPA needs no mask
    assert masks.decoder_self_attention(2, 1, past=4, key_valid=torch.tensor([[1] * 5, [0] + [1] * 4])).plain is None
    assert masks.encoder_self_attention(1, 3).plain == "bidirectional"
    assert masks.encoder_self_attention(1, 3, attention_mask=valid).plain is None
    assert masks.encoder_self_attention(1, 3, segment_ids=seg).plain is None
    assert masks.cross_attention(1, 2, 3).plain == "bidirectional"
    assert masks.cross_attention(1, 2, 3, enc_attention_mask=valid).plain is None
    assert masks.cross_attention(1, 3, 3, dec_segment_ids=seg, enc_segment_ids=seg).plain is None
    with pytest.raises(ValueError, match="q_len == kv_len"):
        masks.AttentionMask(masks.causal_fn(), batch=None, q_len=2, kv_len=3, plain="causal")


# --- the pictures and the models use the builders ---------------------------------------------------------

def test_family_masks_are_the_builders_masks() -> None:
    (causal,) = masks.family_masks("causal", 3, 2).values()
    assert torch.equal(causal, masks.decoder_self_attention(1, 5).to_dense()[0])
    (prefix,) = masks.family_masks("prefix", 3, 2).values()
    assert torch.equal(prefix, masks.decoder_self_attention(1, 5, prefix_lengths=torch.tensor([3])).to_dense()[0])
    enc, dec, cross = masks.family_masks("encoder_decoder", 3, 2).values()
    assert torch.equal(enc, masks.encoder_self_attention(1, 3).to_dense()[0])
    assert torch.equal(dec, masks.decoder_self_attention(1, 2).to_dense()[0])
    assert torch.equal(cross, masks.cross_attention(1, 2, 3).to_dense()[0])


def test_mask_pictures_are_drawn_by_the_builders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap every builder for one that hides every key: no picture has a visible cell left."""
    def nothing(batch: int, q_len: int, kv_len: int | None = None, **_: object) -> masks.AttentionMask:
        return masks.AttentionMask(lambda b, h, q, kv: kv < 0, batch=None, q_len=q_len,
                                   kv_len=q_len if kv_len is None else kv_len)

    before = mask_plots.mask_text(3, 2)
    assert "■" in before
    for name in ("decoder_self_attention", "encoder_self_attention", "cross_attention"):
        monkeypatch.setattr(masks, name, nothing)
    after = mask_plots.mask_text(3, 2)
    assert "■" not in after and after.count("·") == before.count("·") + before.count("■")


def _spy(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple]:
    calls: list[tuple] = []
    real = getattr(module, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("name", ["tiny-prefix", "tiny-encdec"])
def test_models_build_each_mask_once_per_forward(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """One builder call and one dense mask per attention kind and forward, shared by every layer."""
    extra = {"n_encoder_layers": 2} if name == "tiny-encdec" else {}
    model = build_model(preset(name, n_layers=3, **extra)).eval()
    ids = torch.randint(5, 400, (2, 6))
    pad = torch.tensor([[1] * 6, [0, 1, 1, 1, 1, 1]])
    builders = {n: _spy(monkeypatch, masks, n)
                for n in ("decoder_self_attention", "encoder_self_attention", "cross_attention")}
    dense = _spy(monkeypatch, masks, "materialise")
    with torch.no_grad():
        if name == "tiny-encdec":
            model(ids, attention_mask=pad, decoder_input_ids=ids[:, :4])
            assert [len(builders[n]) for n in builders] == [1, 1, 1]
            assert len(dense) == 3  # encoder, decoder self, cross: each once for all layers
        else:
            model(ids, attention_mask=pad, prefix_lengths=torch.tensor([3, 2]))
            assert [len(builders[n]) for n in builders] == [1, 0, 0]
            assert builders["decoder_self_attention"][0][1]["prefix_lengths"].tolist() == [3, 2]
            assert len(dense) == 1


def test_decoder_prefix_from_lengths_equals_flags() -> None:
    model = build_model("tiny-prefix").eval()
    ids = torch.randint(5, 400, (2, 7))
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        a = model(ids, prefix_lengths=lengths).logits
        b = model(ids, is_prefix=torch.arange(7)[None] < lengths[:, None]).logits
        c = model(ids).logits  # causal: must differ, or the prefix never reached the mask
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert (a[:, :3] - c[:, :3]).abs().max() > 1e-4


# --- SDPA's is_causal fast path -----------------------------------------------------------------------

def test_sdpa_fast_paths_are_taken_and_equal_the_dense_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []
    real = F.scaled_dot_product_attention

    def spy(*args: object, **kwargs: object) -> Tensor:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # GQA
    for mask in (masks.decoder_self_attention(2, 9), masks.encoder_self_attention(2, 9)):
        seen.clear()
        fast, _ = attend(q, k, v, mask, scale=0.3)
        assert seen[-1].get("attn_mask") is None
        assert seen[-1].get("is_causal") is (mask.plain == "causal")
        dense, _ = attend(q, k, v, mask.to_dense(), scale=0.3)
        assert seen[-1]["attn_mask"] is not None
        eager, _ = attend(q, k, v, mask, scale=0.3, backend="eager")
        torch.testing.assert_close(fast, dense, atol=1e-6, rtol=0)
        torch.testing.assert_close(fast, eager, atol=1e-6, rtol=0)
    bias = torch.randn(1, 4, 9, 9, generator=g)
    seen.clear()
    with_bias, _ = attend(q, k, v, masks.decoder_self_attention(2, 9), bias=bias, scale=0.3)
    assert seen[-1].get("is_causal") is not True  # a bias needs the dense mask folded into it
    ref, _ = attend(q, k, v, masks.decoder_self_attention(2, 9), bias=bias, scale=0.3, backend="eager")
    torch.testing.assert_close(with_bias, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "overrides"), [
    ("tiny-causal", {}),
    ("tiny-encdec", {"position": "learned", "learned_pos_offset": 2, "norm_position": "post", "bias": True}),  # BART
])
def test_model_fast_path_equals_dense(monkeypatch: pytest.MonkeyPatch, name: str, overrides: dict) -> None:
    """Plainly causal / bidirectional inputs: the same logits with is_causal / no mask as with the dense mask."""
    torch.manual_seed(0)
    model = build_model(preset(name, **overrides)).eval()
    ids = torch.randint(5, 400, (2, 11))
    kwargs = {"decoder_input_ids": ids[:, :7]} if model.config.arch == "encoder_decoder" else {}
    with torch.no_grad():
        fast = model(ids, **kwargs).logits
        real_init = masks.AttentionMask.__init__

        def no_plain(self: masks.AttentionMask, *args: object, **kw: object) -> None:
            real_init(self, *args, **{**kw, "plain": None})

        monkeypatch.setattr(masks.AttentionMask, "__init__", no_plain)
        dense = model(ids, **kwargs).logits
    torch.testing.assert_close(fast, dense, atol=1e-6, rtol=0)


# --- FlexAttention: a BlockMask from the mask function ---------------------------------------------------

def _blocks(block_mask: object) -> int:
    """Non-empty (partial + full) blocks of a BlockMask, over every row."""
    return int(block_mask.kv_num_blocks.sum() + block_mask.full_kv_num_blocks.sum())  # type: ignore[attr-defined]


def test_block_mask_is_built_from_the_mask_function_and_skips_blocks() -> None:
    """384 tokens = 3 x 3 blocks of 128 per row: full 9, causal 6, three packed examples of 128 tokens 3; a
    prefix of 100 tokens stays in the causal blocks (6), one of 256 adds block (0, 1) (7)."""
    L = 384
    seg = (torch.arange(L) // 128 + 1)[None].expand(2, L)
    full = masks.encoder_self_attention(2, L).block_mask()
    causal = masks.decoder_self_attention(2, L).block_mask()
    packed_mask = masks.decoder_self_attention(2, L, segment_ids=seg)
    packed = packed_mask.block_mask()
    assert packed.mask_mod is packed_mask.fn  # create_block_mask got the mask function itself
    assert packed_mask.block_mask() is packed  # one BlockMask, reused by every layer
    assert _blocks(full) == 9 and _blocks(causal) == 6 and _blocks(packed) == 2 * 3
    prefix = masks.decoder_self_attention(2, L, prefix_lengths=torch.tensor([100, 256])).block_mask()
    assert _blocks(prefix) == 6 + 7  # row 0: causal blocks only; row 1: the 2 x 2 prefix blocks + causal rest
    enc_seg = (torch.arange(256) // 128 + 1)[None].expand(2, 256)
    cross = masks.cross_attention(2, L, 256, dec_segment_ids=seg, enc_segment_ids=enc_seg).block_mask()
    assert _blocks(cross) == 2 * 2  # segment 3 of the decoder has no encoder tokens: its blocks are empty


def test_prepare_mask_builds_the_backends_form() -> None:
    mask = masks.decoder_self_attention(1, 5, key_valid=torch.tensor([[1, 1, 1, 1, 0]]))
    assert prepare_mask(mask, "flex") is mask and mask._block is not None and mask._dense is None
    plain = masks.decoder_self_attention(1, 5)
    prepare_mask(plain, "sdpa")
    assert plain._dense is None  # is_causal: no tensor at all
    prepare_mask(plain, "sdpa", with_bias=True)
    assert plain._dense is not None
    tensor = prepare_mask(torch.tensor([[F_, F_], [T, F_]]), "sdpa")
    assert tensor is not None and torch.equal(tensor, torch.tensor([[[[T, T], [T, F_]]]]))


def _kinds(device: torch.device) -> dict[str, masks.AttentionMask]:
    """Builders' masks for B = 2, T = 300 (three blocks of 128, the last one partial), S = 200: the rows differ
    block by block (a block empty in one row is full in the other), so a BlockMask of the wrong row shows."""
    L, S = 300, 200
    seg = torch.tensor([[1] * 150 + [2] * 130 + [0] * 20, [1] * L], device=device)
    enc_seg = torch.tensor([[1] * 100 + [2] * 80 + [0] * 20, [1] * S], device=device)
    lengths = torch.tensor([11, 260], device=device)
    return {
        "causal": masks.decoder_self_attention(2, L, device=device),
        "prefix": masks.decoder_self_attention(2, L, prefix_lengths=lengths, device=device),
        "packed": masks.decoder_self_attention(2, L, is_prefix=(torch.arange(L, device=device) % 150 < 40).expand(2, L),
                                               segment_ids=seg, device=device),
        "cross": masks.cross_attention(2, L, S, dec_segment_ids=seg, enc_segment_ids=enc_seg,
                                       enc_attention_mask=(enc_seg > 0) | (torch.arange(S, device=device) < 3),
                                       device=device),
    }


def _three_backends(mask: masks.AttentionMask, device: torch.device, flex: bool) -> list[dict[str, Tensor]]:
    """Outputs of eager, SDPA and FlexAttention (GQA: 4 query heads, 2 kv heads), without and with a T5-style
    additive bias."""
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(2, 4, mask.q_len, 16, device=device, generator=g)
    k = torch.randn(2, 2, mask.kv_len, 16, device=device, generator=g)
    v = torch.randn(2, 2, mask.kv_len, 16, device=device, generator=g)
    bias = torch.randn(1, 4, mask.q_len, mask.kv_len, device=device, generator=g)
    runs = []
    for b in (None, bias):
        outs = {name: attend(q, k, v, mask, bias=b, scale=0.3, backend=name)[0] for name in ("eager", "sdpa")}
        if flex:
            outs["flex"] = attend(q, k, v, mask, bias=b, scale=0.3, backend="flex")[0]
        else:  # off CUDA the backend refuses; the unfused FlexAttention reference checks the mask function
            outs["flex"] = attention._flex(q, k, v, mask.block_mask(), b, 0.3)
        runs.append(outs)
    return runs


def _visible_blocks(mask: masks.AttentionMask, block: int = 128) -> tuple[Tensor, Tensor]:
    """``(B, nq, nk)`` bool from the dense mask: blocks with any visible key, blocks with every key visible."""
    dense = mask.to_dense().expand(2, mask.q_len, mask.kv_len)
    nq, nk = -(-mask.q_len // block), -(-mask.kv_len // block)
    padded = torch.zeros(2, nq * block, nk * block, dtype=torch.int8)
    padded[:, : mask.q_len, : mask.kv_len] = dense.to(torch.int8)
    inside = torch.zeros_like(padded)
    inside[:, : mask.q_len, : mask.kv_len] = 1
    per_block = padded.view(2, nq, block, nk, block).sum((2, 4))
    return per_block > 0, per_block == inside.view(2, nq, block, nk, block).sum((2, 4))


@pytest.mark.parametrize("kind", ["causal", "prefix", "packed", "cross"])
def test_block_mask_blocks_are_exactly_the_visible_ones(kind: str) -> None:
    """The BlockMask skips exactly the blocks with no visible key, per row, and calls a block full (mask
    function skipped) only where every key is visible: FlexAttention's fused kernel trusts both."""
    mask = _kinds(torch.device("cpu"))[kind]
    bm = mask.block_mask()
    any_visible, all_visible = _visible_blocks(mask)
    non_empty = bm.to_dense()[:, 0].bool().expand_as(any_visible)
    assert torch.equal(non_empty, any_visible)
    full = torch.zeros_like(any_visible[:1].expand(bm.full_kv_num_blocks.shape[0], -1, -1)).clone()
    for b in range(full.shape[0]):
        for qb in range(full.shape[1]):
            n = int(bm.full_kv_num_blocks[b, 0, qb])
            full[b, qb, bm.full_kv_indices[b, 0, qb, :n].long()] = True
    assert not bool((full.expand_as(all_visible) & ~all_visible).any())


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("kind", ["causal", "prefix", "packed", "cross"])
def test_flex_reference_equals_sdpa_and_eager_on_cpu(kind: str) -> None:
    mask = _kinds(torch.device("cpu"))[kind]
    for outs in _three_backends(mask, torch.device("cpu"), flex=False):
        real = mask.to_dense().any(-1)[:, None, :, None].expand_as(outs["eager"])  # rows with a visible key
        for name in ("sdpa", "flex"):
            assert (outs[name] - outs["eager"])[real].abs().max().item() <= 1e-5, name


@pytest.mark.skipif(not CUDA, reason="FlexAttention runs on CUDA only")
@pytest.mark.parametrize("kind", ["causal", "prefix", "packed", "cross"])
def test_flex_equals_sdpa_and_eager_on_cuda(kind: str) -> None:
    dev = torch.device("cuda")
    mask = _kinds(dev)[kind]
    for outs in _three_backends(mask, dev, flex=True):
        real = mask.to_dense().any(-1)[:, None, :, None].expand_as(outs["eager"])
        for name in ("sdpa", "flex"):
            assert (outs[name] - outs["eager"])[real].abs().max().item() <= 2e-3, name
    assert mask._block is not None and mask._block.mask_mod is mask.fn


@pytest.mark.skipif(not CUDA, reason="FlexAttention runs on CUDA only")
def test_flex_model_builds_one_sparse_block_mask_per_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packed batch through a 3-layer model: one BlockMask from the mask function per forward, sparser than a
    full mask, and the same logits as SDPA."""
    from torch.nn.attention import flex_attention as fa

    torch.manual_seed(0)
    model = build_model(preset("tiny-prefix", n_layers=3, init_std=0.2)).cuda().eval()
    L = 256
    ids = torch.randint(12, 500, (2, L), device="cuda")
    seg = (torch.arange(L, device="cuda") // 128 + 1)[None].expand(2, L).contiguous()
    flags = torch.arange(L, device="cuda")[None].expand(2, L) % 128 < 40
    built: list[object] = []
    real = fa.create_block_mask

    def spy(fn: masks.MaskFn, *args: object, **kwargs: object) -> object:
        out = real(fn, *args, **kwargs)
        built.append(out)
        return out

    monkeypatch.setattr(fa, "create_block_mask", spy)
    with torch.no_grad():
        ref = model(ids, segment_ids=seg, is_prefix=flags).logits
        model.set_attention_backend("flex")
        got = model(ids, segment_ids=seg, is_prefix=flags).logits
    assert len(built) == 1
    assert _blocks(built[0]) < 2 * 4  # 2 rows x 2 x 2 blocks when nothing is skipped
    assert (got - ref).abs().max().item() <= 2e-3
