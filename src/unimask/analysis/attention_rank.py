"""Rank of attention probability matrices, causal versus bidirectional, on the same inputs.

The claim under test: bidirectional attention is "low-rank" while causal attention is full rank. For the
causal half there is a theorem: a causal attention matrix is lower triangular with a strictly positive
diagonal (softmax gives every visible key a positive weight, and a token always sees itself), so its
determinant is the product of the diagonal and it is invertible. Numerically the diagonal can still be
tiny, so both the exact (triangular) log-determinant and SVD-based ranks are reported.

Measures, for each matrix ``A (T, T)``:

* numerical rank: singular values above ``tol`` (default ``sigma_max * T * eps`` of the input dtype, as
  ``numpy.linalg.matrix_rank``);
* effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality"):
  ``exp(H(p))`` with ``p_i = sigma_i / sum(sigma)``;
* log |det A| (``-inf`` when singular) and the smallest diagonal entry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from unimask.models.base import UnimaskLM


def singular_values(a: Tensor) -> Tensor:
    """Singular values ``(..., min(m, n))`` in float64, descending."""
    return torch.linalg.svdvals(a.double())


def numerical_rank(a: Tensor, tol: float | None = None, rtol: float | None = None) -> Tensor:
    """Number of singular values above ``tol`` (absolute) or ``rtol * sigma_max``; default
    ``rtol = max(m, n) * eps`` of ``a``'s dtype. ``a (..., m, n)`` -> ``(...)`` int64."""
    s = singular_values(a)
    if tol is None:
        if rtol is None:
            eps = torch.finfo(a.dtype).eps if a.dtype.is_floating_point else torch.finfo(torch.float64).eps
            rtol = max(a.shape[-2:]) * eps
        threshold = rtol * s[..., :1]
    else:
        threshold = torch.full_like(s[..., :1], tol)
    return (s > threshold).sum(-1)


def effective_rank(a: Tensor) -> Tensor:
    """Roy & Vetterli 2007: ``exp(-sum p log p)`` over normalised singular values; ``(..., m, n)`` -> ``(...)``.

    Between 1 (rank one) and min(m, n) (all singular values equal, e.g. the identity)."""
    s = singular_values(a)
    p = s / s.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(-1)
    return entropy.exp()


def log_abs_det(a: Tensor) -> Tensor:
    """``log |det a|`` in float64 (``-inf`` for a singular matrix); ``(..., n, n)`` -> ``(...)``."""
    return torch.linalg.slogdet(a.double()).logabsdet


def triangular_log_det(a: Tensor) -> Tensor:
    """``sum(log diag)``: the exact log-determinant of a lower-triangular matrix (no cancellation)."""
    return a.double().diagonal(dim1=-2, dim2=-1).log().sum(-1)


def min_diagonal(a: Tensor) -> Tensor:
    return a.diagonal(dim1=-2, dim2=-1).min(-1).values


def is_lower_triangular(a: Tensor) -> Tensor:
    """True where every entry above the diagonal is exactly zero."""
    upper = torch.triu(torch.ones(a.shape[-2:], dtype=torch.bool, device=a.device), diagonal=1)
    return ~(a.masked_fill(~upper, 0) != 0).flatten(-2).any(-1)


@dataclass
class RankRow:
    """Measures of one attention matrix (one mode, layer, head and input sequence)."""

    mode: str
    layer: int
    head: int
    sample: int
    size: int
    numerical_rank: int
    effective_rank: float
    log_abs_det: float
    triangular_log_det: float
    min_diagonal: float
    lower_triangular: bool


def measure(probs: Tensor, mode: str, layer: int, rtol: float | None = None) -> list[RankRow]:
    """Rows for attention probabilities ``probs (B, H, T, T)`` of one layer."""
    B, H, T, _ = probs.shape
    nr = numerical_rank(probs, rtol=rtol)
    er, ld, tld = effective_rank(probs), log_abs_det(probs), triangular_log_det(probs)
    md, lt = min_diagonal(probs), is_lower_triangular(probs)
    rows = []
    for b in range(B):
        for h in range(H):
            rows.append(RankRow(mode, layer, h, b, T, int(nr[b, h]), float(er[b, h]), float(ld[b, h]),
                                float(tld[b, h]) if bool(lt[b, h]) else math.nan, float(md[b, h]), bool(lt[b, h])))
    return rows


@torch.no_grad()
def collect_attentions(model: UnimaskLM, input_ids: Tensor) -> dict[str, list[Tensor]]:
    """Self-attention probabilities per layer, ``(B, H, T, T)`` each, for the causal and bidirectional masks.

    Decoder-only models run the same weights twice as a prefix decoder: prefix length 0 (causal) and T
    (fully bidirectional). A causal-arch model is copied into a prefix-arch twin with the same state dict,
    since only the mask differs between the two. An encoder-decoder's encoder is the bidirectional stack
    and its decoder the causal one, fed the same tokens (their weights differ).
    """
    from unimask.models import build_model
    from unimask.models.attention import Attention

    config = model.config
    was_training = model.training
    backends = {m: m.backend for m in model.modules() if isinstance(m, Attention)}
    model.eval()
    try:
        if config.arch == "encoder_decoder":
            model.set_attention_backend("eager")
            out = model(input_ids, decoder_input_ids=input_ids, return_attentions=True)
            probs = out.attentions or []
            n_enc = config.encoder_layers
            return {"causal": [p.float() for p in probs[n_enc:]],
                    "bidirectional": [p.float() for p in probs[:n_enc]]}
        twin = model
        if config.arch == "causal":
            twin = build_model(config.replace(arch="prefix")).to(next(model.parameters()).device)
            twin.load_state_dict(model.state_dict())
            twin.eval()
        twin.set_attention_backend("eager")
        B, T = input_ids.shape
        result = {}
        for mode, prefix in (("causal", 0), ("bidirectional", T)):
            lengths = torch.full((B,), prefix, dtype=torch.long, device=input_ids.device)
            out = twin(input_ids, prefix_lengths=lengths, return_attentions=True)
            result[mode] = [p.float() for p in (out.attentions or [])]
        return result
    finally:  # the caller's model keeps its backend and mode
        for m, backend in backends.items():
            m.backend = backend
        model.train(was_training)


def analyse(model: UnimaskLM, input_ids: Tensor, rtol: float | None = None) -> list[RankRow]:
    """Rank measures of every layer, head and sequence, for both modes."""
    rows: list[RankRow] = []
    for mode, layers in collect_attentions(model, input_ids).items():
        for i, probs in enumerate(layers):
            rows.extend(measure(probs, mode, i, rtol=rtol))
    return rows


def summarise(rows: list[RankRow]) -> dict[str, dict[str, float]]:
    """Per mode: mean effective rank (absolute and / T), share of full-rank matrices, mean log|det|, ..."""
    out: dict[str, dict[str, float]] = {}
    for mode in sorted({r.mode for r in rows}):
        sel = [r for r in rows if r.mode == mode]
        n = len(sel)
        finite = [r.log_abs_det for r in sel if math.isfinite(r.log_abs_det)]
        out[mode] = {
            "matrices": n,
            "size": sel[0].size,
            "mean_numerical_rank": sum(r.numerical_rank for r in sel) / n,
            "full_rank_share": sum(r.numerical_rank == r.size for r in sel) / n,
            "mean_effective_rank": sum(r.effective_rank for r in sel) / n,
            "mean_effective_rank_ratio": sum(r.effective_rank / r.size for r in sel) / n,
            "min_effective_rank": min(r.effective_rank for r in sel),
            "mean_log_abs_det": sum(finite) / len(finite) if finite else -math.inf,
            "singular_share": 1 - len(finite) / n,
            "min_diagonal": min(r.min_diagonal for r in sel),
            "lower_triangular_share": sum(r.lower_triangular for r in sel) / n,
        }
    return out


def rows_as_dicts(rows: list[RankRow]) -> list[dict]:
    return [asdict(r) for r in rows]


__all__ = [
    "RankRow",
    "analyse",
    "collect_attentions",
    "effective_rank",
    "is_lower_triangular",
    "log_abs_det",
    "measure",
    "min_diagonal",
    "numerical_rank",
    "rows_as_dicts",
    "singular_values",
    "summarise",
    "triangular_log_det",
]
