"""The loss-curve picture of a run: ``loss_curve.png`` next to ``metrics.jsonl``, redrawn at each evaluation.

Two panels: train and held-out loss against optimizer steps, and against training FLOPs (unimask's own
calculator: 6N + 12LHQT per token, PaLM appendix B, on the run's real shapes), so runs of different models
compare at equal compute. A run that resumed keeps one curve: ``metrics.jsonl`` is read with the last
record of each step winning.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unimask.train.metrics import read_metrics

log = logging.getLogger(__name__)

CURVE = "loss_curve.png"


def plot_loss_curves(out_dir: str | Path, flops_per_token: float | None = None, title: str | None = None) -> Path:
    """Draw ``out_dir/loss_curve.png`` from ``out_dir/metrics.jsonl``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    train, held = read_metrics(out_dir, "train"), read_metrics(out_dir, "eval")
    panels = 2 if flops_per_token else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.6), squeeze=False)
    tokens = {s: r.get("tokens_seen") for s, r in train.items()}
    for k, ax in enumerate(axes[0]):
        by_flops = k == 1
        for records, label, style in ((train, "train", "-"), (held, "held-out", "o-")):
            steps = sorted(s for s in records if _finite(records[s].get("loss")))
            if by_flops:
                steps = [s for s in steps if tokens.get(s) is not None or s == 0]
                xs = [(tokens.get(s) or 0) * flops_per_token for s in steps]  # type: ignore[operator]
            else:
                xs = list(steps)
            ys = [records[s]["loss"] for s in steps]
            if xs:
                ax.plot(xs, ys, style, label=label, markersize=3, linewidth=1.2)
        ax.set_xlabel("training FLOPs" if by_flops else "step")
        ax.set_ylabel("loss (nats per loss token)")
        if by_flops:  # linear: a log axis would stretch the step-0 evaluation at 0 FLOPs across the panel
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or out_dir.name)
    fig.tight_layout()
    path = out_dir / CURVE
    tmp = out_dir / f".{CURVE}.tmp"
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)  # a viewer never sees half a picture
    return path


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
