"""Readable table and PNG for ``unimask params`` (the numbers come from ``analysis.compute``)."""

from __future__ import annotations

from pathlib import Path

from unimask.analysis.compute import ACCELERATORS, Estimate
from unimask.analysis.params import format_count
from unimask.analysis.published import NOMINAL, PUBLISHED
from unimask.config import ModelConfig

GIB = 2.0 ** 30
PARAM_PARTS = (("embeddings", "token embeddings"), ("positions", "position tables / rel. bias"),
               ("attention", "attention"), ("mlp", "MLP"), ("norms", "norms"), ("output_head", "output head"))


def describe(config: ModelConfig) -> str:
    """One line: family and shapes."""
    layers = (f"{config.encoder_layers}+{config.n_layers} layers" if config.arch == "encoder_decoder"
              else f"{config.n_layers} layers")
    return (f"{config.arch}, {layers}, d_model {config.d_model}, {config.n_heads} heads x {config.head_dim_} "
            f"(kv heads {config.kv_heads}), d_ff {config.d_ff} ({config.activation}), vocab {config.vocab_size}, "
            f"{'tied' if config.tie_embeddings else 'untied'} head")


def _row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<34}{value:>14}  {note}".rstrip()


def _gib(x: float) -> str:
    return f"{x / GIB:,.2f} GiB" if x >= GIB / 100 else f"{x / 2**20:,.2f} MiB"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _scaled(x: float, small: str, big: str) -> str:
    """kWh/MWh or kg/t: thousands of the small unit become the big one."""
    return f"{x / 1000:,.1f} {big}" if x >= 1000 else f"{x:.3g} {small}"


def _duration(seconds: float) -> str:
    if seconds >= 86400 * 365:
        return f"{seconds / 86400 / 365:,.1f} years"
    if seconds >= 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds:,.0f} s"


def render_table(est: Estimate, config: ModelConfig) -> str:
    """The whole estimate as aligned text."""
    p, s, f, m, r = est.params, est.setup, est.flops, est.memory, est.run
    total = p.total
    lines = [f"{est.name}: {describe(config)}", "Parameters"]
    for key, label in PARAM_PARTS:
        value = getattr(p, key)
        note = "tied to the embedding" if key == "output_head" and config.tie_embeddings else f"{value / total:.1%}"
        lines.append(_row(label, f"{value:,}", note))
    lines.append(_row("total", f"{total:,}", format_count(total)))
    if est.name in PUBLISHED:
        pub = PUBLISHED[est.name]
        gap = (total - pub.total) / pub.total
        lines.append(_row("published", format_count(pub.total), f"{gap:+.3%} ({pub.source})"))
    if est.name in NOMINAL:
        lines.append(_row("name in the paper", format_count(NOMINAL[est.name]),
                          f"{(total - NOMINAL[est.name]) / NOMINAL[est.name]:+.2%}"))
    lines.append(_row("non-embedding (Kaplan N)", f"{p.non_embedding:,}", format_count(p.non_embedding)))
    if config.arch == "encoder_decoder":
        lines.append(_row("encoder / decoder stacks", f"{format_count(p.encoder)} / {format_count(p.decoder)}",
                          "without the shared embedding"))
    shape = (f"source {s.seq_len}, target {s.target_len or max(1, s.seq_len // 4)}"
             if config.arch == "encoder_decoder" else f"sequence {s.seq_len}")
    lines += [f"Training compute ({est.tokens:.3g} tokens, {shape})",
              _row("6ND", f"{f['six_nd']:.3e}", "FLOPs, N = total parameters"),
              _row("6N + 12LHQT per token", f"{f['total']:.3e}",
                   f"FLOPs (PaLM appendix B); attention {f['attention_share']:.1%}"),
              _row("per token", f"{f['per_token']:.3e}", "FLOPs"),
              _row("inference per generated token", f"{est.inference_flops_per_token:.3e}",
                   "FLOPs with a KV cache, full context")]
    lines += [f"Memory ({s.bytes_per_param}-byte weights, micro-batch {s.batch_size})",
              _row("weights", _gib(m["weights"])), _row("gradients", _gib(m["gradients"])),
              _row("Adam states (fp32 m, v)", _gib(m["adam_states"])),
              _row("fp32 master weights", _gib(m["master_weights"])),
              _row("activations", _gib(m["activations"]), "Korthikanti et al. 2022"),
              _row("activations, full checkpointing", _gib(m["activations_checkpointed"])),
              _row("training total (no checkpointing)", _gib(m["training_total"]), "before sharding"),
              _row("KV cache per token", _gib(m["kv_cache_per_token"]))]
    if config.arch == "encoder_decoder":
        lines.append(_row("cross-attention cache per source token", _gib(m["cross_kv_per_source_token"])))
    acc = ACCELERATORS[s.accelerator]
    lines += [f"Run on {s.count} x {acc.name}, peak {r['peak_flops']:.3g} FLOP/s, MFU {s.mfu:.0%}",
              _row("time", _duration(r["seconds"])),
              _row("accelerator-hours", _num(r["accelerator_hours"])),
              _row("cost", f"${_num(r['cost_usd'])}", f"at ${r['price_per_hour']:.2f} per accelerator-hour"),
              _row("energy", _scaled(r["energy_kwh"], "kWh", "MWh"), f"{r['power_w']:.0f} W each, PUE {s.pue}"),
              _row("emissions", _scaled(r["co2_kg"], "kg CO2e", "t CO2e"), f"{s.grid_gco2_per_kwh:.0f} gCO2e/kWh")]
    lines += ["Assumptions behind time, cost, energy and CO2 (estimates, not measurements; change them with the "
              "options named)"] + [f"  {line}" for line in assumptions(est)]
    return "\n".join(lines)


def assumptions(est: Estimate) -> list[str]:
    """The inputs the run estimate rests on, each with the ``unimask params`` option that changes it."""
    s, r = est.setup, est.run
    acc = ACCELERATORS[s.accelerator]
    tokens = (f"{est.tokens:.3g} training tokens = 20 per parameter, compute-optimal (Hoffmann et al. 2022)"
              if s.tokens is None else f"{est.tokens:.3g} training tokens")
    price = "" if s.price_per_hour is not None else ", an assumed cloud price"
    return [f"{tokens}  [--tokens]",
            f"{s.count} x {acc.name}, peak {r['peak_flops']:.3g} FLOP/s each  [--count, --accelerator, --peak-flops]",
            f"{s.mfu:.0%} model FLOPs utilisation  [--mfu]",
            f"${r['price_per_hour']:.2f} per accelerator-hour{price}  [--price-per-hour]",
            f"{r['power_w']:.0f} W per accelerator, PUE {s.pue}, grid {s.grid_gco2_per_kwh:.0f} gCO2e/kWh "
            "(Patterson et al. 2021)  [--power-w, --pue, --grid]"]


def plot_estimate(est: Estimate, path: Path) -> Path:
    """A PNG with the parameter breakdown and the training-memory breakdown as bar charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [label for _, label in PARAM_PARTS]
    values = [getattr(est.params, key) for key, _ in PARAM_PARTS]
    bars = ax1.barh(labels, values, color="tab:blue")
    for bar, v, (key, _) in zip(bars, values, PARAM_PARTS):
        text = " 0 (tied to the embedding)" if key == "output_head" and v == 0 else f" {format_count(v)}"
        ax1.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=8)
    ax1.set_xlim(0, max(values) * 1.25 or 1)  # room for the value labels right of the longest bar
    ax1.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_count(x)))  # no "1e9" offset text
    ax1.set_title(f"{est.name}: {format_count(est.params.total)} parameters", fontsize=10)
    ax1.set_xlabel("parameters")
    ax1.invert_yaxis()
    mem_keys = ("weights", "gradients", "adam_states", "master_weights", "activations", "activations_checkpointed")
    mem = [est.memory[k] / GIB for k in mem_keys]
    bars = ax2.barh([k.replace("_", " ") for k in mem_keys], mem, color="tab:orange")
    for bar, v in zip(bars, mem):
        ax2.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {_gib(v * GIB)}", va="center", fontsize=8)
    ax2.set_xlim(0, max(mem) * 1.3 or 1)
    ax2.set_xlabel("GiB (one model replica, one micro-batch)")
    ax2.set_title(f"training memory, {est.setup.bytes_per_param}-byte weights", fontsize=10)
    ax2.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_presets(rows: list[dict], path: Path) -> Path:
    """A PNG of every preset's counted total against its published one: the relative gap (%) per preset,
    with each preset's tolerance as a grey band; green within 0.5%, orange within a wider accepted gap (a
    total published only as a rounded name), red beyond (``unimask params presets``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.24 * len(rows)))
    y = list(range(len(rows)))
    gaps = [100 * r["rel_error"] for r in rows]
    colors = ["tab:green" if abs(r["rel_error"]) <= 0.005 else "tab:orange" if abs(r["rel_error"]) <= r["tolerance"]
              else "tab:red" for r in rows]  # within 0.5% / within a wider accepted gap / beyond it
    for i, r in enumerate(rows):
        ax.fill_betweenx([i - 0.4, i + 0.4], -100 * r["tolerance"], 100 * r["tolerance"], color="0.9", lw=0)
    ax.barh(y, gaps, color=colors, height=0.6)
    ax.set_yticks(y, [f"{r['preset']}  ({format_count(r['count'])})" for r in rows], fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    limit = max(0.6, *(abs(g) for g in gaps), *(100 * r["tolerance"] for r in rows)) * 1.1
    ax.set_xlim(-limit, limit)
    ax.invert_yaxis()
    ax.set_xlabel("counted - published, % of published (grey: accepted gap)")
    ax.set_title("parameter counts from the architecture vs published totals", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["describe", "plot_estimate", "plot_presets", "render_table"]
