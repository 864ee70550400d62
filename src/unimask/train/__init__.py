"""Training: one loop for every family and objective, exact resume, DDP/FSDP2 (see ``loop.train``)."""

from __future__ import annotations

from unimask.train.config import OptimizerConfig, TrainConfig
from unimask.train.loop import TrainingDiverged, TrainResult, train

__all__ = ["OptimizerConfig", "TrainConfig", "TrainResult", "TrainingDiverged", "train"]
