"""CSV, JSON and PNG output of the empirical emergence sweep (``unimask emergence sweep``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from unimask.analysis.emergence import write_rows_csv
from unimask.analysis.emergence_sweep import SweepConfig, SweepResult

METRICS = (("exact_match", "exact match"), ("digit_accuracy", "digit accuracy (place-aligned)"),
           ("edit_distance", "edit distance (characters)"), ("target_log_likelihood", "target log-likelihood (nats)"))


def write_sweep(results: list[SweepResult], cfg: SweepConfig, directory: Path) -> list[Path]:
    """``sweep.csv`` (one row per model) and ``sweep.json`` (config, rows and sample answers)."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = write_rows_csv([r.row() for r in results], directory / "sweep.csv")
    payload = {"config": asdict(cfg), "results": [asdict(r) for r in results]}
    json_path = directory / "sweep.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return [csv_path, json_path]


def sweep_text(results: list[SweepResult]) -> str:
    lines = [f"{'width':>6}{'params':>10}{'train FLOPs':>13}{'loss':>8}{'exact':>8}{'digit acc':>11}"
             f"{'edit dist':>11}{'log-lik':>9}{'seconds':>9}"]
    for r in results:
        lines.append(f"{r.width:>6}{r.params:>10,}{r.train_flops:>13.3e}{r.final_train_loss:>8.3f}"
                     f"{r.exact_match:>8.1%}{r.digit_accuracy:>11.1%}{r.edit_distance:>11.2f}"
                     f"{r.target_log_likelihood:>9.2f}{r.train_seconds:>9.1f}")
    return "\n".join(lines)


def plot_sweep(results: list[SweepResult], path: Path, title: str = "") -> Path:
    """Two rows (against parameters, against training FLOPs) of four metrics; the exact-match panels also
    show digit accuracy ** answer length, the exact match that independent digit errors would predict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for row, (xkey, xlabel) in enumerate((("params", "parameters"), ("train_flops", "training FLOPs"))):
        x = [getattr(r, xkey) for r in results]
        for col, (key, label) in enumerate(METRICS):
            ax = axes[row, col]
            ax.semilogx(x, [getattr(r, key) for r in results], "o-", label=label)
            if key == "exact_match":
                ax.semilogx(x, [r.digit_accuracy ** r.answer_length for r in results], "s--", alpha=0.7,
                            label="digit acc ^ answer length")
                ax.legend(fontsize=7)
            if key in ("exact_match", "digit_accuracy"):
                ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel(xlabel)
            ax.set_title(label, fontsize=9)
    fig.suptitle(title or "Multi-digit addition: discrete vs continuous metrics (Schaeffer et al. 2023)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_sweep", "sweep_text", "write_sweep"]
