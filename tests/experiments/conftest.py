"""One smoke study for the whole session: `unimask compare --study smoke` then `unimask report`, through
the real CLI (every stage: corpus, tokenizer, training of every family, scoring, results.json, report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimask.cli import main


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "smoke"
    assert main(["compare", "--study", "smoke", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def smoke_report(smoke_study: Path) -> Path:
    assert main(["report", str(smoke_study / "results.json")]) == 0
    return smoke_study / "report"
