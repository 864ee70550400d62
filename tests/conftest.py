"""Shared test settings: deterministic seeds and one torch thread.

The suite runs tiny models, where OpenMP threading costs more than it gives (10-40x slower on a busy
2-core machine); subprocesses (CLI, torchrun) inherit OMP_NUM_THREADS=1, so two ranks do not fight over
two cores.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Headless Chromium for the page tests (the report, the chat page) -------------------------------------------
ARTIFACTS = Path(os.environ.get("UNIMASK_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> dict[str, object]:
    """``playwright``'s ``chromium.launch`` arguments for Debian's Chromium; skips without one, fails when
    ``UNIMASK_REQUIRE_BROWSER=1`` (CI). Screenshots go to the folder ``artifacts`` (``$UNIMASK_ARTIFACTS``)."""
    for name in (os.environ.get("UNIMASK_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) if name else None
        if path:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            return {"executable_path": path, "args": CHROMIUM_ARGS}
    if os.environ.get("UNIMASK_REQUIRE_BROWSER") == "1":
        pytest.fail("UNIMASK_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium)")
    pytest.skip("no Chromium on this machine (apt-get install chromium); .ci/run installs it")


@pytest.fixture(scope="session")
def artifacts(chromium: dict[str, object]) -> Path:
    return ARTIFACTS
