"""Adaptation between families by weight mapping, for ``init_from`` with another ``arch``.

* causal <-> prefix decoder: the same weights (only the mask differs); U-PaLM continues a causal model
  as a prefix decoder with UL2R (Tay et al. 2022).
* decoder-only -> encoder-decoder, the T5Gemma way (Zhang et al. 2025, "Encoder-Decoder Gemma:
  Improving the Quality-Efficiency Trade-Off via Adaptation"): the encoder and the decoder are both
  initialised from the decoder-only model, and each decoder layer's cross-attention from that layer's
  self-attention. The mapping, for every layer ``i`` of the source decoder stack::

      encoder.layers.i.*                    <- decoder.layers.i.*           (attention, MLP, norms)
      decoder.layers.i.*                    <- decoder.layers.i.*           (the same weights again)
      decoder.layers.i.cross_attn.{q,k,v,o}_proj <- decoder.layers.i.attn.{q,k,v,o}_proj
      decoder.layers.i.cross_norm           <- decoder.layers.i.attn_norm
      encoder.final_norm, decoder.final_norm <- decoder.final_norm
      embed, lm_head                        <- embed, lm_head (shared)

  Identity (tested): with every cross-attention output projection set to zero, the adapted decoder is
  the source model, so it reproduces its logits exactly. The target may use fewer layers per stack
  (the first ``n`` source layers are used); it must keep the widths.
"""

from __future__ import annotations

from torch import Tensor

from unimask.config import ModelConfig
from unimask.errors import ConfigError

_SHAPE_FIELDS = ("vocab_size", "d_model", "n_heads", "d_ff", "kv_heads", "head_dim_", "activation", "norm",
                 "norm_position", "bias", "use_qkv_bias", "use_mlp_bias", "parallel_block", "position")


def needs_adaptation(source: ModelConfig, target: ModelConfig) -> bool:
    """Whether weights of ``source`` must be mapped (not copied) to build ``target``."""
    decoders = ("causal", "prefix")
    return source.arch in decoders and target.arch == "encoder_decoder"


def check_compatible(source: ModelConfig, target: ModelConfig) -> None:
    for name in _SHAPE_FIELDS:
        a, b = getattr(source, name), getattr(target, name)
        if a != b:
            raise ConfigError(f"cannot adapt a {source.arch} model to {target.arch}: {name} {a!r} -> {b!r}; an "
                              "adaptation keeps every width and block setting (change only arch and layer counts)")
    if target.n_layers > source.n_layers or target.encoder_layers > source.n_layers:
        raise ConfigError(f"cannot adapt {source.n_layers} decoder layers into {target.encoder_layers} + "
                          f"{target.n_layers} layers; each stack can take at most the source's layers")


def decoder_to_encoder_decoder(state: dict[str, Tensor], source: ModelConfig, target: ModelConfig,
                               ) -> dict[str, Tensor]:
    """The T5Gemma mapping (see the module docstring): a full encoder-decoder state from a decoder's."""
    check_compatible(source, target)
    out: dict[str, Tensor] = {}
    for key in ("embed.weight", "lm_head.weight"):
        if key in state:
            out[key] = state[key].clone()
    for key, value in state.items():
        if key.startswith("decoder.") and not key.startswith("decoder.layers."):
            rest = key[len("decoder."):]  # final_norm, positions, ...
            out[f"encoder.{rest}"] = value.clone()
            out[f"decoder.{rest}"] = value.clone()
    for stack, n in (("encoder", target.encoder_layers), ("decoder", target.n_layers)):
        for i in range(n):
            prefix = f"decoder.layers.{i}."
            for key, value in state.items():
                if key.startswith(prefix):
                    out[f"{stack}.layers.{i}.{key[len(prefix):]}"] = value.clone()
            if stack == "decoder":
                for key, value in state.items():
                    if key.startswith(prefix + "attn."):
                        out[f"decoder.layers.{i}.cross_attn.{key[len(prefix + 'attn.'):]}"] = value.clone()
                    if key.startswith(prefix + "attn_norm."):
                        out[f"decoder.layers.{i}.cross_norm.{key[len(prefix + 'attn_norm.'):]}"] = value.clone()
    return out


__all__ = ["check_compatible", "decoder_to_encoder_decoder", "needs_adaptation"]
