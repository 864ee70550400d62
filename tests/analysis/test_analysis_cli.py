"""``unimask params``, ``unimask rank`` and ``unimask emergence`` write their numbers and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from unimask.cli import main


def test_params_json_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "gpt3-175b", "--tokens", "300B", "--json", "--out", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"]["total"] == 174_604_259_328
    assert data["flops"]["six_nd"] == pytest.approx(3.14e23, rel=0.005)
    assert (tmp_path / "gpt3-175b.json").is_file()
    assert (tmp_path / "gpt3-175b.png").stat().st_size > 1000


def test_params_table_for_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unimask.config import preset

    path = tmp_path / "config.json"
    preset("t5-small").save(path)
    assert main(["params", str(path), "--accelerator", "h100", "--count", "2", "--out", ""]) == 0
    out = capsys.readouterr().out
    assert "60,506,624" in out and "encoder / decoder" in out and "H100" in out


def test_params_presets_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "presets", "--json", "--out", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(abs(r["rel_error"]) <= r["tolerance"] for r in rows)
    assert (tmp_path / "presets.json").is_file()


def test_params_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "no-such-model", "--out", ""]) == 2
    assert "neither a preset" in capsys.readouterr().err
    assert main(["params", "tiny-causal", "--mfu", "0", "--out", ""]) == 2
    with pytest.raises(SystemExit):
        main(["params", "tiny-causal", "--tokens", "lots"])


def test_rank_writes_csv_summary_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--preset", "tiny-prefix", "--seq-len", "8", "--batch", "1", "--out", str(tmp_path)]) == 0
    assert "theorem check" in capsys.readouterr().out
    with (tmp_path / "rank.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 4  # modes x layers x heads
    assert {r["mode"] for r in rows} == {"causal", "bidirectional"}
    summary = json.loads((tmp_path / "rank_summary.json").read_text())
    assert summary["causal_theorem_holds"] is True
    assert summary["summary"]["causal"]["full_rank_share"] == 1.0
    assert (tmp_path / "rank.png").stat().st_size > 1000


def test_rank_from_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import unimask

    unimask.build_model(unimask.preset("tiny-encdec")).save(tmp_path / "ckpt")
    assert main(["rank", "--model", str(tmp_path / "ckpt"), "--seq-len", "6", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "rank.csv").is_file()
    assert main(["rank", "--model", str(tmp_path / "missing"), "--out", ""]) == 2


def test_emergence_analytic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emergence", "analytic", "--lengths", "1,5", "--points", "5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1.02% -> 7.78%" in out
    data = json.loads((tmp_path / "analytic.json").read_text())
    assert len(data["rows"]) == 5 and data["composite"]["k"] == 5
    assert (tmp_path / "analytic.csv").is_file() and (tmp_path / "analytic.png").is_file()


def test_emergence_micro_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["emergence", "sweep", "--widths", "8", "--steps", "2", "--batch-size", "4", "--digits", "1",
            "--train-examples", "16", "--test-examples", "4", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    with (tmp_path / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["width"] == "8"
    assert (tmp_path / "sweep.json").is_file() and (tmp_path / "sweep.png").stat().st_size > 1000
