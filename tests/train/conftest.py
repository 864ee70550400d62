"""Shared settings for the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Tiny models gain little from a second thread, and OpenMP spin-waiting under a loaded machine (other
    jobs on the 2 cores) can make each step 10x slower; run the training tests on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
