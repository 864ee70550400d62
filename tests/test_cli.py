"""The CLI: masks as text and PNG; bad input gives one clear line and a non-zero exit, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimask import build_model
from unimask.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unimask", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_masks_text_and_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "m.png"
    assert main(["masks", "--source-len", "3", "--target-len", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "prefix decoder" in text and "cross-attention" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the prefix decoder's picture: x1 sees x3 (bidirectional input), y1 does not see y2
    block = text.split("prefix decoder (GLM, U-PaLM): self-attention (source + target)\n")[1].split("\n\n")[0]
    rows = block.splitlines()[1:]
    assert rows[0].split()[1:] == ["■", "■", "■", "·", "·"]
    assert rows[3].split()[1:] == ["■", "■", "■", "■", "·"]


@pytest.mark.parametrize("damage", ["unknown key", "truncated", "no config"])
def test_bad_checkpoint_is_one_line_and_untouched(tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    build_model("tiny-causal").save(ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    if damage == "unknown key":
        cfg["n_layerz"] = 3
        (ckpt / "config.json").write_text(json.dumps(cfg))
        needle = "n_layerz"
    elif damage == "truncated":
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[:100])
        needle = "truncated"
    else:
        (ckpt / "config.json").unlink()
        needle = "no config.json"
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    res = run_cli("info", str(ckpt))
    assert res.returncode == 2
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_info_on_good_checkpoint(tmp_path: Path) -> None:
    build_model("tiny-encdec").save(tmp_path / "c")
    res = run_cli("info", str(tmp_path / "c"))
    assert res.returncode == 0 and "encoder_decoder" in res.stdout and "242,688" in res.stdout


def test_cli_error_has_no_traceback() -> None:
    res = run_cli("masks", "--source-len", "0")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "source-len" in res.stderr


@pytest.mark.parametrize("damage", ["latin-1 config", "integer weights", "heads", "kv heads"])
def test_more_bad_checkpoints_are_one_line(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture) -> None:
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    build_model("tiny-causal").save(ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    if damage == "latin-1 config":
        (ckpt / "config.json").write_bytes(json.dumps({**cfg, "arch": "caus\xe9"}, ensure_ascii=False)
                                           .encode("latin-1"))
        needle = "not UTF-8"
    elif damage == "integer weights":
        tensors = {k: v.to(torch.int64) for k, v in load_file(ckpt / "model.safetensors").items()}
        save_file(tensors, ckpt / "model.safetensors")
        needle = "not floating point"
    elif damage == "heads":
        (ckpt / "config.json").write_text(json.dumps({**cfg, "d_model": 60, "n_heads": 7}))
        needle = "do not divide d_model"
    else:
        (ckpt / "config.json").write_text(json.dumps({**cfg, "n_kv_heads": 3}))
        needle = "do not divide n_heads"
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    assert main(["info", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert str(ckpt) in err and (damage == "integer weights" or "config.json" in err)  # names what is wrong
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before
    # a config file given directly is named in the message too
    if damage in ("heads", "kv heads"):
        assert main(["info", str(ckpt / "config.json")]) == 2
        assert str(ckpt / "config.json") in capsys.readouterr().err


def test_tour_output_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["tour", "--out", str(tmp_path / "file" / "tour")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a file" in err


def test_masks_figure_path_is_checked_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["masks", "--out", str(tmp_path)]) == 0  # a folder: the figure goes inside it
    assert f"wrote {tmp_path / 'masks.png'}" in capsys.readouterr().out
    assert (tmp_path / "masks.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["masks", "--out", str(tmp_path / "figure")]) == 2  # matplotlib would silently add .png
    assert ".png" in capsys.readouterr().err and not list(tmp_path.glob("figure*"))


def _all_options():
    import argparse

    from unimask.cli import build_parser

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, f"{name} {sub_name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield name, parser, action
    return list(walk(build_parser(), "unimask"))


def test_every_option_has_help_with_its_default() -> None:
    """`unimask CMD --help` explains every option and states its default (in words where it is not a value)."""
    missing = []
    for name, parser, action in _all_options():
        text = parser._get_formatter()._get_help_string(action) if action.help else ""
        flag = action.nargs == 0 or action.default == []  # a flag, or a repeatable option (none by default)
        if not text or (action.option_strings and not flag and not action.required and "default" not in text
                        and "required" not in text):
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}: {text!r}")
    assert not missing, "\n".join(missing)
    assert "(default: 64)" in subprocess.run([sys.executable, "-m", "unimask", "generate", "--help"],
                                             capture_output=True, text=True).stdout.replace("\n", " ")


def test_misspelt_run_config_lists_the_shipped_ones(tmp_path: Path) -> None:
    res = run_cli("train", "--config", "tiny-casual", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "did you mean 'tiny-causal'?" in res.stderr and "tiny-prefix" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_used_out_dir_names_overwrite_and_is_left_alone(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny-causal"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    res = run_cli("train", "--config", "tiny-causal", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--overwrite" in res.stderr and "--set overwrite" not in res.stderr
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_masks_default_under_out(tmp_path: Path) -> None:
    res = run_cli("masks", cwd=tmp_path)
    assert res.returncode == 0
    assert (tmp_path / "out" / "masks" / "masks.png").is_file() and not (tmp_path / "masks.png").exists()


def test_params_prints_its_assumptions(capsys: pytest.CaptureFixture) -> None:
    assert main(["params", "llama-7b", "--out", ""]) == 0
    text = capsys.readouterr().out
    assert "Assumptions" in text and "20 per parameter" in text and "--mfu" in text and "$2.00" in text
