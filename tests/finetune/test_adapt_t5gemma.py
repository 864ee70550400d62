"""A Gemma-2-shaped causal unimask model adapted to an encoder-decoder the T5Gemma way exports to transformers'
T5Gemma: loaded with no missing or unexpected keys, the same logits to 1e-4 and the same greedy tokens; a
model T5Gemma cannot express is refused in one line naming the config field and its value."""

from __future__ import annotations

import pytest
import torch

from unimask.config import ModelConfig, preset
from unimask.errors import ConfigError
from unimask.finetune.adapt import decoder_to_encoder_decoder, t5gemma_target, to_t5gemma
from unimask.interop import from_hf
from unimask.models import build_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

GEMMA2_LIKE = dict(arch="causal", vocab_size=128, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=16,
                   d_ff=48, activation="gated-gelu", gelu_approximate="tanh", norm="rmsnorm", norm_eps=1e-6,
                   norm_unit_offset=True, sandwich_norm=True, scale_embedding=True, position="rope",
                   rope_theta=100.0, query_pre_attn_scalar=24.0, attn_softcap=2.0, final_logit_softcap=3.0,
                   sliding_window=3, sliding_window_layers=[0, 2], max_seq_len=128, tie_embeddings=True,
                   pad_token_id=0, eos_token_id=1, bos_token_id=2)


def randomized(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.2)
    return model.eval()


def adapted(source_config: ModelConfig, **changes) -> torch.nn.Module:
    source = randomized(source_config)
    target = t5gemma_target(source_config, **changes)
    model = build_model(target).eval()
    model.load_state_dict(decoder_to_encoder_decoder(source.state_dict(), source_config, target))  # strict
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 128, (2, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    dec = torch.randint(4, 128, (2, 7), generator=g)
    dec[:, 0] = 2
    return ids, mask, dec


@pytest.mark.parametrize("own_encoder_embedding", [False, True])
def test_adapted_gemma2_exports_to_t5gemma(own_encoder_embedding: bool, tmp_path) -> None:
    torch.set_num_threads(1)
    um = adapted(ModelConfig.from_dict(GEMMA2_LIKE), encoder_embedding=own_encoder_embedding)
    layer = um.decoder.layers[1]
    assert torch.equal(layer.cross_post_norm.weight, layer.attn_post_norm.weight)  # mapped, not left at init
    if own_encoder_embedding:  # starts as the decoder's table; as after some training, let it differ
        assert torch.equal(um.encoder_embed.weight, um.embed.weight)
        with torch.no_grad():
            um.encoder_embed.weight.add_(0.05 * torch.randn_like(um.encoder_embed.weight))
    out = to_t5gemma(um, tmp_path / "t5gemma")
    hf, info = transformers.T5GemmaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    hf.eval()
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ids, mask, dec = batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        ours = um(ids, attention_mask=mask, decoder_input_ids=dec).logits
    assert (ref - ours).abs().max() <= 1e-4
    tokens = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False, num_beams=1,
                         eos_token_id=1, pad_token_id=0)[:, 1:]
    assert torch.equal(um.generate(ids, attention_mask=mask, max_new_tokens=16), tokens)
    back = from_hf(out)
    assert back.config == um.config
    assert all(torch.equal(a, b) for a, b in zip(um.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize(("source", "changes", "match"), [
    (preset("tiny-causal"), {}, "norm_unit_offset = False: T5Gemma's RMSNorm scales by"),
    (ModelConfig.from_dict({**GEMMA2_LIKE, "qk_norm": True}), {}, "qk_norm = True: T5Gemma has no query/key norms"),
    (ModelConfig.from_dict(GEMMA2_LIKE), {"encoder_window_inclusive": False}, "encoder_window_inclusive = False"),
    (ModelConfig.from_dict({**GEMMA2_LIKE, "activation": "gelu"}), {}, "activation = 'gelu': T5Gemma's MLP is gated"),
])
def test_what_t5gemma_cannot_express_is_one_clear_line(source, changes, match, tmp_path) -> None:
    um = adapted(source, **changes)
    with pytest.raises(ConfigError, match=match) as err:
        to_t5gemma(um, tmp_path / "out")
    assert "\n" not in str(err.value) and str(err.value).startswith("cannot export this model as T5Gemma: ")
    assert not (tmp_path / "out").exists()
