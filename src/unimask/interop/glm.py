"""GLM and GLM-4 (transformers' ``GlmForCausalLM``, ``Glm4ForCausalLM``) <-> unimask causal decoder.

GLM-4 (GLM Team 2024, "ChatGLM: A Family of Large Language Models from GLM-130B to GLM-4 All Tools"), the
causal descendant of the notes' GLM prefix decoder: RMSNorm, SwiGLU with one fused ``gate_up_proj`` (gate
first), GQA with q/k/v biases (``attention_bias``; no output bias), untied head, rotary positions on the first
``partial_rotary_factor`` (0.5) of each head (``rotary_fraction``) in the interleaved (GPT-J) layout. The
``Glm4`` class adds a norm after attention and after the MLP (``sandwich_norm``).

unimask rotates in the rotate-half layout, so the rows of the query and key projections are reordered on
import (interleaved pair ``(2i, 2i + 1)`` of each head becomes ``(i, i + r/2)``) and back on export; q.k is
unchanged by a common reordering of the head dims, so the model computes the same function exactly.
"""

from __future__ import annotations

from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop import llama
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation, simple

MODEL_TYPES = {"glm": "GlmForCausalLM", "glm4": "Glm4ForCausalLM"}
ARCH = "causal"
IGNORED = (r"rotary_emb\.inv_freq$",)
HEAD, EMBED = "lm_head.weight", "model.embed_tokens.weight"


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", False))


def _partial(hf: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``partial_rotary_factor`` (in ``rope_parameters`` or at the top) and the config without it."""
    params = dict(hf.get("rope_parameters") or {})
    factor = float(params.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 0.5)))
    return factor, {**{k: v for k, v in hf.items() if k != "partial_rotary_factor"}, "rope_parameters": params}


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    model_type = hf.get("model_type")
    factor, rest = _partial(hf)
    d, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    kv = int(hf.get("num_key_value_heads") or heads)
    head_dim = int(hf.get("head_dim") or d // heads)
    if int(head_dim * factor) % 2:
        raise ConfigError(f"{where}: partial_rotary_factor {factor} of head_dim {head_dim} gives an odd number of "
                          "rotary dims (config field 'rotary_fraction')")
    activation, approx = gelu_kind(hf.get("hidden_act", "silu"), where, gated=True)
    theta, scaling = llama._rope(rest, where)
    vocab = int(hf["vocab_size"])
    eos = check_id(first_id(hf.get("eos_token_id")), vocab)
    pad = check_id(first_id(hf.get("pad_token_id")), vocab)
    return ModelConfig(
        arch="causal", vocab_size=vocab, d_model=d, n_layers=int(hf["num_hidden_layers"]), n_heads=heads,
        n_kv_heads=None if kv == heads else kv, head_dim=None if head_dim * heads == d else head_dim,
        d_ff=int(hf["intermediate_size"]), activation=activation, gelu_approximate=approx, norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1.5625e-07)), position="rope", rope_theta=theta, rope_scaling=scaling,
        rotary_fraction=factor, sandwich_norm=model_type == "glm4",
        max_seq_len=int(hf.get("max_position_embeddings", 131072)), tie_embeddings=tied, bias=False,
        qkv_bias=bool(hf.get("attention_bias", True)), init_std=float(hf.get("initializer_range", 0.02)),
        pad_token_id=pad if pad is not None else (eos if eos is not None else 0),
        bos_token_id=check_id(first_id(hf.get("bos_token_id")), vocab), eos_token_id=eos,
    )


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    hf = llama.config_to_hf(c, "llama")
    for key in ("attention_bias", "mlp_bias"):
        hf.pop(key, None)
    hf["rope_parameters"] = {**hf["rope_parameters"], "partial_rotary_factor": c.rotary_fraction}
    hf.update(architectures=[MODEL_TYPES[model_type]], model_type=model_type, attention_bias=c.use_qkv_bias,
              partial_rotary_factor=c.rotary_fraction, hidden_act=hf_activation(c))
    return hf


def head_perm(config: ModelConfig, n_heads: int) -> tuple[int, ...]:
    """Rows of a q or k projection: unimask row ``j`` <- HF row ``perm[j]`` (interleaved rotary pairs to halves)."""
    hd, r = config.head_dim_, config.rotary_dim
    one = [*range(0, r, 2), *range(1, r, 2), *range(r, hd)]
    return tuple(h * hd + j for h in range(n_heads) for j in one)


def rules(config: ModelConfig) -> list[Rule]:
    c = config
    tied_alias = (HEAD,) if c.tie_embeddings else ()
    out = [Rule(EMBED, ("embed.weight",), aliases=tied_alias), Rule(HEAD, ("lm_head.weight",)),
           Rule("model.norm.weight", ("decoder.final_norm.weight",))]
    norms = {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
    if c.sandwich_norm:
        norms.update(post_self_attn_layernorm="attn_post_norm", post_mlp_layernorm="mlp_post_norm")
    q_perm, k_perm = head_perm(c, c.n_heads), head_perm(c, c.kv_heads)
    for i in range(c.n_layers):
        hf, um = f"model.layers.{i}.", f"decoder.layers.{i}."
        out += simple(hf, um, norms)
        a, ua = hf + "self_attn.", um + "attn."
        for name, perm in (("q_proj", q_perm), ("k_proj", k_perm)):
            out += [Rule(f"{a}{name}.{leaf}", (f"{ua}{name}.{leaf}",), "perm", perm=perm)
                    for leaf in ("weight", "bias")]
        out += simple(a, ua, {"v_proj": "v_proj", "o_proj": "o_proj"})
        out.append(Rule(hf + "mlp.gate_up_proj.weight", (um + "mlp.gate_proj.weight", um + "mlp.up_proj.weight"),
                        "cat"))
        out += simple(hf + "mlp.", um + "mlp.", {"down_proj": "down_proj"})
    return out
