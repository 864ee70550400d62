"""FlexAttention: refused with one clear error where it cannot run (off CUDA), and on a GPU equal to SDPA and
eager attention for the causal, prefix, packed and cross masks (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from unimask import build_model, preset
from unimask.errors import ConfigError
from unimask.models import masks
from unimask.models.attention import attend

CUDA = torch.cuda.is_available()


def test_flex_off_cuda_is_one_clear_error() -> None:
    model = build_model("tiny-causal")
    with pytest.raises(ConfigError, match="'flex' \\(FlexAttention\\) runs on CUDA only") as info:
        model.set_attention_backend("flex")
    assert "\n" not in str(info.value)
    assert all(m.backend == "sdpa" for m in model.modules() if hasattr(m, "backend"))  # nothing half-switched
    q = k = v = torch.randn(1, 2, 4, 8)
    with pytest.raises(ConfigError, match="CUDA only"):
        attend(q, k, v, masks.decoder_self_attention(1, 4), scale=8 ** -0.5, backend="flex")
    with pytest.raises(ConfigError, match="CUDA only"):  # asking for probabilities does not dodge it either
        attend(q, k, v, masks.decoder_self_attention(1, 4), scale=8 ** -0.5, backend="flex", return_probs=True)


def _masks(device: torch.device) -> dict[str, masks.AttentionMask]:
    """name -> the family builders' mask over (B, Tq, Tk) for B = 2, Tq = 37 (not a multiple of FlexAttention's
    block size)."""
    T, S = 37, 23
    seg = torch.tensor([[1] * 20 + [2] * 12 + [0] * 5, [1] * 37], device=device)
    enc_seg = torch.tensor([[1] * 10 + [2] * 9 + [0] * 4, [1] * 23], device=device)
    lengths = torch.tensor([11, 30], device=device)
    flags = torch.arange(T, device=device)[None] < lengths[:, None]
    return {
        "causal": masks.decoder_self_attention(2, T, device=device),
        "prefix": masks.decoder_self_attention(2, T, prefix_lengths=lengths, device=device),
        "packed": masks.decoder_self_attention(2, T, is_prefix=flags, segment_ids=seg, device=device),
        "cross": masks.cross_attention(2, T, S, dec_segment_ids=seg, enc_segment_ids=enc_seg, device=device),
    }


@pytest.mark.skipif(not CUDA, reason="FlexAttention runs on CUDA only")
@pytest.mark.parametrize("kind", ["causal", "prefix", "packed", "cross"])
@pytest.mark.parametrize("kv_heads", [4, 2])  # MHA and GQA
def test_flex_equals_sdpa_and_eager_on_cuda(kind: str, kv_heads: int) -> None:
    dev = torch.device("cuda")
    mask = _masks(dev)[kind]
    tq, tk = mask.q_len, mask.kv_len
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(2, 4, tq, 16, device=dev, generator=g)
    k = torch.randn(2, kv_heads, tk, 16, device=dev, generator=g)
    v = torch.randn(2, kv_heads, tk, 16, device=dev, generator=g)
    bias = torch.randn(1, 4, tq, tk, device=dev, generator=g)  # T5 relative positions
    for b in (None, bias):
        outs = {name: attend(q, k, v, mask, bias=b, scale=0.25, backend=name)[0]
                for name in ("eager", "sdpa", "flex")}
        real = mask.to_dense().any(-1)[:, None, :, None].expand_as(outs["eager"])  # rows with a visible key
        for name in ("sdpa", "flex"):
            diff = (outs[name] - outs["eager"])[real].abs().max().item()
            assert diff <= 2e-3, (kind, kv_heads, name, b is not None, diff)


@pytest.mark.skipif(not CUDA, reason="FlexAttention runs on CUDA only")
@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-glm", "tiny-encdec"])
def test_flex_model_logits_equal_sdpa_on_cuda(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(preset(name, init_std=0.2)).cuda().eval()
    ids = torch.randint(12, 500, (2, 21), device="cuda")
    seg = torch.tensor([[1] * 12 + [2] * 9, [1] * 21], device="cuda")
    args: dict = {"segment_ids": seg}
    if name == "tiny-encdec":
        args = {"decoder_input_ids": ids[:, :13], "segment_ids": seg,
                "decoder_segment_ids": torch.tensor([[1] * 7 + [2] * 6, [1] * 13], device="cuda")}
    elif name != "tiny-causal":
        args["is_prefix"] = torch.arange(21, device="cuda")[None] % 12 < 5
    logits = {}
    with torch.no_grad():
        for backend in ("eager", "sdpa", "flex"):
            model.set_attention_backend(backend)
            logits[backend] = model(ids, **args).logits
    for backend in ("sdpa", "flex"):
        assert (logits[backend] - logits["eager"]).abs().max().item() <= 2e-3, backend
