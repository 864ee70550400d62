"""ModelConfig: validation with messages that name the field, JSON round trip, presets."""

from __future__ import annotations

import pytest

from unimask import PRESETS, ModelConfig, build_model, preset
from unimask.errors import ConfigError


def test_json_round_trip_for_every_preset() -> None:
    for name in PRESETS:
        cfg = preset(name)
        assert ModelConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(("fields", "needle"), [
    ({"vocab_sise": 10}, "vocab_sise"),
    ({"d_model": "64"}, "d_model"),
    ({"n_layers": 0}, "n_layers"),
    ({"d_ff": -4}, "d_ff"),
    ({"d_model": 60, "n_heads": 7}, "n_heads"),
    ({"n_kv_heads": 3}, "n_kv_heads"),
    ({"arch": "decoder"}, "arch"),
    ({"activation": "tanh"}, "activation"),
    ({"dropout": 1.5}, "dropout"),
    ({"tie_embeddings": 1}, "tie_embeddings"),
    ({"eos_token_id": 10_000}, "eos_token_id"),
])
def test_bad_fields_are_rejected_by_name(fields: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ModelConfig.from_dict({**PRESETS["tiny-causal"], **fields})


def test_head_dim_may_differ_from_d_model_over_heads() -> None:
    cfg = ModelConfig(d_model=60, n_heads=7, head_dim=16, n_kv_heads=7)
    assert cfg.head_dim_ == 16
    model = build_model(cfg)
    assert model.decoder.layers[0].attn.q_proj.weight.shape == (7 * 16, 60)


def test_presets_express_published_shapes() -> None:
    palm = preset("palm-540b")
    assert (palm.n_layers, palm.d_model, palm.n_heads, palm.kv_heads, palm.head_dim_) == (118, 18432, 48, 1, 256)
    t5 = preset("t5-11b")
    assert (t5.encoder_layers, t5.n_heads, t5.head_dim_, t5.d_ff) == (24, 128, 128, 65536)
    assert preset("bart-large").norm_position == "post"
    assert preset("chatglm-6b").arch == "prefix"


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="known presets"):
        preset("gpt-5")


@pytest.mark.parametrize(("fields", "needle"), [
    ({"norm_eps": float("nan")}, "norm_eps"),
    ({"rope_theta": float("inf")}, "rope_theta"),
    ({"rope_scaling": {"type": "linear"}}, "factor"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": -2.0}}, "factor"),
])
def test_non_finite_numbers_and_incomplete_rope_scaling_are_rejected(fields: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ModelConfig.from_dict({**PRESETS["tiny-causal"], **fields})
    # accepted with sound values, and the model builds
    build_model(ModelConfig.from_dict({**PRESETS["tiny-causal"], "rope_scaling": {"type": "linear", "factor": 2.0}}))


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"d_model": 60, "n_heads": 7}')
    with pytest.raises(ConfigError, match=r"bad\.json: .*n_heads"):
        ModelConfig.load(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"arch": "caus\xe9"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.json: not UTF-8"):
        ModelConfig.load(latin)
