"""What a person watching a run sees: a live bar, JSONL metrics and TensorBoard events (rank 0 only)."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one record per line, each with ``step`` and ``kind``) and TensorBoard.

    Append-only so a resumed or failed run never rewrites what was logged before; a reader that wants one
    record per step keeps the last one (``read_metrics`` does).
    """

    def __init__(self, out_dir: Path, *, tensorboard: bool, start_step: int = 0) -> None:
        self.path = out_dir / METRICS
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency (unimask[train])
                log.warning("tensorboard is not installed; writing %s only", METRICS)
            else:
                self._tb = SummaryWriter(str(out_dir / TENSORBOARD), purge_step=start_step or None)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_metrics(out_dir: str | Path, kind: str = "train") -> dict[int, dict[str, Any]]:
    """Records of one kind from ``metrics.jsonl``, keyed by step (a later record for a step wins)."""
    path = Path(out_dir) / METRICS
    out: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("kind") == kind:
                out[int(record["step"])] = record
    return out


class Progress:
    """A tqdm bar: step n/total, loss, tokens/s, loss-carrying tokens/s and tqdm's ETA."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="train")
        self._tok = self._loss_tok = None

    def update(self, loss: float, tokens_per_s: float, loss_tokens_per_s: float) -> None:
        if self.bar is None:
            return
        smooth = 0.8  # exponential average of the rates, for a steady display
        self._tok = tokens_per_s if self._tok is None else smooth * self._tok + (1 - smooth) * tokens_per_s
        self._loss_tok = (loss_tokens_per_s if self._loss_tok is None
                          else smooth * self._loss_tok + (1 - smooth) * loss_tokens_per_s)
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{self._tok:,.0f}", loss_tok_s=f"{self._loss_tok:,.0f}",
                             refresh=False)
        self.bar.update(1)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
