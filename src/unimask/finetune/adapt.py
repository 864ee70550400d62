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
      decoder.layers.i.cross_post_norm      <- decoder.layers.i.attn_post_norm   (sandwich norms: Gemma)
      encoder.final_norm, decoder.final_norm <- decoder.final_norm
      embed, lm_head                        <- embed, lm_head (shared)
      encoder_embed                         <- embed   (when the encoder has its own: encoder_embedding)

  Identity (tested): with every cross-attention output projection set to zero, the adapted decoder is
  the source model, so it reproduces its logits exactly. The target may use fewer layers per stack
  (the first ``n`` source layers are used); it must keep the widths.

* export to transformers' T5Gemma (``T5GemmaForConditionalGeneration``): ``t5gemma_target`` gives the
  encoder-decoder config of a Gemma-2-shaped decoder, ``to_t5gemma`` writes the adapted model, or says in one
  line which config field and value T5Gemma cannot express (a SwiGLU LLaMA without sandwich norms, a Gemma 3
  with QK-norm, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
                    for norm, cross in (("attn_norm.", "cross_norm."), ("attn_post_norm.", "cross_post_norm.")):
                        if key.startswith(prefix + norm):
                            out[f"decoder.layers.{i}.{cross}{key[len(prefix + norm):]}"] = value.clone()
    if target.encoder_embedding and "embed.weight" in state:  # T5Gemma: both tables start as the decoder's
        out["encoder_embed.weight"] = state["embed.weight"].clone()
    return out


def t5gemma_target(source: ModelConfig, **changes: Any) -> ModelConfig:
    """The encoder-decoder a decoder-only ``source`` adapts to the T5Gemma way: the same widths, an encoder as
    deep as the decoder, the decoder started from ``bos_token_id`` (T5Gemma's start token), an inclusive encoder
    window where layers are windowed (T5Gemma's bidirectional window); ``changes`` override any field."""
    if source.arch not in ("causal", "prefix"):
        raise ConfigError(f"t5gemma_target: the source must be a decoder-only model (arch is '{source.arch}')")
    fields: dict[str, Any] = dict(arch="encoder_decoder", n_encoder_layers=source.n_layers,
                                  encoder_window_inclusive=source.sliding_window is not None)
    if source.bos_token_id is not None:
        fields["decoder_start_token_id"] = source.bos_token_id
    return source.replace(**{**fields, **changes})


def to_t5gemma(model: Any, directory: str | Path, *, tokenizer_dir: str | Path | None = None) -> Path:
    """Write an encoder-decoder (e.g. adapted by ``decoder_to_encoder_decoder``) as a transformers T5Gemma
    checkpoint; ``ConfigError`` names the first config field (and its value) that T5Gemma cannot express."""
    from unimask.interop import t5gemma, to_hf

    why = t5gemma.unsupported(model.config)
    if why:
        raise ConfigError(f"cannot export this model as T5Gemma: {why}")
    return to_hf(model, directory, model_type="t5gemma", tokenizer_dir=tokenizer_dir)


__all__ = ["check_compatible", "decoder_to_encoder_decoder", "needs_adaptation", "t5gemma_target", "to_t5gemma"]
