"""``unimask tokenizer``, ``unimask data`` and ``unimask objectives``: output and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unimask.cli import main


def test_tokenizer_train_and_encode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words for a tiny tokenizer. 一些中文。\n" * 20, encoding="utf-8")
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "400", "--out", str(out)]) == 0
    assert (out / "tokenizer.json").is_file() and '"extra_id_0"' in capsys.readouterr().out
    before = (out / "tokenizer.json").read_bytes()
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "400", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "tokenizer.json").read_bytes() == before  # nothing lost
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "一些 words 🎉"]) == 0
    assert "round trip: exact" in capsys.readouterr().out


def test_data_prepare_info_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("the first document", encoding="utf-8")
    (tmp_path / "in" / "b.bin").write_bytes(b"\x00\x01\x02binary")
    out = tmp_path / "prep"
    assert main(["data", "prepare", "--input", str(tmp_path / "in"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "b.bin" in err and not out.exists()
    assert main(["data", "prepare", "--input", str(tmp_path / "in"), "--out", str(out), "--no-progress",
                 "--skip-bad"]) == 0
    text = capsys.readouterr().out
    assert "1 documents" in text and "skipped 1 bad file" in text
    assert main(["data", "info", str(out)]) == 0
    assert '"n_docs": 1' in capsys.readouterr().out
    (tmp_path / "empty.jsonl").write_text("\n")
    assert main(["data", "prepare", "--input", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "e"),
                 "--no-progress"]) == 2
    assert "empty" in capsys.readouterr().err


def test_objectives_show(capsys: pytest.CaptureFixture) -> None:
    assert main(["objectives", "show", "--objective", "glm_blank", "The function returns the value of the list."]) == 0
    out = capsys.readouterr().out
    assert "<|startofpiece|>" in out and "2D position" in out and "[MASK]" in out
    assert main(["objectives", "show", "--objective", "span_corruption", "--arch", "encoder_decoder",
                 "The function returns the value of the list."]) == 0
    out = capsys.readouterr().out
    assert "<extra_id_0>" in out and "decoder:" in out
    assert main(["objectives", "show", "--objective", "span_corruption", "a"]) == 2
    assert "at least 2 tokens" in capsys.readouterr().err
    assert main(["objectives", "show", "--objective", "nope", "text"]) == 2
    assert "unknown objective" in capsys.readouterr().err


def test_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "unimask", "data", "prepare", "--input", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such corpus" in proc.stderr


def test_outputs_that_cannot_be_written_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words for a tiny tokenizer.\n" * 5, encoding="utf-8")
    blocked = corpus / "out"  # a file is in the way
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "400", "--out", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file" in err
    assert main(["data", "prepare", "--input", str(corpus), "--out", str(blocked / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file" in err
    small = ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "t")]
    assert main(small) == 2
    assert "too small" in capsys.readouterr().err and not (tmp_path / "t").exists()
    assert corpus.read_text().startswith("some words")
