"""T5Gemma <-> unimask encoder-decoder.

T5Gemma (Zhang et al. 2025, "Encoder-Decoder Gemma: Improving the Quality-Efficiency Trade-Off via
Adaptation"): two Gemma 2 stacks, a bidirectional encoder and a causal decoder whose every layer adds
cross-attention to the encoder output. Each stack is a Gemma 2 decoder: ``(1 + w)`` RMSNorm
(``norm_unit_offset``), a pre- and a post-norm around every sublayer (``sandwich_norm``; the decoder's
cross-attention too: ``cross_norm`` / ``cross_post_norm``), GeGLU with the tanh GELU, embeddings scaled by
``sqrt(d_model)``, attention scaled by ``query_pre_attn_scalar ** -0.5`` and soft-capped
(``attn_softcap``, cross-attention included), local sliding-window layers interleaved with global ones
(one rotary base for both), a final-logit soft-cap, and a head tied to the decoder's embedding. The encoder
has its own token embedding (``encoder_embedding``), and its windowed layers see ``|q - k| <= window``
(``encoder_window_inclusive``) where the decoder's causal window sees ``q - k < window``.

transformers nests a ``T5GemmaModuleConfig`` for each stack. unimask's two stacks share every width, so the
encoder and decoder configs must agree in everything but their depth (and the windowed layers of a common
index); a checkpoint where they differ (T5Gemma 9B-2B) is refused naming the field. The decoder starts
from ``decoder.bos_token_id`` (transformers' ``_shift_right`` and ``generate``); unimask's
``decoder_start_token_id`` and ``bos_token_id`` both read it. Whether the encoder's embedding is its own
is decided by the tensors: equal encoder and decoder tables import as one shared embedding, and a shared
embedding exports as two equal tables.

Without an ``attention_mask``, transformers' T5Gemma masks the pad tokens of its inputs by itself; unimask
(here as for every family) attends to every token it is given, so pass the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unimask.config import ModelConfig
from unimask.errors import ConfigError
from unimask.interop import llama
from unimask.interop.common import Rule, check_id, first_id, gelu_kind, hf_activation, hf_windows, layer_types, simple

MODEL_TYPES = {"t5gemma": "T5GemmaForConditionalGeneration"}
ARCH = "encoder_decoder"
IGNORED = (r"rotary_emb\..*inv_freq$",)
HEAD, EMBED = "lm_head.out_proj.weight", "model.decoder.embed_tokens.weight"
ENCODER_EMBED = "model.encoder.embed_tokens.weight"
TENSOR_FIELDS = ("encoder_embedding",)  # decided by the tensors (config_from_tensors), not by config.json
# fields of the two module configs that unimask's one config holds once (everything but the depth)
SHARED = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
          "hidden_activation", "max_position_embeddings", "rms_norm_eps", "rope_parameters", "attention_bias",
          "query_pre_attn_scalar", "sliding_window", "attn_logit_softcapping")
DEFAULTS: dict[str, Any] = {"hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
                            "rms_norm_eps": 1e-6, "attention_bias": False, "query_pre_attn_scalar": 256,
                            "sliding_window": 4096, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                            "vocab_size": 256000, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}


def hf_ties(hf: dict[str, Any]) -> bool:
    return bool(hf.get("tie_word_embeddings", True))


def _get(sub: dict[str, Any], key: str) -> Any:
    return sub[key] if key in sub else DEFAULTS.get(key)


def _module_configs(hf: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    enc, dec = hf.get("encoder"), hf.get("decoder")
    if not isinstance(enc, dict) or not isinstance(dec, dict):
        raise ConfigError(f"{where}: a T5Gemma config.json needs 'encoder' and 'decoder' module configs (mappings)")
    for key in SHARED:
        a, b = _get(enc, key), _get(dec, key)
        if key == "head_dim":
            a = a or _get(enc, "hidden_size") // _get(enc, "num_attention_heads")
            b = b or _get(dec, "hidden_size") // _get(dec, "num_attention_heads")
        if a != b:
            raise ConfigError(f"{where}: encoder.{key} = {a!r} but decoder.{key} = {b!r}; unimask's encoder and "
                              "decoder share every width and setting (only their depths may differ)")
    return enc, dec


def _windows(enc: dict[str, Any], dec: dict[str, Any], where: str) -> tuple[int | None, list[int] | None]:
    """One ``sliding_window_layers`` for both stacks: layer ``i`` of each is windowed or not alike."""
    n_enc, n_dec = int(enc["num_hidden_layers"]), int(dec["num_hidden_layers"])

    def types(sub: dict[str, Any], n: int) -> list[str]:
        given = sub.get("layer_types")  # transformers' default: every other layer local, from the first
        return list(given)[:n] if isinstance(given, list) else [
            "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(n)]

    te, td = types(enc, n_enc), types(dec, n_dec)
    for i in range(min(n_enc, n_dec)):
        if te[i] != td[i]:
            raise ConfigError(f"{where}: encoder.layer_types[{i}] = {te[i]!r} but decoder.layer_types[{i}] = "
                              f"{td[i]!r}; unimask windows layer {i} of both stacks alike")
    merged = te if n_enc >= n_dec else td
    return hf_windows({"sliding_window": _get(dec, "sliding_window"), "layer_types": merged}, len(merged), where)


def config_from_hf(hf: dict[str, Any], tied: bool, where: str) -> ModelConfig:
    enc, dec = _module_configs(hf, where)
    d, heads = int(dec["hidden_size"]), int(dec["num_attention_heads"])
    kv = int(_get(dec, "num_key_value_heads") or heads)
    head_dim = int(_get(dec, "head_dim") or d // heads)
    activation, approx = gelu_kind(str(_get(dec, "hidden_activation")), where, gated=True)
    theta, scaling = llama._rope({"rope_parameters": dec.get("rope_parameters") or {}}, where)
    window, window_layers = _windows(enc, dec, where)
    vocab = int(hf.get("vocab_size") or _get(dec, "vocab_size"))
    pad = check_id(first_id(_get(dec, "pad_token_id")), vocab)
    eos = check_id(first_id(_get(dec, "eos_token_id")), vocab)
    start = check_id(first_id(_get(dec, "bos_token_id")), vocab)
    if start is None:
        raise ConfigError(f"{where}: decoder.bos_token_id = {dec.get('bos_token_id')!r}; T5Gemma starts the decoder "
                          "with it, so it must be a token id of the vocabulary")
    for key in ("bos_token_id", "decoder_start_token_id"):  # generate() starts from these when set
        value = first_id(hf.get(key))
        if value is not None and value != start:
            raise ConfigError(f"{where}: {key} = {value} but decoder.bos_token_id = {start}; transformers trains "
                              "from one and generates from the other, which unimask cannot represent")
    bias = bool(_get(dec, "attention_bias"))
    cap, attn_cap = _get(dec, "final_logit_softcapping"), _get(dec, "attn_logit_softcapping")
    return ModelConfig(
        arch="encoder_decoder", vocab_size=vocab, d_model=d, n_layers=int(dec["num_hidden_layers"]),
        n_encoder_layers=int(enc["num_hidden_layers"]), n_heads=heads, n_kv_heads=None if kv == heads else kv,
        head_dim=None if head_dim * heads == d else head_dim, d_ff=int(dec["intermediate_size"]),
        activation=activation, gelu_approximate=approx, norm="rmsnorm", norm_eps=float(_get(dec, "rms_norm_eps")),
        norm_unit_offset=True, sandwich_norm=True, scale_embedding=True, encoder_embedding=True,
        encoder_window_inclusive=window is not None, position="rope", rope_theta=theta, rope_scaling=scaling,
        query_pre_attn_scalar=float(_get(dec, "query_pre_attn_scalar")),
        attn_softcap=None if attn_cap is None else float(attn_cap),
        final_logit_softcap=None if cap is None else float(cap), sliding_window=window,
        sliding_window_layers=window_layers, max_seq_len=int(_get(dec, "max_position_embeddings")),
        tie_embeddings=tied, bias=bias, mlp_bias=False if bias else None,
        dropout=float(hf.get("dropout_rate", 0.0)), init_std=float(dec.get("initializer_range", 0.02)),
        pad_token_id=0 if pad is None else pad, bos_token_id=start, eos_token_id=eos, decoder_start_token_id=start,
    )


def config_from_tensors(config: ModelConfig, tensors: dict[str, Tensor]) -> ModelConfig:
    """The encoder's embedding is its own unless the checkpoint's two tables are equal (one shared table)."""
    enc, dec = tensors.get(ENCODER_EMBED), tensors.get(EMBED)
    shared = enc is None or (dec is not None and enc.shape == dec.shape and torch.equal(enc, dec))
    return config.replace(encoder_embedding=not shared) if config.encoder_embedding == shared else config


def unsupported(config: ModelConfig) -> str:
    """``"field = value: why"`` for the first part of ``config`` T5Gemma cannot express, or ``""``."""
    c = config
    fixed: list[tuple[str, Any, Any, str]] = [
        ("arch", c.arch, "encoder_decoder", "T5Gemma is an encoder-decoder"),
        ("position", c.position, "rope", "T5Gemma uses rotary positions"),
        ("norm", c.norm, "rmsnorm", "T5Gemma normalises with RMSNorm"),
        ("norm_unit_offset", c.norm_unit_offset, True, "T5Gemma's RMSNorm scales by (1 + weight)"),
        ("sandwich_norm", c.sandwich_norm, True, "T5Gemma has a pre- and a post-norm around every sublayer"),
        ("scale_embedding", c.scale_embedding, True, "T5Gemma scales its embeddings by sqrt(d_model)"),
        ("scale_attention", c.scale_attention, True, "T5Gemma scales attention by query_pre_attn_scalar ** -0.5"),
        ("qk_norm", c.qk_norm, False, "T5Gemma has no query/key norms"),
        ("rotary_fraction", c.rotary_fraction, 1.0, "T5Gemma rotates every dim of each head"),
        ("norm_position", c.norm_position, "pre", "T5Gemma is pre-norm"),
        ("parallel_block", c.parallel_block, False, "T5Gemma's blocks are sequential"),
        ("embedding_norm", c.embedding_norm, False, "T5Gemma has no embedding norm"),
        ("final_logits_bias", c.final_logits_bias, False, "T5Gemma's head has no bias"),
        ("use_mlp_bias", c.use_mlp_bias, False, "T5Gemma's MLP has no biases"),
        ("use_qkv_bias", c.use_qkv_bias, c.bias, "T5Gemma's attention_bias covers q, k, v and o alike"),
    ]
    for name, value, want, why in fixed:
        if value != want:
            return f"{name} = {value!r}: {why}"
    if not c.gated:
        return f"activation = {c.activation!r}: T5Gemma's MLP is gated (gated-gelu or swiglu)"
    if c.tie_embeddings and c.scale_tied_output:
        return "scale_tied_output = True: T5Gemma's tied head does not rescale"
    if c.local_rope_theta is not None and c.local_rope_theta != c.rope_theta and c.sliding_window is not None:
        return f"local_rope_theta = {c.local_rope_theta}: T5Gemma's local layers share the global rotary base"
    if any(c.windowed_layer(i) for i in range(c.encoder_layers)) and not c.encoder_window_inclusive:
        return ("encoder_window_inclusive = False: T5Gemma's windowed encoder layers see |q - k| <= sliding_window; "
                "set encoder_window_inclusive = true")
    if c.bos_token_id != c.start_token_id:
        return (f"bos_token_id = {c.bos_token_id!r}: T5Gemma starts the decoder with bos_token_id, and this model "
                f"starts it with {c.start_token_id}; set decoder_start_token_id and bos_token_id alike")
    return ""


def _rope(c: ModelConfig) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": c.rope_theta}
    if c.rope_scaling:
        scaling = dict(c.rope_scaling)
        rope = {"rope_type": scaling.pop("type", scaling.pop("rope_type", "default")), "rope_theta": c.rope_theta,
                **scaling}
    return rope


def _scalar(c: ModelConfig) -> int | float:
    value = c.query_pre_attn_scalar if c.query_pre_attn_scalar is not None else float(c.head_dim_)
    return int(value) if float(value).is_integer() else value


def _module(c: ModelConfig, n_layers: int, decoder: bool) -> dict[str, Any]:
    act = hf_activation(c)
    sub: dict[str, Any] = {
        "model_type": "t5_gemma_module", "vocab_size": c.vocab_size, "hidden_size": c.d_model,
        "intermediate_size": c.d_ff, "num_hidden_layers": n_layers, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim_,
        "hidden_activation": "gelu_pytorch_tanh" if act == "gelu_new" else act,
        "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps, "initializer_range": c.init_std,
        "rope_parameters": _rope(c), "attention_bias": c.bias, "attention_dropout": 0.0,
        "query_pre_attn_scalar": _scalar(c),
        # a stack without windowed layers still needs a window value; every layer is then full_attention
        "sliding_window": c.sliding_window if c.sliding_window is not None else c.max_seq_len,
        "layer_types": layer_types(c, n_layers), "final_logit_softcapping": c.final_logit_softcap,
        "attn_logit_softcapping": c.attn_softcap, "tie_word_embeddings": c.tie_embeddings,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "bos_token_id": c.start_token_id,
        "is_decoder": decoder, "use_cache": True,
    }
    if decoder:
        sub["cross_attention_hidden_size"] = c.d_model
    return sub


def config_to_hf(config: ModelConfig, model_type: str) -> dict[str, Any]:
    why = unsupported(config)
    if why:
        raise ConfigError(why)
    c = config
    return {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "is_encoder_decoder": True,
        "encoder": _module(c, c.encoder_layers, decoder=False), "decoder": _module(c, c.n_layers, decoder=True),
        "vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_embeddings, "dropout_rate": c.dropout,
        "attention_dropout": 0.0, "classifier_dropout_rate": 0.0, "initializer_range": c.init_std,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "bos_token_id": c.start_token_id,
        "use_cache": True,
    }


def rules(config: ModelConfig) -> list[Rule]:
    c = config
    head_alias = (HEAD,) if c.tie_embeddings else ()
    if c.encoder_embedding:
        out = [Rule(EMBED, ("embed.weight",), aliases=head_alias), Rule(ENCODER_EMBED, ("encoder_embed.weight",))]
    else:  # one shared table, written twice (transformers' T5Gemma always has two)
        out = [Rule(EMBED, ("embed.weight",), aliases=(ENCODER_EMBED, *head_alias), export_aliases=(ENCODER_EMBED,))]
    out.append(Rule(HEAD, ("lm_head.weight",)))
    for stack, n in (("encoder", c.encoder_layers), ("decoder", c.n_layers)):
        out.append(Rule(f"model.{stack}.norm.weight", (f"{stack}.final_norm.weight",)))
        for i in range(n):
            hf, um = f"model.{stack}.layers.{i}.", f"{stack}.layers.{i}."
            norms = {"pre_self_attn_layernorm": "attn_norm", "post_self_attn_layernorm": "attn_post_norm",
                     "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "mlp_post_norm"}
            if stack == "decoder":
                norms.update(pre_cross_attn_layernorm="cross_norm", post_cross_attn_layernorm="cross_post_norm")
                out += simple(hf + "cross_attn.", um + "cross_attn.", {p: p for p in ("q_proj", "k_proj", "v_proj",
                                                                                      "o_proj")})
            out += simple(hf, um, norms)
            out += simple(hf + "self_attn.", um + "attn.", {p: p for p in ("q_proj", "k_proj", "v_proj", "o_proj")})
            out += simple(hf + "mlp.", um + "mlp.", {p: p for p in ("gate_proj", "up_proj", "down_proj")})
    return out
