"""The numerics guard: notice, at the step where it happens, that a run has stopped training sensibly.

An anomaly is a loss or gradient norm that is NaN or infinite, a loss spike (a loss above ``factor`` times
its running median over the last ``WINDOW`` healthy steps once ``warmup`` steps have been seen, and above
``factor`` times the highest loss so far before that), or a gradient norm of exactly zero for ``zero_steps``
steps in a row (a dead model: the lr = 1e3 runs end there, at loss ln(vocab)). Losses below one nat never
count as spikes: a run that memorises its data has tiny, noisy losses whose ratios mean nothing.

Each anomaly also says from which step on the weights are suspect (``bad_from``): a NaN loss at step k
condemns nothing already saved (the update of step k never happens); a spike at step k was produced by the
weights after step k-1; a gradient dead since step j by those after step j-1. The loop names as last good
the newest checkpoint before ``bad_from`` that was healthy when it was written.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

WINDOW = 50  # healthy losses in the running median
SPIKE_FLOOR = 1.0  # nats: a loss below this is never a spike


@dataclass(frozen=True)
class Anomaly:
    """What went wrong at ``step`` and the first step whose weights are suspect."""

    step: int
    reason: str
    bad_from: int
    fatal: bool = False  # stop even under ``on_anomaly: skip`` (a dead gradient cannot be skipped away)


class NumericsGuard:
    """Running loss level and zero-gradient streak of one run; its state travels in every checkpoint."""

    def __init__(self, *, factor: float, warmup: int, zero_steps: int) -> None:
        self.factor, self.warmup, self.zero_steps = factor, warmup, zero_steps
        self.losses: deque[float] = deque(maxlen=WINDOW)
        self.seen = 0  # healthy steps so far
        self.highest = -math.inf
        self.zero_since: int | None = None
        self.skipped = 0

    def level(self) -> float | None:
        """The loss a new step is compared with, or None before the first healthy step."""
        if self.seen == 0:
            return None
        return statistics.median(self.losses) if self.seen >= self.warmup else self.highest

    def check(self, step: int, loss: float, grad_norm: float) -> Anomaly | None:
        """Judge optimizer step ``step`` (1-based) before its update is applied."""
        if not math.isfinite(loss):
            return Anomaly(step, f"the training loss is {loss}", bad_from=step)
        if not math.isfinite(grad_norm):
            return Anomaly(step, f"the gradient norm is {grad_norm}", bad_from=step)
        level = self.level()
        if level is not None and loss > self.factor * max(level, SPIKE_FLOOR):
            what = "running median" if self.seen >= self.warmup else "highest loss so far"
            return Anomaly(step, f"the training loss jumped to {loss:.4g}, over {self.factor:g}x its {what} "
                           f"{level:.4g}", bad_from=step - 1)
        if grad_norm == 0.0 and self.zero_steps:
            self.zero_since = step if self.zero_since is None else self.zero_since
            if step - self.zero_since + 1 >= self.zero_steps:
                return Anomaly(step, f"the gradient norm has been 0 since step {self.zero_since} "
                               f"({self.zero_steps} steps; the model no longer learns)",
                               bad_from=self.zero_since - 1, fatal=True)
        else:
            self.zero_since = None
        self.losses.append(loss)
        self.seen += 1
        self.highest = max(self.highest, loss)
        return None

    def safe_before(self, step: int) -> int:
        """Checkpoints before this step cannot be condemned by a later anomaly (after ``step``'s healthy loss)."""
        return self.zero_since - 1 if self.zero_since is not None else step

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "seen": self.seen,
                "highest": self.highest if math.isfinite(self.highest) else None,
                "zero_since": self.zero_since, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque((float(x) for x in state.get("losses", [])), maxlen=WINDOW)
        self.seen = int(state.get("seen", len(self.losses)))
        highest = state.get("highest")
        self.highest = float(highest) if highest is not None else -math.inf
        self.zero_since = state.get("zero_since")
        self.skipped = int(state.get("skipped", 0))


def weights_problem(state: dict[str, Tensor], max_abs: float) -> str | None:
    """Why these weights cannot be a good checkpoint (non-finite, or larger than ``max_abs``), or None."""
    largest = 0.0
    for name, value in state.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        if not bool(torch.isfinite(value).all()):
            return f"tensor '{name}' holds non-finite values"
        largest = max(largest, float(value.detach().abs().max()))
        if largest > max_abs:
            return f"tensor '{name}' holds a weight of {largest:.3g}, above anomaly_max_weight {max_abs:g}"
    return None
