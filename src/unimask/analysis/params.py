"""Parameter counts computed from a ``ModelConfig`` alone, with a breakdown by kind.

The count mirrors the modules that ``unimask.build_model`` creates (a tested identity: for any config the
total equals the number of elements of the built model's parameters), so a 540B architecture is counted
without building it. Nothing here stores a count: the published totals in
``unimask.analysis.published`` are only compared against.

Conventions: a tied output head counts once (as the token embedding); buffers (rotary tables, BART's
``final_logits_bias``) are not parameters. "Non-embedding" parameters follow Kaplan et al. 2020
("Scaling Laws for Neural Language Models"): everything except token embeddings, position tables and an
untied output head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from unimask.config import ModelConfig


@dataclass(frozen=True)
class ParamCount:
    """Parameters of one architecture, split by kind; ``encoder``/``decoder`` split the same total by stack.

    ``positions`` holds learned position tables and T5 relative-position biases; ``attention`` includes
    cross-attention; ``norms`` every LayerNorm/RMSNorm (also the embedding norm); ``output_head`` is 0 when
    the head is tied to the token embedding.
    """

    embeddings: int
    positions: int
    attention: int
    mlp: int
    norms: int
    output_head: int
    encoder: int
    decoder: int

    @property
    def total(self) -> int:
        return self.embeddings + self.positions + self.attention + self.mlp + self.norms + self.output_head

    @property
    def non_embedding(self) -> int:
        """Kaplan et al. 2020's N: without token embeddings, position tables and an untied head."""
        return self.total - self.embeddings - self.positions - self.output_head

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total, "non_embedding": self.non_embedding}


# Per-module counts (weights + biases), mirroring unimask.models ------------------------------------------

def norm_params(config: ModelConfig) -> int:
    """One LayerNorm (weight, optional bias) or RMSNorm (weight) over d_model."""
    d = config.d_model
    if config.norm == "rmsnorm":
        return d
    return d * (2 if config.norm_bias else 1)


def attention_params(config: ModelConfig) -> int:
    """q/k/v/o projections of one attention layer (MHA, GQA or MQA; self or cross)."""
    d, hd, h, hkv = config.d_model, config.head_dim_, config.n_heads, config.kv_heads
    qkv_bias = config.use_qkv_bias
    q = d * h * hd + (h * hd if qkv_bias else 0)
    kv = 2 * (d * hkv * hd + (hkv * hd if qkv_bias else 0))
    o = h * hd * d + (d if config.bias else 0)
    return q + kv + o + qk_norm_params(config)


def qk_norm_params(config: ModelConfig) -> int:
    """The per-head query and key norms of one attention layer (``qk_norm``: Qwen3, Gemma 3), over head_dim."""
    if not config.qk_norm:
        return 0
    per_norm = config.head_dim_ * (2 if config.norm == "layernorm" and config.norm_bias else 1)
    return 2 * per_norm


def mlp_params(config: ModelConfig) -> int:
    """Feed-forward block: up (and gate for SwiGLU/GeGLU, Shazeer 2020) and down projections."""
    d, f, b = config.d_model, config.d_ff, config.bias
    n_in = 2 if config.gated else 1
    return n_in * (d * f + (f if b else 0)) + f * d + (d if b else 0)


def _stack(config: ModelConfig, n_layers: int, cross: bool) -> dict[str, int]:
    """One stack (``models.transformer.Stack``): positions, embedding norm, blocks and final norm."""
    d = config.d_model
    positions = 0
    if config.position == "learned":
        positions = (config.max_seq_len + config.learned_pos_offset) * d
    elif config.position == "t5_relative":
        positions = config.rel_buckets * config.n_heads  # one bias table per stack (T5)
    norms_per_block = 1 + (1 if cross else 0) + (0 if config.parallel_block else 1)
    if config.sandwich_norm:  # a norm after each sublayer too (Gemma's four norms per block, GLM-4)
        norms_per_block *= 2
    norms = n_layers * norms_per_block * norm_params(config)
    norms += norm_params(config) if config.embedding_norm else 0
    norms += norm_params(config) if config.norm_position == "pre" else 0  # final norm (pre-norm only)
    attention = n_layers * attention_params(config) * (2 if cross else 1)
    mlp = n_layers * mlp_params(config)
    return {"positions": positions, "attention": attention, "mlp": mlp, "norms": norms}


def count_parameters(config: ModelConfig) -> ParamCount:
    """Parameters of the model ``unimask.build_model(config)`` would build, computed analytically."""
    stacks = []
    if config.arch == "encoder_decoder":
        encoder = _stack(config, config.encoder_layers, cross=False)
        decoder = _stack(config, config.n_layers, cross=True)
        stacks = [encoder, decoder]
    else:
        encoder = {"positions": 0, "attention": 0, "mlp": 0, "norms": 0}
        decoder = _stack(config, config.n_layers, cross=False)
        stacks = [decoder]
    parts = {k: sum(s[k] for s in stacks) for k in ("positions", "attention", "mlp", "norms")}
    embeddings = config.vocab_size * config.d_model * (2 if config.encoder_embedding else 1)  # T5Gemma: 2 tables
    head = 0 if config.tie_embeddings else config.vocab_size * config.d_model
    return ParamCount(embeddings=embeddings, output_head=head, encoder=sum(encoder.values()),
                      decoder=sum(decoder.values()), **parts)


def matmul_weights(config: ModelConfig) -> dict[str, int]:
    """Weights that multiply activations for every token (no biases, norms or embedding lookups).

    Keys: ``decoder`` (applied to each decoder/target token, including the output head), ``encoder``
    (each source token) and ``cross_kv`` (cross-attention key/value projections, applied to each source
    token). These give the model FLOPs of PaLM (Chowdhery et al. 2022, appendix B): 2 FLOPs per weight
    and token forward, 6 for training.
    """
    d, hd, h, hkv, f = config.d_model, config.head_dim_, config.n_heads, config.kv_heads, config.d_ff
    attn = d * h * hd * 2 + d * hkv * hd * 2  # q, o and k, v
    mlp = (3 if config.gated else 2) * d * f
    head = d * config.vocab_size
    if config.arch != "encoder_decoder":
        return {"decoder": config.n_layers * (attn + mlp) + head, "encoder": 0, "cross_kv": 0}
    cross_q_o = 2 * d * h * hd
    cross_kv = 2 * d * hkv * hd
    return {
        "decoder": config.n_layers * (attn + cross_q_o + mlp) + head,
        "encoder": config.encoder_layers * (attn + mlp),
        "cross_kv": config.n_layers * cross_kv,
    }


def format_count(n: float) -> str:
    """Human-readable count, 4 significant digits: 6738415616 -> '6.738B'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.0f}"


__all__ = [
    "ParamCount",
    "attention_params",
    "count_parameters",
    "format_count",
    "matmul_weights",
    "mlp_params",
    "norm_params",
]
