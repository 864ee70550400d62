"""Gemma 3 (text) <-> unimask causal decoder.

Gemma 3 (Gemma Team 2025): RMSNorm with a ``(1 + weight)`` gain (``norm_unit_offset``), four norms per block
(pre- and post-norm around attention and MLP: ``sandwich_norm``), per-head RMSNorm of queries and keys
(``qk_norm``), GeGLU with the tanh GELU, token embeddings scaled by ``sqrt(d_model)`` (``scale_embedding``),
attention scaled by ``query_pre_attn_scalar ** -0.5``, local sliding-window layers interleaved with global ones
(``layer_types``: ``sliding_window`` / ``sliding_window_layers``), the local layers with their own unscaled
rotary base (``local_rope_theta``), an optional final-logit soft-cap, tied head.

transformers' Gemma 3 never applies ``attn_logit_softcapping`` (Gemma 2 did); the field is read as
transformers runs it, i.e. ignored, with a warning when it is set. ``use_bidirectional_attention`` (the
EmbeddingGemma variant) has no unimask counterpart and is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop import llama
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation, hf_windows, layer_types, simple

log = logging.getLogger(__name__)

MODEL_TYPES = {"gemma3_text": "Gemma3ForCausalLM"}
ARCH = "causal"
IGNORED = (r"rotary_emb\..*inv_freq$", r"embed_tokens\.embed_scale$")
HEAD, EMBED = "lm_head.weight", "model.embed_tokens.weight"


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", True))


def rope_pair(hf: dict[str, Any], where: str) -> tuple[tuple[float, dict[str, Any] | None], float]:
    """``((theta, scaling) of the global layers, theta of the local layers)`` from transformers 5's per-layer-type
    ``rope_parameters`` or transformers 4's ``rope_theta`` / ``rope_local_base_freq`` / ``rope_scaling``."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params):
        full = params.get("full_attention") or {"rope_type": "default", "rope_theta": 1_000_000.0}
        local = params.get("sliding_attention") or {"rope_type": "default", "rope_theta": 10_000.0}
    else:
        full = {"rope_type": "default", "rope_theta": float(hf.get("rope_theta", 1_000_000.0)),
                **(hf.get("rope_scaling") or {})}
        local = {"rope_type": "default", "rope_theta": float(hf.get("rope_local_base_freq", 10_000.0))}
    kind = local.get("rope_type", local.get("type", "default"))
    if kind != "default":
        raise ConfigError(f"{where}: rope_parameters.sliding_attention.rope_type {kind!r} is not supported "
                          "(local_rope_theta is an unscaled rotary base)")
    return llama._rope({"rope_parameters": full}, where), float(local.get("rope_theta", 10_000.0))


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    if hf.get("use_bidirectional_attention"):
        raise ConfigError(f"{where}: use_bidirectional_attention = true (EmbeddingGemma) is not supported; "
                          "unimask's Gemma 3 is a causal decoder")
    if hf.get("attn_logit_softcapping") is not None:
        log.warning("%s: attn_logit_softcapping = %s is ignored, as transformers' Gemma 3 ignores it", where,
                    hf["attn_logit_softcapping"])
    d, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    kv = int(hf.get("num_key_value_heads") or heads)
    head_dim = int(hf.get("head_dim") or d // heads)
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    activation, approx = gelu_kind(act, where, gated=True)
    (theta, scaling), local_theta = rope_pair(hf, where)
    n_layers = int(hf["num_hidden_layers"])
    window, window_layers = hf_windows(hf, n_layers, where)
    vocab = int(hf["vocab_size"])
    bias = bool(hf.get("attention_bias", False))
    pad = check_id(first_id(hf.get("pad_token_id", 0)), vocab)
    eos = check_id(first_id(hf.get("eos_token_id", 1)), vocab)
    cap = hf.get("final_logit_softcapping")
    return ModelConfig(
        arch="causal", vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=heads,
        n_kv_heads=None if kv == heads else kv, head_dim=None if head_dim * heads == d else head_dim,
        d_ff=int(hf["intermediate_size"]), activation=activation, gelu_approximate=approx, norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), norm_unit_offset=True, sandwich_norm=True, qk_norm=True,
        scale_embedding=True, position="rope", rope_theta=theta, rope_scaling=scaling,
        local_rope_theta=local_theta if window is not None else None,
        query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)),
        final_logit_softcap=None if cap is None else float(cap), sliding_window=window,
        sliding_window_layers=window_layers, max_seq_len=int(hf.get("max_position_embeddings", 131072)),
        tie_embeddings=tied, bias=bias, mlp_bias=False if bias else None,
        init_std=float(hf.get("initializer_range", 0.02)), pad_token_id=0 if pad is None else pad,
        bos_token_id=check_id(first_id(hf.get("bos_token_id", 2)), vocab), eos_token_id=eos,
    )


def rope_parameters(c: ModelConfig) -> dict[str, Any]:
    """Per-layer-type ``rope_parameters`` (transformers 5) of a config with global and local layers."""
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        scaling = dict(c.rope_scaling)
        full = {"rope_type": scaling.pop("type", scaling.pop("rope_type", "default")), "rope_theta": c.rope_theta,
                **scaling}
    local = c.local_rope_theta if c.local_rope_theta is not None else c.rope_theta
    return {"full_attention": full, "sliding_attention": {"rope_type": "default", "rope_theta": local}}


def _scalar(c: ModelConfig) -> int | float:
    """``query_pre_attn_scalar`` as transformers types it (an int where it is one)."""
    value = c.query_pre_attn_scalar if c.query_pre_attn_scalar is not None else float(c.head_dim_)
    return int(value) if float(value).is_integer() else value


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    return {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": c.vocab_size,
        "hidden_size": c.d_model, "intermediate_size": c.d_ff, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim_,
        "hidden_activation": "gelu_pytorch_tanh" if hf_activation(c) == "gelu_new" else hf_activation(c),
        "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps, "initializer_range": c.init_std,
        "tie_word_embeddings": c.tie_embeddings, "rope_parameters": rope_parameters(c),
        "query_pre_attn_scalar": _scalar(c),
        # a stack without windowed layers still needs a window value; every layer is then full_attention
        "sliding_window": c.sliding_window if c.sliding_window is not None else c.max_seq_len,
        "layer_types": layer_types(c, c.n_layers), "final_logit_softcapping": c.final_logit_softcap,
        "attn_logit_softcapping": None, "attention_bias": c.bias, "attention_dropout": 0.0,
        "use_bidirectional_attention": False, "pad_token_id": c.pad_token_id, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "use_cache": True,
    }


def block_rules(hf: str, um: str) -> list[Rule]:
    """One Gemma block: four norms, q/k/v/o with q/k norms, the gated MLP."""
    out = simple(hf, um, {"input_layernorm": "attn_norm", "post_attention_layernorm": "attn_post_norm",
                          "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "mlp_post_norm"})
    out += simple(hf + "self_attn.", um + "attn.", {p: p for p in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm",
                                                                  "k_norm")})
    out += simple(hf + "mlp.", um + "mlp.", {p: p for p in ("gate_proj", "up_proj", "down_proj")})
    return out


def rules(config: ModelConfig) -> list[Rule]:
    tied_alias = (HEAD,) if config.tie_embeddings else ()
    out = [Rule(EMBED, ("embed.weight",), aliases=tied_alias), Rule(HEAD, ("lm_head.weight",)),
           Rule("model.norm.weight", ("decoder.final_norm.weight",))]
    for i in range(config.n_layers):
        out += block_rules(f"model.layers.{i}.", f"decoder.layers.{i}.")
    return out
