"""``unimask eval``: held-out task accuracy by likelihood ranking and exact match, with chance, per setting."""

from __future__ import annotations

import json

import pytest

from unimask.cli import main
from unimask.data.task_suite import few_shot_prefix, instances
from unimask.evaluation.formats import reading_format
from unimask.evaluation.scoring import rank_choices
from unimask.serving.tiny import make_tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("eval") / "m", "tiny-prefix", init_std=0.3)


def test_accuracy_equals_ranking_by_hand(model_dir, tmp_path, capsys):
    import unimask

    assert main(["eval", "--model", str(model_dir), "--task", "max", "--instances", "12", "--shots", "2",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "m-study.json").read_text())
    assert result["objective"] == "prefix_lm" and "read as prefix_lm" in printed
    rows = {r["setting"]: r for r in result["results"]}
    assert set(rows) == {"in_distribution", "zero_shot", "few_shot"}
    m = unimask.load(model_dir)
    fmt = reading_format("prefix_lm", "prefix", m.tokenizer)
    for setting, novel, shots in (("in_distribution", False, 0), ("zero_shot", True, 0), ("few_shot", True, 2)):
        items = instances("max", 12, seed=1, novel=novel)
        context = few_shot_prefix("max", shots, seed=1, novel=novel) if shots else ""
        picks = rank_choices(m.model, fmt, [(m.tokenizer.encode(context + i.prompt),
                                             [m.tokenizer.encode(c) for c in i.choices]) for i in items])
        want = sum(p == i.label for p, i in zip(picks, items)) / len(items)
        assert rows[setting]["accuracy"] == pytest.approx(want)
        assert rows[setting]["chance"] == pytest.approx(0.25) and rows[setting]["n"] == 12
        assert f"max        {setting}" in printed


def test_the_runs_objective_decides_the_format(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    ckpt = run / "checkpoint-5" / "model"
    ckpt.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(model_dir, ckpt)
    (run / "config.yaml").write_text("model: tiny-prefix\nobjective: ul2\n")
    assert main(["eval", "--model", str(ckpt), "--task", "min", "--instances", "4", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert "read as ul2" in capsys.readouterr().out
    assert main(["eval", "--model", str(ckpt), "--task", "min", "--instances", "4", "--out", str(tmp_path),
                 "--objective", "prefix_lm", "--no-progress"]) == 0
    assert "read as prefix_lm" in capsys.readouterr().out


def test_synthetic_suite_with_two_choice_brackets(model_dir, tmp_path):
    assert main(["eval", "--model", str(model_dir), "--suite", "synthetic", "--task", "brackets,copy",
                 "--instances", "6", "--out", str(tmp_path), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "m-synthetic.json").read_text())["results"]
    chance = {(r["task"], r["setting"]): r["chance"] for r in rows}
    assert chance[("brackets", "in_distribution")] == pytest.approx(0.5)
    assert chance[("copy", "few_shot")] == pytest.approx(0.25)


@pytest.mark.parametrize("argv, needle", [
    (["--task", "nope"], "unknown study task 'nope'"),
    (["--suite", "synthetic", "--task", "max"], "unknown synthetic task 'max'"),
    (["--instances", "0"], "--instances must be at least 1"),
    (["--shots", "-1"], "--shots must be 0 or more"),
])
def test_bad_arguments_are_one_line(model_dir, tmp_path, capsys, argv, needle):
    assert main(["eval", "--model", str(model_dir), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
