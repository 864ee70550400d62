"""LLaMA and its derivatives (Mistral, Qwen2, Qwen3) <-> unimask causal decoder.

LLaMA (Touvron et al. 2023): pre-norm RMSNorm, SwiGLU MLP (Shazeer 2020), rotary positions (Su et al.
2021) in the rotate-half layout, untied head by default; GQA/MQA via ``num_key_value_heads`` (Ainslie et
al. 2023). Llama 3 adds the ``llama3`` rope scaling, Code Llama / long-context variants use ``linear``.
Mistral (Jiang et al. 2023) has the same tensors and a sliding window on every layer. Qwen2 (Yang et al.
2024) adds biases to q/k/v only and may window the layers from ``max_window_layers`` on (``layer_types`` in
transformers 5). Qwen3 (Yang et al. 2025) drops those biases (``attention_bias`` covers q/k/v/o) and
normalises queries and keys per head (``q_norm``/``k_norm``: ``qk_norm``). Windows become
``sliding_window`` / ``sliding_window_layers`` (unimask's windowed mask), never a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation, hf_windows, layer_types, simple

log = logging.getLogger(__name__)

MODEL_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}
ARCH = "causal"
IGNORED = (r"rotary_emb\.inv_freq$",)
HEAD, EMBED = "lm_head.weight", "model.embed_tokens.weight"
ROPE_KEYS = {"linear": ("factor",),
             "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", False))


def _rope(hf: dict[str, Any], where: str) -> tuple[float, dict[str, Any] | None]:
    """``rope_theta`` and rope scaling from a transformers 5 (``rope_parameters``) or 4 (``rope_scaling``) config."""
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(params, dict) or ("rope_type" not in params and "type" not in params and
                                        "rope_theta" not in params and params):
        raise ConfigError(f"{where}: per-layer rope parameters are not supported")
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    if float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ConfigError(f"{where}: partial_rotary_factor != 1 is not supported")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind not in ROPE_KEYS:
        raise ConfigError(f"{where}: rope type '{kind}' is not supported; supported: default, "
                          f"{', '.join(ROPE_KEYS)}")
    scaling: dict[str, Any] = {"rope_type": kind}
    for key in ROPE_KEYS[kind]:
        if key in params:
            scaling[key] = float(params[key]) if key != "original_max_position_embeddings" else int(params[key])
    return theta, scaling


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    model_type = hf.get("model_type")
    d, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    kv = int(hf.get("num_key_value_heads") or heads)
    head_dim = int(hf.get("head_dim") or d // heads)
    activation, approx = gelu_kind(hf.get("hidden_act", "silu"), where, gated=True)
    theta, scaling = _rope(hf, where)
    if model_type == "qwen2":
        bias, qkv_bias, mlp_bias = False, True, None
    elif model_type == "mistral":
        bias, qkv_bias, mlp_bias = False, None, None
    elif model_type == "qwen3":
        bias, qkv_bias = bool(hf.get("attention_bias", False)), None
        mlp_bias = False if bias else None
    else:
        bias = bool(hf.get("attention_bias", False))
        mlp = bool(hf.get("mlp_bias", False))
        qkv_bias, mlp_bias = None, (None if mlp == bias else mlp)
    max_len = int(hf.get("max_position_embeddings", 2048))
    n_layers = int(hf["num_hidden_layers"])
    if model_type == "llama" or (model_type != "mistral" and not hf.get("use_sliding_window", False)):
        window, window_layers = None, None  # llama has no window; qwen's applies only when switched on
    else:
        window, window_layers = hf_windows(hf, n_layers, where, all_layers=model_type == "mistral",
                                           from_layer=int(hf.get("max_window_layers", n_layers)))
    vocab = int(hf["vocab_size"])
    eos = check_id(first_id(hf.get("eos_token_id")), vocab)
    if isinstance(hf.get("eos_token_id"), list) and len(hf["eos_token_id"]) > 1:
        log.warning("%s: several EOS ids %s; generation stops at the first one only", where, hf["eos_token_id"])
    pad = check_id(first_id(hf.get("pad_token_id")), vocab)
    return ModelConfig(
        arch="causal", vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=heads,
        n_kv_heads=None if kv == heads else kv, head_dim=None if head_dim * heads == d else head_dim,
        d_ff=int(hf["intermediate_size"]), activation=activation, gelu_approximate=approx, norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), position="rope", rope_theta=theta, rope_scaling=scaling,
        max_seq_len=max_len, tie_embeddings=tied, bias=bias, qkv_bias=qkv_bias, mlp_bias=mlp_bias,
        init_std=float(hf.get("initializer_range", 0.02)),
        pad_token_id=pad if pad is not None else (eos if eos is not None else 0),
        bos_token_id=check_id(first_id(hf.get("bos_token_id")), vocab), eos_token_id=eos,
        qk_norm=model_type == "qwen3", sliding_window=window, sliding_window_layers=window_layers,
    )


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        scaling = dict(c.rope_scaling)
        kind = scaling.pop("type", scaling.pop("rope_type", "default"))
        rope = {"rope_type": kind, "rope_theta": c.rope_theta, **scaling}
    hf: dict[str, Any] = {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": c.vocab_size,
        "hidden_size": c.d_model, "intermediate_size": c.d_ff, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim_,
        "hidden_act": hf_activation(c), "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps,
        "initializer_range": c.init_std, "tie_word_embeddings": c.tie_embeddings,
        # transformers 5 reads rope_parameters; 4.x reads rope_theta / rope_scaling
        "rope_parameters": rope, "rope_theta": c.rope_theta,
        "rope_scaling": None if rope["rope_type"] == "default" else rope,
        "attention_dropout": 0.0, "pad_token_id": c.pad_token_id, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "use_cache": True,
    }
    if model_type == "llama":
        hf.update(attention_bias=c.bias, mlp_bias=c.use_mlp_bias)
    elif model_type == "mistral":  # no bias switches; one window for every layer or none
        hf.update(sliding_window=c.sliding_window if c.sliding_window_layers is None else None)
    else:  # qwen2 (q/k/v biases fixed by the architecture) and qwen3 (attention_bias)
        windowed = c.sliding_window is not None
        hf.update(sliding_window=c.sliding_window, use_sliding_window=windowed, max_window_layers=c.n_layers,
                  layer_types=layer_types(c, c.n_layers))
        if model_type == "qwen3":
            hf["attention_bias"] = c.bias
    return hf


def rules(config: ModelConfig) -> list[Rule]:
    tied_alias = (HEAD,) if config.tie_embeddings else ()
    out = [Rule(EMBED, ("embed.weight",), aliases=tied_alias), Rule(HEAD, ("lm_head.weight",)),
           Rule("model.norm.weight", ("decoder.final_norm.weight",))]
    for i in range(config.n_layers):
        hf, um = f"model.layers.{i}.", f"decoder.layers.{i}."
        out += simple(hf, um, {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"})
        out += simple(hf + "self_attn.", um + "attn.", {p: p for p in ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "q_norm", "k_norm")})
        out += simple(hf + "mlp.", um + "mlp.", {p: p for p in ("gate_proj", "up_proj", "down_proj")})
    return out
