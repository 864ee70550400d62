"""T5 v1.0 and v1.1 / Flan-T5 <-> unimask encoder-decoder.

T5 (Raffel et al. 2020): pre-norm RMSNorm without bias, no attention scaling (folded into the
initialisation), learned relative position buckets held by the first layer of each stack and shared by
all its layers (unimask: one ``rel_bias`` per stack), ReLU MLP, tied embeddings with the decoder output
rescaled by ``d_model ** -0.5``. T5 v1.1 and Flan-T5 (Chung et al. 2022) use a gated-GELU MLP (tanh
approximation) and an untied head without that rescaling.

transformers 5 always ties T5's head in its config (``tie_word_embeddings`` is forced true) and keeps the
v1.0 rescaling in ``scale_decoder_outputs``; a separate ``lm_head.weight`` in the checkpoint unties it.
We follow the tensors: the head is tied exactly when ``lm_head.weight`` is absent or equal to the
embedding.
"""

from __future__ import annotations

from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation

MODEL_TYPES = {"t5": "T5ForConditionalGeneration"}
ARCH = "encoder_decoder"
IGNORED: tuple[str, ...] = ()
HEAD, EMBED = "lm_head.weight", "shared.weight"
ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def hf_ties(hf: dict[str, Any]) -> bool:
    return True  # decided by the tensors, see the module docstring


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    proj = str(hf.get("feed_forward_proj", "relu"))
    parts = proj.split("-")
    gated = parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        raise ConfigError(f"{where}: feed_forward_proj '{proj}' is not understood (expected ACT or gated-ACT)")
    act = "gelu_new" if proj == "gated-gelu" else parts[-1]
    activation, approx = gelu_kind(act, where, gated=gated)
    if "scale_decoder_outputs" in hf:
        scale = bool(hf["scale_decoder_outputs"])
    else:  # transformers 4: the rescaling goes with tie_word_embeddings
        scale = bool(hf.get("tie_word_embeddings", True))
    if scale and not tied:
        raise ConfigError(f"{where}: scaled decoder outputs with an untied lm_head are not supported")
    vocab = int(hf["vocab_size"])
    pad = check_id(first_id(hf.get("pad_token_id", 0)), vocab)
    pad = 0 if pad is None else pad
    start = check_id(first_id(hf.get("decoder_start_token_id")), vocab)
    layers = int(hf.get("num_layers", 6))
    return ModelConfig(
        arch="encoder_decoder", vocab_size=vocab, d_model=int(hf["d_model"]), n_encoder_layers=layers,
        n_layers=int(hf.get("num_decoder_layers") or layers), n_heads=int(hf["num_heads"]), head_dim=int(hf["d_kv"]),
        d_ff=int(hf["d_ff"]), activation=activation, gelu_approximate=approx, norm="rmsnorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-6)), position="t5_relative",
        rel_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        rel_max_distance=int(hf.get("relative_attention_max_distance", 128)),
        max_seq_len=int(hf.get("n_positions", 512)), tie_embeddings=tied, scale_tied_output=scale and tied,
        scale_attention=False, bias=False, pad_token_id=pad,
        bos_token_id=check_id(first_id(hf.get("bos_token_id")), vocab),
        eos_token_id=check_id(first_id(hf.get("eos_token_id", 1)), vocab),
        decoder_start_token_id=pad if start is None else start,
    )


def _feed_forward_proj(config: ModelConfig) -> str:
    act = hf_activation(config)
    if not config.gated:
        return act
    if act == "gelu_new":
        return "gated-gelu"  # transformers maps exactly this name to the tanh GELU
    return f"gated-{act}"


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    scaled = c.tie_embeddings and c.scale_tied_output
    return {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": c.vocab_size,
        "d_model": c.d_model, "d_kv": c.head_dim_, "d_ff": c.d_ff, "num_layers": c.encoder_layers,
        "num_decoder_layers": c.n_layers, "num_heads": c.n_heads,
        "relative_attention_num_buckets": c.rel_buckets, "relative_attention_max_distance": c.rel_max_distance,
        "dropout_rate": c.dropout, "layer_norm_epsilon": c.norm_eps, "initializer_factor": 1.0,
        "feed_forward_proj": _feed_forward_proj(c), "is_encoder_decoder": True, "n_positions": c.max_seq_len,
        # transformers 4 rescales exactly when tied; transformers 5 reads scale_decoder_outputs.
        # A tied but unscaled head is written as an untied copy, which both versions read correctly.
        "tie_word_embeddings": scaled, "scale_decoder_outputs": scaled,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "bos_token_id": c.bos_token_id,
        "decoder_start_token_id": c.start_token_id, "use_cache": True,
    }


def rules(config: ModelConfig) -> list[Rule]:
    c = config
    tied, scaled = c.tie_embeddings, c.tie_embeddings and c.scale_tied_output
    out = [Rule(EMBED, ("embed.weight",), aliases=ALIASES + ((HEAD,) if tied else ()),
                export_aliases=(HEAD,) if tied and not scaled else ()),
           Rule(HEAD, ("lm_head.weight",))]
    for stack, n in (("encoder", c.encoder_layers), ("decoder", c.n_layers)):
        out += [Rule(f"{stack}.final_layer_norm.weight", (f"{stack}.final_norm.weight",)),
                Rule(f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                     (f"{stack}.rel_bias.embedding.weight",))]
        for i in range(n):
            hf, um = f"{stack}.block.{i}.layer.", f"{stack}.layers.{i}."
            attn = [("0.SelfAttention", "attn", "0.layer_norm", "attn_norm")]
            if stack == "decoder":
                attn.append(("1.EncDecAttention", "cross_attn", "1.layer_norm", "cross_norm"))
            for hf_attn, um_attn, hf_norm, um_norm in attn:
                out += [Rule(f"{hf}{hf_attn}.{p}.weight", (f"{um}{um_attn}.{p}_proj.weight",)) for p in "qkvo"]
                out.append(Rule(f"{hf}{hf_norm}.weight", (f"{um}{um_norm}.weight",)))
            ff = f"{hf}{len(attn)}."
            out.append(Rule(ff + "layer_norm.weight", (um + "mlp_norm.weight",)))
            if c.gated:
                out += [Rule(ff + "DenseReluDense.wi_0.weight", (um + "mlp.gate_proj.weight",)),
                        Rule(ff + "DenseReluDense.wi_1.weight", (um + "mlp.up_proj.weight",))]
            else:
                out.append(Rule(ff + "DenseReluDense.wi.weight", (um + "mlp.up_proj.weight",)))
            out.append(Rule(ff + "DenseReluDense.wo.weight", (um + "mlp.down_proj.weight",)))
    return out
