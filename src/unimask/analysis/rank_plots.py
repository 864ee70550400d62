"""CSV, JSON and PNG output of the attention-rank analysis (``unimask rank``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from torch import Tensor

from unimask.analysis.attention_rank import RankRow, rows_as_dicts, singular_values, summarise

COLORS = {"causal": "tab:blue", "bidirectional": "tab:red"}


def write_csv(rows: list[RankRow], path: Path) -> Path:
    """One line per (mode, layer, head, sample)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = rows_as_dicts(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return path


def write_summary(rows: list[RankRow], path: Path, extra: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**(extra or {}), "summary": summarise(rows)}, indent=2) + "\n", encoding="utf-8")
    return path


def summary_text(rows: list[RankRow]) -> str:
    """A small table: one line per mode."""
    lines = [f"{'mode':<14}{'matrices':>9}{'T':>5}{'full rank':>11}{'eff. rank':>11}{'eff./T':>8}"
             f"{'log|det|':>11}{'min diag':>11}"]
    for mode, s in summarise(rows).items():
        lines.append(f"{mode:<14}{s['matrices']:>9}{s['size']:>5}{s['full_rank_share']:>11.1%}"
                     f"{s['mean_effective_rank']:>11.2f}{s['mean_effective_rank_ratio']:>8.2f}"
                     f"{s['mean_log_abs_det']:>11.1f}{s['min_diagonal']:>11.2e}")
    return "\n".join(lines)


def plot_rank(attentions: dict[str, list[Tensor]], rows: list[RankRow], path: Path, title: str = "") -> Path:
    """Three panels: effective rank per layer, singular-value spectra, and one example matrix per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.8))
    ax = axes[0]
    for mode in attentions:
        sel = [r for r in rows if r.mode == mode]
        layers = sorted({r.layer for r in sel})
        mean = [sum(r.effective_rank for r in sel if r.layer == i) / max(1, sum(r.layer == i for r in sel))
                for i in layers]
        lo = [min(r.effective_rank for r in sel if r.layer == i) for i in layers]
        hi = [max(r.effective_rank for r in sel if r.layer == i) for i in layers]
        ax.plot(layers, mean, "o-", color=COLORS.get(mode), label=f"{mode} (mean)")
        ax.fill_between(layers, lo, hi, color=COLORS.get(mode), alpha=0.2)
        nr = [sum(r.numerical_rank for r in sel if r.layer == i) / max(1, sum(r.layer == i for r in sel))
              for i in layers]
        ax.plot(layers, nr, "s--", color=COLORS.get(mode), alpha=0.6, label=f"{mode} numerical rank")
    size = rows[0].size
    ax.axhline(size, color="gray", lw=0.8, ls=":")
    ax.set_xticks(sorted({r.layer for r in rows}))
    ax.set_xlabel("layer")
    ax.set_ylabel(f"rank (T = {size})")
    ax.set_ylim(0, size * 1.05)
    ax.set_title("effective (solid) and numerical (dashed) rank;\nband: effective rank min-max over heads",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: never on the data
    ax = axes[1]
    for mode, layers in attentions.items():
        for i in sorted({0, len(layers) - 1}):
            s = singular_values(layers[i])  # (B, H, T)
            s = (s / s[..., :1]).flatten(0, -2).mean(0)
            ax.semilogy(range(1, s.numel() + 1), s.numpy(), color=COLORS.get(mode),
                        ls="-" if i == 0 else "--", label=f"{mode}, layer {i}")
    ax.set_xlabel("index")
    ax.set_ylabel("sigma_i / sigma_1 (mean over heads)")
    ax.set_title("singular value spectra", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    for ax, mode in zip(axes[2:], attentions):
        mat = attentions[mode][0][0, 0]
        # square-root colour scale: a causal matrix's first row (one weight of 1.0) would otherwise make
        # every other entry look black
        im = ax.imshow(mat.numpy(), cmap="viridis", norm=PowerNorm(0.5, vmin=0.0))
        ax.set_title(f"{mode}: layer 0, head 0", fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        fig.colorbar(im, ax=ax, fraction=0.046, label="probability (sqrt scale)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def stack_layers(attentions: dict[str, list[Tensor]]) -> dict[str, Tensor]:
    """``(L, B, H, T, T)`` per mode (for saving or further analysis)."""
    return {mode: torch.stack(layers) for mode, layers in attentions.items() if layers}


__all__ = ["plot_rank", "stack_layers", "summary_text", "write_csv", "write_summary"]
