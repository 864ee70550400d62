"""Fixtures: tiny random model directories (checkpoint + a tokenizer trained on a few sentences) for the
three families; their text is junk, which is all these tests need."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimask.serving import LoadedModel
from unimask.serving.tiny import make_tiny_model_dir

PRESETS = {"causal": "tiny-causal", "glm": "tiny-glm", "prefix": "tiny-prefix", "encdec": "tiny-encdec"}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen")
    # init_std 0.3: logits that depend on the prompt, so different prompts give different text
    return {k: make_tiny_model_dir(root / k, p, init_std=0.3) for k, p in PRESETS.items()}


@pytest.fixture(scope="session")
def engines(model_dirs: dict[str, Path]) -> dict[str, LoadedModel]:
    return {k: LoadedModel.load(d, name=k) for k, d in model_dirs.items()}
