"""GPT-2 <-> unimask causal decoder.

GPT-2 (Radford et al. 2019): learned absolute positions, pre-norm LayerNorm with biases, GELU MLP
(``gelu_new`` is the tanh approximation of Hendrycks & Gimpel 2016), tied head. Its linear layers are
``Conv1D`` modules whose weights are stored ``(in, out)``, i.e. transposed with respect to ``nn.Linear``,
and q/k/v are one fused ``c_attn`` projection.
"""

from __future__ import annotations

from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation

MODEL_TYPES = {"gpt2": "GPT2LMHeadModel"}
ARCH = "causal"
IGNORED = (r"\.attn\.(masked_)?bias$",)  # causal-mask buffers stored by old transformers versions
HEAD, EMBED = "lm_head.weight", "transformer.wte.weight"


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", True))


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if hf.get(flag):
            raise ConfigError(f"{where}: GPT-2 with {flag}=true is not supported")
    d = int(hf["n_embd"])
    activation, approx = gelu_kind(hf.get("activation_function", "gelu_new"), where, gated=False)
    vocab = int(hf["vocab_size"])
    eos = check_id(first_id(hf.get("eos_token_id")), vocab)
    pad = check_id(first_id(hf.get("pad_token_id")), vocab)
    return ModelConfig(
        arch="causal", vocab_size=vocab, d_model=d, n_layers=int(hf["n_layer"]), n_heads=int(hf["n_head"]),
        d_ff=int(hf.get("n_inner") or 4 * d), activation=activation, gelu_approximate=approx, norm="layernorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), position="learned",
        max_seq_len=int(hf.get("n_positions", 1024)), tie_embeddings=tied, bias=True,
        scale_attention=bool(hf.get("scale_attn_weights", True)), init_std=float(hf.get("initializer_range", 0.02)),
        pad_token_id=pad if pad is not None else (eos if eos is not None else 0),
        bos_token_id=check_id(first_id(hf.get("bos_token_id")), vocab), eos_token_id=eos,
    )


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    return {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": c.vocab_size,
        "n_embd": c.d_model, "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.d_ff,
        "n_positions": c.max_seq_len, "activation_function": hf_activation(c), "layer_norm_epsilon": c.norm_eps,
        "scale_attn_weights": c.scale_attention, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "initializer_range": c.init_std,
        "resid_pdrop": c.dropout, "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
        "tie_word_embeddings": c.tie_embeddings, "pad_token_id": c.pad_token_id, "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id, "use_cache": True,
    }


def rules(config: ModelConfig) -> list[Rule]:
    tied_alias = (HEAD,) if config.tie_embeddings else ()
    out = [Rule(EMBED, ("embed.weight",), aliases=tied_alias), Rule("transformer.wpe.weight", ("decoder.pos.weight",)),
           Rule(HEAD, ("lm_head.weight",))]
    for leaf in ("weight", "bias"):
        out.append(Rule(f"transformer.ln_f.{leaf}", (f"decoder.final_norm.{leaf}",)))
    for i in range(config.n_layers):
        hf, um = f"transformer.h.{i}.", f"decoder.layers.{i}."
        qkv = tuple(f"{um}attn.{p}_proj" for p in "qkv")
        out += [
            Rule(hf + "attn.c_attn.weight", tuple(f"{p}.weight" for p in qkv), "cat_t"),
            Rule(hf + "attn.c_attn.bias", tuple(f"{p}.bias" for p in qkv), "cat"),
            Rule(hf + "attn.c_proj.weight", (um + "attn.o_proj.weight",), "t"),
            Rule(hf + "attn.c_proj.bias", (um + "attn.o_proj.bias",)),
            Rule(hf + "mlp.c_fc.weight", (um + "mlp.up_proj.weight",), "t"),
            Rule(hf + "mlp.c_fc.bias", (um + "mlp.up_proj.bias",)),
            Rule(hf + "mlp.c_proj.weight", (um + "mlp.down_proj.weight",), "t"),
            Rule(hf + "mlp.c_proj.bias", (um + "mlp.down_proj.bias",)),
        ]
        for leaf in ("weight", "bias"):
            out += [Rule(f"{hf}ln_1.{leaf}", (f"{um}attn_norm.{leaf}",)),
                    Rule(f"{hf}ln_2.{leaf}", (f"{um}mlp_norm.{leaf}",))]
    return out
