"""FLOPs, memory, time, cost and energy: checked against a FLOP counter and published examples."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import unimask
from unimask.analysis.compute import (
    Setup,
    activation_memory,
    energy_and_co2,
    estimate,
    forward_flops_per_sequence,
    inference_flops_per_token,
    kv_cache_bytes_per_token,
    layer_activation_bytes,
    training_flops,
)
from unimask.config import preset
from unimask.errors import UnimaskError


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-encdec", "tiny-glm"])
def test_forward_flops_equal_torch_flop_counter(name: str) -> None:
    """Model FLOPs (2 per weight and token + 4HQ per query-key pair) equal torch's count of the eager model."""
    config = preset(name)
    model = unimask.build_model(config)
    model.set_attention_backend("eager")
    x = torch.randint(3, 100, (2, 12))
    with FlopCounterMode(display=False) as counter:
        if config.arch == "encoder_decoder":
            model(x, decoder_input_ids=torch.randint(3, 100, (2, 5)))
        else:
            model(x)
    f = forward_flops_per_sequence(config, 12, 5)
    assert counter.get_total_flops() == 2 * (f["matmul"] + f["attention"])  # batch of 2


def test_training_is_three_forwards() -> None:
    config = preset("tiny-causal")
    model = unimask.build_model(config)
    model.set_attention_backend("eager")
    x = torch.randint(3, 100, (1, 10))
    with FlopCounterMode(display=False) as counter:
        model(x, labels=x).loss.backward()
    t = training_flops(config, tokens=10, seq_len=10)
    assert counter.get_total_flops() == pytest.approx(t["total"], rel=1e-9)


def test_gpt3_175b_six_nd() -> None:
    """Brown et al. 2020: 175B parameters x 300B tokens -> 3.14e23 FLOPs."""
    t = training_flops(preset("gpt3-175b"), tokens=300e9, seq_len=2048)
    assert t["six_nd"] == pytest.approx(3.14e23, rel=0.005)
    # The attention term (PaLM appendix B) adds 12 L H Q T per token: about 2.7% at T = 2048.
    assert t["total"] / t["six_nd"] == pytest.approx(1.027, abs=0.003)


def test_inference_flops_grow_with_context() -> None:
    c = preset("llama-7b")
    short, long = inference_flops_per_token(c, 1), inference_flops_per_token(c, 2049)
    assert long - short == 4 * 32 * 4096 * 2048
    assert short == pytest.approx(2 * 6.74e9 - 2 * 32000 * 4096, rel=0.01)  # input embedding is a lookup


def test_korthikanti_activation_formula() -> None:
    """s b h (34 + 5 a s / h) bytes per GPT layer with 16-bit activations and dropout (their eq. 2)."""
    config = preset("gpt3-175b", dropout=0.1)
    s, h, a = 2048, 12288, 96
    assert layer_activation_bytes(s, config, 2) == s * h * (34 + 5 * a * s / h)
    acts = activation_memory(config, s, batch_size=3)
    assert acts["checkpointed"] < acts["full"] / 10
    assert activation_memory(config, s, batch_size=1)["full"] * 3 == pytest.approx(acts["full"])


def test_kv_cache_per_token() -> None:
    assert kv_cache_bytes_per_token(preset("llama-7b"))["self"] == 2 * 32 * 32 * 128 * 2  # 0.5 MiB
    # multi-query attention (PaLM): one key/value head
    assert kv_cache_bytes_per_token(preset("palm-540b"))["self"] == 2 * 118 * 1 * 256 * 2
    assert kv_cache_bytes_per_token(preset("t5-small"))["cross_per_source_token"] == 2 * 6 * 8 * 64 * 2


def test_patterson_gpt3_energy_and_co2() -> None:
    """Patterson et al. 2021: 10,000 V100s for 14.8 days, 330 W each, PUE 1.1 -> 1,287 MWh; 429 g/kWh -> 552 t."""
    e = energy_and_co2(10_000 * 14.8 * 24, power_w=330, pue=1.1, grid_gco2_per_kwh=429)
    assert e["energy_kwh"] / 1000 == pytest.approx(1287, rel=0.01)
    assert e["co2_kg"] / 1000 == pytest.approx(552, rel=0.01)


def test_time_cost_and_energy_follow_from_flops() -> None:
    setup = Setup(tokens=300e9, accelerator="v100", count=10_000, mfu=0.2, pue=1.1, grid_gco2_per_kwh=429)
    est = estimate(preset("gpt3-175b"), setup, name="gpt3-175b")
    seconds = est.flops["total"] / (10_000 * 125e12 * 0.2)
    assert est.run["seconds"] == pytest.approx(seconds)
    assert est.run["accelerator_hours"] == pytest.approx(seconds / 3600 * 10_000)
    assert est.run["cost_usd"] == pytest.approx(est.run["accelerator_hours"] * 2.50)
    assert 13 < est.run["days"] < 16  # the 14.8 days GPT-3 took at about 20% of V100 peak
    assert est.memory["weights"] == est.params.total * 2
    assert est.memory["adam_states"] == est.params.total * 8


def test_default_tokens_are_compute_optimal() -> None:
    est = estimate(preset("tiny-causal"), Setup(seq_len=64))
    assert est.tokens == 20 * est.params.total


def test_bad_setup_is_a_user_error() -> None:
    with pytest.raises(UnimaskError, match="accelerator"):
        estimate(preset("tiny-causal"), Setup(accelerator="abacus"))
    with pytest.raises(UnimaskError, match="mfu"):
        estimate(preset("tiny-causal"), Setup(mfu=1.5))
