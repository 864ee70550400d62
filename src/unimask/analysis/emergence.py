"""Emergent abilities as a property of the metric: the analytic model of Schaeffer et al. 2023.

Schaeffer, Miranda & Koyejo 2023 ("Are Emergent Abilities of Large Language Models a Mirage?"): if the
per-token cross-entropy falls as a power law in parameters N, ``CE(N) = (N_c / N) ** alpha``, the
per-token accuracy ``p(N) = exp(-CE(N))`` rises smoothly. A nonlinear metric turns that smooth curve
into an apparent jump:

* exact match of an answer of L tokens (independent token errors): ``p ** L``;
* a composite task that needs all of k subtasks right: ``p_sub ** k`` (5 subtasks going from 40% to 60%
  each: 1.0% -> 7.8% overall);

while a linear metric stays smooth: the expected token edit distance of an L-token answer whose errors
are independent substitutions is ``L (1 - p)`` (the Hamming distance, which bounds the edit distance).

The default ``N_c`` and ``alpha`` are illustrative (per-token accuracy 0.61 at 10M parameters, 0.98 at
1T), not fitted to any model family; pass your own.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_N_C = 1e6
DEFAULT_ALPHA = 0.3


def per_token_accuracy(n_params: ArrayLike, n_c: float = DEFAULT_N_C, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """``exp(-(N_c / N) ** alpha)``: per-token accuracy from a power-law per-token cross-entropy."""
    n = np.asarray(n_params, dtype=np.float64)
    return np.exp(-((n_c / n) ** alpha))


def exact_match(p: ArrayLike, length: int) -> np.ndarray:
    """Probability that all ``length`` tokens are right when each is right with probability ``p``."""
    return np.asarray(p, dtype=np.float64) ** length


def expected_edit_distance(p: ArrayLike, length: int) -> np.ndarray:
    """Expected token edit distance ``L (1 - p)`` under independent substitution errors."""
    return length * (1.0 - np.asarray(p, dtype=np.float64))


def composite(p: ArrayLike, k: int) -> np.ndarray:
    """Accuracy of a task that needs all ``k`` independent subtasks right, each with accuracy ``p``."""
    return np.asarray(p, dtype=np.float64) ** k


def analytic_rows(n_params: ArrayLike, lengths: tuple[int, ...] = (1, 5, 10, 20), n_c: float = DEFAULT_N_C,
                  alpha: float = DEFAULT_ALPHA) -> list[dict[str, float]]:
    """One row per model size: per-token accuracy, and exact match and edit distance per answer length."""
    n = np.asarray(n_params, dtype=np.float64)
    p = per_token_accuracy(n, n_c, alpha)
    rows = []
    for i in range(n.size):
        row = {"n_params": float(n[i]), "per_token_accuracy": float(p[i]),
               "cross_entropy": float((n_c / n[i]) ** alpha)}
        for L in lengths:
            row[f"exact_match_L{L}"] = float(exact_match(p[i], L))
            row[f"edit_distance_L{L}"] = float(expected_edit_distance(p[i], L))
        rows.append(row)
    return rows


def composite_example(p_before: float = 0.4, p_after: float = 0.6, k: int = 5) -> dict[str, float]:
    """The composite-task jump: k subtasks improving from ``p_before`` to ``p_after`` each."""
    before, after = float(composite(p_before, k)), float(composite(p_after, k))
    return {"k": k, "subtask_before": p_before, "subtask_after": p_after, "overall_before": before,
            "overall_after": after, "subtask_gain": p_after / p_before, "overall_gain": after / before}


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_analytic(rows: list[dict], lengths: tuple[int, ...], example: dict, path: Path) -> Path:
    """Four panels: per-token accuracy, exact match, edit distance (vs N), and composite accuracy vs p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_params"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    axes[0].semilogx(n, [r["per_token_accuracy"] for r in rows], color="black")
    axes[0].set_title("per-token accuracy exp(-(N_c/N)^alpha)", fontsize=9)
    for L in lengths:
        axes[1].semilogx(n, [r[f"exact_match_L{L}"] for r in rows], label=f"L = {L}")
        axes[2].semilogx(n, [r[f"edit_distance_L{L}"] for r in rows], label=f"L = {L}")
    axes[1].set_title("exact match p^L (nonlinear: looks emergent)", fontsize=9)
    axes[2].set_title("expected edit distance L(1-p) (linear: smooth)", fontsize=9)
    for ax in axes[:3]:
        ax.set_xlabel("parameters N")
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    p = np.linspace(0, 1, 201)
    k = int(example["k"])
    for kk in range(1, k + 1):
        axes[3].plot(p, composite(p, kk), label=f"k = {kk}", alpha=1.0 if kk == k else 0.4)
    for key in ("before", "after"):
        x, y = example[f"subtask_{key}"], example[f"overall_{key}"]
        axes[3].plot([x], [y], "ko")
        axes[3].annotate(f"{x:.0%} -> {y:.1%}", (x, y), textcoords="offset points", xytext=(-60, 8), fontsize=8)
    axes[3].set_xlabel("subtask accuracy")
    axes[3].set_ylabel("task accuracy")
    axes[3].set_title("composite task of k subtasks: p^k", fontsize=9)
    axes[3].legend(fontsize=7)
    fig.suptitle("Emergence from the metric (Schaeffer et al. 2023)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# Metrics on decoded answers (used by the empirical sweep) -------------------------------------------------

def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two token or character sequences."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def digit_accuracy(prediction: str, target: str) -> float:
    """Share of the target's digits that the prediction has at the same place value (aligned at the
    least significant digit; missing digits count as wrong). A partial-credit metric for arithmetic."""
    if not target:
        return float(prediction == target)
    hits = sum(1 for i in range(1, len(target) + 1) if i <= len(prediction) and prediction[-i] == target[-i])
    return hits / len(target)


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_N_C",
    "analytic_rows",
    "composite",
    "composite_example",
    "digit_accuracy",
    "exact_match",
    "expected_edit_distance",
    "levenshtein",
    "per_token_accuracy",
    "plot_analytic",
    "write_rows_csv",
]
