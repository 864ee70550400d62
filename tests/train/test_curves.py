"""Every run draws its loss curve (train and held-out, against steps and FLOPs), redrawn at each evaluation."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np

from unimask.train import train
from unimask.train.curves import CURVE, plot_loss_curves


def test_a_run_draws_and_redraws_its_loss_curve(tmp_path):
    out = tmp_path / "run"
    seen = {}

    def look(step):
        path = out / CURVE
        if path.exists():
            seen[step] = path.read_bytes()
        return False

    cfg = {"model": "tiny-causal", "objective": "causal_lm", "data": {"seq_len": 32, "batch_size": 4},
           "steps": 6, "eval_every": 2, "eval_batches": 1, "optimizer": {"lr": 3e-3, "warmup_steps": 1},
           "out_dir": str(out), "progress": False, "tensorboard": False}
    train(cfg, should_stop=look)
    assert 2 in seen and 4 in seen and seen[2] != seen[4]  # drawn after the first evaluation, then redrawn
    picture = mpimg.imread(out / CURVE)
    assert picture.shape[1] > 1.8 * picture.shape[0]  # two panels side by side: steps and FLOPs
    assert not list(out.glob(".*.tmp"))


def test_the_picture_follows_the_numbers(tmp_path):
    """Different losses draw different pictures; NaN records are left out instead of breaking the plot."""
    def write(records):
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return mpimg.imread(plot_loss_curves(tmp_path, flops_per_token=1e6))

    base = [{"kind": "train", "step": s, "loss": 8.0 - s, "tokens_seen": 100 * s} for s in range(1, 6)]
    evals = [{"kind": "eval", "step": s, "loss": 8.5 - s} for s in (1, 5)]
    a = write(base + evals)
    b = write(base[:-1] + [{"kind": "train", "step": 5, "loss": 7.0, "tokens_seen": 500}] + evals)
    assert not np.array_equal(a, b)
    c = write(base + evals + [{"kind": "train", "step": 6, "loss": float("nan"), "tokens_seen": 600}])
    assert c.shape == a.shape
    one = mpimg.imread(plot_loss_curves(tmp_path))  # no FLOPs: one panel
    assert one.shape[1] < 0.7 * a.shape[1]
