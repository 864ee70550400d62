"""BART <-> unimask encoder-decoder.

BART (Lewis et al. 2020): post-norm Transformer layers with biases everywhere, learned absolute positions
whose table is offset by 2 (a fairseq legacy: ids 0 and 1 are never used), a LayerNorm on the embeddings
of each stack (``layernorm_embedding``), exact GELU, tied embeddings, a ``final_logits_bias`` buffer added
to the logits, and decoding that starts from EOS (``decoder_start_token_id = 2``).
"""

from __future__ import annotations

from typing import Any

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation, simple

MODEL_TYPES = {"bart": "BartForConditionalGeneration"}
ARCH = "encoder_decoder"
IGNORED: tuple[str, ...] = ()
HEAD, EMBED = "lm_head.weight", "model.shared.weight"
ALIASES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")
POS_OFFSET = 2


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", True))


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    for enc, dec in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(enc, 16) != hf.get(dec, 16):
            raise ConfigError(f"{where}: {enc} != {dec} is not supported (unimask stacks share their shapes)")
    for flag in ("add_final_layer_norm", "normalize_before"):  # mBART-style variants
        if hf.get(flag):
            raise ConfigError(f"{where}: {flag}=true is not supported")
    activation, approx = gelu_kind(hf.get("activation_function", "gelu"), where, gated=False)
    vocab = int(hf["vocab_size"])
    eos = check_id(first_id(hf.get("eos_token_id", 2)), vocab)
    pad = check_id(first_id(hf.get("pad_token_id", 1)), vocab)
    start = check_id(first_id(hf.get("decoder_start_token_id", 2)), vocab)
    return ModelConfig(
        arch="encoder_decoder", vocab_size=vocab, d_model=int(hf["d_model"]),
        n_encoder_layers=int(hf.get("encoder_layers", 12)), n_layers=int(hf.get("decoder_layers", 12)),
        n_heads=int(hf.get("encoder_attention_heads", 16)), d_ff=int(hf.get("encoder_ffn_dim", 4096)),
        activation=activation, gelu_approximate=approx, norm="layernorm", norm_eps=1e-5, norm_position="post",
        embedding_norm=True, position="learned", learned_pos_offset=POS_OFFSET,
        max_seq_len=int(hf.get("max_position_embeddings", 1024)), tie_embeddings=tied,
        scale_embedding=bool(hf.get("scale_embedding", False)), bias=True, final_logits_bias=True,
        init_std=float(hf.get("init_std", 0.02)), pad_token_id=0 if pad is None else pad,
        bos_token_id=check_id(first_id(hf.get("bos_token_id", 0)), vocab), eos_token_id=eos,
        decoder_start_token_id=start,
    )


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    c = config
    return {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": c.vocab_size,
        "d_model": c.d_model, "encoder_layers": c.encoder_layers, "decoder_layers": c.n_layers,
        "encoder_attention_heads": c.n_heads, "decoder_attention_heads": c.n_heads, "encoder_ffn_dim": c.d_ff,
        "decoder_ffn_dim": c.d_ff, "activation_function": hf_activation(c), "max_position_embeddings": c.max_seq_len,
        "scale_embedding": c.scale_embedding, "tie_word_embeddings": c.tie_embeddings, "init_std": c.init_std,
        "dropout": c.dropout, "attention_dropout": 0.0, "activation_dropout": 0.0, "is_encoder_decoder": True,
        "pad_token_id": c.pad_token_id, "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
        "decoder_start_token_id": c.start_token_id, "forced_eos_token_id": c.eos_token_id, "use_cache": True,
    }


def rules(config: ModelConfig) -> list[Rule]:
    c = config
    aliases = ALIASES + ((HEAD,) if c.tie_embeddings else ())
    # transformers 5 ties the stacks' embeddings to ``shared`` only when tie_word_embeddings is true
    written = () if c.tie_embeddings else ALIASES
    out = [Rule(EMBED, ("embed.weight",), aliases=aliases, export_aliases=written), Rule(HEAD, ("lm_head.weight",)),
           Rule("final_logits_bias", ("final_logits_bias",), "row", optional=True)]
    for stack, n in (("encoder", c.encoder_layers), ("decoder", c.n_layers)):
        out.append(Rule(f"model.{stack}.embed_positions.weight", (f"{stack}.pos.weight",)))
        out += simple(f"model.{stack}.", f"{stack}.", {"layernorm_embedding": "embed_norm"})
        for i in range(n):
            hf, um = f"model.{stack}.layers.{i}.", f"{stack}.layers.{i}."
            names = {"self_attn_layer_norm": "attn_norm", "final_layer_norm": "mlp_norm", "fc1": "mlp.up_proj",
                     "fc2": "mlp.down_proj", "self_attn.out_proj": "attn.o_proj"}
            names.update({f"self_attn.{p}_proj": f"attn.{p}_proj" for p in "qkv"})
            if stack == "decoder":
                names.update({"encoder_attn_layer_norm": "cross_norm", "encoder_attn.out_proj": "cross_attn.o_proj"})
                names.update({f"encoder_attn.{p}_proj": f"cross_attn.{p}_proj" for p in "qkv"})
            out += simple(hf, um, names)
    return out
