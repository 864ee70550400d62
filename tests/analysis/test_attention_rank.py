"""Rank measures on matrices with known answers, and the causal full-rank theorem on a random model."""

from __future__ import annotations

import math

import pytest
import torch

import unimask
from unimask.analysis.attention_rank import (
    collect_attentions,
    effective_rank,
    is_lower_triangular,
    log_abs_det,
    measure,
    min_diagonal,
    numerical_rank,
    summarise,
    triangular_log_det,
)
from unimask.config import preset


def test_identity() -> None:
    eye = torch.eye(7)
    assert int(numerical_rank(eye)) == 7
    assert float(effective_rank(eye)) == pytest.approx(7.0)
    assert float(log_abs_det(eye)) == pytest.approx(0.0)
    assert float(min_diagonal(eye)) == 1.0
    assert bool(is_lower_triangular(eye))


def test_rank_one_attention_all_rows_equal() -> None:
    """Uniform attention (every row the same distribution) has rank 1 and a zero determinant."""
    a = torch.full((8, 8), 1 / 8)
    assert int(numerical_rank(a)) == 1
    assert float(effective_rank(a)) == pytest.approx(1.0)
    assert float(log_abs_det(a)) == -math.inf
    row = torch.softmax(torch.randn(6), 0)
    b = row.expand(6, 6)
    assert int(numerical_rank(b)) == 1
    assert float(effective_rank(b)) == pytest.approx(1.0, abs=1e-5)


def test_effective_rank_of_known_spectra() -> None:
    # singular values (2, 1, 1): p = (1/2, 1/4, 1/4), H = 1.5 ln 2, erank = 2 ** 1.5
    assert float(effective_rank(torch.diag(torch.tensor([2.0, 1.0, 1.0])))) == pytest.approx(2 ** 1.5)
    # two equal nonzero singular values: erank 2, numerical rank 2
    d = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert float(effective_rank(d)) == pytest.approx(2.0)
    assert int(numerical_rank(d)) == 2
    # orthogonal invariance: rotating does not change either rank
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    assert float(effective_rank(q @ d.double() @ q.T)) == pytest.approx(2.0)


def test_tolerances() -> None:
    a = torch.diag(torch.tensor([1.0, 1e-3, 1e-9], dtype=torch.float64))
    assert int(numerical_rank(a, rtol=1e-6)) == 2
    assert int(numerical_rank(a, tol=1e-12)) == 3
    assert int(numerical_rank(a.float())) == 2  # 1e-9 is below 3 x float32 eps


def test_lower_triangular_with_positive_diagonal_is_full_rank() -> None:
    torch.manual_seed(0)
    raw = torch.tril(torch.rand(10, 10)) + torch.eye(10) * 0.5
    a = raw / raw.sum(-1, keepdim=True)  # a causal attention matrix: rows sum to one
    assert bool(is_lower_triangular(a))
    assert int(numerical_rank(a)) == 10
    assert float(triangular_log_det(a)) == pytest.approx(float(log_abs_det(a)), abs=1e-4)
    assert float(triangular_log_det(a)) == pytest.approx(float(a.diagonal().double().log().sum()))
    assert not bool(is_lower_triangular(a.T))


def test_batched_shapes() -> None:
    a = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    for fn in (numerical_rank, effective_rank, log_abs_det, min_diagonal, is_lower_triangular):
        assert fn(a).shape == (2, 3)
    rows = measure(a, "bidirectional", 0)
    assert len(rows) == 6 and {r.head for r in rows} == {0, 1, 2}


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-prefix", "tiny-encdec", "tiny-glm"])
def test_causal_attention_of_a_random_model_is_full_rank(name: str) -> None:
    """The theorem: lower triangular, positive diagonal -> invertible, in every layer and head."""
    torch.manual_seed(0)
    model = unimask.build_model(preset(name))
    ids = torch.randint(3, 512, (2, 16))
    att = collect_attentions(model, ids)
    n_layers = model.config.n_layers
    assert len(att["causal"]) == n_layers and len(att["bidirectional"]) == (model.config.encoder_layers or n_layers)
    for probs in att["causal"]:
        assert probs.shape == (2, 4, 16, 16)
        assert bool(is_lower_triangular(probs).all())
        assert float(min_diagonal(probs).min()) > 0
        assert bool((numerical_rank(probs) == 16).all())
        assert bool(torch.isfinite(triangular_log_det(probs)).all())
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 16))
    for probs in att["bidirectional"]:
        assert not bool(is_lower_triangular(probs).any())
    summary = summarise([r for i, p in enumerate(att["causal"]) for r in measure(p, "causal", i)])
    assert summary["causal"]["full_rank_share"] == 1.0


def test_causal_twin_matches_the_original_model() -> None:
    """A causal model is analysed through a prefix-arch twin with the same weights: same causal attention."""
    torch.manual_seed(1)
    model = unimask.build_model(preset("tiny-causal"))
    model.set_attention_backend("eager")
    ids = torch.randint(3, 512, (1, 9))
    direct = model(ids, return_attentions=True).attentions
    twin = collect_attentions(model, ids)["causal"]
    assert direct is not None
    for a, b in zip(direct, twin):
        torch.testing.assert_close(a.float(), b)


@pytest.mark.parametrize("name", ["tiny-prefix", "tiny-encdec"])
def test_collect_attentions_leaves_the_model_as_it_was(name: str) -> None:
    """The analysis switches to the eager backend and eval mode only while it runs."""
    model = unimask.build_model(preset(name))
    model.train()
    collect_attentions(model, torch.randint(3, 512, (1, 6)))
    assert model.training
    assert {m.backend for m in model.modules() if hasattr(m, "backend")} == {"sdpa"}
