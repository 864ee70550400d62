"""T5Gemma checkpoints (two Gemma 2 stacks: (1 + w) RMSNorm, pre- and post-norms around self-attention,
cross-attention and MLP, scaled embeddings, query pre-attention scalar, attention and final-logit soft-caps,
local/global layers with an inclusive bidirectional window in the encoder, separate encoder and decoder
embeddings): logits, greedy decoding and export match transformers."""

from __future__ import annotations

import pytest
import torch
from hf_parity import TOL, check_generation, check_roundtrip, logits_diff, padded, randomize
from transformers import T5Config, T5ForConditionalGeneration, T5GemmaConfig, T5GemmaForConditionalGeneration

from unimask.config import preset
from unimask.errors import ConfigError
from unimask.interop import config_from_hf_config, from_hf, to_hf
from unimask.models import build_model

MODULE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, max_position_embeddings=128, sliding_window=3, query_pre_attn_scalar=24,
              attn_logit_softcapping=2.0, final_logit_softcapping=3.0, pad_token_id=0, eos_token_id=1,
              bos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 100.0})
LOCAL_GLOBAL = ["sliding_attention", "full_attention", "sliding_attention"]
CASES = {  # (encoder changes, decoder changes, top-level changes)
    "local-global-tied-2enc-3dec": (dict(num_hidden_layers=2, layer_types=LOCAL_GLOBAL[:2]),
                                    dict(num_hidden_layers=3, layer_types=LOCAL_GLOBAL), {}),
    "untied-mqa-nocaps-linear-3enc-2dec": (
        dict(num_hidden_layers=3, layer_types=LOCAL_GLOBAL), dict(num_hidden_layers=2, layer_types=LOCAL_GLOBAL[:2]),
        dict(tie_word_embeddings=False)),
    "shared-embedding-global-bias": (dict(num_hidden_layers=2, layer_types=["full_attention"] * 2),
                                     dict(num_hidden_layers=2, layer_types=["full_attention"] * 2), {}),
}
CASE_MODULE = {"untied-mqa-nocaps-linear-3enc-2dec": dict(
    num_key_value_heads=1, attn_logit_softcapping=None, final_logit_softcapping=None,
    rope_parameters={"rope_type": "linear", "rope_theta": 100.0, "factor": 2.0}),
    "shared-embedding-global-bias": dict(attention_bias=True)}


def hf_config(case: str) -> T5GemmaConfig:
    enc, dec, top = CASES[case]
    base = {**MODULE, **CASE_MODULE.get(case, {})}
    return T5GemmaConfig(encoder={**base, **enc}, decoder={**base, **dec}, vocab_size=128, **top)


def build(case: str) -> torch.nn.Module:
    model = randomize(T5GemmaForConditionalGeneration(hf_config(case)), seed=len(case))
    if case.startswith("shared-embedding"):  # an adapted checkpoint: both stacks read one table
        with torch.no_grad():
            model.model.encoder.embed_tokens.weight.copy_(model.model.decoder.embed_tokens.weight)
    return model


def batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask = padded([14, 9, 4], 128, pad=0, left=False)  # right-padded encoder input, longer than the window
    dec = torch.randint(4, 128, (3, 9), generator=torch.Generator().manual_seed(3))
    dec[:, 0] = 2  # the decoder starts from bos
    return ids, mask, dec


@pytest.mark.parametrize("case", sorted(CASES))
def test_t5gemma_parity(case: str, tmp_path) -> None:
    hf = build(case)
    um = from_hf(hf)
    ids, mask, dec = batches()
    assert logits_diff(hf, um, ids, mask, dec) <= TOL
    check_generation(hf, um, ids, mask)
    check_roundtrip(hf, um, tmp_path, ids, mask, dec)


def test_t5gemma_fields() -> None:
    c = from_hf(build("local-global-tied-2enc-3dec")).config
    assert (c.arch, c.n_encoder_layers, c.n_layers, c.encoder_embedding, c.tie_embeddings) == (
        "encoder_decoder", 2, 3, True, True)
    assert (c.norm_unit_offset, c.sandwich_norm, c.scale_embedding, c.qk_norm) == (True, True, True, False)
    assert (c.sliding_window, c.sliding_window_layers, c.encoder_window_inclusive) == (3, [0, 2], True)
    assert (c.attn_softcap, c.final_logit_softcap, c.query_pre_attn_scalar) == (2.0, 3.0, 24.0)
    assert (c.decoder_start_token_id, c.bos_token_id, c.rope_theta, c.activation) == (2, 2, 100.0, "gated-gelu")
    u = from_hf(build("untied-mqa-nocaps-linear-3enc-2dec")).config
    assert (u.tie_embeddings, u.n_kv_heads, u.attn_softcap, u.final_logit_softcap) == (False, 1, None, None)
    assert u.rope_scaling == {"rope_type": "linear", "factor": 2.0} and u.sliding_window_layers == [0, 2]
    s = from_hf(build("shared-embedding-global-bias")).config
    assert (s.encoder_embedding, s.bias, s.sliding_window) == (False, True, None)


def test_t5gemma_directory_and_preset(tmp_path) -> None:
    """A saved directory imports the same, and transformers' default T5GemmaConfig is the 2B-2B preset."""
    hf = build("untied-mqa-nocaps-linear-3enc-2dec")
    hf.save_pretrained(tmp_path / "t5g")
    um = from_hf(tmp_path / "t5g")
    ids, mask, dec = batches()
    assert logits_diff(hf, um, ids, mask, dec) <= TOL
    assert config_from_hf_config(T5GemmaConfig().to_dict()) == preset("t5gemma-2b-2b")


@pytest.mark.parametrize("change", [dict(encoder_window_inclusive=False), dict(attn_softcap=None),
                                    dict(final_logit_softcap=None), dict(query_pre_attn_scalar=None)])
def test_each_t5gemma_part_changes_logits(change) -> None:
    """Each part matters at these sizes, so the parity above really tests it."""
    um = from_hf(build("local-global-tied-2enc-3dec"))
    other = build_model(um.config.replace(**change))
    other.load_state_dict(um.state_dict())
    ids, mask, dec = batches()
    with torch.no_grad():
        assert (other(ids, attention_mask=mask, decoder_input_ids=dec).logits
                - um(ids, attention_mask=mask, decoder_input_ids=dec).logits).abs().max() > 1e-3


def test_cross_attention_norms_are_mapped() -> None:
    hf = build("local-global-tied-2enc-3dec")
    um = from_hf(hf)
    layer, ours = hf.model.decoder.layers[1], um.decoder.layers[1]
    assert torch.equal(ours.cross_norm.weight, layer.pre_cross_attn_layernorm.weight)
    assert torch.equal(ours.cross_post_norm.weight, layer.post_cross_attn_layernorm.weight)
    assert torch.equal(um.encoder_embed.weight, hf.model.encoder.embed_tokens.weight)


@pytest.mark.parametrize(("enc", "dec", "match"), [
    (dict(hidden_size=64), {}, r"encoder.hidden_size = 64 but decoder.hidden_size = 32"),
    (dict(num_hidden_layers=2, layer_types=["full_attention", "sliding_attention"]), {},
     r"encoder.layer_types\[0\] = 'full_attention' but decoder.layer_types\[0\] = 'sliding_attention'"),
    (dict(hidden_activation="tanh"), dict(hidden_activation="tanh"), "activation 'tanh' is not supported"),
])
def test_unrepresentable_checkpoints_are_refused(enc, dec, match) -> None:
    layers = dict(num_hidden_layers=2, layer_types=LOCAL_GLOBAL[:2])
    config = T5GemmaConfig(encoder={**MODULE, **layers, **enc}, decoder={**MODULE, **layers, **dec}, vocab_size=128)
    with pytest.raises(ConfigError, match=match):
        config_from_hf_config(config.to_dict())


def test_other_start_token_is_refused() -> None:
    config = hf_config("local-global-tied-2enc-3dec").to_dict()
    config["bos_token_id"] = 5  # generate() would start from 5, training from decoder.bos_token_id = 2
    with pytest.raises(ConfigError, match=r"bos_token_id = 5 but decoder\.bos_token_id = 2"):
        config_from_hf_config(config)


def test_export_refuses_what_t5gemma_cannot_express(tmp_path) -> None:
    t5 = from_hf(T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_layers=1,
                                                     num_heads=4, decoder_start_token_id=0)))
    with pytest.raises(ConfigError, match="t5gemma: position = 't5_relative': T5Gemma uses rotary positions"):
        to_hf(t5, tmp_path / "a", model_type="t5gemma")
    um = from_hf(build("local-global-tied-2enc-3dec"))
    qk = build_model(um.config.replace(qk_norm=True))
    with pytest.raises(ConfigError, match="qk_norm = True: T5Gemma has no query/key norms"):
        to_hf(qk, tmp_path / "b", model_type="t5gemma")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
