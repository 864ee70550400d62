"""The report's figures, drawn from ``results.json`` with matplotlib (PNG). Labels are English: the page
around them carries both languages."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unimask.experiments.findings import (
    loss_token_share,
    loss_tokens_per_gflop,
    rank_ratio,
    rows_of,
    stat,
    task_mean,
    zero_shot,
)

COLORS = {"causal": "#1f77b4", "prefix": "#ff7f0e", "encdec-span-params": "#2ca02c", "encdec-span-compute": "#98df8a",
          "encdec-prefix-params": "#9467bd", "encdec-prefix-compute": "#c5b0d5", "ul2-causal": "#17becf",
          "ul2-prefix": "#e377c2", "ul2-encdec": "#8c564b"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def _bars(ax, names: list[str], means: list[float], sds: list[float], *, ylabel: str, title: str) -> None:
    xs = range(len(names))
    ax.bar(xs, [0 if math.isnan(m) else m for m in means], yerr=sds, capsize=3,
           color=[COLORS.get(n, "grey") for n in names])
    ax.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def fig_masks(results: dict[str, Any], path: Path) -> Path:
    from unimask.analysis.mask_plots import plot_masks

    return plot_masks(4, 3, path)


def fig_params(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    facts = results["facts"]["parameters"]
    colors = {"causal": COLORS["causal"], "prefix": COLORS["prefix"], "encoder_decoder": COLORS["encdec-span-params"]}
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh([p["model"] for p in facts], [p["parameters"] for p in facts], color=[colors[p["arch"]] for p in facts])
    ax.set_xscale("log")
    ax.axvline(results["facts"]["notes"]["large_threshold"], color="k", ls="--", lw=1)
    ax.set_xlabel("parameters (counted from published shapes; dashed: the notes' 'large model' threshold)")
    for arch, c in colors.items():
        ax.bar(0, 0, color=c, label=arch.replace("_", "-"))
    ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()
    return _save(fig, path)


def _per_row(results: dict[str, Any], fn: Callable[[dict[str, Any]], float],
             ) -> tuple[list[str], list[float], list[float]]:
    rows = rows_of(results)
    names = list(rows)
    stats = [stat(rows[n], fn) for n in names]
    return names, [s.mean for s in stats], [s.sd for s in stats]


def fig_information_flow(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    names, means, sds = _per_row(results, lambda r: r["eval"]["information_flow"])
    _bars(ax, names, means, sds, ylabel="max |Δ logit| at position 1",
          title="Does the first input position see the last input token?")
    return _save(fig, path)


def fig_loss_tokens(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names, means, sds = _per_row(results, loss_token_share)
    _bars(a1, names, means, sds, ylabel="loss tokens / input tokens", title="Share of tokens that carry loss")
    names, means, sds = _per_row(results, loss_tokens_per_gflop)
    _bars(a2, names, means, sds, ylabel="loss tokens per GFLOP", title="Training signal per unit of compute")
    return _save(fig, path)


def fig_curves(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, runs in rows_of(results).items():
        curves = [r["loss_curve"] for r in runs if r.get("loss_curve")]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = [curves[0][i]["flops"] for i in range(n)]
        ys = [[c[i]["heldout_loss"] for c in curves] for i in range(n)]
        ax.plot(xs, [sum(y) / len(y) for y in ys], label=name, color=COLORS.get(name))
        ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], color=COLORS.get(name), alpha=0.2)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("held-out loss on the corpus (nats/token, own objective)")
    ax.set_title("Training curves at equal compute", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_target_loss(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names, means, sds = _per_row(results, lambda r: r["eval"]["text_loss"])
    _bars(a1, names, means, sds, ylabel="nats / token", title="Held-out text continuations")
    a1.axhline(results["baselines"]["unigram_text_loss"], color="k", ls="--", lw=1, label="unigram")
    a1.legend(fontsize=8)
    names, means, sds = _per_row(results, lambda r: r["eval"]["task_loss"])
    _bars(a2, names, means, sds, ylabel="nats / token", title="Held-out task answers")
    a2.axhline(results["baselines"]["unigram_task_loss"], color="k", ls="--", lw=1, label="unigram")
    a2.legend(fontsize=8)
    return _save(fig, path)


def fig_accuracy(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    settings = [("in-distribution", lambda r: task_mean(r, "in_distribution")), ("zero-shot", zero_shot),
                ("few-shot", lambda r: task_mean(r, "few_shot"))]
    rows = rows_of(results)
    names = list(rows)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        stats = [stat(rows[name], fn) for _, fn in settings]
        xs = [i + k * width for i in range(len(settings))]
        ax.bar(xs, [s.mean for s in stats], width, yerr=[s.sd for s in stats], capsize=2, label=name,
               color=COLORS.get(name))
    ax.axhline(results["baselines"]["chance_accuracy"], color="k", ls="--", lw=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(settings))], [s for s, _ in settings])
    ax.set_ylabel("accuracy (likelihood ranking, 4 choices)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def fig_rank(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    rows = {n: [r for r in runs if "attention_rank" in r["eval"]] for n, runs in rows_of(results).items()}
    rows = {n: runs for n, runs in rows.items() if runs}
    fig, ax = plt.subplots(figsize=(9, 3.8))
    names = list(rows)
    series = [("bidirectional, trained", "bidirectional", "attention_rank", "#d62728"),
              ("causal, trained", "causal", "attention_rank", "#1f77b4"),
              ("bidirectional, init", "bidirectional", "attention_rank_init", "#ff9896"),
              ("causal, init", "causal", "attention_rank_init", "#aec7e8")]
    width = 0.2
    for k, (label, mode, key, color) in enumerate(series):
        stats = [stat(rows[n], lambda r, m=mode, kk=key: rank_ratio(r, m, kk)) for n in names]
        ax.bar([i + k * width for i in range(len(names))], [s.mean for s in stats], width,
               yerr=[s.sd for s in stats], capsize=2, label=label, color=color)
    ax.set_xticks([i + 0.3 for i in range(len(names))], names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("effective rank / length")
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_emergence(results: dict[str, Any], path: Path) -> Path:
    from unimask.experiments.findings import _multi_token_points

    plt = _plt()
    points = _multi_token_points(results)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ps = [i / 100 for i in range(101)]
    for length in sorted({round(pt["length"]) for pt in points}):
        a1.plot(ps, [p ** length for p in ps], color="grey", lw=1, ls=":")
        a1.text(0.8, 0.8 ** length, f"p^{length}", fontsize=7, ha="left", va="top")
    for task, marker in (("sort", "o"), ("maxmin", "s")):
        sel = [pt for pt in points if pt["task"] == task]
        a1.scatter([pt["p"] for pt in sel], [pt["em"] for pt in sel], s=14, marker=marker, label=task,
                   c=[COLORS.get(pt["row"], "grey") for pt in sel])
    a1.set_xlabel("per-token accuracy p (teacher forced)")
    a1.set_ylabel("exact match (greedy)")
    a1.set_xlim(0, 1)
    a1.set_ylim(0, 1)
    a1.legend(fontsize=8)
    a1.set_title("Exact match is a steep function of a smooth one", fontsize=10)
    for run in results["runs"]:
        if not run.get("curve"):
            continue
        xs = [p["flops"] for p in run["curve"]]
        for task, ls in (("sort", "-"), ("maxmin", "--")):
            if all(task in p["tasks"] for p in run["curve"]):
                a2.plot(xs, [p["tasks"][task]["token_accuracy"] for p in run["curve"]], ls, color="#1f77b4", lw=1)
                a2.plot(xs, [p["tasks"][task]["exact_match"] for p in run["curve"]], ls, color="#d62728", lw=1)
    a2.plot([], [], color="#1f77b4", label="per-token accuracy")
    a2.plot([], [], color="#d62728", label="exact match")
    a2.plot([], [], "k-", lw=1, label="sort")
    a2.plot([], [], "k--", lw=1, label="max-and-min")
    a2.set_xlabel("training FLOPs (causal decoder checkpoints)")
    a2.set_title("Along training", fontsize=10)
    a2.set_ylim(0, 1)
    a2.legend(fontsize=8)
    return _save(fig, path)


def fig_composite(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for run in results["runs"]:
        t = run["eval"]["tasks"]["in_distribution"]
        if {"maxmin", "max", "min"} <= set(t):
            ax.scatter(t["max"]["exact_match"] * t["min"]["exact_match"], t["maxmin"]["exact_match"], s=18,
                       color=COLORS.get(run["row"], "grey"))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
    ax.set_xlabel("exact match of max x exact match of min")
    ax.set_ylabel("exact match of max-and-min")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    return _save(fig, path)


def fig_encdec(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in rows_of(results).items():
        s = stat(runs, lambda r: r["eval"]["text_loss"])
        ax.errorbar(runs[0]["params"], s.mean, yerr=s.sd, fmt="o", color=COLORS.get(name), label=name, capsize=3)
    ax.set_xlabel("parameters")
    ax.set_ylabel("held-out text loss (nats/token)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def fig_cost(results: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    g, notes = results["facts"]["gpt3"], results["facts"]["notes"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    labels = ["notes' figure", "V100s, list price", "A100s, 40% MFU"]
    a1.barh(labels, [notes["gpt3_cost_usd"], g["cost_usd_v100_list_price"], g["cost_usd_a100_40pct_mfu"]],
            color=["grey", "#1f77b4", "#2ca02c"])
    a1.set_xscale("log")
    a1.set_xlabel("US dollars")
    a1.set_title("GPT-3 training cost", fontsize=10)
    co2 = results["facts"]["published_co2"]
    a2.barh(["notes' figure", "calculator (Patterson setup)", "Patterson et al. 2021", "Strubell et al. 2019 (NAS)"],
            [notes["gpt3_co2_t"], g["co2_t"], co2["patterson_gpt3_t"]["value"], co2["strubell_nas_t"]["value"]],
            color=["grey", "#1f77b4", "#2ca02c", "#ff7f0e"])
    a2.set_xlabel("t CO2e")
    a2.set_title("GPT-3 training emissions", fontsize=10)
    return _save(fig, path)


def fig_finetune(results: dict[str, Any], path: Path) -> Path:
    from unimask.experiments.findings import finetune_stats

    plt = _plt()
    stats = finetune_stats(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = sorted({(row, init) for row, init, _ in stats})
    for row, init in curves:
        pts = sorted((n, s) for (r, i, n), s in stats.items() if (r, i) == (row, init))
        style = {"pretrained": "-o", "scratch": "--x"}.get(init, "-o")
        color = COLORS.get(row, "#8c564b" if row == "adapted-encdec" else "grey")
        ax.errorbar([n for n, _ in pts], [s.mean for _, s in pts], yerr=[s.sd for _, s in pts], fmt=style,
                    color=color, capsize=3, label=f"{row}, {init}")
    ax.axhline(results["baselines"]["chance_accuracy"], color="k", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(f"labelled examples of the held-out task '{(results.get('finetune') or {}).get('task', '')}'")
    ax.set_ylabel("test accuracy (likelihood ranking, 4 choices)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return _save(fig, path)


FIGURE_MAKERS: dict[str, Callable[[dict[str, Any], Path], Path]] = {
    "masks": fig_masks, "params": fig_params, "information_flow": fig_information_flow,
    "loss_tokens": fig_loss_tokens, "curves": fig_curves, "target_loss": fig_target_loss, "accuracy": fig_accuracy,
    "rank": fig_rank, "emergence": fig_emergence, "composite": fig_composite, "encdec": fig_encdec, "cost": fig_cost,
    "finetune": fig_finetune,
}


def draw_all(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Every figure as ``folder/<name>.png``."""
    return {name: make(results, folder / f"{name}.png") for name, make in FIGURE_MAKERS.items()}


__all__ = ["FIGURE_MAKERS", "draw_all"]
