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
    assert (tmp_path / "presets.json").is_file() and (tmp_path / "presets.png").stat().st_size > 1000


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


def test_rank_text_uses_the_runs_tokenizer_and_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--text`` with a run directory tokenizes with the run's tokenizer.json (in checkpoint-N/model/), not
    the built-in one; lengths over the model's context are refused in one line."""
    import shutil

    from unimask.data.tokenizer import Tokenizer
    from unimask.serving.tiny import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path / "tiny", "tiny-causal")
    shutil.copytree(model_dir, tmp_path / "run" / "checkpoint-3" / "model")
    text = "The quick brown fox jumps over the lazy dog."
    assert main(["rank", "--model", str(tmp_path / "run"), "--text", text, "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "rank_summary.json").read_text())
    assert summary["seq_len"] == len(Tokenizer.load(model_dir).encode(text))
    capsys.readouterr()
    for args in (["--preset", "tiny-causal", "--seq-len", "257"], ["--preset", "tiny-causal", "--seq-len", "5000"]):
        assert main(["rank", *args, "--out", ""]) == 2
        err = capsys.readouterr().err
        assert "--seq-len" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["--power-w", "-5"], "power_w"),
    (["--price-per-hour", "-1"], "price_per_hour"),
    (["--grid", "-3"], "grid_gco2_per_kwh"),
    (["--pue", "nan"], "pue"),
    (["--seq-len", "0"], "seq_len"),
    (["--target-len", "0"], "target_len"),
])
def test_params_bad_setup_is_one_line(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "tiny-encdec", *args, "--out", ""]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["analytic", "--n-c", "-5"], "--n-c"),
    (["analytic", "--alpha", "0"], "--alpha"),
    (["analytic", "--points", "100000000"], "--points"),
    (["analytic", "--n-max", "inf"], "--n-max"),
    (["sweep", "--digits", "40"], "digits"),
    (["sweep", "--lr", "-1"], "lr"),
])
def test_emergence_bad_values_are_one_line(args: list[str], needle: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any work (no NaN tables, no hour-long grid, no numpy or optimizer traceback)."""
    assert main(["emergence", *args, "--out", ""]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_params_of_run_and_hugging_face_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run directory (latest checkpoint-N/model) and a Hugging Face config.json are counted like presets:
    the totals equal the built models' numel."""
    import transformers

    import unimask

    model = unimask.build_model(unimask.preset("tiny-encdec"))
    model.save(tmp_path / "run" / "checkpoint-4" / "model")
    assert main(["params", str(tmp_path / "run"), "--json", "--out", str(tmp_path / "o")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "run" and data["params"]["total"] == model.num_parameters()
    assert (tmp_path / "o" / "run.json").is_file()
    hf_config = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=1, head_dim=16)
    hf_config.save_pretrained(tmp_path / "llama")  # config.json only: nothing is loaded
    assert main(["params", str(tmp_path / "llama"), "--json", "--out", ""]) == 0
    count = json.loads(capsys.readouterr().out)["params"]["total"]
    assert count == transformers.LlamaForCausalLM(hf_config).num_parameters()
