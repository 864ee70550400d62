"""Helpers for the Hugging Face parity tests: random tiny models, padded batches and the three checks.

Every tiny HF model is re-initialised with large random weights (norm gains around 1, everything else
N(0, 0.2)) so that attention is far from uniform and logits spread widely: a wrong position, mask or
scaling then moves the logits by far more than the 1e-4 tolerance.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from torch import Tensor

from unimask.interop import from_hf, to_hf

transformers.logging.set_verbosity_error()
TOL = 1e-4
NORM_NAMES = ("norm", "ln_", "layernorm")


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Re-draw every floating parameter and buffer; tied parameters stay tied (they are one tensor)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point() or "inv_freq" in name:
                continue
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            is_norm = any(k in name.lower() for k in NORM_NAMES) and name.endswith("weight")
            p.copy_(1.0 + 0.1 * noise if is_norm else std * noise)
    return model.eval()


def padded(lengths: list[int], vocab: int, pad: int, *, left: bool, seed: int = 1) -> tuple[Tensor, Tensor]:
    """``ids (B, T)`` of random non-special tokens (ids >= 4) and ``mask (B, T)``, padded left or right."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        sl = slice(width - n, width) if left else slice(0, n)
        ids[i, sl] = torch.randint(4, vocab, (n,), generator=g)
        mask[i, sl] = 1
    return ids, mask


def logits_diff(hf: torch.nn.Module, um: torch.nn.Module, ids: Tensor, mask: Tensor,
                dec: Tensor | None = None) -> float:
    """Max |logit difference| over real positions (decoder-only: non-pad tokens; enc-dec: all decoder tokens)."""
    with torch.no_grad():
        if dec is None:
            ref = hf(input_ids=ids, attention_mask=mask).logits
            out = um(ids, attention_mask=mask).logits
            assert ref.shape == out.shape
            return float((ref - out)[mask.bool()].abs().max())
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        out = um(ids, attention_mask=mask, decoder_input_ids=dec).logits
        assert ref.shape == out.shape
        return float((ref - out).abs().max())


def hf_greedy(hf: torch.nn.Module, ids: Tensor, mask: Tensor, *, eos: int, pad: int, n: int = 32,
              use_cache: bool = True) -> Tensor:
    """transformers' greedy decoding of ``n`` new tokens (prompt / start token stripped)."""
    gc = hf.generation_config
    for key in ("forced_eos_token_id", "forced_bos_token_id", "no_repeat_ngram_size", "min_length"):
        if hasattr(gc, key):
            setattr(gc, key, None)
    out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False, num_beams=1,
                      eos_token_id=eos, pad_token_id=pad, use_cache=use_cache)
    return out[:, 1:] if hf.config.is_encoder_decoder else out[:, ids.shape[1]:]


def check_generation(hf: torch.nn.Module, um: torch.nn.Module, ids: Tensor, mask: Tensor, *,
                     hf_cache: bool = True) -> Tensor:
    """unimask's KV-cache greedy decoding equals transformers' token for token (EOS and padding included).

    ``hf_cache=False``: transformers decodes without its cache (the plain reference), for shapes its cache
    mishandles.
    """
    c = um.config
    ref = hf_greedy(hf, ids, mask, eos=c.eos_token_id, pad=c.pad_token_id, use_cache=hf_cache)
    ours = um.generate(ids, attention_mask=mask, max_new_tokens=32)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert torch.equal(ours, ref), f"\nunimask {ours.tolist()}\nhf      {ref.tolist()}"
    return ours


def check_roundtrip(hf: torch.nn.Module, um: torch.nn.Module, tmp: Path, ids: Tensor, mask: Tensor,
                    dec: Tensor | None = None, **to_hf_kwargs: object) -> Path:
    """Export, then (1) import is exact, (2) transformers loads the export with no missing or unexpected keys
    and computes identical logits."""
    out = to_hf(um, tmp / "export", **to_hf_kwargs)
    back = from_hf(out)
    assert back.config == um.config
    a, b = um.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    loaded, info = type(hf).from_pretrained(out, output_loading_info=True)
    loaded.eval()
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info[kind], f"{kind}: {info[kind]}"
    with torch.no_grad():
        kw = {} if dec is None else {"decoder_input_ids": dec}
        ref = hf(input_ids=ids, attention_mask=mask, **kw).logits
        again = loaded(input_ids=ids, attention_mask=mask, **kw).logits
    assert torch.equal(ref, again)
    assert logits_diff(loaded, back, ids, mask, dec) <= TOL
    return out


def check_decoder_only(hf: torch.nn.Module, tmp: Path, vocab: int = 128) -> None:
    """The three parity checks for a causal HF model: padded-batch logits, greedy decoding, export round trip."""
    um = from_hf(hf)
    ids, mask = padded([12, 9, 5], vocab, pad=0, left=False)
    assert logits_diff(hf, um, ids, mask) <= TOL
    prompts, pmask = padded([6, 3], vocab, pad=0, left=True, seed=2)
    check_generation(hf, um, prompts, pmask)
    check_roundtrip(hf, um, tmp, ids, mask)
