"""The smoke study end to end: results.json holds every run with its provenance, the report has every
question with numbers read from results.json, a rerun reuses finished runs, bad input is one clear line."""

from __future__ import annotations

import json
import math
import re
from html import escape
from pathlib import Path

import pytest

from unimask.cli import main
from unimask.experiments.report.text import QUESTIONS
from unimask.experiments.study import load_study


def _results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text(encoding="utf-8"))


def test_results_hold_every_run_with_provenance(smoke_study: Path) -> None:
    res = _results(smoke_study)
    spec = load_study("smoke")
    assert res["format"] == "unimask-study-results" and res["version"] == 1
    assert {(r["row"], r["seed"]) for r in res["runs"]} == {(row, s) for row in spec.rows for s in range(spec.seeds)}
    for run in res["runs"]:
        assert run["flops"] == pytest.approx(spec.budget_flops, rel=0.02)
        assert run["steps"] * run["flops_per_step"] == run["flops"]
        assert Path(run["checkpoint"]).is_dir() and (Path(run["run_dir"]) / "result.json").is_file()
        assert run["train_config"]["seed"] == run["seed"] and run["train_config"]["steps"] == run["steps"]
        ev = run["eval"]
        assert math.isfinite(ev["text_loss"]) and math.isfinite(ev["task_loss"])
        assert set(ev["tasks"]) == {"in_distribution", "zero_shot", "few_shot"}
        for name, setting in ev["tasks"].items():
            assert set(setting) == set(spec.tasks)
            for scores in setting.values():
                assert 0.0 <= scores["accuracy"] <= 1.0 and 0.0 <= scores["token_accuracy"] <= 1.0
                # greedy exact match is measured where the study uses it: the trained format
                if name == "in_distribution":
                    assert 0.0 <= scores["exact_match"] <= 1.0
                else:
                    assert "exact_match" not in scores
        assert {"causal", "bidirectional"} <= set(ev["attention_rank"]) and ev["samples"]
        assert run["loss_tokens"] <= run["tokens"]
    causal = [r for r in res["runs"] if r["arch"] == "causal"]
    assert causal and all(r["eval"]["information_flow"] == 0.0 for r in causal)
    assert any(r["curve"] for r in causal)
    assert res["machine"]["torch"] and res["command"] == "unimask compare --study smoke"
    assert res["timing"]["prefix_over_causal"] > 0
    assert res["baselines"]["unigram_text_loss"] > 0 and res["facts"]["gpt3"]["co2_t"] > 500
    assert (smoke_study / "figures" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_the_finetuning_stage_compares_pretrained_with_scratch(smoke_study: Path) -> None:
    res = _results(smoke_study)
    spec = load_study("smoke")
    ft = res["finetune"]
    assert ft["task"] == spec.finetune_task and ft["task"] not in spec.tasks  # held out of pretraining
    got = {(r["row"], r["init"], r["n"], r["seed"]) for r in ft["runs"]}
    want = {(row, init, n, s) for row in spec.finetune_rows for init in ("pretrained", "scratch")
            for n in spec.finetune_sizes for s in range(spec.seeds)}
    want |= {(row, "pretrained", n, s) for row in ("adapted-encdec", "encdec-prefix-compute")
             for n in spec.finetune_sizes for s in range(spec.seeds)}
    assert len(ft["runs"]) == len(want) * spec.finetune_seeds
    assert got == want
    for run in ft["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["steps"] == spec.finetune_steps
        config = json.loads((Path(run["run_dir"]) / "result.json").read_text())
        assert config["init"] == run["init"]
        pretrained_from = (Path(run["run_dir"]) / "config.yaml").read_text()
        assert ("init_from:" in pretrained_from and "init_from: null" not in pretrained_from) == \
            (run["init"] == "pretrained")
    adapted = [r for r in ft["runs"] if r["row"] == "adapted-encdec"]
    native = [r for r in ft["runs"] if r["row"] == "encdec-prefix-compute"]
    assert adapted[0]["arch"] == native[0]["arch"] == "encoder_decoder"
    assert adapted[0]["params"] == native[0]["params"]  # the same shape


def test_report_has_every_question_and_numbers_from_the_results(smoke_report: Path, smoke_study: Path) -> None:
    res = _results(smoke_study)
    html = (smoke_report / "report.html").read_text(encoding="utf-8")
    md_en = (smoke_report / "report.md").read_text(encoding="utf-8")
    md_zh = (smoke_report / "report.zh.md").read_text(encoding="utf-8")
    for q, title in QUESTIONS.items():
        assert f'id="q{q}"' in html and escape(title["en"]) in html and escape(title["zh"]) in html
        assert f"## Q{q}. {title['en']}" in md_en and f"## Q{q}. {title['zh']}" in md_zh
    # numbers in the report are the ones in results.json
    causal = [r for r in res["runs"] if r["row"] == "causal"]
    mean_loss = sum(r["eval"]["text_loss"] for r in causal) / len(causal)
    assert f"{mean_loss:.3f}" in md_en and f"{mean_loss:.3f}" in html
    assert f"{res['baselines']['unigram_text_loss']:.3f}" in md_en
    assert f"{res['facts']['gpt3']['co2_t']:,.0f} t" in md_en
    assert f"{res['timing']['prefix_over_causal']:.3f}" in md_en
    # every figure is embedded in the page and beside the Markdown
    figures = re.findall(r"!\[[^\]]*\]\((figures/[a-z_]+\.png)\)", md_en)
    assert figures and all((smoke_report / f).is_file() for f in figures)
    assert html.count("data:image/png;base64,") >= len(set(figures))
    for verdict in ("supported", "contradicted", "inconclusive at this scale", "not measured yet"):
        assert verdict in md_en or verdict not in html  # the same verdicts in both renderings
    assert "Verdicts" in md_en and "结论一览" in md_zh


def test_a_rerun_reuses_finished_runs(smoke_study: Path, capsys: pytest.CaptureFixture) -> None:
    before = {p: p.stat().st_mtime_ns for p in smoke_study.glob("runs/*/result.json")}
    assert main(["compare", "--study", "smoke", "--out", str(smoke_study), "--no-progress"]) == 0
    assert f"reusing {len(before)} finished" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in smoke_study.glob("runs/*/result.json")} == before


def _one_line_error(capsys: pytest.CaptureFixture, needle: str) -> None:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_bad_input_is_one_clear_line(smoke_study: Path, smoke_report: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", "--study", "nosuch", "--out", str(tmp_path / "a")]) == 2
    _one_line_error(capsys, "neither a built-in study")
    assert main(["compare", "--study", "smoke", "--set", "budget_flop=1", "--out", str(tmp_path / "a")]) == 2
    _one_line_error(capsys, "did you mean 'budget_flops'")
    assert main(["compare", "--study", "smoke", "--set", "budget_flops=1e5", "--out", str(tmp_path / "b")]) == 2
    _one_line_error(capsys, "raise budget_flops")
    # another study's folder is not touched without --overwrite
    before = {p: p.read_bytes() for p in smoke_study.rglob("*.json")}
    assert main(["compare", "--study", "smoke", "--set", "name=other", "--out", str(smoke_study)]) == 2
    _one_line_error(capsys, "--overwrite")
    assert {p: p.read_bytes() for p in smoke_study.rglob("*.json")} == before
    # an existing report is not overwritten without --overwrite
    page = (smoke_report / "report.html").read_bytes()
    assert main(["report", str(smoke_study / "results.json")]) == 2
    _one_line_error(capsys, "already holds a report")
    assert (smoke_report / "report.html").read_bytes() == page
    # a results file from another version, or not a results file at all
    other = json.loads((smoke_study / "results.json").read_text())
    other["version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(other))
    assert main(["report", str(tmp_path / "old.json"), "--out", str(tmp_path / "r1")]) == 2
    _one_line_error(capsys, "version 99")
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path / "junk.json"), "--out", str(tmp_path / "r2")]) == 2
    _one_line_error(capsys, "not a unimask study results file")
    assert main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r3")]) == 2
    _one_line_error(capsys, "no results.json")
    assert not any((tmp_path / d).exists() for d in ("r1", "r2", "r3"))
