"""Shared test settings: deterministic seeds and one torch thread.

The suite runs tiny models, where OpenMP threading costs more than it gives (10-40x slower on a busy
2-core machine); subprocesses (CLI, torchrun) inherit OMP_NUM_THREADS=1, so two ranks do not fight over
two cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
