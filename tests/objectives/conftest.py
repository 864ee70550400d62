"""Fixtures for the objective tests (helpers live in objectives_helpers.py)."""

from __future__ import annotations

import pytest
from objectives_helpers import make_vocab

from unimask.objectives.base import Vocab


@pytest.fixture
def vocab() -> Vocab:
    return make_vocab()
